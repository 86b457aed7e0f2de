// store::sqlite::SqliteStore conversations and messages on a temporary file: the group-commit
// writer, private pairs, promotion on removal, read and delivered markers.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "chat_fakes.h"
#include "store/sqlite/sqlite_store.h"

namespace mmchat::store::sqlite {
namespace {

using domain::AppendResult;
using domain::Conversation;
using domain::NewMessage;
using domain::Role;
using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;

// Holds the database's write lock from a second connection, so that the store's writer waits
// (within its busy timeout) on the gate's first append, and appends queued meanwhile must be
// committed together once the gate opens.
class WriterGate {
 public:
  WriterGate(SqliteStore* store, NewMessage first, const std::string& db_path) {
    locked_ = sqlite3_open(db_path.c_str(), &db_) == SQLITE_OK &&
              sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK;
    store->AppendMessage(std::move(first), [](Result<AppendResult>) {});
    // Once the writer took it, it waits for the lock: what is queued from now on waits too.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (store->QueuedAppends() > 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::yield();
    }
    taken_ = store->QueuedAppends() == 0;
  }
  ~WriterGate() {
    Open();
    sqlite3_close(db_);
  }
  void Open() {
    if (!open_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    open_ = true;
  }
  // The lock is held and the writer took the first append.
  bool locked() const { return locked_ && taken_; }

 private:
  sqlite3* db_ = nullptr;
  bool locked_ = false;
  bool taken_ = false;
  bool open_ = false;
};

class SqliteConversationsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Options opts;
    opts.dsn = db_path();
    auto s = SqliteStore::Open(opts);
    ASSERT_TRUE(s.ok()) << s.status().message();
    store_ = std::move(s).value();
    a_ = User("alice");
    b_ = User("bob");
    c_ = User("carol");
    d_ = User("dave");
  }

  std::string db_path() { return dir_.File("conv.db"); }

  int64_t User(const std::string& name) {
    auto u = store_->CreateUser(domain::NewUser{name, name + "@example.com", "h", 1000});
    EXPECT_TRUE(u.ok()) << u.status().message();
    return u.ok() ? u->id : 0;
  }

  int64_t Group(int64_t creator, const std::vector<int64_t>& members, TimeMs now = 1000) {
    auto id = store_->CreateGroup("g", creator, members, now);
    EXPECT_TRUE(id.ok()) << id.status().message();
    return id.ok() ? *id : 0;
  }

  Conversation Get(int64_t id) {
    auto r = store_->GetConversation(id);
    EXPECT_TRUE(r.ok() && r->has_value());
    return r.ok() && r->has_value() ? **r : Conversation{};
  }

  Result<AppendResult> Append(int64_t conv, int64_t sender, const std::string& content,
                              std::optional<std::string> client_id = std::nullopt,
                              TimeMs at = 2000) {
    test::AppendWaiter w;
    store_->AppendMessage(NewMessage{conv, sender, content, std::move(client_id), at},
                          w.Callback());
    return w.Get();
  }

  test::TempDir dir_;
  std::unique_ptr<SqliteStore> store_;
  int64_t a_ = 0, b_ = 0, c_ = 0, d_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Group commit
// ---------------------------------------------------------------------------------------------

TEST_F(SqliteConversationsTest, QueuedAppendsAreCommittedTogether) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 50;  // 200 queued, below kMaxBatch
  static_assert(kThreads * kPerThread < SqliteStore::kMaxBatch);
  const int64_t g = Group(a_, {b_, c_, d_});
  const std::vector<int64_t> senders = {a_, b_, c_, d_};

  struct Seen {
    Result<AppendResult> result;
    int64_t committed_at_callback;  // seq of the newest committed message when called back
  };
  std::mutex mu;
  std::vector<Seen> seen;
  std::promise<void> all_back;
  const uint64_t batches_before = store_->CommittedBatches();
  {
    WriterGate gate(store_.get(), NewMessage{g, a_, "first", std::nullopt, 2000}, db_path());
    ASSERT_TRUE(gate.locked());
    // The writer is held: queue everything from several threads.
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kPerThread; ++i) {
          store_->AppendMessage(
              NewMessage{g, senders[t], std::to_string(t) + "/" + std::to_string(i), std::nullopt,
                         3000},
              [&](Result<AppendResult> r) {
                auto last = store_->LastMessage(g);
                const int64_t newest = last.ok() && last->has_value() ? (*last)->seq : -1;
                std::lock_guard lock(mu);
                seen.push_back({std::move(r), newest});
                if (seen.size() == kThreads * kPerThread) all_back.set_value();
              });
        }
      });
    }
    for (auto& th : threads) th.join();
    gate.Open();
  }
  ASSERT_EQ(all_back.get_future().wait_for(std::chrono::seconds(30)), std::future_status::ready);
  // The gate's message, then all 200 in one transaction.
  EXPECT_EQ(store_->CommittedBatches() - batches_before, 2u);

  std::lock_guard lock(mu);
  ASSERT_EQ(seen.size(), static_cast<size_t>(kThreads * kPerThread));
  std::set<int64_t> seqs;
  int64_t prev_id = 0;
  for (const auto& s : seen) {
    ASSERT_TRUE(s.result.ok()) << s.result.status().message();
    seqs.insert(s.result->message.seq);
    // Called back in commit order.
    EXPECT_GT(s.result->message.id, prev_id);
    prev_id = s.result->message.id;
    // One transaction: every caller is answered only after all of them were committed.
    EXPECT_EQ(s.committed_at_callback, kThreads * kPerThread + 1);
  }
  EXPECT_EQ(seqs.size(), static_cast<size_t>(kThreads * kPerThread));
  EXPECT_EQ(*seqs.begin(), 2);
  EXPECT_EQ(*seqs.rbegin(), kThreads * kPerThread + 1);
}

TEST_F(SqliteConversationsTest, ManyThreadsAppendingGetGaplessSeq) {
  constexpr int kThreads = 6;
  constexpr int kPerThread = 100;
  const int64_t g = Group(a_, {b_, c_});
  const std::vector<int64_t> senders = {a_, b_, c_};
  std::vector<std::vector<Result<AppendResult>>> results(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<test::AppendWaiter> waiters(kPerThread);
      for (int i = 0; i < kPerThread; ++i) {
        store_->AppendMessage(NewMessage{g, senders[t % 3], "x", std::nullopt, 2000 + i},
                              waiters[i].Callback());
      }
      for (auto& w : waiters) results[t].push_back(w.Get());
    });
  }
  for (auto& th : threads) th.join();

  std::map<int64_t, int64_t> id_by_seq;
  for (const auto& rs : results) {
    int64_t prev = 0;
    for (const auto& r : rs) {
      ASSERT_TRUE(r.ok()) << r.status().message();
      EXPECT_GT(r->message.id, prev);  // one thread's appends commit in its order
      prev = r->message.id;
      EXPECT_TRUE(id_by_seq.emplace(r->message.seq, r->message.id).second) << "seq repeated";
    }
  }
  ASSERT_EQ(id_by_seq.size(), static_cast<size_t>(kThreads * kPerThread));
  EXPECT_EQ(id_by_seq.begin()->first, 1);
  EXPECT_EQ(id_by_seq.rbegin()->first, kThreads * kPerThread);
  int64_t prev_id = 0;
  for (const auto& [seq, id] : id_by_seq) {
    EXPECT_GT(id, prev_id) << "seq " << seq;  // seq order is id order
    prev_id = id;
  }
}

TEST_F(SqliteConversationsTest, FailuresInsideABatchLeaveNoGap) {
  const int64_t g = Group(a_, {b_});
  std::vector<test::AppendWaiter> w(6);
  {
    WriterGate gate(store_.get(), NewMessage{g, a_, "first", std::nullopt, 2000}, db_path());
    ASSERT_TRUE(gate.locked());
    store_->AppendMessage(NewMessage{g, a_, "one", std::nullopt, 2001}, w[0].Callback());
    store_->AppendMessage(NewMessage{g, c_, "outsider", std::nullopt, 2002}, w[1].Callback());
    store_->AppendMessage(NewMessage{g + 1000, a_, "nowhere", std::nullopt, 2003}, w[2].Callback());
    store_->AppendMessage(NewMessage{g, b_, "two", "cid", 2004}, w[3].Callback());
    store_->AppendMessage(NewMessage{g, b_, "two again", "cid", 2005}, w[4].Callback());
    store_->AppendMessage(NewMessage{g, a_, "three", std::nullopt, 2006}, w[5].Callback());
  }
  auto one = w[0].Get();
  auto outsider = w[1].Get();
  auto nowhere = w[2].Get();
  auto two = w[3].Get();
  auto again = w[4].Get();
  auto three = w[5].Get();
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->message.seq, 2);
  EXPECT_EQ(outsider.status().code(), StatusCode::kForbidden);
  EXPECT_EQ(nowhere.status().code(), StatusCode::kNotFound);
  ASSERT_TRUE(two.ok());
  EXPECT_TRUE(two->created);
  EXPECT_EQ(two->message.seq, 3);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->created);  // the duplicate within the same batch finds the original
  EXPECT_EQ(again->message.id, two->message.id);
  EXPECT_EQ(again->message.content, "two");
  ASSERT_TRUE(three.ok());
  EXPECT_EQ(three->message.seq, 4);

  auto all = store_->ListMessages(g, std::nullopt, std::nullopt, 100);
  ASSERT_TRUE(all.ok());
  std::vector<int64_t> seqs;
  for (const auto& m : *all) seqs.push_back(m.seq);
  EXPECT_THAT(seqs, ElementsAre(1, 2, 3, 4));
}

TEST_F(SqliteConversationsTest, AppendMovesTheSendersReadMarkerAndTheActivity) {
  const int64_t g = Group(a_, {b_}, 1000);
  auto r = Append(g, b_, "hi", std::nullopt, 5000);
  ASSERT_TRUE(r.ok());
  const Conversation c = Get(g);
  EXPECT_EQ(c.Find(b_)->read_marker, r->message.id);
  EXPECT_EQ(c.Find(b_)->read_at, 5000);
  EXPECT_EQ(c.Find(a_)->read_marker, 0);
  EXPECT_EQ(c.last_activity, 5000);
  // An older timestamp does not move the activity back.
  ASSERT_TRUE(Append(g, a_, "late", std::nullopt, 4000).ok());
  EXPECT_EQ(Get(g).last_activity, 5000);
}

// ---------------------------------------------------------------------------------------------
// Private pairs
// ---------------------------------------------------------------------------------------------

TEST_F(SqliteConversationsTest, OnePrivateConversationPerPairInEitherOrder) {
  auto ab = store_->GetOrCreatePrivate(a_, b_, 1000);
  ASSERT_TRUE(ab.ok());
  EXPECT_TRUE(ab->second);
  auto ba = store_->GetOrCreatePrivate(b_, a_, 2000);
  ASSERT_TRUE(ba.ok());
  EXPECT_FALSE(ba->second);
  EXPECT_EQ(ba->first, ab->first);
  auto ac = store_->GetOrCreatePrivate(a_, c_, 3000);
  ASSERT_TRUE(ac.ok());
  EXPECT_TRUE(ac->second);
  EXPECT_NE(ac->first, ab->first);

  const Conversation c = Get(ab->first);
  EXPECT_EQ(c.type, domain::ConversationType::kPrivate);
  EXPECT_FALSE(c.name.has_value());
  EXPECT_EQ(c.created_at, 1000);
  ASSERT_EQ(c.participants.size(), 2u);
  for (const auto& p : c.participants) EXPECT_EQ(p.role, Role::kMember);

  // Racing creators, in both orders: one conversation, created once.
  constexpr int kThreads = 8;
  std::vector<Result<std::pair<int64_t, bool>>> got(kThreads, Status::Internal("unset"));
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      got[t] = t % 2 ? store_->GetOrCreatePrivate(c_, d_, 4000)
                     : store_->GetOrCreatePrivate(d_, c_, 4000);
    });
  }
  for (auto& th : threads) th.join();
  int created = 0;
  std::set<int64_t> ids;
  for (const auto& r : got) {
    ASSERT_TRUE(r.ok()) << r.status().message();
    created += r->second ? 1 : 0;
    ids.insert(r->first);
  }
  EXPECT_EQ(created, 1);
  EXPECT_EQ(ids.size(), 1u);
  auto listed = store_->ListConversationIds(d_);
  ASSERT_TRUE(listed.ok());
  EXPECT_THAT(*listed, ElementsAre(*ids.begin()));
}

// ---------------------------------------------------------------------------------------------
// Removal and promotion
// ---------------------------------------------------------------------------------------------

TEST_F(SqliteConversationsTest, RemovingTheLastAdminPromotesTheEarliestJoined) {
  const int64_t g = Group(a_, {}, 100);
  ASSERT_TRUE(store_->AddParticipant(g, b_, Role::kMember, 300).ok());
  ASSERT_TRUE(store_->AddParticipant(g, d_, Role::kMember, 200).ok());
  ASSERT_TRUE(store_->AddParticipant(g, c_, Role::kMember, 200).ok());  // ties with d: lower id

  ASSERT_TRUE(store_->RemoveParticipant(g, a_, 400).ok());
  Conversation c = Get(g);
  ASSERT_LT(c_, d_);
  EXPECT_EQ(c.Find(a_), nullptr);
  EXPECT_EQ(c.Find(c_)->role, Role::kAdmin);
  EXPECT_EQ(c.Find(d_)->role, Role::kMember);
  EXPECT_EQ(c.Find(b_)->role, Role::kMember);
  EXPECT_EQ(c.last_activity, 400);

  // The promoted admin leaves: the next earliest (d at 200, before b at 300).
  ASSERT_TRUE(store_->RemoveParticipant(g, c_, 500).ok());
  c = Get(g);
  EXPECT_EQ(c.Find(d_)->role, Role::kAdmin);
  EXPECT_EQ(c.Find(b_)->role, Role::kMember);

  EXPECT_EQ(store_->RemoveParticipant(g, c_, 600).code(), StatusCode::kNotFound);
}

TEST_F(SqliteConversationsTest, RemovingAMemberOrOneOfTwoAdminsPromotesNobody) {
  const int64_t g = Group(a_, {b_, c_}, 100);
  ASSERT_TRUE(store_->AddParticipant(g, d_, Role::kAdmin, 200).ok());
  ASSERT_TRUE(store_->RemoveParticipant(g, b_, 300).ok());
  Conversation c = Get(g);
  EXPECT_EQ(c.Find(c_)->role, Role::kMember);
  ASSERT_TRUE(store_->RemoveParticipant(g, a_, 400).ok());
  c = Get(g);
  EXPECT_THAT(std::vector<Role>({c.Find(c_)->role, c.Find(d_)->role}),
              ElementsAre(Role::kMember, Role::kAdmin));
}

TEST_F(SqliteConversationsTest, AddingAnExistingParticipantConflictsAndUnknownUserIsNotFound) {
  const int64_t g = Group(a_, {b_});
  EXPECT_EQ(store_->AddParticipant(g, b_, Role::kMember, 2000).code(), StatusCode::kConflict);
  EXPECT_EQ(store_->AddParticipant(g, d_ + 1000, Role::kMember, 2000).code(),
            StatusCode::kNotFound);
  EXPECT_EQ(store_->CreateGroup("g", a_, {b_, d_ + 1000}, 2000).status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(store_->SetRole(g, c_, Role::kAdmin, 2000).code(), StatusCode::kNotFound);
}

TEST_F(SqliteConversationsTest, SetRoleNeverLeavesTheGroupWithoutAnAdmin) {
  const int64_t g = Group(a_, {b_});
  EXPECT_EQ(store_->SetRole(g, a_, Role::kMember, 2000).code(), StatusCode::kInvalidRequest);
  EXPECT_EQ(Get(g).Find(a_)->role, Role::kAdmin);  // rolled back
  ASSERT_TRUE(store_->SetRole(g, b_, Role::kAdmin, 3000).ok());
  ASSERT_TRUE(store_->SetRole(g, a_, Role::kMember, 4000).ok());
  const Conversation c = Get(g);
  EXPECT_EQ(c.Find(a_)->role, Role::kMember);
  EXPECT_EQ(c.Find(b_)->role, Role::kAdmin);
  EXPECT_EQ(c.last_activity, 4000);
}

// ---------------------------------------------------------------------------------------------
// Markers
// ---------------------------------------------------------------------------------------------

TEST_F(SqliteConversationsTest, ReadMarkerMovesOnlyForward) {
  const int64_t g = Group(a_, {b_});
  auto up = store_->MoveReadMarker(g, b_, 5, 1000);
  ASSERT_TRUE(up.ok());
  EXPECT_TRUE(up->moved);
  EXPECT_EQ(up->conversation_id, g);
  EXPECT_EQ(up->message_id, 5);
  EXPECT_EQ(up->read_at, 1000);

  for (int64_t id : {3, 5}) {
    auto back = store_->MoveReadMarker(g, b_, id, 2000);
    ASSERT_TRUE(back.ok());
    EXPECT_FALSE(back->moved);
    EXPECT_EQ(back->message_id, 5);
    EXPECT_EQ(back->read_at, 1000);
  }
  const Conversation c = Get(g);
  EXPECT_EQ(c.Find(b_)->read_marker, 5);
  EXPECT_EQ(c.Find(b_)->read_at, 1000);
  EXPECT_EQ(c.Find(a_)->read_marker, 0);

  auto more = store_->MoveReadMarker(g, b_, 9, 3000);
  ASSERT_TRUE(more.ok());
  EXPECT_TRUE(more->moved);
  EXPECT_EQ(more->message_id, 9);
  EXPECT_EQ(more->read_at, 3000);

  EXPECT_EQ(store_->MoveReadMarker(g, c_, 9, 3000).status().code(), StatusCode::kForbidden);
}

TEST_F(SqliteConversationsTest, SaveDeliveredTakesTheMaximum) {
  const int64_t g = Group(a_, {b_, c_});
  ASSERT_TRUE(store_->SaveDelivered({{g, b_, 5}, {g, c_, 7}}).ok());
  Conversation c = Get(g);
  EXPECT_EQ(c.Find(b_)->delivered_marker, 5);
  EXPECT_EQ(c.Find(c_)->delivered_marker, 7);
  EXPECT_EQ(c.Find(a_)->delivered_marker, 0);

  ASSERT_TRUE(store_->SaveDelivered({{g, b_, 3}, {g, c_, 8}}).ok());
  c = Get(g);
  EXPECT_EQ(c.Find(b_)->delivered_marker, 5);  // never down
  EXPECT_EQ(c.Find(c_)->delivered_marker, 8);

  // A mark for someone who is not (or no longer) a participant changes nothing.
  ASSERT_TRUE(store_->SaveDelivered({{g, d_, 9}}).ok());
  EXPECT_EQ(Get(g).Find(d_), nullptr);
  EXPECT_TRUE(store_->SaveDelivered({}).ok());
}

TEST_F(SqliteConversationsTest, MessagesSinceOnlyFromCurrentConversations) {
  const int64_t g = Group(a_, {b_});
  auto p = store_->GetOrCreatePrivate(c_, d_, 1000);
  ASSERT_TRUE(p.ok());
  auto m1 = Append(g, a_, "1");
  auto other = Append(p->first, c_, "x");
  auto m2 = Append(g, b_, "2");
  ASSERT_TRUE(m1.ok() && other.ok() && m2.ok());
  auto since = store_->MessagesSince(b_, 0, 10);
  ASSERT_TRUE(since.ok());
  std::vector<int64_t> ids;
  for (const auto& m : *since) ids.push_back(m.id);
  EXPECT_THAT(ids, ElementsAre(m1->message.id, m2->message.id));
  auto after_first = store_->MessagesSince(b_, m1->message.id, 10);
  ASSERT_TRUE(after_first.ok());
  ASSERT_EQ(after_first->size(), 1u);
  EXPECT_EQ((*after_first)[0].id, m2->message.id);

  ASSERT_TRUE(store_->RemoveParticipant(g, b_, 3000).ok());
  since = store_->MessagesSince(b_, 0, 10);
  ASSERT_TRUE(since.ok());
  EXPECT_TRUE(since->empty());
}

}  // namespace
}  // namespace mmchat::store::sqlite
