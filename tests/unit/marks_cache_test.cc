// domain::MarksCache on the real SQLite store and a recording bus, and the ExpiringCache under
// it: what is kept, what news moves or drops it, and that a read racing news is not kept.
#include "domain/marks_cache.h"

#include <gtest/gtest.h>

#include <map>
#include <utility>

#include "chat_fakes.h"
#include "domain/expiring_cache.h"

namespace mmchat::domain {
namespace {

class MarksCacheTest : public test::ChatFixture {
 protected:
  void SetUp() override {
    ChatFixture::SetUp();
    alice_ = NewUser("alice");
    bob_ = NewUser("bob");
    carol_ = NewUser("carol");
  }

  // user id -> {read, delivered}, as the cache gives them.
  std::map<int64_t, std::pair<int64_t, int64_t>> Marks(int64_t conversation_id) {
    std::map<int64_t, std::pair<int64_t, int64_t>> out;
    auto marks = marks_->Get(conversation_id);
    EXPECT_TRUE(marks.ok()) << marks.status().message();
    if (marks.ok()) {
      for (const auto& p : *marks) out[p.user_id] = {p.read_marker, p.delivered_marker};
    }
    return out;
  }

  int64_t alice_ = 0, bob_ = 0, carol_ = 0;
};

TEST_F(MarksCacheTest, KeepsMarkersUntilTheyExpire) {
  const Conversation g = Group(alice_, {bob_});
  const Message m = Send(alice_, g.id, "one");
  EXPECT_EQ(Marks(g.id)[bob_], std::make_pair(int64_t{0}, int64_t{0}));
  // Written behind the cache's back (no news): the kept markers stay until they expire.
  ASSERT_TRUE(store_->MoveReadMarker(g.id, bob_, m.id, clock_.now).ok());
  EXPECT_EQ(Marks(g.id)[bob_].first, 0);
  clock_.Advance(MarksCache::kDefaultTtlMs - 1);
  EXPECT_EQ(Marks(g.id)[bob_].first, 0);
  clock_.Advance(1);
  EXPECT_EQ(Marks(g.id)[bob_].first, m.id);
  EXPECT_TRUE(Marks(g.id + 1000).empty());
}

TEST_F(MarksCacheTest, ReceiptsAndSendsMoveKeptMarkersForwardOnly) {
  const Conversation g = Group(alice_, {bob_, carol_});
  const Message m1 = Send(alice_, g.id, "one");
  const Message m2 = Send(alice_, g.id, "two");
  ASSERT_EQ(Marks(g.id)[alice_].first, m2.id);  // sending reads up to the message
  // News alone, nothing stored: what is shown comes from the kept entry.
  bus_.Publish(ReadReceipt{g.id, bob_, m2.id, clock_.now});
  bus_.Publish(DeliveryReceipt{g.id, carol_, m1.id, clock_.now});
  bus_.Publish(ReadReceipt{g.id, bob_, m1.id, clock_.now});  // older: ignored
  EXPECT_EQ(Marks(g.id), (std::map<int64_t, std::pair<int64_t, int64_t>>{
                             {alice_, {m2.id, 0}}, {bob_, {m2.id, 0}}, {carol_, {0, m1.id}}}));
  const Message m3 = Send(carol_, g.id, "three");
  EXPECT_EQ(Marks(g.id)[carol_], std::make_pair(m3.id, m1.id));
}

TEST_F(MarksCacheTest, MembershipChangesAndLostNewsReadTheParticipantsAgain) {
  const Conversation g = Group(alice_, {bob_});
  ASSERT_EQ(Marks(g.id).size(), 2u);
  ASSERT_TRUE(convs_->AddParticipant(alice_, g.id, carol_, std::nullopt).ok());
  EXPECT_EQ(Marks(g.id).size(), 3u);
  // A receipt for someone the entry does not know drops it too.
  const Message m = Send(alice_, g.id, "one");
  ASSERT_TRUE(store_->MoveReadMarker(g.id, bob_, m.id, clock_.now).ok());
  ASSERT_EQ(Marks(g.id)[bob_].first, 0);
  bus_.Publish(EventsMissed{});
  EXPECT_EQ(Marks(g.id)[bob_].first, m.id);
}

TEST(ExpiringCacheTest, AReadThatNewsOvertookIsNotKept) {
  test::FakeClock clock;
  ExpiringCache<int> cache(clock.Fn(), 1000, 100);
  auto bump = [](int& v) {
    ++v;
    return true;
  };

  uint64_t ticket = cache.BeginRead(1);
  cache.Update(1, bump);  // news while the read is in flight
  cache.Put(1, 10, ticket);
  EXPECT_EQ(cache.Peek(1), std::nullopt);

  ticket = cache.BeginRead(1);
  cache.Forget(1);
  cache.Put(1, 10, ticket);
  EXPECT_EQ(cache.Peek(1), std::nullopt);

  ticket = cache.BeginRead(1);
  cache.ForgetAll();
  cache.Put(1, 10, ticket);
  EXPECT_EQ(cache.Peek(1), std::nullopt);

  // Of two reads in flight the later one is kept.
  const uint64_t first = cache.BeginRead(1);
  const uint64_t second = cache.BeginRead(1);
  cache.Put(1, 20, second);
  cache.Put(1, 10, first);
  EXPECT_EQ(cache.Peek(1), 20);

  // News about another id does not spoil a read.
  ticket = cache.BeginRead(2);
  cache.Update(3, bump);
  cache.Forget(4);
  cache.Put(2, 30, ticket);
  EXPECT_EQ(cache.Peek(2), 30);

  // A kept value takes news in place; news it cannot take drops it.
  cache.Update(2, bump);
  EXPECT_EQ(cache.Peek(2), 31);
  cache.Update(2, [](int&) { return false; });
  EXPECT_EQ(cache.Peek(2), std::nullopt);

  // A read begun before news about a kept value does not put its older read back.
  cache.Put(1, 20, cache.BeginRead(1));
  ticket = cache.BeginRead(1);
  cache.Update(1, bump);
  cache.Put(1, 20, ticket);
  EXPECT_EQ(cache.Peek(1), 21);
  clock.Advance(1000);
  EXPECT_EQ(cache.Peek(1), std::nullopt);
}

}  // namespace
}  // namespace mmchat::domain
