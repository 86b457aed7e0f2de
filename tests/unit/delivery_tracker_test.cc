// domain::DeliveryTracker: in-memory delivered watermarks, their batched flush to the store
// (real SQLite, and a fake whose SaveDelivered can fail), and concurrent use.
#include "domain/delivery_tracker.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <tuple>
#include <vector>

#include "chat_fakes.h"

namespace mmchat::domain {
namespace {

using ::testing::UnorderedElementsAre;

using Mark = std::tuple<int64_t, int64_t, int64_t>;  // conversation, user, message

std::vector<Mark> Marks(const std::vector<Watermark>& ws) {
  std::vector<Mark> out;
  for (const auto& w : ws) out.emplace_back(w.conversation_id, w.user_id, w.message_id);
  return out;
}

// Only SaveDelivered matters: it records each call, can fail, and can run a hook while the
// flush is in progress. Everything else is an error.
class FakeConversationStore final : public ConversationStore {
 public:
  Status SaveDelivered(const std::vector<Watermark>& marks) override {
    std::function<void()> hook;
    {
      std::lock_guard lock(mu);
      calls.push_back(marks);
      hook = std::move(during_save);
      during_save = nullptr;
    }
    if (hook) hook();
    std::lock_guard lock(mu);
    if (fail) return Status::Unavailable("database is down");
    for (const auto& w : marks) {
      auto& v = saved[{w.conversation_id, w.user_id}];
      v = std::max(v, w.message_id);  // like the real store: never down
    }
    return Status::Ok();
  }
  // The saved mark of (conversation, user), 0 when none.
  int64_t Saved(int64_t conversation_id, int64_t user_id) {
    std::lock_guard lock(mu);
    auto it = saved.find({conversation_id, user_id});
    return it == saved.end() ? 0 : it->second;
  }

  Result<std::pair<int64_t, bool>> GetOrCreatePrivate(int64_t, int64_t, TimeMs) override {
    return No();
  }
  Result<CreatedGroup> CreateGroup(const std::string&, int64_t, const std::vector<int64_t>&,
                                   TimeMs) override {
    return No();
  }
  Result<std::optional<Conversation>> GetConversation(int64_t) override { return No(); }
  Result<std::vector<Conversation>> GetConversations(const std::vector<int64_t>&) override {
    return No();
  }
  Result<std::vector<ReaderState>> ListReaderStates(int64_t) override { return No(); }
  Result<std::vector<Membership>> ListMemberships() override { return No(); }
  Result<std::optional<Message>> LastMessage(int64_t) override { return No(); }
  Result<int64_t> CountUnread(int64_t, int64_t, int64_t) override { return No(); }
  Status Rename(int64_t, const std::string&, TimeMs) override { return No(); }
  Result<MembershipOutcome> AddParticipant(int64_t, int64_t, Role, TimeMs) override { return No(); }
  Result<MembershipOutcome> SetRole(int64_t, int64_t, Role, TimeMs) override { return No(); }
  Result<MembershipOutcome> RemoveParticipant(int64_t, int64_t, TimeMs) override { return No(); }
  void AppendMessage(NewMessage, std::function<void(Result<StoredAppend>)> done) override {
    done(No());
  }
  Result<std::optional<Message>> GetMessage(int64_t) override { return No(); }
  Result<std::vector<Message>> ListMessages(int64_t, std::optional<int64_t>, std::optional<int64_t>,
                                            int) override {
    return No();
  }
  Result<std::vector<Message>> ListMessagesFor(int64_t, int64_t, std::optional<int64_t>,
                                               std::optional<int64_t>, int) override {
    return No();
  }
  Result<std::vector<Message>> MessagesSince(int64_t, int64_t, int) override { return No(); }
  void ChangeMessage(MessageChange, std::function<void(Result<StoredChange>)> done) override {
    done(No());
  }
  Result<std::vector<Message>> MessagesAfter(int64_t, int) override { return No(); }
  Result<std::vector<Message>> ChangesAfter(int64_t, int) override { return No(); }
  Result<int64_t> LastMessageId() override { return No(); }
  Result<std::vector<Message>> SearchMessages(const SearchQuery&) override { return No(); }
  Result<std::optional<ReadMark>> MoveReadMarker(int64_t, int64_t, int64_t, TimeMs) override {
    return No();
  }

  std::mutex mu;
  bool fail = false;                          // guarded by mu
  std::vector<std::vector<Watermark>> calls;  // guarded by mu
  std::function<void()> during_save;          // guarded by mu; runs once, inside the call
  std::map<std::pair<int64_t, int64_t>, int64_t> saved;  // guarded by mu

 private:
  static Status No() { return Status::Internal("not used by these tests"); }
};

// ---------------------------------------------------------------------------------------------
// Advance and Effective
// ---------------------------------------------------------------------------------------------

TEST(DeliveryTrackerTest, AdvanceMovesForwardOnly) {
  DeliveryTracker t;
  EXPECT_EQ(t.Effective(1, 2, 0), 0);
  EXPECT_TRUE(t.Advance(1, 2, 5, 0));
  EXPECT_EQ(t.Effective(1, 2, 0), 5);
  EXPECT_FALSE(t.Advance(1, 2, 3, 0));  // backwards
  EXPECT_FALSE(t.Advance(1, 2, 5, 0));  // the same
  EXPECT_EQ(t.Effective(1, 2, 0), 5);
  EXPECT_TRUE(t.Advance(1, 2, 7, 0));
  EXPECT_EQ(t.Effective(1, 2, 0), 7);
}

TEST(DeliveryTrackerTest, TheStoredMarkIsRespected) {
  DeliveryTracker t;
  EXPECT_FALSE(t.Advance(1, 2, 5, 9));  // the store already has 9
  EXPECT_FALSE(t.Advance(1, 2, 9, 9));
  EXPECT_EQ(t.Effective(1, 2, 9), 9);
  EXPECT_TRUE(t.Advance(1, 2, 10, 9));
  EXPECT_EQ(t.Effective(1, 2, 9), 10);
  EXPECT_EQ(t.Effective(1, 2, 0), 10);   // pending progress counts
  EXPECT_EQ(t.Effective(1, 2, 20), 20);  // a higher stored mark wins
  // A stored mark above the pending one: nothing moves.
  EXPECT_FALSE(t.Advance(1, 2, 12, 15));
  EXPECT_EQ(t.Effective(1, 2, 0), 15);
  EXPECT_TRUE(t.Advance(1, 2, 16, 15));
}

TEST(DeliveryTrackerTest, KeysAreIndependent) {
  DeliveryTracker t;
  EXPECT_TRUE(t.Advance(1, 2, 5, 0));
  EXPECT_TRUE(t.Advance(1, 3, 4, 0));
  EXPECT_TRUE(t.Advance(2, 2, 3, 0));
  EXPECT_EQ(t.Effective(1, 2, 0), 5);
  EXPECT_EQ(t.Effective(1, 3, 0), 4);
  EXPECT_EQ(t.Effective(2, 2, 0), 3);
  EXPECT_EQ(t.Effective(2, 3, 0), 0);
}

// Another node's receipt counts, is never written here, and is let go after the hold.
TEST(DeliveryTrackerTest, AMarkHeardFromAnotherNodeCountsForAWhileAndIsNotWritten) {
  FakeConversationStore store;
  DeliveryTracker t;
  constexpr TimeMs kHold = DeliveryTracker::kHeardHoldMs;
  t.Heard(1, 2, 7, 1'000);
  t.Heard(1, 2, 5, 1'100);  // an older receipt heard late lowers nothing
  EXPECT_EQ(t.Effective(1, 2, 0), 7);
  EXPECT_EQ(t.Effective(1, 2, 9), 9);  // the store caught up and passed it
  EXPECT_EQ(t.Effective(1, 3, 0), 0);
  ASSERT_TRUE(t.Flush(&store).ok());
  EXPECT_TRUE(store.calls.empty());  // that node writes it, not this one
  // This node's own progress is still announced and written above a heard mark.
  EXPECT_TRUE(t.Advance(1, 2, 8, 0));
  EXPECT_EQ(t.Effective(1, 2, 0), 8);

  // Past the hold, the next heard receipt sweeps the old ones away.
  t.Heard(4, 4, 1, 1'100 + kHold);
  EXPECT_EQ(t.Effective(1, 2, 0), 8);  // the pending mark, not the heard one
  ASSERT_TRUE(t.Flush(&store).ok());
  EXPECT_EQ(t.Effective(1, 2, 0), 0);  // written (the fake keeps nothing) and no longer heard
  EXPECT_EQ(t.Effective(4, 4, 0), 1);
}

// ---------------------------------------------------------------------------------------------
// Flush
// ---------------------------------------------------------------------------------------------

TEST(DeliveryTrackerTest, FlushWritesPendingMarksInOneCall) {
  FakeConversationStore store;
  DeliveryTracker t;
  EXPECT_TRUE(t.Flush(&store).ok());
  EXPECT_TRUE(store.calls.empty());  // nothing pending: no store call

  t.Advance(1, 2, 5, 0);
  t.Advance(1, 2, 6, 0);
  t.Advance(1, 3, 4, 0);
  t.Advance(1, 4, 2, 3);  // not moved: not written
  ASSERT_TRUE(t.Flush(&store).ok());
  ASSERT_EQ(store.calls.size(), 1u);
  EXPECT_THAT(Marks(store.calls[0]), UnorderedElementsAre(Mark{1, 2, 6}, Mark{1, 3, 4}));

  // Written: the next flush has nothing to do.
  EXPECT_TRUE(t.Flush(&store).ok());
  EXPECT_EQ(store.calls.size(), 1u);
}

TEST(DeliveryTrackerTest, AFailedFlushKeepsTheMarksPending) {
  FakeConversationStore store;
  store.fail = true;
  DeliveryTracker t;
  t.Advance(1, 2, 5, 0);
  const Status s = t.Flush(&store);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_EQ(t.Effective(1, 2, 0), 5);
  EXPECT_FALSE(t.Advance(1, 2, 5, 0));  // still known: no second receipt

  // Progress made during the failed flush is kept too, and the higher mark wins.
  store.during_save = [&] { EXPECT_TRUE(t.Advance(1, 2, 8, 0)); };
  EXPECT_FALSE(t.Flush(&store).ok());
  EXPECT_EQ(t.Effective(1, 2, 0), 8);

  store.fail = false;
  ASSERT_TRUE(t.Flush(&store).ok());
  ASSERT_EQ(store.calls.size(), 3u);
  EXPECT_THAT(Marks(store.calls[0]), UnorderedElementsAre(Mark{1, 2, 5}));
  EXPECT_THAT(Marks(store.calls[1]), UnorderedElementsAre(Mark{1, 2, 5}));
  EXPECT_THAT(Marks(store.calls[2]), UnorderedElementsAre(Mark{1, 2, 8}));
  EXPECT_TRUE(t.Flush(&store).ok());
  EXPECT_EQ(store.calls.size(), 3u);
}

TEST(DeliveryTrackerTest, MarksBeingFlushedStillCount) {
  FakeConversationStore store;
  DeliveryTracker t;
  ASSERT_TRUE(t.Advance(1, 2, 10, 0));
  int64_t seen_during = -1;
  bool moved_back = true;
  store.during_save = [&] {
    // The write is under way and the caller's stored value is still the old one.
    seen_during = t.Effective(1, 2, 0);
    moved_back = t.Advance(1, 2, 8, 0);
  };
  ASSERT_TRUE(t.Flush(&store).ok());
  EXPECT_EQ(seen_during, 10);
  EXPECT_FALSE(moved_back) << "8 is below the mark 10 being written: no receipt is due";
  EXPECT_EQ(t.Effective(1, 2, 10), 10);
}

TEST(DeliveryTrackerTest, FlushWritesToTheRealStore) {
  class Fixture : public test::ChatFixture {
   public:
    void TestBody() override {}
    using ChatFixture::convs_;
    using ChatFixture::NewUser;
    using ChatFixture::Private;
    using ChatFixture::Send;
    using ChatFixture::SetUp;
    using ChatFixture::store_;
    using ChatFixture::Stored;
  } f;
  f.SetUp();
  ASSERT_NE(f.store_, nullptr);
  const int64_t a = f.NewUser("alice");
  const int64_t b = f.NewUser("bob");
  const Conversation p = f.Private(a, b);
  const Message m1 = f.Send(a, p.id, "one");
  const Message m2 = f.Send(a, p.id, "two");

  DeliveryTracker t;
  ASSERT_TRUE(t.Advance(p.id, b, m2.id, 0));
  EXPECT_EQ(f.Stored(p.id).Find(b)->delivered_marker, 0);  // not written yet
  ASSERT_TRUE(t.Flush(f.store_.get()).ok());
  Conversation c = f.Stored(p.id);
  EXPECT_EQ(c.Find(b)->delivered_marker, m2.id);
  EXPECT_EQ(c.Find(a)->delivered_marker, 0);
  EXPECT_EQ(t.Effective(p.id, b, c.Find(b)->delivered_marker), m2.id);

  // An older mark never lowers the stored one (the store takes the maximum).
  ASSERT_TRUE(t.Advance(p.id, b, m1.id, 0));  // a stale caller that read 0
  ASSERT_TRUE(t.Flush(f.store_.get()).ok());
  EXPECT_EQ(f.Stored(p.id).Find(b)->delivered_marker, m2.id);
}

// ---------------------------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------------------------

TEST(DeliveryTrackerTest, ConcurrentAdvanceLosesNothing) {
  constexpr int kThreads = 8;
  constexpr int kSteps = 500;
  DeliveryTracker t;
  std::vector<std::vector<int64_t>> moved(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      for (int step = 1; step <= kSteps; ++step) {
        // A shared key that every thread pushes, and one of its own.
        const int64_t shared = int64_t{step} * kThreads + i;
        if (t.Advance(1, 1, shared, 0)) moved[i].push_back(shared);
        EXPECT_TRUE(t.Advance(2, 100 + i, step, 0));
        EXPECT_FALSE(t.Advance(2, 100 + i, step - 1, 0));
      }
    });
  }
  for (auto& th : threads) th.join();

  const int64_t top = int64_t{kSteps} * kThreads + (kThreads - 1);
  EXPECT_EQ(t.Effective(1, 1, 0), top);
  for (int i = 0; i < kThreads; ++i) EXPECT_EQ(t.Effective(2, 100 + i, 0), kSteps);
  // Only the thread with the largest value can have moved the mark to the top.
  ASSERT_FALSE(moved[kThreads - 1].empty());
  EXPECT_EQ(moved[kThreads - 1].back(), top);
  EXPECT_FALSE(t.Advance(1, 1, top, 0));
}

TEST(DeliveryTrackerTest, ConcurrentAdvanceWithAFlusherWritesTheFinalMarks) {
  constexpr int kThreads = 4;
  constexpr int kSteps = 300;
  FakeConversationStore store;
  DeliveryTracker t;
  std::atomic<bool> done{false};

  std::thread flusher([&] {
    while (!done.load()) EXPECT_TRUE(t.Flush(&store).ok());
  });
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      const int64_t user = 100 + i;
      for (int step = 1; step <= kSteps; ++step) {
        // Like the service: the stored mark is read from the store first.
        EXPECT_TRUE(t.Advance(1, user, step, store.Saved(1, user)));
        t.Advance(2, 1, int64_t{step} * kThreads + i, store.Saved(2, 1));
        // The mark is pending, being written or written: never lost meanwhile.
        const int64_t in_memory = t.Effective(1, user, 0);
        EXPECT_GE(std::max(in_memory, store.Saved(1, user)), step);
      }
    });
  }
  for (auto& th : threads) th.join();
  done.store(true);
  flusher.join();
  ASSERT_TRUE(t.Flush(&store).ok());

  for (int i = 0; i < kThreads; ++i) {
    EXPECT_EQ(store.Saved(1, 100 + i), kSteps);
    EXPECT_EQ(t.Effective(1, 100 + i, store.Saved(1, 100 + i)), kSteps);
  }
  const int64_t top = int64_t{kSteps} * kThreads + (kThreads - 1);
  EXPECT_EQ(store.Saved(2, 1), top);
  EXPECT_FALSE(t.Advance(2, 1, top, store.Saved(2, 1)));
}

}  // namespace
}  // namespace mmchat::domain
