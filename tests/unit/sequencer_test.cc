// ws/sequencer: messages offered in any order, twice, or not at all come out once each, in
// id order, the missing ones read from a real store (SQLite on a temporary file); and none
// goes out before the membership index knows the members it committed under.
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

  // The index loaded from the store as it is now.
  Sequencer Make(SequencerOptions o = {}) {
    auto memberships = store_->ListMemberships();
    EXPECT_TRUE(memberships.ok());
    index_.Load(*memberships);
    return Sequencer(
        store_.get(), &index_,
        [this](const domain::Message& m, bool update) {
          out_.push_back(update ? m.change_id : m.id);
          if (update) updates_.push_back(m.change_id);
        },
        [this](const domain::Conversation& c) {
          learnt_.push_back(c.id);
          std::vector<int64_t> members;
          for (const auto& p : c.participants) members.push_back(p.user_id);
          index_.Set(c.id, members, c.members_version);
        },
        o);
  }

  static std::vector<int64_t> Ids(const std::vector<domain::Message>& ms) {
    std::vector<int64_t> ids;
    for (const auto& m : ms) ids.push_back(m.id);
    return ids;
  }

  int64_t a_ = 0, b_ = 0, conv_ = 0;
  MembershipIndex index_;
  std::vector<int64_t> out_;      // positions: ids, and change_ids of updates
  std::vector<int64_t> updates_;  // the change_ids of the updates among them
  std::vector<int64_t> learnt_;   // conversations read from the store, newer than the index's
};

TEST_F(SequencerTest, InOrderPassesStraightThroughAndHistoryIsSkipped) {
  const auto before = Commit(3);
  auto seq = Make();
  seq.Start(before.back().id);
  const auto ms = Commit(5);
  for (const auto& m : ms) seq.Offer(m, false, 0);
  EXPECT_EQ(out_, Ids(ms));
  seq.Offer(before.front(), false, 0);  // history, and a duplicate: neither goes out
  seq.Offer(ms[2], false, 0);
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
  for (const auto& m : input) seq.Offer(m, false, 0);
  EXPECT_EQ(out_, Ids(ms));
  EXPECT_FALSE(seq.RepairDue(1'000'000));
}

TEST_F(SequencerTest, AHoleWaitsItsTimeThenIsFilledFromTheStore) {
  auto seq = Make({.hold_ms = 250});
  seq.Start(0);
  const auto ms = Commit(10);
  for (const auto& m : ms) {
    if (m.id != ms[3].id && m.id != ms[4].id) seq.Offer(m, false, 1000);  // 4th and 5th lost
  }
  EXPECT_EQ(out_, (std::vector<int64_t>{ms[0].id, ms[1].id, ms[2].id}));
  EXPECT_FALSE(seq.RepairDue(1249));
  ASSERT_TRUE(seq.RepairDue(1250));
  auto r = seq.Repair(1250);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(*r);
  EXPECT_EQ(out_, Ids(ms));
  // The lost ones arriving late change nothing.
  seq.Offer(ms[3], false, 2000);
  seq.Offer(ms[4], false, 2000);
  EXPECT_EQ(out_, Ids(ms));
  EXPECT_FALSE(seq.RepairDue(1'000'000));
}

TEST_F(SequencerTest, ASuspectedLossWithNoHoleInSightIsRepairedToo) {
  auto seq = Make();
  seq.Start(0);
  const auto ms = Commit(4);
  seq.Offer(ms[0], false, 0);
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
  seq.Offer(ms.back(), false, 0);  // only the last one came
  seq.Suspect();
  auto r = seq.Repair(0);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(*r);
  EXPECT_EQ(out_, Ids(ms));
}

// Changes take positions from the counter ids come from: a change's position fills the hole
// a later message would otherwise wait behind, and a lost change is read back by a repair.
TEST_F(SequencerTest, ChangesHaveTheirPlaceBetweenMessages) {
  auto seq = Make({.hold_ms = 250});
  seq.Start(0);
  const auto ms = Commit(2);
  const domain::Message edited = Edit(a_, ms[1].sender_id == a_ ? ms[1].id : ms[0].id, "new");
  const domain::Message after = Send(b_, conv_, "after");
  ASSERT_EQ(edited.change_id, after.id - 1);
  seq.Offer(ms[0], false, 0);
  seq.Offer(ms[1], false, 0);
  seq.Offer(after, false, 0);  // waits: the change's position is below it
  EXPECT_EQ(out_, (std::vector<int64_t>{ms[0].id, ms[1].id}));
  seq.Offer(edited, true, 10);
  EXPECT_EQ(out_, (std::vector<int64_t>{ms[0].id, ms[1].id, edited.change_id, after.id}));
  EXPECT_EQ(updates_, (std::vector<int64_t>{edited.change_id}));
  EXPECT_FALSE(seq.RepairDue(1'000'000));
}

TEST_F(SequencerTest, ARepairReadsLostChangesAndSkipsSupersededOnes) {
  auto seq = Make({.hold_ms = 250, .repair_page = 2});
  seq.Start(0);
  const auto ms = Commit(3);
  const int64_t target = ms[1].sender_id == a_ ? ms[1].id : ms[2].id;
  const domain::Message first_edit = Edit(a_, target, "one");
  const domain::Message second_edit = Edit(a_, target, "two");  // supersedes the first
  const domain::Message last = Send(b_, conv_, "last");
  seq.Offer(ms[0], false, 0);
  seq.Offer(last, false, 0);  // everything between was lost
  ASSERT_TRUE(seq.RepairDue(250));
  auto r = seq.Repair(250);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(*r);
  // The messages at their ids (in their current state), the latest change at its change_id;
  // the first edit's position is gone for good.
  EXPECT_EQ(out_,
            (std::vector<int64_t>{ms[0].id, ms[1].id, ms[2].id, second_edit.change_id, last.id}));
  EXPECT_EQ(updates_, (std::vector<int64_t>{second_edit.change_id}));
  EXPECT_LT(first_edit.change_id, second_edit.change_id);
  EXPECT_EQ(seq.delivered(), last.id);
  // The lost ones arriving late change nothing.
  seq.Offer(first_edit, true, 300);
  seq.Offer(second_edit, true, 300);
  EXPECT_EQ(updates_.size(), 1u);
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
  seq.Offer(next[0], false, 0);
  EXPECT_EQ(out_, Ids(next));
}

TEST_F(SequencerTest, AMessageWaitsForTheMembersItCommittedUnderAndTheNextOnesBehindIt) {
  const int64_t g = Group(a_, {b_}).id;
  auto seq = Make({.hold_ms = 250});
  seq.Start(0);
  const int64_t carl = NewUser("carl");
  ASSERT_TRUE(convs_->AddParticipant(a_, g, carl, std::nullopt).ok());  // members_version 0 -> 1
  std::vector<domain::Message> ms;
  for (int i = 0; i < 3; ++i) {
    ms.push_back(Send(a_, g, std::to_string(i)));
    ms.back().members_version = 1;  // as the PostgreSQL writer reports it
  }
  for (const auto& m : ms) seq.Offer(m, false, 1000);
  EXPECT_TRUE(out_.empty()) << "sent with a member list that lacks carl";
  seq.Recheck(1100);  // news of something else: still waiting
  EXPECT_TRUE(out_.empty());
  EXPECT_FALSE(seq.RepairDue(1249));
  // The news of the add comes: all three go, in order.
  EXPECT_TRUE(index_.Set(g, {a_, b_, carl}, 1));
  seq.Recheck(1200);
  EXPECT_EQ(out_, Ids(ms));
  EXPECT_FALSE(seq.RepairDue(1'000'000));
}

TEST_F(SequencerTest, AMessageWhoseMembersNewsNeverComesReadsThemFromTheStore) {
  const int64_t g = Group(a_, {b_}).id;
  auto seq = Make({.hold_ms = 250});
  seq.Start(0);
  // A conversation the index has not heard of, and a member added the index missed.
  const int64_t carl = NewUser("carl");
  const int64_t h = Group(a_, {b_}, "new").id;
  ASSERT_TRUE(convs_->AddParticipant(a_, g, carl, std::nullopt).ok());
  domain::Message first = Send(a_, h, "new group");
  domain::Message second = Send(a_, g, "after the add");
  second.members_version = 1;
  seq.Offer(first, false, 1000);
  seq.Offer(second, false, 1000);
  EXPECT_TRUE(out_.empty());
  EXPECT_FALSE(seq.RepairDue(1249));
  ASSERT_TRUE(seq.RepairDue(1250));
  auto r = seq.Repair(1250);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(*r);
  EXPECT_EQ(out_, (std::vector<int64_t>{first.id, second.id}));
  EXPECT_EQ(learnt_, (std::vector<int64_t>{h, g}));  // each once, and only these
  ASSERT_NE(index_.MembersOf(h), nullptr);
  EXPECT_EQ(index_.Version(g), 1);
  EXPECT_EQ(index_.MembersOf(g)->size(), 3u);
}

TEST_F(SequencerTest, ARepairReadsTheMembersOfWhatItSends) {
  auto seq = Make();
  seq.Start(0);
  const int64_t g = Group(a_, {b_}).id;  // unknown to the index, and its news lost
  const domain::Message m = Send(b_, g, "lost");
  const domain::Message known = Send(a_, conv_, "lost too");  // the index has its members
  seq.Suspect();
  ASSERT_TRUE(seq.Repair(0).ok());
  EXPECT_EQ(out_, (std::vector<int64_t>{m.id, known.id}));
  EXPECT_EQ(learnt_, std::vector<int64_t>{g}) << "only what the index did not know";
  ASSERT_NE(index_.MembersOf(g), nullptr);
  EXPECT_EQ(index_.MembersOf(g)->size(), 2u);
}

}  // namespace
}  // namespace mmchat::ws
