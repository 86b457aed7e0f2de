// The pure parts of the WebSocket layer: the membership index that fan-out reads, and the
// frame shapes of API.md (server frames, ack and error, client frame parsing).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include "ws/frames.h"
#include "ws/membership_index.h"

namespace mmchat::ws {
namespace {

std::vector<int64_t> Sorted(std::vector<int64_t> v) {
  std::sort(v.begin(), v.end());
  return v;
}

TEST(MembershipIndexTest, LoadsPairsAndAnswersMembersAndPeers) {
  MembershipIndex index;
  index.Load({{1, 10}, {1, 11}, {2, 10}, {2, 12}, {3, 13}});
  ASSERT_NE(index.MembersOf(1), nullptr);
  EXPECT_EQ(Sorted(*index.MembersOf(1)), (std::vector<int64_t>{10, 11}));
  EXPECT_EQ(index.MembersOf(99), nullptr);
  EXPECT_EQ(index.PeersOf(10), (std::vector<int64_t>{11, 12}));  // sorted, once each, not 10
  EXPECT_EQ(index.PeersOf(13), std::vector<int64_t>{});
  EXPECT_EQ(index.PeersOf(77), std::vector<int64_t>{});
}

TEST(MembershipIndexTest, SetReplacesMembersAndTheirPeers) {
  MembershipIndex index;
  index.Load({{1, 10}, {1, 11}});
  index.Set(1, {10, 12}, 1);
  EXPECT_EQ(Sorted(*index.MembersOf(1)), (std::vector<int64_t>{10, 12}));
  EXPECT_EQ(index.PeersOf(11), std::vector<int64_t>{});  // no longer shares anything
  EXPECT_EQ(index.PeersOf(10), std::vector<int64_t>{12});
  index.Set(5, {20, 21}, 0);  // a new conversation
  EXPECT_EQ(index.PeersOf(20), std::vector<int64_t>{21});
}

TEST(MembershipIndexTest, AnOlderListIsIgnoredAndAnEqualOneApplied) {
  MembershipIndex index;
  index.Load({{1, 10, 3}, {1, 11, 3}});
  EXPECT_EQ(index.Version(1), 3);
  EXPECT_EQ(index.Version(2), std::nullopt);
  EXPECT_FALSE(index.Set(1, {10}, 2));  // the news of an earlier change, heard late
  EXPECT_EQ(Sorted(*index.MembersOf(1)), (std::vector<int64_t>{10, 11}));
  EXPECT_EQ(index.Version(1), 3);
  EXPECT_TRUE(index.Set(1, {10, 11, 12}, 4));
  EXPECT_EQ(index.Version(1), 4);
  index.Remove(1, 12);  // ahead of its news: the version stays
  EXPECT_EQ(index.Version(1), 4);
  EXPECT_TRUE(index.Set(1, {10, 11, 12}, 4));  // a failed removal's list again
  EXPECT_EQ(Sorted(*index.MembersOf(1)), (std::vector<int64_t>{10, 11, 12}));
  EXPECT_TRUE(index.Set(2, {20}, 0));  // unknown before: taken whatever its version
  EXPECT_EQ(index.Version(2), 0);
}

TEST(MembershipIndexTest, StaleNamesTheConversationsTheStoreHasNewerThanTheIndex) {
  MembershipIndex index;
  index.Load({{1, 10, 3}, {1, 11, 3}, {2, 10, 5}, {3, 12, 1}, {4, 13, 2}});
  index.Set(6, {}, 4);  // a conversation everyone has left
  const std::vector<domain::Membership> store = {
      {1, 10, 3}, {1, 11, 3},  // as held
      {2, 10, 6},              // a member added or removed since
      {3, 12, 0},              // older than the index (its news came after the read)
      {5, 14, 1},              // made since
                               // 4: its last member left since; 6: no one, as held
  };
  EXPECT_EQ(index.Stale(store), (std::vector<int64_t>{2, 4, 5}));
  EXPECT_EQ(index.Stale({}), (std::vector<int64_t>{1, 2, 3, 4}));
}

TEST(MembershipIndexTest, RemoveTakesOneUserOutWithoutTouchingHeldLists) {
  MembershipIndex index;
  index.Load({{1, 10}, {1, 11}, {1, 12}});
  auto before = index.MembersOf(1);
  index.Remove(1, 11);
  EXPECT_EQ(Sorted(*index.MembersOf(1)), (std::vector<int64_t>{10, 12}));
  EXPECT_EQ(before->size(), 3u);  // a reader's snapshot is immutable
  EXPECT_EQ(index.PeersOf(11), std::vector<int64_t>{});
  index.Remove(1, 99);  // not a member: nothing happens
  index.Remove(42, 10);
  EXPECT_EQ(index.MembersOf(1)->size(), 2u);
}

TEST(MembershipIndexTest, ConcurrentReadersAndWritersSeeWholeLists) {
  MembershipIndex index;
  index.Load({{1, 10}, {1, 11}});
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (int i = 0; i < 2000; ++i)
      index.Set(1, i % 2 ? std::vector<int64_t>{10, 11} : std::vector<int64_t>{10, 11, 12, 13}, i);
    stop = true;
  });
  while (!stop) {
    auto m = index.MembersOf(1);
    ASSERT_TRUE(m->size() == 2 || m->size() == 4);
  }
  writer.join();
}

TEST(FramesTest, ServerFrameHasTypeAndData) {
  Frame f = MakeFrame("pong", Json::object());
  EXPECT_EQ(Json::parse(*f), Json::parse(R"({"type":"pong","data":{}})"));
}

TEST(FramesTest, AnswersAreAcksWithARefAndErrorsWithout) {
  EXPECT_EQ(AnswerFrame(std::nullopt, RawJson{}), nullptr);  // success without ref: silent
  auto ok = Json::parse(*AnswerFrame("r1", RawJson{}));
  EXPECT_EQ(ok, Json::parse(R"({"type":"ack","data":{"ref":"r1","ok":true}})"));
  auto with_result = Json::parse(*AnswerFrame("r2", RawJson{R"({"id":7})"}));
  EXPECT_EQ(with_result["data"]["result"]["id"], 7);
  auto failed = Json::parse(*AnswerFrame("r3", Status::Forbidden("not a participant")));
  EXPECT_EQ(failed, Json::parse(R"({"type":"ack","data":{"ref":"r3","ok":false,
      "error":{"code":"forbidden","message":"not a participant"}}})"));
  auto error = Json::parse(*AnswerFrame(std::nullopt, Status::NotFound("no such conversation")));
  EXPECT_EQ(error, Json::parse(R"({"type":"error","data":{"code":"not_found",
      "message":"no such conversation"}})"));
}

TEST(FramesTest, ParsesClientFramesAndSaysWhatIsWrong) {
  ClientFrame f = ParseClientFrame(R"({"type":"message","ref":"a","conversation_id":3})");
  EXPECT_TRUE(f.error.ok());
  EXPECT_EQ(f.type, "message");
  EXPECT_EQ(f.ref, "a");
  EXPECT_EQ(f.body["conversation_id"], 3);

  EXPECT_EQ(ParseClientFrame("{nope").error.code(), StatusCode::kInvalidRequest);
  EXPECT_EQ(ParseClientFrame("[1,2]").error.code(), StatusCode::kInvalidRequest);
  EXPECT_EQ(ParseClientFrame("\"\xff\"").error.code(), StatusCode::kInvalidRequest);
  ClientFrame no_type = ParseClientFrame(R"({"ref":"k"})");
  EXPECT_EQ(no_type.error.code(), StatusCode::kInvalidRequest);
  EXPECT_EQ(no_type.ref, "k");  // still answerable with an ack
  EXPECT_EQ(ParseClientFrame(R"({"type":5})").error.code(), StatusCode::kInvalidRequest);
  ClientFrame bad_ref = ParseClientFrame(R"({"type":"ping","ref":7})");
  EXPECT_EQ(bad_ref.error.code(), StatusCode::kInvalidRequest);
  EXPECT_FALSE(bad_ref.ref.has_value());
}

}  // namespace
}  // namespace mmchat::ws
