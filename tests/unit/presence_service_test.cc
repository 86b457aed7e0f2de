// Presence and the store parts the real-time layer needs: last_seen written when a user's
// last connection closes, the presence events, live deliveries, and the membership listing
// that loads the hub's index.
#include "domain/presence_service.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "chat_fakes.h"

namespace mmchat::test {
namespace {

class PresenceServiceTest : public ChatFixture {
 protected:
  domain::PresenceService Presence() { return {store_.get(), nullptr, &bus_, clock_.Fn()}; }
  std::optional<TimeMs> LastSeen(int64_t user) {
    auto r = store_->FindUserById(user);
    EXPECT_TRUE(r.ok() && r->has_value());
    return (*r)->user.last_seen;
  }
};

TEST_F(PresenceServiceTest, OnlineAnnouncesThePreviousLastSeenAndOfflineStoresANewOne) {
  const int64_t alice = NewUser("alice");
  auto presence = Presence();
  ASSERT_TRUE(presence.WentOnline(alice).ok());
  auto events = bus_.Of<domain::PresenceChanged>();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_TRUE(events[0].online);
  EXPECT_FALSE(events[0].last_seen.has_value());  // never connected before

  clock_.now += 5000;
  ASSERT_TRUE(presence.WentOffline(alice).ok());
  EXPECT_EQ(LastSeen(alice), clock_.now);
  events = bus_.Of<domain::PresenceChanged>();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_FALSE(events[1].online);
  EXPECT_EQ(events[1].last_seen, clock_.now);

  const TimeMs left_at = clock_.now;
  clock_.now += 5000;
  ASSERT_TRUE(presence.WentOnline(alice).ok());
  EXPECT_EQ(bus_.Of<domain::PresenceChanged>().back().last_seen, left_at);
}

TEST_F(PresenceServiceTest, UnknownUsersAreNotFound) {
  auto presence = Presence();
  EXPECT_EQ(presence.WentOnline(4242).code(), StatusCode::kNotFound);
  EXPECT_EQ(presence.WentOffline(4242).code(), StatusCode::kNotFound);
}

TEST_F(PresenceServiceTest, ListMembershipsReturnsEveryPairWithItsVersionAndFollowsChanges) {
  const int64_t a = NewUser("alice"), b = NewUser("bob"), c = NewUser("carol");
  const auto group = Group(a, {b, c});
  const auto pair = Private(a, b);
  auto all = store_->ListMemberships();
  ASSERT_TRUE(all.ok());
  std::sort(all->begin(), all->end());
  std::vector<domain::Membership> want = {
      {group.id, a, 0}, {group.id, b, 0}, {group.id, c, 0}, {pair.id, a, 0}, {pair.id, b, 0}};
  std::sort(want.begin(), want.end());
  EXPECT_EQ(*all, want);
  // A membership change moves the conversation's version; a role change does not.
  ASSERT_TRUE(convs_->RemoveParticipant(c, group.id, c).ok());
  ASSERT_TRUE(convs_->SetRole(a, group.id, b, domain::Role::kAdmin).ok());
  all = store_->ListMemberships();
  ASSERT_TRUE(all.ok());
  std::sort(all->begin(), all->end());
  want = {{group.id, a, 1}, {group.id, b, 1}, {pair.id, a, 0}, {pair.id, b, 0}};
  std::sort(want.begin(), want.end());
  EXPECT_EQ(*all, want);
  auto got = store_->GetConversation(group.id);
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->members_version, 1);
}

TEST_F(PresenceServiceTest, LiveDeliveryMovesTheWatermarkOnceAndAnnouncesIt) {
  const int64_t a = NewUser("alice"), b = NewUser("bob");
  const auto conv = Private(a, b);
  const auto m1 = Send(a, conv.id, "one");
  const auto m2 = Send(a, conv.id, "two");
  bus_.Clear();
  msgs_->DeliveredLive(conv.id, b, m2.id);
  msgs_->DeliveredLive(conv.id, b, m1.id);  // older: nothing new
  auto receipts = bus_.Of<domain::DeliveryReceipt>();
  ASSERT_EQ(receipts.size(), 1u);
  EXPECT_EQ(receipts[0].user_id, b);
  EXPECT_EQ(receipts[0].message_id, m2.id);
  EXPECT_EQ(tracker_.Effective(conv.id, b, 0), m2.id);
}

}  // namespace
}  // namespace mmchat::test
