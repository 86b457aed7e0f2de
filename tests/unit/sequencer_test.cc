// ws/sequencer: messages offered in any order, twice, or not at all come out once each, in
// id order, the missing ones read from a real store (SQLite on a temporary file).
#include "ws/sequencer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <vector>

#include "chat_fakes.h"

namespace mmchat::ws {
namespace {

class SequencerTest : public test::ChatFixture {
 protected:
  void SetUp() override {
    ChatFixture::SetUp();
    a_ = NewUser("ann");
    b_ = NewUser("bob");
    conv_ = Private(a_, b_).id;
  }

  // `n` committed messages, in id order.
  std::vector<domain::Message> Commit(int n) {
    std::vector<domain::Message> out;
    for (int i = 0; i < n; ++i) out.push_back(Send(i % 2 ? a_ : b_, conv_, std::to_string(i)));
    return out;
  }

  Sequencer Make(SequencerOptions o = {}) {
    return Sequencer(
        store_.get(), [this](const domain::Message& m) { out_.push_back(m.id); }, o);
  }

  static std::vector<int64_t> Ids(const std::vector<domain::Message>& ms) {
    std::vector<int64_t> ids;
    for (const auto& m : ms) ids.push_back(m.id);
    return ids;
  }

  int64_t a_ = 0, b_ = 0, conv_ = 0;
  std::vector<int64_t> out_;
};

TEST_F(SequencerTest, InOrderPassesStraightThroughAndHistoryIsSkipped) {
  const auto before = Commit(3);
  auto seq = Make();
  seq.Start(before.back().id);
  const auto ms = Commit(5);
  for (const auto& m : ms) seq.Offer(m, 0);
  EXPECT_EQ(out_, Ids(ms));
  seq.Offer(before.front(), 0);  // history, and a duplicate: neither goes out
  seq.Offer(ms[2], 0);
  EXPECT_EQ(out_, Ids(ms));
  EXPECT_FALSE(seq.RepairDue(1'000'000));
}

TEST_F(SequencerTest, ShuffledAndDuplicatedInputComesOutInOrderOnce) {
  auto seq = Make();
  seq.Start(0);
  const auto ms = Commit(200);
  std::vector<domain::Message> input = ms;
  input.insert(input.end(), ms.begin(), ms.begin() + 50);  // duplicates
  std::mt19937 rng(7);
  std::shuffle(input.begin(), input.end(), rng);
  for (const auto& m : input) seq.Offer(m, 0);
  EXPECT_EQ(out_, Ids(ms));
  EXPECT_FALSE(seq.RepairDue(1'000'000));
}

TEST_F(SequencerTest, AHoleWaitsItsTimeThenIsFilledFromTheStore) {
  auto seq = Make({.hold_ms = 250});
  seq.Start(0);
  const auto ms = Commit(10);
  for (const auto& m : ms) {
    if (m.id != ms[3].id && m.id != ms[4].id) seq.Offer(m, 1000);  // 4th and 5th lost
  }
  EXPECT_EQ(out_, (std::vector<int64_t>{ms[0].id, ms[1].id, ms[2].id}));
  EXPECT_FALSE(seq.RepairDue(1249));
  ASSERT_TRUE(seq.RepairDue(1250));
  auto r = seq.Repair(1250);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(*r);
  EXPECT_EQ(out_, Ids(ms));
  // The lost ones arriving late change nothing.
  seq.Offer(ms[3], 2000);
  seq.Offer(ms[4], 2000);
  EXPECT_EQ(out_, Ids(ms));
  EXPECT_FALSE(seq.RepairDue(1'000'000));
}

TEST_F(SequencerTest, ASuspectedLossWithNoHoleInSightIsRepairedToo) {
  auto seq = Make();
  seq.Start(0);
  const auto ms = Commit(4);
  seq.Offer(ms[0], 0);
  // The last three never came, and nothing after them shows the hole: only the bus knows.
  EXPECT_FALSE(seq.RepairDue(1'000'000));
  seq.Suspect();
  ASSERT_TRUE(seq.RepairDue(0));
  ASSERT_TRUE(seq.Repair(0).ok());
  EXPECT_EQ(out_, Ids(ms));
  EXPECT_EQ(seq.delivered(), ms.back().id);
}

TEST_F(SequencerTest, RepairPagesThroughTheStore) {
  auto seq = Make({.repair_page = 7});
  seq.Start(0);
  const auto ms = Commit(30);
  seq.Offer(ms.back(), 0);  // only the last one came
  seq.Suspect();
  auto r = seq.Repair(0);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(*r);
  EXPECT_EQ(out_, Ids(ms));
}

TEST_F(SequencerTest, TooLargeABacklogIsSkippedAndSaidSo) {
  auto seq = Make({.max_backlog = 10});
  seq.Start(0);
  const auto ms = Commit(20);
  seq.Suspect();
  auto r = seq.Repair(0);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(*r);  // the caller ends the connections that missed them
  EXPECT_TRUE(out_.empty());
  EXPECT_EQ(seq.delivered(), ms.back().id);
  const auto next = Commit(1);
  seq.Offer(next[0], 0);
  EXPECT_EQ(out_, Ids(next));
}

}  // namespace
}  // namespace mmchat::ws
