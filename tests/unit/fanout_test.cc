// ws/fanout on one process (no sequencer): a message whose members the index does not know
// yet (the news of the change that made them comes later) goes out to them all the same.
#include "ws/fanout.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <thread>
#include <vector>

#include "chat_fakes.h"

namespace mmchat::ws {
namespace {

class FanoutTest : public test::ChatFixture {
 protected:
  void SetUp() override {
    ChatFixture::SetUp();
    a_ = NewUser("ann");
    b_ = NewUser("bob");
    c_ = NewUser("cid");
    group_ = Group(a_, {b_}).id;
    auto memberships = store_->ListMemberships();
    ASSERT_TRUE(memberships.ok());
    index_.Load(*memberships);
    fanout_ = std::make_unique<Fanout>(
        Fanout::Deps{registry_, index_, presence_, typing_, convs_.get(), store_.get(), nullptr,
                     &bus_, workers_.get_executor()},
        /*sequence_messages=*/false);
    ASSERT_TRUE(fanout_->Start().ok());
  }
  void TearDown() override {
    fanout_.reset();
    workers_.join();
  }

  // The members the index holds for the group, sorted; waits up to 5 s for `want`.
  std::vector<int64_t> MembersOnceThey(const std::vector<int64_t>& want) {
    std::vector<int64_t> got;
    for (int i = 0; i < 500; ++i) {
      auto m = index_.MembersOf(group_);
      got = m ? *m : std::vector<int64_t>{};
      std::sort(got.begin(), got.end());
      if (got == want) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return got;
  }

  int64_t a_ = 0, b_ = 0, c_ = 0, group_ = 0;
  boost::asio::thread_pool workers_{1};
  MembershipIndex index_;
  PresenceTracker presence_{workers_.get_executor(), nullptr, nullptr};
  ConnectionRegistry registry_{presence_, nullptr};
  Typing typing_{index_, &bus_, 10'000, 0};
  std::unique_ptr<Fanout> fanout_;
};

TEST_F(FanoutTest, AMessageAheadOfTheNewsOfAnAddGoesToTheNewMember) {
  // cid joins in the store, and the news of it has not come yet (the thread that made the
  // change has not published it): the index still holds ann and bob.
  ASSERT_TRUE(store_->AddParticipant(group_, c_, domain::Role::kMember, clock_.now).ok());
  ASSERT_EQ(MembersOnceThey({a_, b_}), (std::vector<int64_t>{a_, b_}));

  const domain::Message m = Send(a_, group_, "welcome cid");
  ASSERT_GT(m.members_version, 0);
  std::vector<int64_t> want = {a_, b_, c_};
  std::sort(want.begin(), want.end());
  EXPECT_EQ(MembersOnceThey(want), want) << "the message went out by the old members";
}

TEST_F(FanoutTest, AMessageOfAConversationTheIndexDoesNotKnowYetFindsItsMembers) {
  auto made = store_->CreateGroup("quiet", a_, {c_}, clock_.now);  // no news of it yet
  ASSERT_TRUE(made.ok()) << made.status().message();
  const int64_t quiet = made->id;
  ASSERT_EQ(index_.MembersOf(quiet), nullptr);

  Send(a_, quiet, "first");
  for (int i = 0; i < 500 && index_.MembersOf(quiet) == nullptr; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_NE(index_.MembersOf(quiet), nullptr) << "the message went out to no one";
  std::vector<int64_t> members = *index_.MembersOf(quiet);
  std::sort(members.begin(), members.end());
  std::vector<int64_t> want = {a_, c_};
  std::sort(want.begin(), want.end());
  EXPECT_EQ(members, want);
}

}  // namespace
}  // namespace mmchat::ws
