// domain::MessageService against the real SQLite store (with its group-commit writer thread) on
// a temporary file, a recording event bus and a hand-moved clock: send, list paging, delivery
// and read receipts, sync.
#include "domain/message_service.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "bus/local/local_bus.h"
#include "chat_fakes.h"

namespace mmchat::domain {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;

constexpr TimeMs kSec = 1000;

std::vector<int64_t> Ids(const std::vector<Message>& ms) {
  std::vector<int64_t> out;
  for (const auto& m : ms) out.push_back(m.id);
  return out;
}

class MessageServiceTest : public test::ChatFixture {
 protected:
  void SetUp() override {
    ChatFixture::SetUp();
    alice_ = NewUser("alice");
    bob_ = NewUser("bob");
    carol_ = NewUser("carol");
  }

  // `n` messages from `sender`, in order.
  std::vector<Message> SendMany(int64_t sender, int64_t conversation_id, int n) {
    std::vector<Message> out;
    for (int i = 0; i < n; ++i)
      out.push_back(Send(sender, conversation_id, "m" + std::to_string(i)));
    return out;
  }

  int64_t alice_ = 0, bob_ = 0, carol_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Send
// ---------------------------------------------------------------------------------------------

TEST_F(MessageServiceTest, InvalidContentIsAnsweredAtOnceWithoutTouchingTheStore) {
  auto small = MakeMessages(5);
  const Conversation p = Private(alice_, bob_);
  bus_.Clear();

  struct Case {
    std::string content;
    std::optional<std::string> client_id;
  };
  const std::vector<Case> bad = {
      {"", std::nullopt},
      {"123456", std::nullopt},                                            // 6 > 5
      {"\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9", std::nullopt},  // 6 code points
      {"a\xFF", std::nullopt},                                             // not UTF-8
      {"\xC0\xAF", std::nullopt},                                          // overlong
      {"ok", std::string(65, 'c')},                                        // client_id too long
      {"ok", std::string()},                                               // empty client_id
      {"ok", std::string("\xFF")},                                         // client_id not UTF-8
  };
  for (const auto& c : bad) {
    auto got = std::make_shared<std::optional<Status>>();
    // A conversation that does not exist: validation answers before the store could say 404.
    small->Send(alice_, SendInput{p.id + 1000, c.content, c.client_id},
                [got](Result<AppendResult> r) { *got = r.status(); });
    ASSERT_TRUE(got->has_value()) << "not answered at once for content of " << c.content.size()
                                  << " bytes";
    EXPECT_EQ((*got)->code(), StatusCode::kInvalidRequest) << (*got)->message();
  }
  EXPECT_TRUE(bus_.All().empty());

  // Nothing reached the store: the first real message is seq 1 and the only one.
  test::AppendWaiter w;
  small->Send(alice_,
              SendInput{p.id, "\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9", std::string(64, 'c')},
              w.Callback());  // exactly 5 code points and a 64-character client_id
  auto r = w.Get();
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->message.seq, 1);
  auto all = store_->ListMessages(p.id, std::nullopt, std::nullopt, 100);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 1u);
}

TEST_F(MessageServiceTest, SendReturnsTheStoredMessageAndAnnouncesIt) {
  const Conversation p = Private(alice_, bob_);
  bus_.Clear();
  clock_.Advance(5 * kSec);
  auto r = TrySend(alice_, p.id, "hello", "c-1");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_TRUE(r->created);
  const Message& m = r->message;
  EXPECT_GT(m.id, 0);
  EXPECT_EQ(m.conversation_id, p.id);
  EXPECT_EQ(m.seq, 1);
  EXPECT_EQ(m.sender_id, alice_);
  EXPECT_EQ(m.content, "hello");
  EXPECT_EQ(m.client_id, "c-1");
  EXPECT_EQ(m.created_at, clock_.now);

  auto created = bus_.Of<MessageCreated>();
  ASSERT_EQ(created.size(), 1u);
  EXPECT_EQ(created[0].message.id, m.id);
  EXPECT_EQ(created[0].message.content, "hello");

  auto stored = store_->GetMessage(m.id);
  ASSERT_TRUE(stored.ok() && stored->has_value());
  EXPECT_EQ((*stored)->content, "hello");
  EXPECT_EQ((*stored)->seq, 1);
}

TEST_F(MessageServiceTest, SeqIsGaplessPerConversationAndIdsIncrease) {
  const Conversation p = Private(alice_, bob_);
  const Conversation g = Group(alice_, {bob_, carol_});
  std::vector<Message> in_p, in_g;
  int64_t last_id = 0;
  for (int i = 0; i < 10; ++i) {
    const Message a = Send(i % 2 ? alice_ : bob_, p.id, "p" + std::to_string(i));
    const Message b = Send(i % 3 ? carol_ : alice_, g.id, "g" + std::to_string(i));
    EXPECT_GT(a.id, last_id);
    EXPECT_GT(b.id, a.id);
    last_id = b.id;
    in_p.push_back(a);
    in_g.push_back(b);
  }
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(in_p[i].seq, i + 1);
    EXPECT_EQ(in_g[i].seq, i + 1);
  }
  // A refused send (not a participant) leaves no gap.
  auto refused = TrySend(carol_, p.id, "intruder");
  EXPECT_EQ(refused.status().code(), StatusCode::kForbidden);
  EXPECT_EQ(Send(alice_, p.id, "after").seq, 11);
}

TEST_F(MessageServiceTest, RepeatedClientIdReturnsTheOriginalWithoutAnEvent) {
  const Conversation p = Private(alice_, bob_);
  bus_.Clear();
  auto first = TrySend(alice_, p.id, "original", "c-1");
  ASSERT_TRUE(first.ok());
  EXPECT_TRUE(first->created);

  clock_.Advance(kSec);
  auto again = TrySend(alice_, p.id, "retry with other text", "c-1");
  ASSERT_TRUE(again.ok()) << again.status().message();
  EXPECT_FALSE(again->created);
  EXPECT_EQ(again->message.id, first->message.id);
  EXPECT_EQ(again->message.seq, 1);
  EXPECT_EQ(again->message.content, "original");
  EXPECT_EQ(again->message.created_at, first->message.created_at);
  EXPECT_EQ(bus_.Of<MessageCreated>().size(), 1u);

  // The same client_id from another sender is another message; the seq continues at 2.
  auto bobs = TrySend(bob_, p.id, "bob's", "c-1");
  ASSERT_TRUE(bobs.ok());
  EXPECT_TRUE(bobs->created);
  EXPECT_EQ(bobs->message.seq, 2);
  EXPECT_EQ(bus_.Of<MessageCreated>().size(), 2u);
  auto all = store_->ListMessages(p.id, std::nullopt, std::nullopt, 100);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 2u);
}

TEST_F(MessageServiceTest, ConcurrentSendersEventsArriveInAscendingIdOrder) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 50;
  std::vector<int64_t> users;
  for (int i = 0; i < kThreads; ++i) users.push_back(NewUser("sender" + std::to_string(i)));
  const Conversation g = Group(users[0], users);
  bus_.Clear();

  std::vector<std::vector<Result<AppendResult>>> results(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<test::AppendWaiter> waiters(kPerThread);
      for (int i = 0; i < kPerThread; ++i) {
        msgs_->Send(users[t],
                    SendInput{g.id, std::to_string(t) + ":" + std::to_string(i),
                              "t" + std::to_string(t) + "-" + std::to_string(i)},
                    waiters[i].Callback());
      }
      for (auto& w : waiters) results[t].push_back(w.Get());
    });
  }
  for (auto& th : threads) th.join();

  std::set<int64_t> ids_from_callbacks;
  for (const auto& rs : results) {
    ASSERT_EQ(rs.size(), static_cast<size_t>(kPerThread));
    for (const auto& r : rs) {
      ASSERT_TRUE(r.ok()) << r.status().message();
      EXPECT_TRUE(r->created);
      ids_from_callbacks.insert(r->message.id);
    }
  }
  EXPECT_EQ(ids_from_callbacks.size(), static_cast<size_t>(kThreads * kPerThread));

  const auto events = bus_.Of<MessageCreated>();
  ASSERT_EQ(events.size(), static_cast<size_t>(kThreads * kPerThread));
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].message.seq, static_cast<int64_t>(i + 1)) << "event " << i;
    if (i > 0) {
      EXPECT_LT(events[i - 1].message.id, events[i].message.id) << "event " << i;
    }
    EXPECT_TRUE(ids_from_callbacks.count(events[i].message.id));
  }
}

TEST_F(MessageServiceTest, OutsidersAreForbiddenAndUnknownConversationsNotFound) {
  const Conversation p = Private(alice_, bob_);
  const Message m = Send(alice_, p.id, "private");
  bus_.Clear();

  EXPECT_EQ(TrySend(carol_, p.id, "hi").status().code(), StatusCode::kForbidden);
  EXPECT_EQ(TrySend(alice_, p.id + 1000, "hi").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(msgs_->List(carol_, p.id, std::nullopt, std::nullopt, 0).status().code(),
            StatusCode::kForbidden);
  EXPECT_EQ(msgs_->List(alice_, p.id + 1000, std::nullopt, std::nullopt, 0).status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(msgs_->MarkRead(carol_, p.id, m.id).status().code(), StatusCode::kForbidden);
  EXPECT_EQ(msgs_->MarkRead(alice_, p.id + 1000, m.id).status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(bus_.All().empty());
}

// ---------------------------------------------------------------------------------------------
// List
// ---------------------------------------------------------------------------------------------

TEST_F(MessageServiceTest, ListPagesBothWays) {
  const Conversation p = Private(alice_, bob_);
  const auto m = SendMany(alice_, p.id, 7);
  auto ids = [&](std::initializer_list<int> idx) {
    std::vector<int64_t> out;
    for (int i : idx) out.push_back(m[i].id);
    return out;
  };

  auto newest = msgs_->List(bob_, p.id, std::nullopt, std::nullopt, 3);
  ASSERT_TRUE(newest.ok());
  EXPECT_THAT(Ids(newest->messages), ElementsAreArray(ids({4, 5, 6})));
  EXPECT_TRUE(newest->has_more);

  auto older = msgs_->List(bob_, p.id, m[4].id, std::nullopt, 3);
  ASSERT_TRUE(older.ok());
  EXPECT_THAT(Ids(older->messages), ElementsAreArray(ids({1, 2, 3})));
  EXPECT_TRUE(older->has_more);

  auto oldest = msgs_->List(bob_, p.id, m[1].id, std::nullopt, 3);
  ASSERT_TRUE(oldest.ok());
  EXPECT_THAT(Ids(oldest->messages), ElementsAreArray(ids({0})));
  EXPECT_FALSE(oldest->has_more);

  auto exact = msgs_->List(bob_, p.id, m[3].id, std::nullopt, 3);
  ASSERT_TRUE(exact.ok());
  EXPECT_THAT(Ids(exact->messages), ElementsAreArray(ids({0, 1, 2})));
  EXPECT_FALSE(exact->has_more);  // exactly the rest: nothing beyond

  auto first = msgs_->List(bob_, p.id, std::nullopt, int64_t{0}, 3);
  ASSERT_TRUE(first.ok());
  EXPECT_THAT(Ids(first->messages), ElementsAreArray(ids({0, 1, 2})));
  EXPECT_TRUE(first->has_more);

  auto newer = msgs_->List(bob_, p.id, std::nullopt, m[2].id, 3);
  ASSERT_TRUE(newer.ok());
  EXPECT_THAT(Ids(newer->messages), ElementsAreArray(ids({3, 4, 5})));
  EXPECT_TRUE(newer->has_more);

  auto last = msgs_->List(bob_, p.id, std::nullopt, m[3].id, 3);
  ASSERT_TRUE(last.ok());
  EXPECT_THAT(Ids(last->messages), ElementsAreArray(ids({4, 5, 6})));
  EXPECT_FALSE(last->has_more);

  auto none = msgs_->List(bob_, p.id, std::nullopt, m[6].id, 3);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->messages.empty());
  EXPECT_FALSE(none->has_more);

  auto all = msgs_->List(bob_, p.id, std::nullopt, std::nullopt, 0);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->messages.size(), 7u);
  EXPECT_FALSE(all->has_more);
  EXPECT_EQ(all->messages[0].content, "m0");
  EXPECT_EQ(all->messages[6].seq, 7);

  auto both = msgs_->List(bob_, p.id, m[5].id, m[1].id, 3);
  EXPECT_EQ(both.status().code(), StatusCode::kInvalidRequest);
}

TEST_F(MessageServiceTest, ListOnlyShowsItsOwnConversation) {
  const Conversation p = Private(alice_, bob_);
  const Conversation q = Private(alice_, carol_);
  const Message a = Send(alice_, p.id, "to bob");
  Send(alice_, q.id, "to carol");
  const Message b = Send(bob_, p.id, "to alice");
  auto page = msgs_->List(alice_, p.id, std::nullopt, std::nullopt, 0);
  ASSERT_TRUE(page.ok());
  EXPECT_THAT(Ids(page->messages), ElementsAre(a.id, b.id));
}

TEST_F(MessageServiceTest, ListLimitDefaultsTo50AndIsCappedAt100) {
  const Conversation p = Private(alice_, bob_);
  // Queue them all at once; the group-commit writer takes them in order.
  std::vector<test::AppendWaiter> waiters(120);
  for (int i = 0; i < 120; ++i) {
    msgs_->Send(alice_, SendInput{p.id, "m" + std::to_string(i), std::nullopt},
                waiters[i].Callback());
  }
  std::vector<int64_t> ids;
  for (auto& w : waiters) {
    auto r = w.Get();
    ASSERT_TRUE(r.ok()) << r.status().message();
    ids.push_back(r->message.id);
  }

  for (int limit : {0, -5}) {
    auto page = msgs_->List(bob_, p.id, std::nullopt, std::nullopt, limit);
    ASSERT_TRUE(page.ok());
    ASSERT_EQ(page->messages.size(), 50u) << "limit " << limit;
    EXPECT_EQ(page->messages.front().id, ids[70]);
    EXPECT_EQ(page->messages.back().id, ids[119]);
    EXPECT_TRUE(page->has_more);
  }
  for (int limit : {101, 1000}) {
    auto page = msgs_->List(bob_, p.id, std::nullopt, std::nullopt, limit);
    ASSERT_TRUE(page.ok());
    ASSERT_EQ(page->messages.size(), 100u) << "limit " << limit;
    EXPECT_EQ(page->messages.front().id, ids[20]);
    EXPECT_TRUE(page->has_more);
  }
  auto forward = msgs_->List(bob_, p.id, std::nullopt, int64_t{0}, 1000);
  ASSERT_TRUE(forward.ok());
  ASSERT_EQ(forward->messages.size(), 100u);
  EXPECT_EQ(forward->messages.front().id, ids[0]);
  EXPECT_EQ(forward->messages.back().id, ids[99]);
  EXPECT_TRUE(forward->has_more);
}

TEST_F(MessageServiceTest, ListingMarksDeliveredOnceAndShowsStatus) {
  const Conversation p = Private(alice_, bob_);
  const Message m1 = Send(alice_, p.id, "one");
  const Message m2 = Send(alice_, p.id, "two");
  bus_.Clear();
  EXPECT_EQ(tracker_.Effective(p.id, bob_, 0), 0);

  // Alice's own listing delivers nothing new to her (sending moved her marker).
  auto own = msgs_->List(alice_, p.id, std::nullopt, std::nullopt, 0);
  ASSERT_TRUE(own.ok());
  EXPECT_TRUE(bus_.Of<DeliveryReceipt>().empty());
  EXPECT_EQ(own->messages.back().status, MessageStatus::kSent);

  // Bob lists: delivered up to m2, one receipt.
  clock_.Advance(kSec);
  auto page = msgs_->List(bob_, p.id, std::nullopt, std::nullopt, 0);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(tracker_.Effective(p.id, bob_, 0), m2.id);
  auto receipts = bus_.Of<DeliveryReceipt>();
  ASSERT_EQ(receipts.size(), 1u);
  EXPECT_EQ(receipts[0].conversation_id, p.id);
  EXPECT_EQ(receipts[0].user_id, bob_);
  EXPECT_EQ(receipts[0].message_id, m2.id);
  EXPECT_EQ(receipts[0].delivered_at, clock_.now);
  // Alice now sees both delivered.
  own = msgs_->List(alice_, p.id, std::nullopt, std::nullopt, 0);
  ASSERT_TRUE(own.ok());
  ASSERT_EQ(own->messages.size(), 2u);
  EXPECT_EQ(own->messages[0].status, MessageStatus::kDelivered);
  EXPECT_EQ(own->messages[1].status, MessageStatus::kDelivered);

  // Listing again, or an older page, delivers nothing new: no second receipt.
  ASSERT_TRUE(msgs_->List(bob_, p.id, std::nullopt, std::nullopt, 0).ok());
  ASSERT_TRUE(msgs_->List(bob_, p.id, m2.id, std::nullopt, 0).ok());
  EXPECT_EQ(bus_.Of<DeliveryReceipt>().size(), 1u);

  // A new message: only partly delivered by an older page, then fully.
  const Message m3 = Send(alice_, p.id, "three");
  ASSERT_TRUE(msgs_->List(bob_, p.id, m3.id, std::nullopt, 0).ok());
  EXPECT_EQ(bus_.Of<DeliveryReceipt>().size(), 1u);
  own = msgs_->List(alice_, p.id, std::nullopt, std::nullopt, 0);
  EXPECT_EQ(own->messages.back().status, MessageStatus::kSent);
  ASSERT_TRUE(msgs_->List(bob_, p.id, std::nullopt, m2.id, 0).ok());
  receipts = bus_.Of<DeliveryReceipt>();
  ASSERT_EQ(receipts.size(), 2u);
  EXPECT_EQ(receipts[1].message_id, m3.id);
  EXPECT_EQ(tracker_.Effective(p.id, bob_, 0), m3.id);

  // An empty page delivers nothing.
  ASSERT_TRUE(msgs_->List(bob_, p.id, std::nullopt, m3.id, 0).ok());
  EXPECT_EQ(bus_.Of<DeliveryReceipt>().size(), 2u);
  (void)m1;
}

TEST_F(MessageServiceTest, ListingDoesNotDeliverBelowTheStoredMark) {
  const Conversation p = Private(alice_, bob_);
  const auto m = SendMany(alice_, p.id, 3);
  // Delivered up to m[2] already written to the store, nothing pending.
  ASSERT_TRUE(store_->SaveDelivered({{p.id, bob_, m[2].id}}).ok());
  bus_.Clear();
  ASSERT_TRUE(msgs_->List(bob_, p.id, std::nullopt, std::nullopt, 0).ok());
  EXPECT_TRUE(bus_.Of<DeliveryReceipt>().empty());
  // Read markers count as delivered too (the service announces the move, as it must for the
  // markers kept for statuses).
  const Message m3 = Send(alice_, p.id, "three");
  ASSERT_TRUE(msgs_->MarkRead(bob_, p.id, m3.id).ok());
  bus_.Clear();
  ASSERT_TRUE(msgs_->List(bob_, p.id, std::nullopt, std::nullopt, 0).ok());
  EXPECT_TRUE(bus_.Of<DeliveryReceipt>().empty());
}

// ---------------------------------------------------------------------------------------------
// MarkRead
// ---------------------------------------------------------------------------------------------

TEST_F(MessageServiceTest, MarkReadMovesForwardOnlyAndAnnouncesMoves) {
  const Conversation p = Private(alice_, bob_);
  const auto m = SendMany(alice_, p.id, 3);
  bus_.Clear();

  clock_.Advance(kSec);
  const TimeMs first_read = clock_.now;
  auto r = msgs_->MarkRead(bob_, p.id, m[1].id);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_TRUE(r->moved);
  EXPECT_EQ(r->conversation_id, p.id);
  EXPECT_EQ(r->message_id, m[1].id);
  EXPECT_EQ(r->read_at, first_read);
  auto receipts = bus_.Of<ReadReceipt>();
  ASSERT_EQ(receipts.size(), 1u);
  EXPECT_EQ(receipts[0].conversation_id, p.id);
  EXPECT_EQ(receipts[0].user_id, bob_);
  EXPECT_EQ(receipts[0].message_id, m[1].id);
  EXPECT_EQ(receipts[0].read_at, first_read);

  // Older or the same: unchanged, the current marker is shown, no event.
  clock_.Advance(kSec);
  for (int64_t id : {m[0].id, m[1].id}) {
    auto back = msgs_->MarkRead(bob_, p.id, id);
    ASSERT_TRUE(back.ok());
    EXPECT_FALSE(back->moved);
    EXPECT_EQ(back->message_id, m[1].id);
    EXPECT_EQ(back->read_at, first_read);
  }
  EXPECT_EQ(bus_.Of<ReadReceipt>().size(), 1u);
  EXPECT_EQ(Stored(p.id).Find(bob_)->read_marker, m[1].id);

  auto fwd = msgs_->MarkRead(bob_, p.id, m[2].id);
  ASSERT_TRUE(fwd.ok());
  EXPECT_TRUE(fwd->moved);
  EXPECT_EQ(fwd->message_id, m[2].id);
  EXPECT_EQ(fwd->read_at, clock_.now);
  EXPECT_EQ(bus_.Of<ReadReceipt>().size(), 2u);
  EXPECT_EQ(Stored(p.id).Find(bob_)->read_marker, m[2].id);

  // Alice sees her messages read.
  auto own = msgs_->List(alice_, p.id, std::nullopt, std::nullopt, 0);
  ASSERT_TRUE(own.ok());
  for (const auto& msg : own->messages) EXPECT_EQ(msg.status, MessageStatus::kRead);
}

TEST_F(MessageServiceTest, MarkReadOfAMessageElsewhereIsNotFound) {
  const Conversation p = Private(alice_, bob_);
  const Conversation q = Private(bob_, carol_);
  const Message in_p = Send(alice_, p.id, "p");
  const Message in_q = Send(carol_, q.id, "q");
  bus_.Clear();

  // bob is in both, but the message must belong to the conversation named.
  EXPECT_EQ(msgs_->MarkRead(bob_, p.id, in_q.id).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(msgs_->MarkRead(bob_, p.id, in_q.id + 1000).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(msgs_->MarkRead(bob_, p.id, 0).status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(bus_.All().empty());
  EXPECT_EQ(Stored(p.id).Find(bob_)->read_marker, 0);
  EXPECT_TRUE(msgs_->MarkRead(bob_, p.id, in_p.id).ok());
}

// ---------------------------------------------------------------------------------------------
// Sync
// ---------------------------------------------------------------------------------------------

TEST_F(MessageServiceTest, SyncReturnsTheCallersMessagesAscendingInPages) {
  const int64_t dave = NewUser("dave");
  const Conversation p = Private(alice_, bob_);
  const Conversation g = Group(carol_, {alice_});
  const Conversation other = Private(bob_, dave);
  std::vector<int64_t> mine;
  for (int i = 0; i < 4; ++i) {
    mine.push_back(Send(bob_, p.id, "p" + std::to_string(i)).id);
    Send(dave, other.id, "not for alice");
    mine.push_back(Send(carol_, g.id, "g" + std::to_string(i)).id);
  }

  std::vector<int64_t> got;
  int64_t since = 0;
  int pages = 0;
  for (;;) {
    auto page = msgs_->Sync(alice_, since, 3);
    ASSERT_TRUE(page.ok()) << page.status().message();
    ++pages;
    ASSERT_LE(page->messages.size(), 3u);
    for (const auto& m : page->messages) {
      EXPECT_GT(m.id, since);
      got.push_back(m.id);
    }
    if (!page->messages.empty()) {
      EXPECT_EQ(page->next_since, page->messages.back().id);
    }
    since = page->next_since;
    if (!page->has_more) break;
    ASSERT_EQ(page->messages.size(), 3u);
    ASSERT_LT(pages, 10);
  }
  EXPECT_EQ(pages, 3);  // 3 + 3 + 2
  EXPECT_THAT(got, ElementsAreArray(mine));

  // Nothing newer: the same since comes back.
  auto empty = msgs_->Sync(alice_, since, 3);
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->messages.empty());
  EXPECT_EQ(empty->next_since, since);
  EXPECT_FALSE(empty->has_more);

  // The default limit takes everything here.
  auto all = msgs_->Sync(alice_, 0, 0);
  ASSERT_TRUE(all.ok());
  EXPECT_THAT(Ids(all->messages), ElementsAreArray(mine));
  EXPECT_FALSE(all->has_more);
}

TEST_F(MessageServiceTest, SyncCountsAsDeliveryPerConversation) {
  const Conversation p = Private(alice_, bob_);
  const Conversation g = Group(carol_, {alice_, bob_});
  const Message a = Send(bob_, p.id, "p");
  const Message b = Send(carol_, g.id, "g1");
  const Message c = Send(carol_, g.id, "g2");
  bus_.Clear();

  auto page = msgs_->Sync(alice_, 0, 0);
  ASSERT_TRUE(page.ok());
  EXPECT_THAT(Ids(page->messages), ElementsAre(a.id, b.id, c.id));
  auto receipts = bus_.Of<DeliveryReceipt>();
  ASSERT_EQ(receipts.size(), 2u);
  std::map<int64_t, int64_t> by_conv;
  for (const auto& r : receipts) {
    EXPECT_EQ(r.user_id, alice_);
    by_conv[r.conversation_id] = r.message_id;
  }
  EXPECT_EQ(by_conv[p.id], a.id);
  EXPECT_EQ(by_conv[g.id], c.id);
  EXPECT_EQ(tracker_.Effective(g.id, alice_, 0), c.id);

  // The private message reached its only other participant: delivered.
  EXPECT_EQ(page->messages[0].status, MessageStatus::kDelivered);
  // The group ones have not reached bob yet.
  EXPECT_EQ(page->messages[2].status, MessageStatus::kSent);

  // Syncing again delivers nothing new.
  ASSERT_TRUE(msgs_->Sync(alice_, 0, 0).ok());
  EXPECT_EQ(bus_.Of<DeliveryReceipt>().size(), 2u);
}

TEST_F(MessageServiceTest, RemovedParticipantSyncsNothingOfTheConversation) {
  const Conversation g = Group(alice_, {bob_});
  Send(alice_, g.id, "before");
  ASSERT_TRUE(convs_->RemoveParticipant(alice_, g.id, bob_).ok());
  Send(alice_, g.id, "after");

  auto page = msgs_->Sync(bob_, 0, 0);
  ASSERT_TRUE(page.ok());
  EXPECT_TRUE(page->messages.empty());
  EXPECT_EQ(page->next_since, 0);
  EXPECT_FALSE(page->has_more);
  EXPECT_EQ(msgs_->List(bob_, g.id, std::nullopt, std::nullopt, 0).status().code(),
            StatusCode::kForbidden);
  EXPECT_EQ(TrySend(bob_, g.id, "still here?").status().code(), StatusCode::kForbidden);
}

// ---------------------------------------------------------------------------------------------
// The in-process bus
// ---------------------------------------------------------------------------------------------

TEST(LocalBusTest, EverySubscriberGetsEveryEventInPublishOrder) {
  bus::LocalBus bus;
  std::vector<int64_t> first, second;
  bus.Subscribe([&](const Event& e) { first.push_back(std::get<ReadReceipt>(e).message_id); });
  bus.Subscribe([&](const Event& e) { second.push_back(std::get<ReadReceipt>(e).message_id); });
  for (int64_t id : {3, 1, 2}) bus.Publish(ReadReceipt{1, 2, id, 0});
  EXPECT_THAT(first, ElementsAre(3, 1, 2));
  EXPECT_THAT(second, ElementsAre(3, 1, 2));
}

TEST(LocalBusTest, SubscribingFromASubscriberAppliesToLaterEvents) {
  bus::LocalBus bus;
  int late_calls = 0;
  bool subscribed = false;
  bus.Subscribe([&](const Event&) {
    if (!subscribed) {
      subscribed = true;
      bus.Subscribe([&](const Event&) { ++late_calls; });  // must not deadlock
    }
  });
  bus.Publish(ConversationRemoved{1, 2});
  EXPECT_EQ(late_calls, 0);
  bus.Publish(ConversationRemoved{1, 3});
  EXPECT_EQ(late_calls, 1);
}

TEST_F(MessageServiceTest, ConcurrentSendsThroughTheLocalBusArriveAscending) {
  bus::LocalBus local;
  std::mutex mu;
  std::vector<int64_t> ids;  // guarded by mu
  local.Subscribe([&](const Event& e) {
    if (const auto* m = std::get_if<MessageCreated>(&e)) {
      std::lock_guard lock(mu);
      ids.push_back(m->message.id);
    }
  });
  MessageService service(MessageService::Deps{store_.get(), convs_.get(), &local, &tracker_,
                                              cache_.get(), 4000, clock_.Fn()});
  const Conversation g = Group(alice_, {bob_, carol_});
  const std::vector<int64_t> senders = {alice_, bob_, carol_};
  constexpr int kPerThread = 40;
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      std::vector<test::AppendWaiter> waiters(kPerThread);
      for (int i = 0; i < kPerThread; ++i) {
        service.Send(senders[t], SendInput{g.id, "x", std::nullopt}, waiters[i].Callback());
      }
      for (auto& w : waiters) EXPECT_TRUE(w.Get().ok());
    });
  }
  for (auto& th : threads) th.join();
  std::lock_guard lock(mu);
  ASSERT_EQ(ids.size(), 3u * kPerThread);
  EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
  EXPECT_EQ(std::set<int64_t>(ids.begin(), ids.end()).size(), ids.size());
}

TEST_F(MessageServiceTest, ASenderPastItsBurstIsRateLimitedUntilTokensComeBack) {
  LocalSendRate rate(/*per_second=*/1, /*burst=*/2, clock_.Fn());
  MessageService service(MessageService::Deps{store_.get(), convs_.get(), &bus_, &tracker_,
                                              cache_.get(), 4000, clock_.Fn(), &rate});
  const Conversation g = Group(alice_, {bob_});
  auto send = [&](int64_t who, const std::string& content) {
    test::AppendWaiter w;
    service.Send(who, SendInput{g.id, content, std::nullopt}, w.Callback());
    return w.Get();
  };
  EXPECT_TRUE(send(alice_, "one").ok());
  EXPECT_TRUE(send(alice_, "two").ok());
  auto refused = send(alice_, "three");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kRateLimited);
  EXPECT_EQ(refused.status().retry_after_sec(), 1);
  EXPECT_TRUE(send(bob_, "bob has his own bucket").ok());
  // Invalid input is refused before the bucket: it does not cost a token.
  clock_.Advance(1000);
  EXPECT_EQ(send(alice_, "").status().code(), StatusCode::kInvalidRequest);
  EXPECT_TRUE(send(alice_, "four").ok());
  EXPECT_EQ(send(alice_, "five").status().code(), StatusCode::kRateLimited);
  // Nothing refused was stored.
  auto page = service.List(alice_, g.id, std::nullopt, std::nullopt, 50);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->messages.size(), 4u);
}

// ---------------------------------------------------------------------------------------------
// The participants' markers statuses are computed from (domain::ConversationCache)
// ---------------------------------------------------------------------------------------------

// user id -> {read, delivered}, as the cache gives them.
std::map<int64_t, std::pair<int64_t, int64_t>> Marks(ConversationCache& cache,
                                                     int64_t conversation_id) {
  std::map<int64_t, std::pair<int64_t, int64_t>> out;
  auto marks = cache.Marks(conversation_id);
  EXPECT_TRUE(marks.ok()) << marks.status().message();
  if (marks.ok()) {
    for (const auto& p : *marks) out[p.user_id] = {p.read_marker, p.delivered_marker};
  }
  return out;
}

TEST_F(MessageServiceTest, ConversationCacheKeepsMarkersUntilTheyExpire) {
  const Conversation g = Group(alice_, {bob_});
  const Message m = Send(alice_, g.id, "one");
  EXPECT_EQ(Marks(*cache_, g.id)[bob_], std::make_pair(int64_t{0}, int64_t{0}));
  // Written behind the cache's back (no news): the kept markers stay until they expire.
  ASSERT_TRUE(store_->MoveReadMarker(g.id, bob_, m.id, clock_.now).ok());
  EXPECT_EQ(Marks(*cache_, g.id)[bob_].first, 0);
  clock_.Advance(ConversationCache::kDefaultTtlMs - 1);
  EXPECT_EQ(Marks(*cache_, g.id)[bob_].first, 0);
  clock_.Advance(1);
  EXPECT_EQ(Marks(*cache_, g.id)[bob_].first, m.id);
  EXPECT_TRUE(Marks(*cache_, g.id + 1000).empty());
}

TEST_F(MessageServiceTest, ConversationCacheReceiptsAndSendsMoveKeptMarkersForwardOnly) {
  const Conversation g = Group(alice_, {bob_, carol_});
  const Message m1 = Send(alice_, g.id, "one");
  const Message m2 = Send(alice_, g.id, "two");
  ASSERT_EQ(Marks(*cache_, g.id)[alice_].first, m2.id);  // sending reads up to the message
  // News alone, nothing stored: what is shown comes from the kept entry.
  bus_.Publish(ReadReceipt{g.id, bob_, m2.id, clock_.now});
  bus_.Publish(DeliveryReceipt{g.id, carol_, m1.id, clock_.now});
  bus_.Publish(ReadReceipt{g.id, bob_, m1.id, clock_.now});  // older: ignored
  EXPECT_EQ(Marks(*cache_, g.id),
            (std::map<int64_t, std::pair<int64_t, int64_t>>{
                {alice_, {m2.id, 0}}, {bob_, {m2.id, 0}}, {carol_, {0, m1.id}}}));
  const Message m3 = Send(carol_, g.id, "three");
  EXPECT_EQ(Marks(*cache_, g.id)[carol_], std::make_pair(m3.id, m1.id));
}

TEST_F(MessageServiceTest, ConversationCacheMembershipChangesAndLostNewsReadTheParticipantsAgain) {
  const Conversation g = Group(alice_, {bob_});
  ASSERT_EQ(Marks(*cache_, g.id).size(), 2u);
  ASSERT_TRUE(convs_->AddParticipant(alice_, g.id, carol_, std::nullopt).ok());
  EXPECT_EQ(Marks(*cache_, g.id).size(), 3u);
  // A receipt for someone the entry does not know drops it too.
  const Message m = Send(alice_, g.id, "one");
  ASSERT_TRUE(store_->MoveReadMarker(g.id, bob_, m.id, clock_.now).ok());
  ASSERT_EQ(Marks(*cache_, g.id)[bob_].first, 0);
  bus_.Publish(EventsMissed{});
  EXPECT_EQ(Marks(*cache_, g.id)[bob_].first, m.id);
}

}  // namespace
}  // namespace mmchat::domain
