// store/common/group_commit: the writer's upkeep hook (Tidy) runs on the writer thread after
// batches commit, until the backend says it is done, and is finished before Stop() returns.
#include "store/common/group_commit.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

namespace mmchat::store {
namespace {

GroupCommitWriter::Committed CommitAll(const std::vector<Write>& batch) {
  GroupCommitWriter::Committed out;
  for (size_t i = 0; i < batch.size(); ++i) {
    out.results.emplace_back(Written(domain::StoredAppend{domain::AppendOutcome::kCreated, {}}));
  }
  out.committed = true;
  return out;
}

void AppendAndWait(GroupCommitWriter& writer) {
  std::promise<void> answered;
  writer.Append(domain::NewMessage{}, [&](Result<domain::StoredAppend>) { answered.set_value(); });
  answered.get_future().wait();
}

TEST(GroupCommitTidyTest, RunsAfterACommitUntilTheBackendIsDone) {
  std::atomic<int> steps{0};
  std::atomic<int> left{0};  // steps the backend still has to do
  std::atomic<bool> on_writer{true};
  std::thread::id writer_thread;
  GroupCommitWriter writer(
      [&](const std::vector<Write>& batch) {
        writer_thread = std::this_thread::get_id();
        left = 5;
        return CommitAll(batch);
      },
      "tidytest",
      [&] {
        if (std::this_thread::get_id() != writer_thread) on_writer = false;
        ++steps;
        return --left > 0;
      });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(steps, 0) << "no upkeep before anything committed";
  AppendAndWait(writer);
  for (int i = 0; i < 200 && steps < 5; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(steps, 5);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(steps, 5) << "no upkeep once the backend said it was done";
  EXPECT_TRUE(on_writer);
}

TEST(GroupCommitTidyTest, StopFinishesTheUpkeep) {
  std::atomic<int> left{0};
  std::atomic<bool> release{false};
  GroupCommitWriter writer(
      [&](const std::vector<Write>& batch) {
        left = 3;
        return CommitAll(batch);
      },
      "tidytest",
      [&] {
        // Slow steps: Stop() must still wait for the last one.
        while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        return --left > 0;
      });
  AppendAndWait(writer);
  std::thread releaser([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    release = true;
  });
  writer.Stop();
  EXPECT_EQ(left, 0);
  releaser.join();
}

}  // namespace
}  // namespace mmchat::store
