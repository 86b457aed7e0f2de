// The store conformance suite: every rule the domain relies on, run against every backend
// (StoreConformance/Sqlite.* and StoreConformance/Postgres.*), each test on a database of
// its own. Concurrency is tried with threads on one store and with several stores on one
// database, which is what several server processes are.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "chat_fakes.h"
#include "store/common/statement_count.h"
#include "store_backends.h"

namespace mmchat::test {
namespace {

using domain::AppendOutcome;
using domain::CodePurpose;
using domain::Conversation;
using domain::MembershipOutcome;
using domain::NewMessage;
using domain::NewUser;
using domain::PendingCode;
using domain::ProfileUpdate;
using domain::Role;
using domain::StoredAppend;
using domain::User;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

template <typename Backend>
class StoreConformance : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = OpenStore();
    ASSERT_NE(store_, nullptr);
  }

  std::unique_ptr<store::Store> OpenStore() {
    auto s = backend_.Open();
    EXPECT_TRUE(s.ok()) << s.status().message();
    return s.ok() ? std::move(s).value() : nullptr;
  }

  User Create(const std::string& username, const std::string& email, TimeMs at = 1000) {
    auto u = store_->CreateUser(NewUser{username, email, "hash-of-" + username, at});
    EXPECT_TRUE(u.ok()) << u.status().message();
    return u.ok() ? *u : User{};
  }
  int64_t NewUserId(const std::string& name) { return Create(name, name + "@example.com").id; }

  domain::UserRecord Find(int64_t id) {
    auto r = store_->FindUserById(id);
    EXPECT_TRUE(r.ok() && r->has_value());
    return r.ok() && r->has_value() ? **r : domain::UserRecord{};
  }

  std::vector<std::string> Search(const std::string& prefix, int limit = 100) {
    auto r = store_->SearchUsersByPrefix(prefix, limit);
    EXPECT_TRUE(r.ok()) << r.status().message();
    std::vector<std::string> names;
    if (r.ok()) {
      for (const User& u : *r) names.push_back(u.username);
    }
    return names;
  }

  int64_t Group(int64_t creator, const std::vector<int64_t>& members, TimeMs now = 1000) {
    auto g = store_->CreateGroup("g", creator, members, now);
    EXPECT_TRUE(g.ok()) << g.status().message();
    EXPECT_TRUE(!g.ok() || g->outcome == MembershipOutcome::kDone);
    return g.ok() ? g->id : 0;
  }

  Conversation Get(int64_t id, store::Store* s = nullptr) {
    auto r = (s ? s : store_.get())->GetConversation(id);
    EXPECT_TRUE(r.ok() && r->has_value());
    return r.ok() && r->has_value() ? **r : Conversation{};
  }

  // The user's conversations (ListReaderStates, then GetConversations), by id.
  std::vector<Conversation> ConversationsOf(int64_t user) {
    auto states = store_->ListReaderStates(user);
    EXPECT_TRUE(states.ok()) << states.status().message();
    if (!states.ok()) return {};
    std::vector<int64_t> ids;
    for (const auto& st : *states) ids.push_back(st.conversation_id);
    auto convs = store_->GetConversations(ids);
    EXPECT_TRUE(convs.ok()) << convs.status().message();
    if (!convs.ok()) return {};
    std::sort(convs->begin(), convs->end(),
              [](const Conversation& x, const Conversation& y) { return x.id < y.id; });
    return *convs;
  }

  Result<StoredAppend> Append(int64_t conv, int64_t sender, const std::string& content,
                              std::optional<std::string> client_id = std::nullopt,
                              TimeMs at = 2000) {
    StoredWaiter w;
    store_->AppendMessage(NewMessage{conv, sender, content, std::move(client_id), at},
                          w.Callback());
    return w.Get();
  }
  domain::Message Sent(int64_t conv, int64_t sender, const std::string& content, TimeMs at = 2000) {
    auto r = Append(conv, sender, content, std::nullopt, at);
    EXPECT_TRUE(r.ok() && r->outcome == AppendOutcome::kCreated);
    return r.ok() ? r->message : domain::Message{};
  }

  // Blocks the writer on what it needs first, hands it `first` (which then waits), and
  // returns the block: what is appended next queues behind it.
  std::unique_ptr<WriterBlock> HoldWriter(NewMessage first) {
    auto block = backend_.BlockWriter();
    store_->AppendMessage(std::move(first), [](Result<StoredAppend>) {});
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (store_->writer().QueuedAppends() > 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::yield();
    }
    EXPECT_EQ(store_->writer().QueuedAppends(), 0u) << "the writer did not take the first append";
    return block;
  }

  Backend backend_;
  std::unique_ptr<store::Store> store_;
};

struct BackendNames {
  template <typename T>
  static std::string GetName(int) {
    return std::is_same_v<T, SqliteBackend> ? "Sqlite" : "Postgres";
  }
};
using Backends = ::testing::Types<SqliteBackend, PostgresBackend>;
TYPED_TEST_SUITE(StoreConformance, Backends, BackendNames);

// ---------------------------------------------------------------------------------------------
// Opening and migrations
// ---------------------------------------------------------------------------------------------

TYPED_TEST(StoreConformance, MigrationsRecordedOnceAndReopenIsANoOp) {
  this->store_.reset();
  this->store_ = this->OpenStore();
  ASSERT_NE(this->store_, nullptr);
  auto& b = this->backend_;
  const std::string latest = b.QueryOne("SELECT MAX(version) FROM schema_migrations");
  EXPECT_GE(std::stoi(latest), 2);
  EXPECT_EQ(b.QueryOne("SELECT COUNT(*) FROM schema_migrations"), latest);
  EXPECT_EQ(b.QueryOne("SELECT COUNT(DISTINCT version) FROM schema_migrations"), latest);
  EXPECT_EQ(b.QueryOne("SELECT MIN(version) FROM schema_migrations"), "1");
  EXPECT_TRUE(this->store_->Ping().ok());
}

TYPED_TEST(StoreConformance, NewerSchemaIsRefused) {
  this->store_.reset();
  auto& b = this->backend_;
  const int newer = std::stoi(b.QueryOne("SELECT MAX(version) FROM schema_migrations")) + 1;
  b.Exec("INSERT INTO schema_migrations(version, name, applied_at) VALUES (" +
         std::to_string(newer) + ", 'from the future', 0)");
  auto s = b.Open();
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(), HasSubstr("schema version " + std::to_string(newer)));
  EXPECT_THAT(s.status().message(), HasSubstr("newer"));
}

TYPED_TEST(StoreConformance, DataSurvivesReopen) {
  const User u = this->Create("alice", "alice@example.com");
  const int64_t g = this->Group(u.id, {});
  const auto m = this->Sent(g, u.id, "kept");
  this->store_.reset();  // drains the writer
  this->store_ = this->OpenStore();
  ASSERT_NE(this->store_, nullptr);
  EXPECT_EQ(this->Find(u.id).user.username, "alice");
  auto again = this->store_->GetMessage(m.id);
  ASSERT_TRUE(again.ok() && again->has_value());
  EXPECT_EQ((*again)->content, "kept");
}

// ---------------------------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------------------------

TYPED_TEST(StoreConformance, CreateAndFind) {
  const User u = this->Create("Alice", "alice@example.com", 12345);
  EXPECT_GT(u.id, 0);
  EXPECT_EQ(u.username, "Alice");
  EXPECT_EQ(u.email, "alice@example.com");
  EXPECT_EQ(u.created_at, 12345);

  const domain::UserRecord rec = this->Find(u.id);
  EXPECT_EQ(rec.user.username, "Alice");
  EXPECT_EQ(rec.user.email, "alice@example.com");
  EXPECT_EQ(rec.user.created_at, 12345);
  EXPECT_FALSE(rec.user.profile_picture.has_value());
  EXPECT_FALSE(rec.user.last_seen.has_value());
  EXPECT_EQ(rec.password_hash, "hash-of-Alice");
  EXPECT_EQ(rec.token_version, 0);
  EXPECT_EQ(rec.failed_logins, 0);

  const User v = this->Create("bob", "bob@example.com");
  EXPECT_NE(v.id, u.id);
  ASSERT_TRUE(this->store_->SetLastSeen(v.id, 4242).ok());
  // An older time (another node's close, stored late) leaves the newer one.
  ASSERT_TRUE(this->store_->SetLastSeen(v.id, 4000).ok());
  EXPECT_EQ(this->Find(v.id).user.last_seen, std::optional<TimeMs>(4242));
  EXPECT_EQ(this->store_->SetLastSeen(999999, 1).code(), StatusCode::kNotFound);
}

TYPED_TEST(StoreConformance, CreateUsersIsAllOrNothingAndKeepsTheOrder) {
  std::vector<NewUser> batch;
  for (int i = 0; i < 50; ++i) {
    const std::string n = "u" + std::to_string(i);
    batch.push_back({n, n + "@example.com", "h", 1000 + i});
  }
  auto made = this->store_->CreateUsers(batch);
  ASSERT_TRUE(made.ok()) << made.status().message();
  ASSERT_EQ(made->size(), batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    EXPECT_EQ((*made)[i].username, batch[i].username);
    EXPECT_EQ(this->Find((*made)[i].id).user.username, batch[i].username);
  }
  // One taken name fails the whole batch: nothing of it is kept.
  auto clash = this->store_->CreateUsers({{"fresh1", "fresh1@example.com", "h", 1},
                                          {"U7", "fresh2@example.com", "h", 1},
                                          {"fresh3", "fresh3@example.com", "h", 1}});
  ASSERT_FALSE(clash.ok());
  EXPECT_EQ(clash.status().code(), StatusCode::kConflict);
  EXPECT_FALSE(this->store_->FindUserByUsername("fresh1")->has_value());
  EXPECT_FALSE(this->store_->FindUserByUsername("fresh3")->has_value());
}

TYPED_TEST(StoreConformance, FindsAreCaseInsensitive) {
  const User u = this->Create("Alice", "Alice@Example.com");
  for (const char* name : {"Alice", "alice", "ALICE", "aLiCe"}) {
    auto r = this->store_->FindUserByUsername(name);
    ASSERT_TRUE(r.ok());
    ASSERT_TRUE(r->has_value()) << name;
    EXPECT_EQ((*r)->user.id, u.id);
  }
  for (const char* email : {"alice@example.com", "ALICE@EXAMPLE.COM", "Alice@Example.com"}) {
    auto r = this->store_->FindUserByEmail(email);
    ASSERT_TRUE(r.ok());
    ASSERT_TRUE(r->has_value()) << email;
    EXPECT_EQ((*r)->user.id, u.id);
  }
}

TYPED_TEST(StoreConformance, FindUnknownGivesNothing) {
  this->Create("alice", "alice@example.com");
  auto by_id = this->store_->FindUserById(9999);
  ASSERT_TRUE(by_id.ok());
  EXPECT_FALSE(by_id->has_value());
  auto by_name = this->store_->FindUserByUsername("alic");
  ASSERT_TRUE(by_name.ok());
  EXPECT_FALSE(by_name->has_value());
  auto by_email = this->store_->FindUserByEmail("alice@example.co");
  ASSERT_TRUE(by_email.ok());
  EXPECT_FALSE(by_email->has_value());
  // No pattern matching in an exact look-up.
  auto wildcard = this->store_->FindUserByUsername("al%");
  ASSERT_TRUE(wildcard.ok());
  EXPECT_FALSE(wildcard->has_value());
}

TYPED_TEST(StoreConformance, CreateUserConflicts) {
  this->Create("Alice", "alice@example.com");
  auto name = this->store_->CreateUser(NewUser{"ALICE", "other@example.com", "h", 1});
  ASSERT_FALSE(name.ok());
  EXPECT_EQ(name.status().code(), StatusCode::kConflict);
  EXPECT_EQ(name.status().message(), domain::kUsernameTaken);

  auto email = this->store_->CreateUser(NewUser{"carol", "ALICE@example.COM", "h", 1});
  ASSERT_FALSE(email.ok());
  EXPECT_EQ(email.status().code(), StatusCode::kConflict);
  EXPECT_EQ(email.status().message(), domain::kEmailTaken);

  // Nothing was inserted by the failed attempts.
  EXPECT_FALSE(this->store_->FindUserByUsername("carol")->has_value());
  EXPECT_FALSE(this->store_->FindUserByEmail("other@example.com")->has_value());
}

TYPED_TEST(StoreConformance, SearchByPrefix) {
  for (const char* name : {"Alice", "alan", "bal", "Bob", "al", "ALBERT", "xal", "a"}) {
    this->Create(name, std::string(name) + "@example.com");
  }
  // Case-insensitive prefix, ordered case-insensitively by username.
  EXPECT_THAT(this->Search("al"), ElementsAre("al", "alan", "ALBERT", "Alice"));
  EXPECT_THAT(this->Search("AL"), ElementsAre("al", "alan", "ALBERT", "Alice"));
  EXPECT_THAT(this->Search("ali"), ElementsAre("Alice"));
  EXPECT_THAT(this->Search("alice"), ElementsAre("Alice"));
  EXPECT_THAT(this->Search("alicex"), ElementsAre());
  EXPECT_THAT(this->Search("b"), ElementsAre("bal", "Bob"));
  EXPECT_THAT(this->Search("z"), ElementsAre());
  // Limit keeps the first ones in order.
  EXPECT_THAT(this->Search("al", 2), ElementsAre("al", "alan"));
  EXPECT_THAT(this->Search("a", 1), ElementsAre("a"));
  EXPECT_THAT(this->Search("", 3), ElementsAre("a", "al", "alan"));
}

TYPED_TEST(StoreConformance, SearchPrefixWildcardsAreLiteral) {
  for (const char* name : {"a_b", "axb", "a.b", "a-b", "abc", "a%b"}) {
    // '%' is not a valid username, but the store does not validate; it must still be literal.
    this->Create(name, std::string(name[1] == '%' ? "pct" : name) + "@example.com");
  }
  EXPECT_THAT(this->Search("a_"), ElementsAre("a_b"));
  EXPECT_THAT(this->Search("a%"), ElementsAre("a%b"));
  EXPECT_THAT(this->Search("a."), ElementsAre("a.b"));
  EXPECT_THAT(this->Search("a-"), ElementsAre("a-b"));
  EXPECT_THAT(this->Search("%"), ElementsAre());
  EXPECT_THAT(this->Search("_"), ElementsAre());
}

TYPED_TEST(StoreConformance, SearchReturnsPublicFields) {
  const User u = this->Create("alice", "alice@example.com", 777);
  ASSERT_TRUE(
      this->store_->UpdateProfile(u.id, ProfileUpdate{std::nullopt, "https://x.io/a.png"}).ok());
  auto r = this->store_->SearchUsersByPrefix("ali", 10);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].id, u.id);
  EXPECT_EQ((*r)[0].created_at, 777);
  EXPECT_EQ((*r)[0].profile_picture, std::optional<std::string>("https://x.io/a.png"));
}

TYPED_TEST(StoreConformance, UpdateProfile) {
  auto& store = *this->store_;
  const User u = this->Create("alice", "alice@example.com");
  const User other = this->Create("bob", "bob@example.com");

  // Set the picture only.
  ASSERT_TRUE(store.UpdateProfile(u.id, ProfileUpdate{std::nullopt, "https://x.io/a.png"}).ok());
  EXPECT_EQ(this->Find(u.id).user.profile_picture,
            std::optional<std::string>("https://x.io/a.png"));
  EXPECT_EQ(this->Find(u.id).user.username, "alice");

  // Change the username only: the picture stays.
  ASSERT_TRUE(store.UpdateProfile(u.id, ProfileUpdate{"alicia", std::nullopt}).ok());
  EXPECT_EQ(this->Find(u.id).user.username, "alicia");
  EXPECT_EQ(this->Find(u.id).user.profile_picture,
            std::optional<std::string>("https://x.io/a.png"));

  // An inner nullopt clears the picture.
  ProfileUpdate clear;
  clear.profile_picture = std::optional<std::string>();
  ASSERT_TRUE(store.UpdateProfile(u.id, clear).ok());
  EXPECT_FALSE(this->Find(u.id).user.profile_picture.has_value());
  EXPECT_EQ(this->Find(u.id).user.username, "alicia");

  // An empty update changes nothing and is fine.
  ASSERT_TRUE(store.UpdateProfile(u.id, ProfileUpdate{}).ok());
  EXPECT_EQ(this->Find(u.id).user.username, "alicia");

  // Changing only the case of one's own name is not a conflict.
  ASSERT_TRUE(store.UpdateProfile(u.id, ProfileUpdate{"ALICIA", std::nullopt}).ok());
  EXPECT_EQ(this->Find(u.id).user.username, "ALICIA");

  // Another user's name, in any case, is.
  Status taken = store.UpdateProfile(u.id, ProfileUpdate{"BOB", "https://x.io/b.png"});
  EXPECT_EQ(taken.code(), StatusCode::kConflict);
  EXPECT_EQ(taken.message(), domain::kUsernameTaken);
  EXPECT_EQ(this->Find(u.id).user.username, "ALICIA");
  EXPECT_FALSE(this->Find(u.id).user.profile_picture.has_value());  // nothing half-applied
  EXPECT_EQ(this->Find(other.id).user.username, "bob");

  EXPECT_EQ(store.UpdateProfile(9999, ProfileUpdate{"zed", std::nullopt}).code(),
            StatusCode::kNotFound);
}

TYPED_TEST(StoreConformance, ReplacePasswordBumpsTokenVersionAndClearsFailures) {
  auto& store = *this->store_;
  const User u = this->Create("alice", "alice@example.com");
  ASSERT_TRUE(store.BeginLoginAttempt(u.id, 5000, 60'000, 10).ok());
  ASSERT_EQ(this->Find(u.id).failed_logins, 1);
  ASSERT_TRUE(store.ReplacePassword(u.id, "new-hash").ok());
  domain::UserRecord rec = this->Find(u.id);
  EXPECT_EQ(rec.password_hash, "new-hash");
  EXPECT_EQ(rec.token_version, 1);
  EXPECT_EQ(rec.failed_logins, 0);
  ASSERT_TRUE(store.ReplacePassword(u.id, "newer-hash").ok());
  EXPECT_EQ(this->Find(u.id).token_version, 2);
  EXPECT_EQ(store.ReplacePassword(9999, "x").code(), StatusCode::kNotFound);
}

TYPED_TEST(StoreConformance, ListUsersPagesInIdOrderWithAPrefix) {
  auto& store = *this->store_;
  const int64_t a = this->NewUserId("alice");
  const int64_t b = this->NewUserId("Bob");
  const int64_t c = this->NewUserId("bobby");
  auto ids = [&](std::string_view prefix, int limit, int offset) {
    auto r = store.ListUsers(prefix, limit, offset);
    EXPECT_TRUE(r.ok()) << r.status().message();
    std::vector<int64_t> out;
    if (r.ok()) {
      for (const auto& rec : *r) out.push_back(rec.user.id);
    }
    return out;
  };
  EXPECT_EQ(ids("", 10, 0), (std::vector<int64_t>{a, b, c}));
  EXPECT_EQ(ids("", 1, 1), (std::vector<int64_t>{b}));
  EXPECT_EQ(ids("", 10, 3), (std::vector<int64_t>{}));
  EXPECT_EQ(ids("BO", 10, 0), (std::vector<int64_t>{b, c}));  // case-insensitive prefix
  EXPECT_EQ(ids("bobb", 10, 0), (std::vector<int64_t>{c}));
  ASSERT_TRUE(store.SetUserStatus(b, domain::UserStatus::kDisabled).ok());
  auto r = store.ListUsers("bob", 10, 0);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].user.status, domain::UserStatus::kDisabled);  // every status is listed
  EXPECT_EQ((*r)[0].user.email, "Bob@example.com");
  EXPECT_EQ((*r)[1].user.status, domain::UserStatus::kActive);
}

TYPED_TEST(StoreConformance, SetUserStatusDisablesWithARevocationAndEnables) {
  auto& store = *this->store_;
  const User u = this->Create("alice", "alice@example.com");
  EXPECT_EQ(this->Find(u.id).user.status, domain::UserStatus::kActive);
  ASSERT_TRUE(store.SetUserStatus(u.id, domain::UserStatus::kDisabled).ok());
  domain::UserRecord rec = this->Find(u.id);
  EXPECT_EQ(rec.user.status, domain::UserStatus::kDisabled);
  EXPECT_EQ(rec.token_version, 1);  // every token it held is revoked
  // Look-ups still find it (its name and email stay taken).
  auto by_name = store.FindUserByUsername("ALICE");
  ASSERT_TRUE(by_name.ok() && by_name->has_value());
  EXPECT_EQ((*by_name)->user.status, domain::UserStatus::kDisabled);
  EXPECT_EQ(store.CreateUser(NewUser{"alice", "x@example.com", "h", 1}).status().code(),
            StatusCode::kConflict);
  ASSERT_TRUE(store.SetUserStatus(u.id, domain::UserStatus::kActive).ok());
  rec = this->Find(u.id);
  EXPECT_EQ(rec.user.status, domain::UserStatus::kActive);
  EXPECT_EQ(rec.token_version, 1);  // old tokens stay revoked
  EXPECT_EQ(store.SetUserStatus(9999, domain::UserStatus::kDisabled).code(), StatusCode::kNotFound);
  ASSERT_TRUE(store.EraseUser(u.id).ok());
  EXPECT_EQ(store.SetUserStatus(u.id, domain::UserStatus::kActive).code(), StatusCode::kConflict);
  EXPECT_EQ(this->Find(u.id).user.status, domain::UserStatus::kDeleted);
}

TYPED_TEST(StoreConformance, EraseUserFreesTheNameAndEmailAndKeepsMessages) {
  auto& store = *this->store_;
  const User u = this->Create("alice", "alice@example.com");
  const int64_t bob = this->NewUserId("bob");
  ASSERT_TRUE(
      store.UpdateProfile(u.id, ProfileUpdate{std::nullopt, "https://x.example/a.png"}).ok());
  ASSERT_TRUE(store.SetLastSeen(u.id, 5000).ok());
  ASSERT_TRUE(store.EraseUser(u.id).ok());
  const domain::UserRecord rec = this->Find(u.id);
  const std::string erased = "deleted-" + std::to_string(u.id);
  EXPECT_EQ(rec.user.username, erased);
  EXPECT_EQ(rec.user.email, erased);
  EXPECT_EQ(rec.password_hash, "");
  EXPECT_FALSE(rec.user.profile_picture.has_value());
  EXPECT_FALSE(rec.user.last_seen.has_value());
  EXPECT_EQ(rec.user.status, domain::UserStatus::kDeleted);
  EXPECT_EQ(rec.token_version, 1);
  // Its last connections close after the erasure: no last_seen comes back.
  ASSERT_TRUE(store.SetLastSeen(u.id, 6000).ok());
  EXPECT_FALSE(this->Find(u.id).user.last_seen.has_value());
  // The name and email are free; look-ups by them find the new owner only.
  auto by_email = store.FindUserByEmail("alice@example.com");
  ASSERT_TRUE(by_email.ok());
  EXPECT_FALSE(by_email->has_value());
  EXPECT_TRUE(store.CreateUser(NewUser{"alice", "alice@example.com", "h", 2}).ok());
  // Not found by a search, and joins no conversation.
  EXPECT_TRUE(this->Search("del").empty());
  auto group = store.CreateGroup("g", bob, {u.id}, 3000);
  ASSERT_TRUE(group.ok());
  EXPECT_EQ(group->outcome, MembershipOutcome::kNoSuchUser);
  EXPECT_EQ(store.EraseUser(9999).code(), StatusCode::kNotFound);
}

TYPED_TEST(StoreConformance, LoginAttemptWindow) {
  auto& store = *this->store_;
  const User u = this->Create("alice", "alice@example.com");
  const TimeMs t = 1'000'000;
  const TimeMs window = 15 * 60'000;
  auto begin = [&](TimeMs now, int32_t max = 3) {
    auto g = store.BeginLoginAttempt(u.id, now, window, max);
    EXPECT_TRUE(g.ok());
    return g.ok() ? *g : domain::LoginGate{};
  };
  EXPECT_TRUE(begin(t).allowed);
  EXPECT_TRUE(begin(t + 1000).allowed);
  EXPECT_TRUE(begin(t + 2000).allowed);
  domain::UserRecord rec = this->Find(u.id);
  EXPECT_EQ(rec.failed_logins, 3);
  EXPECT_EQ(rec.failed_window_start, t);  // the window starts at the first attempt

  // At the limit: refused until the window is over, and a refusal counts nothing.
  domain::LoginGate refused = begin(t + window - 1);
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.window_start, t);
  EXPECT_EQ(this->Find(u.id).failed_logins, 3);

  // Once the window has passed, counting starts over in a new window.
  domain::LoginGate fresh = begin(t + window);
  EXPECT_TRUE(fresh.allowed);
  EXPECT_EQ(fresh.window_start, t + window);
  rec = this->Find(u.id);
  EXPECT_EQ(rec.failed_logins, 1);
  EXPECT_EQ(rec.failed_window_start, t + window);

  ASSERT_TRUE(store.ClearLoginFailures(u.id).ok());
  EXPECT_EQ(this->Find(u.id).failed_logins, 0);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(begin(t + window + 10).allowed);
  EXPECT_FALSE(begin(t + window + 10).allowed);

  // Attempts are per user.
  const User v = this->Create("bob", "bob@example.com");
  EXPECT_TRUE(store.BeginLoginAttempt(v.id, t + window + 10, window, 3)->allowed);
}

TYPED_TEST(StoreConformance, ConcurrentLoginAttemptsNeverExceedTheLimit) {
  const User u = this->Create("alice", "alice@example.com");
  // Two stores on one database, as two server processes.
  auto second = this->OpenStore();
  ASSERT_NE(second, nullptr);
  std::atomic<int> allowed{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    store::Store* s = i % 2 ? second.get() : this->store_.get();
    threads.emplace_back([&, s] {
      for (int k = 0; k < 10; ++k) {
        auto g = s->BeginLoginAttempt(u.id, 1000, 60'000, 10);
        if (g.ok() && g->allowed) ++allowed;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(allowed.load(), 10);
  EXPECT_EQ(this->Find(u.id).failed_logins, 10);
}

// ---------------------------------------------------------------------------------------------
// Verification codes
// ---------------------------------------------------------------------------------------------

PendingCode SignupCode(const std::string& email, TimeMs sent_at) {
  PendingCode c;
  c.purpose = CodePurpose::kSignup;
  c.email = email;
  c.code_hash = "hash-" + std::to_string(sent_at);
  c.sent_at = sent_at;
  c.expires_at = sent_at + 300'000;
  c.username = "bob";
  c.password_hash = "pw-hash";
  return c;
}

TYPED_TEST(StoreConformance, PutAndFindCode) {
  auto& store = *this->store_;
  ASSERT_TRUE(store.PutCode(SignupCode("bob@example.com", 5000)).ok());
  auto found = store.FindCode(CodePurpose::kSignup, "bob@example.com");
  ASSERT_TRUE(found.ok());
  ASSERT_TRUE(found->has_value());
  const PendingCode& c = **found;
  EXPECT_EQ(c.purpose, CodePurpose::kSignup);
  EXPECT_EQ(c.email, "bob@example.com");
  EXPECT_EQ(c.code_hash, "hash-5000");
  EXPECT_EQ(c.sent_at, 5000);
  EXPECT_EQ(c.expires_at, 305'000);
  EXPECT_EQ(c.attempts, 0);
  EXPECT_FALSE(c.used);
  EXPECT_EQ(c.username, "bob");
  EXPECT_EQ(c.password_hash, "pw-hash");

  // Purposes are separate rows.
  auto reset = store.FindCode(CodePurpose::kReset, "bob@example.com");
  ASSERT_TRUE(reset.ok());
  EXPECT_FALSE(reset->has_value());
  auto other = store.FindCode(CodePurpose::kSignup, "rob@example.com");
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->has_value());
}

TYPED_TEST(StoreConformance, ResetCodeWithoutSignupFields) {
  PendingCode c;
  c.purpose = CodePurpose::kReset;
  c.email = "bob@example.com";
  c.code_hash = "h";
  c.sent_at = 1;
  c.expires_at = 2;
  ASSERT_TRUE(this->store_->PutCode(c).ok());
  auto found = this->store_->FindCode(CodePurpose::kReset, "bob@example.com");
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->purpose, CodePurpose::kReset);
  EXPECT_EQ((*found)->username, "");
}

TYPED_TEST(StoreConformance, PutCodeReplaces) {
  auto& store = *this->store_;
  ASSERT_TRUE(store.PutCode(SignupCode("bob@example.com", 5000)).ok());
  ASSERT_TRUE(store.ReserveCodeAttempt(CodePurpose::kSignup, "bob@example.com", 5).ok());
  ASSERT_TRUE(store.ConsumeCode(CodePurpose::kSignup, "bob@example.com", 5000).ok());
  ASSERT_TRUE(store.PutCode(SignupCode("bob@example.com", 9000)).ok());
  auto found = store.FindCode(CodePurpose::kSignup, "bob@example.com");
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->code_hash, "hash-9000");
  EXPECT_EQ((*found)->sent_at, 9000);
  EXPECT_EQ((*found)->attempts, 0);
  EXPECT_FALSE((*found)->used);
}

TYPED_TEST(StoreConformance, ReserveCodeAttemptCountsAndStopsAtTheLimit) {
  auto& store = *this->store_;
  ASSERT_TRUE(store.PutCode(SignupCode("bob@example.com", 5000)).ok());
  auto first = store.ReserveCodeAttempt(CodePurpose::kSignup, "bob@example.com", 2);
  ASSERT_TRUE(first.ok() && first->has_value());
  EXPECT_EQ((*first)->attempts, 1);
  EXPECT_EQ((*first)->code_hash, "hash-5000");
  EXPECT_EQ((*first)->sent_at, 5000);
  EXPECT_EQ((*first)->username, "bob");
  auto second = store.ReserveCodeAttempt(CodePurpose::kSignup, "bob@example.com", 2);
  ASSERT_TRUE(second.ok() && second->has_value());
  EXPECT_EQ((*second)->attempts, 2);
  // The limit is reached: no code, and nothing more counted.
  auto third = store.ReserveCodeAttempt(CodePurpose::kSignup, "bob@example.com", 2);
  ASSERT_TRUE(third.ok());
  EXPECT_FALSE(third->has_value());
  EXPECT_EQ((*store.FindCode(CodePurpose::kSignup, "bob@example.com"))->attempts, 2);
  // No row: nothing.
  auto none = store.ReserveCodeAttempt(CodePurpose::kReset, "bob@example.com", 5);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  // A used code is not offered either.
  ASSERT_TRUE(store.PutCode(SignupCode("amy@example.com", 7000)).ok());
  ASSERT_TRUE(*store.ConsumeCode(CodePurpose::kSignup, "amy@example.com", 7000));
  EXPECT_FALSE(store.ReserveCodeAttempt(CodePurpose::kSignup, "amy@example.com", 5)->has_value());
}

TYPED_TEST(StoreConformance, ConcurrentCodeGuessesNeverExceedTheLimit) {
  ASSERT_TRUE(this->store_->PutCode(SignupCode("bob@example.com", 5000)).ok());
  auto second = this->OpenStore();
  ASSERT_NE(second, nullptr);
  std::atomic<int> offered{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 6; ++i) {
    store::Store* s = i % 2 ? second.get() : this->store_.get();
    threads.emplace_back([&, s] {
      for (int k = 0; k < 5; ++k) {
        auto r = s->ReserveCodeAttempt(CodePurpose::kSignup, "bob@example.com", 5);
        if (r.ok() && r->has_value()) ++offered;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(offered.load(), 5);
}

TYPED_TEST(StoreConformance, PurgeCodesDropsOnlyOlderOnes) {
  auto& store = *this->store_;
  ASSERT_TRUE(store.PutCode(SignupCode("old@example.com", 1000)).ok());
  ASSERT_TRUE(store.PutCode(SignupCode("new@example.com", 5000)).ok());
  ASSERT_TRUE(store.PurgeCodes(5000).ok());
  EXPECT_FALSE(store.FindCode(CodePurpose::kSignup, "old@example.com")->has_value());
  EXPECT_TRUE(store.FindCode(CodePurpose::kSignup, "new@example.com")->has_value());
}

TYPED_TEST(StoreConformance, ConsumeCodeOnlyOnce) {
  auto& store = *this->store_;
  ASSERT_TRUE(store.PutCode(SignupCode("bob@example.com", 5000)).ok());
  // Another sent_at (a replaced code) is not consumed.
  auto stale = store.ConsumeCode(CodePurpose::kSignup, "bob@example.com", 4000);
  ASSERT_TRUE(stale.ok());
  EXPECT_FALSE(*stale);
  // Nor is another purpose's.
  auto wrong_purpose = store.ConsumeCode(CodePurpose::kReset, "bob@example.com", 5000);
  ASSERT_TRUE(wrong_purpose.ok());
  EXPECT_FALSE(*wrong_purpose);

  auto first = store.ConsumeCode(CodePurpose::kSignup, "bob@example.com", 5000);
  ASSERT_TRUE(first.ok());
  EXPECT_TRUE(*first);
  auto second = store.ConsumeCode(CodePurpose::kSignup, "bob@example.com", 5000);
  ASSERT_TRUE(second.ok());
  EXPECT_FALSE(*second);
  EXPECT_TRUE((*store.FindCode(CodePurpose::kSignup, "bob@example.com"))->used);
}

TYPED_TEST(StoreConformance, DeleteCode) {
  auto& store = *this->store_;
  ASSERT_TRUE(store.PutCode(SignupCode("bob@example.com", 5000)).ok());
  PendingCode reset = SignupCode("bob@example.com", 6000);
  reset.purpose = CodePurpose::kReset;
  ASSERT_TRUE(store.PutCode(reset).ok());
  ASSERT_TRUE(store.DeleteCode(CodePurpose::kSignup, "bob@example.com").ok());
  EXPECT_FALSE(store.FindCode(CodePurpose::kSignup, "bob@example.com")->has_value());
  EXPECT_TRUE(store.FindCode(CodePurpose::kReset, "bob@example.com")->has_value());
  EXPECT_TRUE(store.DeleteCode(CodePurpose::kSignup, "nobody@example.com").ok());
}

// ---------------------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------------------

TYPED_TEST(StoreConformance, GetOrCreateSettingKeepsTheFirstValue) {
  auto first = this->store_->GetOrCreateSetting("jwt_secret", "first");
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(*first, "first");
  auto second = this->store_->GetOrCreateSetting("jwt_secret", "second");
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(*second, "first");
  auto other = this->store_->GetOrCreateSetting("other", "x");
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(*other, "x");

  // And across a reopen.
  this->store_.reset();
  this->store_ = this->OpenStore();
  ASSERT_NE(this->store_, nullptr);
  auto after = this->store_->GetOrCreateSetting("jwt_secret", "third");
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(*after, "first");
}

TYPED_TEST(StoreConformance, RacingProcessesAgreeOnOneSetting) {
  auto second = this->OpenStore();
  ASSERT_NE(second, nullptr);
  std::vector<std::string> got(8);
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    store::Store* s = i % 2 ? second.get() : this->store_.get();
    threads.emplace_back([&, s, i] {
      auto r = s->GetOrCreateSetting("race", "value-" + std::to_string(i));
      got[i] = r.ok() ? *r : "error: " + r.status().message();
    });
  }
  for (auto& th : threads) th.join();
  for (const auto& g : got) EXPECT_EQ(g, got[0]);
  EXPECT_THAT(got[0], HasSubstr("value-"));
}

// ---------------------------------------------------------------------------------------------
// Conversations: creating, listing, membership
// ---------------------------------------------------------------------------------------------

TYPED_TEST(StoreConformance, OnePrivateConversationPerPairInEitherOrder) {
  auto& store = *this->store_;
  const int64_t a = this->NewUserId("alice"), b = this->NewUserId("bob");
  const int64_t c = this->NewUserId("carol"), d = this->NewUserId("dave");
  auto ab = store.GetOrCreatePrivate(a, b, 1000);
  ASSERT_TRUE(ab.ok());
  EXPECT_TRUE(ab->second);
  auto ba = store.GetOrCreatePrivate(b, a, 2000);
  ASSERT_TRUE(ba.ok());
  EXPECT_FALSE(ba->second);
  EXPECT_EQ(ba->first, ab->first);
  auto ac = store.GetOrCreatePrivate(a, c, 3000);
  ASSERT_TRUE(ac.ok());
  EXPECT_TRUE(ac->second);
  EXPECT_NE(ac->first, ab->first);

  const Conversation conv = this->Get(ab->first);
  EXPECT_EQ(conv.type, domain::ConversationType::kPrivate);
  EXPECT_FALSE(conv.name.has_value());
  EXPECT_EQ(conv.created_at, 1000);
  ASSERT_EQ(conv.participants.size(), 2u);
  for (const auto& p : conv.participants) EXPECT_EQ(p.role, Role::kMember);

  // Racing creators, in both orders and from two stores (two processes): one conversation,
  // created once.
  auto second = this->OpenStore();
  ASSERT_NE(second, nullptr);
  constexpr int kThreads = 8;
  std::vector<Result<std::pair<int64_t, bool>>> got(kThreads, Status::Internal("unset"));
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    store::Store* s = t % 4 < 2 ? second.get() : &store;
    threads.emplace_back([&, s, t] {
      got[t] = t % 2 ? s->GetOrCreatePrivate(c, d, 4000) : s->GetOrCreatePrivate(d, c, 4000);
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
  const auto listed = this->ConversationsOf(d);
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].id, *ids.begin());
  EXPECT_EQ(listed[0].participants.size(), 2u);
}

TYPED_TEST(StoreConformance, CreateGroupWithAnUnknownMemberCreatesNothing) {
  const int64_t a = this->NewUserId("alice"), b = this->NewUserId("bob");
  auto g = this->store_->CreateGroup("g", a, {b, b + 1000, b + 2000}, 2000);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->outcome, MembershipOutcome::kNoSuchUser);
  EXPECT_EQ(g->missing_user, b + 1000);  // the first unknown one, in the order given
  EXPECT_TRUE(this->ConversationsOf(a).empty());
  EXPECT_EQ(this->backend_.QueryOne("SELECT COUNT(*) FROM conversations"), "0");
}

TYPED_TEST(StoreConformance, RemovingTheLastAdminPromotesTheEarliestJoined) {
  auto& store = *this->store_;
  const int64_t a = this->NewUserId("alice"), b = this->NewUserId("bob");
  const int64_t c = this->NewUserId("carol"), d = this->NewUserId("dave");
  const int64_t g = this->Group(a, {}, 100);
  ASSERT_EQ(*store.AddParticipant(g, b, Role::kMember, 300), MembershipOutcome::kDone);
  ASSERT_EQ(*store.AddParticipant(g, d, Role::kMember, 200), MembershipOutcome::kDone);
  ASSERT_EQ(*store.AddParticipant(g, c, Role::kMember, 200), MembershipOutcome::kDone);  // ties

  ASSERT_EQ(*store.RemoveParticipant(g, a, 400), MembershipOutcome::kDone);
  Conversation conv = this->Get(g);
  ASSERT_LT(c, d);  // the tie with d goes to the lower id
  EXPECT_EQ(conv.Find(a), nullptr);
  EXPECT_EQ(conv.Find(c)->role, Role::kAdmin);
  EXPECT_EQ(conv.Find(d)->role, Role::kMember);
  EXPECT_EQ(conv.Find(b)->role, Role::kMember);
  EXPECT_EQ(conv.last_activity, 400);

  // The promoted admin leaves: the next earliest (d at 200, before b at 300).
  ASSERT_EQ(*store.RemoveParticipant(g, c, 500), MembershipOutcome::kDone);
  conv = this->Get(g);
  EXPECT_EQ(conv.Find(d)->role, Role::kAdmin);
  EXPECT_EQ(conv.Find(b)->role, Role::kMember);

  EXPECT_EQ(*store.RemoveParticipant(g, c, 600), MembershipOutcome::kNotParticipant);
  EXPECT_EQ(this->Get(g).last_activity, 500);  // a refusal changes nothing
}

TYPED_TEST(StoreConformance, ParticipantsComeByJoinTimeThenUserId) {
  auto& store = *this->store_;
  const int64_t u1 = this->NewUserId("ann"), u2 = this->NewUserId("ben");
  const int64_t u3 = this->NewUserId("cat"), u4 = this->NewUserId("dan");
  // Joined in an order that is neither the answer nor the ids' order.
  const int64_t g = this->Group(u4, {}, 100);
  ASSERT_EQ(*store.AddParticipant(g, u1, Role::kMember, 300), MembershipOutcome::kDone);
  ASSERT_EQ(*store.AddParticipant(g, u3, Role::kMember, 200), MembershipOutcome::kDone);
  ASSERT_EQ(*store.AddParticipant(g, u2, Role::kMember, 200), MembershipOutcome::kDone);
  const std::vector<int64_t> expected{u4, u2, u3, u1};
  auto ids = [](const Conversation& c) {
    std::vector<int64_t> out;
    for (const auto& p : c.participants) out.push_back(p.user_id);
    return out;
  };
  EXPECT_EQ(ids(this->Get(g)), expected);
  const auto listed = this->ConversationsOf(u1);
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(ids(listed.front()), expected);
}

TYPED_TEST(StoreConformance, RemovingAMemberOrOneOfTwoAdminsPromotesNobody) {
  auto& store = *this->store_;
  const int64_t a = this->NewUserId("alice"), b = this->NewUserId("bob");
  const int64_t c = this->NewUserId("carol"), d = this->NewUserId("dave");
  const int64_t g = this->Group(a, {b, c}, 100);
  ASSERT_EQ(*store.AddParticipant(g, d, Role::kAdmin, 200), MembershipOutcome::kDone);
  ASSERT_EQ(*store.RemoveParticipant(g, b, 300), MembershipOutcome::kDone);
  Conversation conv = this->Get(g);
  EXPECT_EQ(conv.Find(c)->role, Role::kMember);
  ASSERT_EQ(*store.RemoveParticipant(g, a, 400), MembershipOutcome::kDone);
  conv = this->Get(g);
  EXPECT_THAT(std::vector<Role>({conv.Find(c)->role, conv.Find(d)->role}),
              ElementsAre(Role::kMember, Role::kAdmin));
}

TYPED_TEST(StoreConformance, AddingAnExistingParticipantOrAnUnknownUserChangesNothing) {
  auto& store = *this->store_;
  const int64_t a = this->NewUserId("alice"), b = this->NewUserId("bob");
  const int64_t c = this->NewUserId("carol");
  const int64_t g = this->Group(a, {b});
  EXPECT_EQ(*store.AddParticipant(g, b, Role::kAdmin, 2000),
            MembershipOutcome::kAlreadyParticipant);
  EXPECT_EQ(this->Get(g).Find(b)->role, Role::kMember);  // the role given was not applied
  EXPECT_EQ(*store.AddParticipant(g, c + 1000, Role::kMember, 2000),
            MembershipOutcome::kNoSuchUser);
  EXPECT_EQ(*store.SetRole(g, c, Role::kAdmin, 2000), MembershipOutcome::kNotParticipant);
  EXPECT_EQ(this->Get(g).participants.size(), 2u);
  EXPECT_EQ(this->Get(g).last_activity, 1000);
}

TYPED_TEST(StoreConformance, SetRoleNeverLeavesTheGroupWithoutAnAdmin) {
  auto& store = *this->store_;
  const int64_t a = this->NewUserId("alice"), b = this->NewUserId("bob");
  const int64_t g = this->Group(a, {b});
  EXPECT_EQ(*store.SetRole(g, a, Role::kMember, 2000), MembershipOutcome::kWouldLeaveNoAdmin);
  EXPECT_EQ(this->Get(g).Find(a)->role, Role::kAdmin);  // nothing changed
  EXPECT_EQ(this->Get(g).last_activity, 1000);
  ASSERT_EQ(*store.SetRole(g, b, Role::kAdmin, 3000), MembershipOutcome::kDone);
  ASSERT_EQ(*store.SetRole(g, a, Role::kMember, 4000), MembershipOutcome::kDone);
  const Conversation conv = this->Get(g);
  EXPECT_EQ(conv.Find(a)->role, Role::kMember);
  EXPECT_EQ(conv.Find(b)->role, Role::kAdmin);
  EXPECT_EQ(conv.last_activity, 4000);
  // Promoting an admin again is allowed and changes nothing else.
  EXPECT_EQ(*store.SetRole(g, b, Role::kAdmin, 5000), MembershipOutcome::kDone);
}

TYPED_TEST(StoreConformance, RacingDemotionsLeaveAnAdmin) {
  // Two admins demote themselves at the same moment, from two stores (two processes): one
  // demotion wins, the other is refused, every round.
  const int64_t a = this->NewUserId("alice"), b = this->NewUserId("bob");
  auto second = this->OpenStore();
  ASSERT_NE(second, nullptr);
  for (int round = 0; round < 20; ++round) {
    const int64_t g = this->Group(a, {b});
    ASSERT_EQ(*this->store_->SetRole(g, b, Role::kAdmin, 2000), MembershipOutcome::kDone);
    Result<MembershipOutcome> ra = Status::Internal("unset"), rb = Status::Internal("unset");
    std::thread ta([&] { ra = this->store_->SetRole(g, a, Role::kMember, 3000); });
    std::thread tb([&] { rb = second->SetRole(g, b, Role::kMember, 3000); });
    ta.join();
    tb.join();
    ASSERT_TRUE(ra.ok() && rb.ok()) << ra.status().message() << rb.status().message();
    EXPECT_EQ((*ra == MembershipOutcome::kDone) + (*rb == MembershipOutcome::kDone), 1)
        << "round " << round;
    const Conversation conv = this->Get(g);
    const auto admins = std::count_if(conv.participants.begin(), conv.participants.end(),
                                      [](const auto& p) { return p.role == Role::kAdmin; });
    EXPECT_EQ(admins, 1) << "round " << round;
  }
}

TYPED_TEST(StoreConformance, TheListsReadsGiveEverythingInFixedQueries) {
  auto& store = *this->store_;
  const int64_t a = this->NewUserId("alice"), b = this->NewUserId("bob");
  const int64_t c = this->NewUserId("carol");
  const int64_t g1 = this->Group(a, {b}, 1000);
  const int64_t p = store.GetOrCreatePrivate(a, c, 1100)->first;
  const int64_t g2 = this->Group(b, {a, c}, 1200);
  const int64_t elsewhere = this->Group(b, {c}, 1300);

  this->Sent(g1, b, "one", 2000);
  this->Sent(g1, b, "two", 2100);
  const auto m3 = this->Sent(g1, a, "mine", 2200);  // a's marker moves to it
  const auto m4 = this->Sent(g1, b, "after mine", 2300);
  const auto m5 = this->Sent(p, c, "hey", 2400);
  ASSERT_TRUE(store.MoveReadMarker(p, a, m5.id, 2500).ok());

  // Where a stands in each of its conversations.
  auto states = store.ListReaderStates(a);
  ASSERT_TRUE(states.ok()) << states.status().message();
  std::map<int64_t, std::pair<int64_t, int64_t>> by_id;  // -> read marker, unread count
  for (const auto& st : *states) by_id[st.conversation_id] = {st.read_marker, st.unread_count};
  // In g1, m4 only is unread: m1 and m2 are below the marker, m3 is a's own.
  EXPECT_EQ(by_id, (std::map<int64_t, std::pair<int64_t, int64_t>>{
                       {g1, {m3.id, 1}}, {p, {m5.id, 0}}, {g2, {0, 0}}}));

  // The conversations themselves; an id that does not exist is left out.
  auto got = store.GetConversations({g1, g2 + 1000, elsewhere});
  ASSERT_TRUE(got.ok()) << got.status().message();
  ASSERT_EQ(got->size(), 2u);
  const Conversation& one = (*got)[0].id == g1 ? (*got)[0] : (*got)[1];
  const Conversation& other = (*got)[0].id == g1 ? (*got)[1] : (*got)[0];
  EXPECT_EQ(one.type, domain::ConversationType::kGroup);
  EXPECT_EQ(one.name, std::optional<std::string>("g"));
  EXPECT_EQ(one.last_activity, 2300);
  ASSERT_TRUE(one.last_message.has_value());
  EXPECT_EQ(one.last_message->id, m4.id);
  EXPECT_EQ(one.last_message->content, "after mine");
  EXPECT_EQ(one.last_message->seq, 4);
  ASSERT_EQ(one.participants.size(), 2u);
  EXPECT_EQ(one.participants[0].user_id, a);
  EXPECT_EQ(one.participants[0].role, Role::kAdmin);
  EXPECT_EQ(one.participants[0].read_marker, m3.id);
  EXPECT_EQ(one.participants[1].username, "bob");
  EXPECT_EQ(other.id, elsewhere);
  EXPECT_FALSE(other.last_message.has_value());
  EXPECT_EQ(other.participants.size(), 2u);
  auto none = store.GetConversations({});
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());

  // The number of statements does not grow with the number of conversations.
  auto statements = [&] {
    const uint64_t before = store::StatementsOnThisThread();
    auto mine = store.ListReaderStates(a);
    EXPECT_TRUE(mine.ok());
    std::vector<int64_t> ids;
    for (const auto& st : *mine) ids.push_back(st.conversation_id);
    auto convs = store.GetConversations(ids);
    EXPECT_TRUE(convs.ok());
    EXPECT_EQ(convs->size(), ids.size());
    return store::StatementsOnThisThread() - before;
  };
  const uint64_t for_three = statements();
  for (int i = 0; i < 30; ++i) this->Sent(this->Group(a, {b, c}, 3000 + i), b, "x", 4000 + i);
  ASSERT_EQ(store.ListReaderStates(a)->size(), 33u);
  const uint64_t for_many = statements();
  EXPECT_EQ(for_many, for_three);
  EXPECT_LE(for_many, 5u);  // states; BEGIN, conversations, participants, COMMIT
}

// ---------------------------------------------------------------------------------------------
// Messages: the group-commit writer
// ---------------------------------------------------------------------------------------------

TYPED_TEST(StoreConformance, QueuedAppendsAreCommittedTogether) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 50;  // 200 queued, below kMaxBatch
  static_assert(kThreads * kPerThread < store::GroupCommitWriter::kMaxBatch);
  const int64_t a = this->NewUserId("alice"), b = this->NewUserId("bob");
  const int64_t c = this->NewUserId("carol"), d = this->NewUserId("dave");
  const int64_t g = this->Group(a, {b, c, d});
  const std::vector<int64_t> senders = {a, b, c, d};

  struct Seen {
    Result<StoredAppend> result;
    int64_t committed_at_callback;  // seq of the newest committed message when called back
  };
  std::mutex mu;
  std::vector<Seen> seen;
  std::promise<void> all_back;
  const uint64_t batches_before = this->store_->writer().CommittedBatches();
  {
    auto block = this->HoldWriter(NewMessage{g, a, "first", std::nullopt, 2000});
    // The writer is held: queue everything from several threads.
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kPerThread; ++i) {
          this->store_->AppendMessage(
              NewMessage{g, senders[t], std::to_string(t) + "/" + std::to_string(i), std::nullopt,
                         3000},
              [&](Result<StoredAppend> r) {
                auto last = this->store_->LastMessage(g);
                const int64_t newest = last.ok() && last->has_value() ? (*last)->seq : -1;
                std::lock_guard lock(mu);
                seen.push_back({std::move(r), newest});
                if (seen.size() == kThreads * kPerThread) all_back.set_value();
              });
        }
      });
    }
    for (auto& th : threads) th.join();
  }
  ASSERT_EQ(all_back.get_future().wait_for(std::chrono::seconds(30)), std::future_status::ready);
  // The held message, then all 200 in one transaction.
  EXPECT_EQ(this->store_->writer().CommittedBatches() - batches_before, 2u);

  std::lock_guard lock(mu);
  ASSERT_EQ(seen.size(), static_cast<size_t>(kThreads * kPerThread));
  std::set<int64_t> seqs;
  int64_t prev_id = 0;
  for (const auto& s : seen) {
    ASSERT_TRUE(s.result.ok()) << s.result.status().message();
    ASSERT_EQ(s.result->outcome, AppendOutcome::kCreated);
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

TYPED_TEST(StoreConformance, ManyThreadsAppendingGetGaplessSeq) {
  constexpr int kThreads = 6;
  constexpr int kPerThread = 100;
  const int64_t a = this->NewUserId("alice"), b = this->NewUserId("bob");
  const int64_t c = this->NewUserId("carol");
  const int64_t g = this->Group(a, {b, c});
  const std::vector<int64_t> senders = {a, b, c};
  std::vector<std::vector<Result<StoredAppend>>> results(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<StoredWaiter> waiters(kPerThread);
      for (int i = 0; i < kPerThread; ++i) {
        this->store_->AppendMessage(NewMessage{g, senders[t % 3], "x", std::nullopt, 2000 + i},
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

TYPED_TEST(StoreConformance, RefusalsInsideABatchLeaveNoGap) {
  const int64_t a = this->NewUserId("alice"), b = this->NewUserId("bob");
  const int64_t c = this->NewUserId("carol");
  const int64_t g = this->Group(a, {b});
  std::vector<StoredWaiter> w(7);
  {
    auto block = this->HoldWriter(NewMessage{g, a, "first", std::nullopt, 2000});
    auto& s = *this->store_;
    s.AppendMessage(NewMessage{g, a, "one", std::nullopt, 2001}, w[0].Callback());
    s.AppendMessage(NewMessage{g, c, "outsider", std::nullopt, 2002}, w[1].Callback());
    s.AppendMessage(NewMessage{g + 1000, a, "nowhere", std::nullopt, 2003}, w[2].Callback());
    s.AppendMessage(NewMessage{g, b, "two", "cid", 2004}, w[3].Callback());
    s.AppendMessage(NewMessage{g, b, "two again", "cid", 2005}, w[4].Callback());
    s.AppendMessage(NewMessage{g, c, "outsider retry", "cid", 2006}, w[5].Callback());
    s.AppendMessage(NewMessage{g, a, "three", std::nullopt, 2007}, w[6].Callback());
  }
  auto one = w[0].Get();
  auto outsider = w[1].Get();
  auto nowhere = w[2].Get();
  auto two = w[3].Get();
  auto again = w[4].Get();
  auto outsider_retry = w[5].Get();
  auto three = w[6].Get();
  for (auto* r : {&one, &outsider, &nowhere, &two, &again, &outsider_retry, &three}) {
    EXPECT_TRUE(r->ok()) << r->status().message();
  }
  ASSERT_TRUE(one.ok() && outsider.ok() && nowhere.ok() && two.ok() && again.ok() &&
              outsider_retry.ok() && three.ok());
  EXPECT_EQ(one->outcome, AppendOutcome::kCreated);
  EXPECT_EQ(one->message.seq, 2);
  EXPECT_EQ(outsider->outcome, AppendOutcome::kNotParticipant);
  EXPECT_EQ(nowhere->outcome, AppendOutcome::kNoConversation);
  EXPECT_EQ(two->outcome, AppendOutcome::kCreated);
  EXPECT_EQ(two->message.seq, 3);
  EXPECT_EQ(again->outcome, AppendOutcome::kRepeated);  // found within the same batch
  EXPECT_EQ(again->message.id, two->message.id);
  EXPECT_EQ(again->message.content, "two");
  EXPECT_EQ(outsider_retry->outcome, AppendOutcome::kNotParticipant);  // client_ids are per sender
  EXPECT_EQ(three->outcome, AppendOutcome::kCreated);
  EXPECT_EQ(three->message.seq, 4);

  auto all = this->store_->ListMessages(g, std::nullopt, std::nullopt, 100);
  ASSERT_TRUE(all.ok());
  std::vector<int64_t> seqs;
  for (const auto& m : *all) seqs.push_back(m.seq);
  EXPECT_THAT(seqs, ElementsAre(1, 2, 3, 4));
}

TYPED_TEST(StoreConformance, ARepeatedClientIdFromAnotherProcessReturnsTheOriginal) {
  const int64_t a = this->NewUserId("alice"), b = this->NewUserId("bob");
  const int64_t g = this->Group(a, {b});
  auto second = this->OpenStore();
  ASSERT_NE(second, nullptr);
  // Both processes send the same (sender, client_id) many times at once: one message.
  constexpr int kTries = 20;
  std::vector<StoredWaiter> w(kTries);
  for (int i = 0; i < kTries; ++i) {
    store::Store* s = i % 2 ? second.get() : this->store_.get();
    s->AppendMessage(NewMessage{g, b, "once " + std::to_string(i), "same-id", 2000 + i},
                     w[i].Callback());
  }
  std::set<int64_t> ids;
  int created = 0;
  for (auto& x : w) {
    auto r = x.Get();
    ASSERT_TRUE(r.ok()) << r.status().message();
    ids.insert(r->message.id);
    created += r->outcome == AppendOutcome::kCreated ? 1 : 0;
  }
  EXPECT_EQ(created, 1);
  EXPECT_EQ(ids.size(), 1u);
  EXPECT_EQ(this->backend_.QueryOne("SELECT COUNT(*) FROM messages"), "1");
  EXPECT_EQ(
      this->backend_.QueryOne("SELECT last_seq FROM conversations WHERE id = " + std::to_string(g)),
      "1");
}

TYPED_TEST(StoreConformance, AppendMovesTheSendersReadMarkerAndTheActivity) {
  const int64_t a = this->NewUserId("alice"), b = this->NewUserId("bob");
  const int64_t g = this->Group(a, {b}, 1000);
  auto r = this->Append(g, b, "hi", std::nullopt, 5000);
  ASSERT_TRUE(r.ok());
  const Conversation c = this->Get(g);
  EXPECT_EQ(c.Find(b)->read_marker, r->message.id);
  EXPECT_EQ(c.Find(b)->read_at, 5000);
  EXPECT_EQ(c.Find(a)->read_marker, 0);
  EXPECT_EQ(c.last_activity, 5000);
  // An older timestamp does not move the activity back.
  ASSERT_TRUE(this->Append(g, a, "late", std::nullopt, 4000).ok());
  EXPECT_EQ(this->Get(g).last_activity, 5000);
}

// members_version counts membership changes (adds and removals, not renames or roles), and
// every append carries the version it committed under: how a hub tells whether it knows a
// message's members (ws/sequencer.h, Fanout::CatchUpMembers).
TYPED_TEST(StoreConformance, MembershipChangesMoveTheVersionAndAppendsCarryIt) {
  auto& store = *this->store_;
  const int64_t a = this->NewUserId("alice"), b = this->NewUserId("bob"),
                c = this->NewUserId("carol");
  const int64_t g = this->Group(a, {b});
  const int64_t v0 = this->Get(g).members_version;
  EXPECT_EQ(this->Sent(g, a, "one").members_version, v0);

  ASSERT_EQ(*store.AddParticipant(g, c, Role::kMember, 1100), MembershipOutcome::kDone);
  const int64_t v1 = this->Get(g).members_version;
  EXPECT_GT(v1, v0);
  EXPECT_EQ(this->Sent(g, b, "two").members_version, v1);
  auto memberships = store.ListMemberships();
  ASSERT_TRUE(memberships.ok());
  for (const auto& m : *memberships) {
    if (m.conversation_id == g) {
      EXPECT_EQ(m.members_version, v1) << "user " << m.user_id;
    }
  }

  ASSERT_TRUE(store.Rename(g, "renamed", 1200).ok());
  ASSERT_EQ(*store.SetRole(g, b, Role::kAdmin, 1300), MembershipOutcome::kDone);
  EXPECT_EQ(this->Get(g).members_version, v1);

  ASSERT_EQ(*store.RemoveParticipant(g, c, 1400), MembershipOutcome::kDone);
  const int64_t v2 = this->Get(g).members_version;
  EXPECT_GT(v2, v1);
  EXPECT_EQ(this->Sent(g, a, "three").members_version, v2);
}

// The guarantee `sync` rests on: ids increase in commit order across every process sharing the
// database. Three stores (three processes' writers) append at once while a reader pages through
// MessagesSince from its last id, as a client syncing in a loop does. Were a lower id to
// commit after a higher one the reader had passed, the reader would never see it.
TYPED_TEST(StoreConformance, IdsFollowCommitOrderAcrossWritersSoSyncSkipsNothing) {
  const int64_t a = this->NewUserId("alice"), b = this->NewUserId("bob");
  const int64_t reader = this->NewUserId("reader");
  std::vector<int64_t> groups;
  for (int i = 0; i < 4; ++i) groups.push_back(this->Group(a, {b, reader}));
  std::vector<std::unique_ptr<store::Store>> writers;
  for (int i = 0; i < 3; ++i) {
    writers.push_back(this->OpenStore());
    ASSERT_NE(writers.back(), nullptr);
  }

  std::atomic<bool> done{false};
  std::vector<int64_t> seen;
  std::thread sync([&] {
    int64_t since = 0;
    for (bool last = false; !last;) {
      last = done.load();  // one more full pass after the writers finished
      for (;;) {
        auto page = this->store_->MessagesSince(reader, since, 50);
        if (!page.ok() || page->empty()) break;
        for (const auto& m : *page) seen.push_back(m.id);
        since = page->back().id;
      }
    }
  });

  constexpr int kPerThread = 150;
  std::vector<std::thread> senders;
  std::atomic<int> failures{0};
  for (int w = 0; w < 3; ++w) {
    for (int t = 0; t < 2; ++t) {
      senders.emplace_back([&, w, t] {
        std::vector<StoredWaiter> waiters(kPerThread);
        for (int i = 0; i < kPerThread; ++i) {
          writers[w]->AppendMessage(NewMessage{groups[(w + t + i) % groups.size()], i % 2 ? a : b,
                                               "m", std::nullopt, 2000 + i},
                                    waiters[i].Callback());
          if (i % 10 == 9) waiters[i].future.wait();  // a few in flight at a time, as clients do
        }
        for (auto& x : waiters) {
          auto r = x.Get();
          if (!r.ok() || r->outcome != AppendOutcome::kCreated) ++failures;
        }
      });
    }
  }
  for (auto& th : senders) th.join();
  done = true;
  sync.join();
  EXPECT_EQ(failures.load(), 0);

  auto all = this->store_->MessagesSince(reader, 0, 10'000);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 3u * 2u * kPerThread);
  std::vector<int64_t> committed;
  for (const auto& m : *all) committed.push_back(m.id);
  // Everything committed was seen, once, in ascending order.
  EXPECT_EQ(seen, committed);
}

// ---------------------------------------------------------------------------------------------
// Messages: reading
// ---------------------------------------------------------------------------------------------

TYPED_TEST(StoreConformance, ListMessagesPagesByCursorInAscendingOrder) {
  const int64_t a = this->NewUserId("alice"), b = this->NewUserId("bob");
  const int64_t g = this->Group(a, {b});
  const int64_t other = this->Group(b, {a});
  std::vector<int64_t> ids;
  for (int i = 0; i < 10; ++i) {
    ids.push_back(this->Sent(g, i % 2 ? a : b, "m" + std::to_string(i)).id);
    this->Sent(other, b, "noise");
  }
  auto idsOf = [](const Result<std::vector<domain::Message>>& r) {
    std::vector<int64_t> out;
    if (r.ok()) {
      for (const auto& m : *r) out.push_back(m.id);
    }
    return out;
  };
  auto& s = *this->store_;
  EXPECT_EQ(idsOf(s.ListMessages(g, std::nullopt, std::nullopt, 3)),
            (std::vector<int64_t>{ids[7], ids[8], ids[9]}));
  EXPECT_EQ(idsOf(s.ListMessages(g, ids[7], std::nullopt, 3)),
            (std::vector<int64_t>{ids[4], ids[5], ids[6]}));
  EXPECT_EQ(idsOf(s.ListMessages(g, std::nullopt, ids[2], 3)),
            (std::vector<int64_t>{ids[3], ids[4], ids[5]}));
  EXPECT_EQ(idsOf(s.ListMessages(g, ids[1], std::nullopt, 5)), (std::vector<int64_t>{ids[0]}));
  EXPECT_TRUE(idsOf(s.ListMessages(g, std::nullopt, ids[9], 5)).empty());

  auto one = s.GetMessage(ids[4]);
  ASSERT_TRUE(one.ok() && one->has_value());
  EXPECT_EQ((*one)->content, "m4");
  EXPECT_EQ((*one)->seq, 5);
  EXPECT_EQ((*one)->conversation_id, g);
  EXPECT_FALSE(s.GetMessage(ids[9] + 1000)->has_value());
  auto last = s.LastMessage(g);
  ASSERT_TRUE(last.ok() && last->has_value());
  EXPECT_EQ((*last)->id, ids[9]);
  // Unread for a: b's messages above the marker.
  EXPECT_EQ(*s.CountUnread(g, a, ids[3]), 3);  // m4, m6, m8
  EXPECT_EQ(*s.CountUnread(g, a, 0), 5);
}

// The page a reader may see: the same rows as ListMessages for a participant, none for
// anyone else, the check made in the same read (a removal takes effect at once).
TYPED_TEST(StoreConformance, ListMessagesForChecksTheReaderInTheSameRead) {
  auto& s = *this->store_;
  const int64_t a = this->NewUserId("alice"), b = this->NewUserId("bob");
  const int64_t c = this->NewUserId("carol");
  const int64_t g = this->Group(a, {b});
  std::vector<int64_t> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(this->Sent(g, a, "m" + std::to_string(i)).id);
  auto idsOf = [](const Result<std::vector<domain::Message>>& r) {
    std::vector<int64_t> out;
    EXPECT_TRUE(r.ok()) << r.status().message();
    if (r.ok()) {
      for (const auto& m : *r) out.push_back(m.id);
    }
    return out;
  };
  EXPECT_EQ(idsOf(s.ListMessagesFor(b, g, std::nullopt, std::nullopt, 2)),
            (std::vector<int64_t>{ids[3], ids[4]}));
  EXPECT_EQ(idsOf(s.ListMessagesFor(b, g, ids[3], std::nullopt, 2)),
            (std::vector<int64_t>{ids[1], ids[2]}));
  EXPECT_EQ(idsOf(s.ListMessagesFor(b, g, std::nullopt, ids[2], 9)),
            (std::vector<int64_t>{ids[3], ids[4]}));
  EXPECT_TRUE(idsOf(s.ListMessagesFor(c, g, std::nullopt, std::nullopt, 9)).empty());
  EXPECT_TRUE(idsOf(s.ListMessagesFor(b, g + 1000, std::nullopt, std::nullopt, 9)).empty());
  ASSERT_EQ(*s.RemoveParticipant(g, b, 900), MembershipOutcome::kDone);
  EXPECT_TRUE(idsOf(s.ListMessagesFor(b, g, std::nullopt, std::nullopt, 9)).empty());
  EXPECT_TRUE(idsOf(s.ListMessagesFor(b, g, ids[4], std::nullopt, 9)).empty());
  EXPECT_EQ(idsOf(s.ListMessagesFor(a, g, ids[1], std::nullopt, 9)),
            (std::vector<int64_t>{ids[0]}));
}

TYPED_TEST(StoreConformance, GetConversationsGivesEveryParticipantsMarkers) {
  auto& s = *this->store_;
  const int64_t a = this->NewUserId("alice"), b = this->NewUserId("bob");
  const int64_t c = this->NewUserId("carol");
  const int64_t g = this->Group(a, {b, c});
  const int64_t m1 = this->Sent(g, a, "one").id;
  const int64_t m2 = this->Sent(g, a, "two").id;
  ASSERT_TRUE(s.MoveReadMarker(g, b, m1, 500).ok());
  ASSERT_TRUE(s.SaveDelivered({{g, c, m2}}).ok());
  auto convs = s.GetConversations({g});
  ASSERT_TRUE(convs.ok()) << convs.status().message();
  ASSERT_EQ(convs->size(), 1u);
  std::map<int64_t, std::pair<int64_t, int64_t>> by_user;
  for (const auto& p : convs->front().participants) {
    by_user[p.user_id] = {p.read_marker, p.delivered_marker};
  }
  EXPECT_EQ(by_user, (std::map<int64_t, std::pair<int64_t, int64_t>>{
                         {a, {m2, 0}}, {b, {m1, 0}}, {c, {0, m2}}}));
}

TYPED_TEST(StoreConformance, MessagesSinceOnlyFromCurrentConversations) {
  auto& store = *this->store_;
  const int64_t a = this->NewUserId("alice"), b = this->NewUserId("bob");
  const int64_t c = this->NewUserId("carol"), d = this->NewUserId("dave");
  const int64_t g = this->Group(a, {b});
  auto p = store.GetOrCreatePrivate(c, d, 1000);
  ASSERT_TRUE(p.ok());
  const auto m1 = this->Sent(g, a, "1");
  this->Sent(p->first, c, "x");
  const auto m2 = this->Sent(g, b, "2");
  auto since = store.MessagesSince(b, 0, 10);
  ASSERT_TRUE(since.ok());
  std::vector<int64_t> ids;
  for (const auto& m : *since) ids.push_back(m.id);
  EXPECT_THAT(ids, ElementsAre(m1.id, m2.id));
  auto after_first = store.MessagesSince(b, m1.id, 10);
  ASSERT_TRUE(after_first.ok());
  ASSERT_EQ(after_first->size(), 1u);
  EXPECT_EQ((*after_first)[0].id, m2.id);

  ASSERT_EQ(*store.RemoveParticipant(g, b, 3000), MembershipOutcome::kDone);
  since = store.MessagesSince(b, 0, 10);
  ASSERT_TRUE(since.ok());
  EXPECT_TRUE(since->empty());
}

// What a node of a cluster reads to catch up: every conversation's messages above an id, in
// id order, and the highest id committed.
TYPED_TEST(StoreConformance, MessagesAfterCoverEveryConversationInIdOrder) {
  auto& store = *this->store_;
  auto none = store.LastMessageId();
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, 0);
  const int64_t a = this->NewUserId("alice"), b = this->NewUserId("bob");
  const int64_t c = this->NewUserId("carol");
  const int64_t g = this->Group(a, {b});
  auto p = store.GetOrCreatePrivate(c, a, 1000);
  ASSERT_TRUE(p.ok());
  const auto m1 = this->Sent(g, a, "1");
  const auto m2 = this->Sent(p->first, c, "2");
  const auto m3 = this->Sent(g, b, "3");
  auto last = store.LastMessageId();
  ASSERT_TRUE(last.ok());
  EXPECT_EQ(*last, m3.id);
  auto all = store.MessagesAfter(0, 10);
  ASSERT_TRUE(all.ok());
  std::vector<int64_t> ids;
  for (const auto& m : *all) ids.push_back(m.id);
  EXPECT_THAT(ids, ElementsAre(m1.id, m2.id, m3.id));
  EXPECT_EQ((*all)[1].content, "2");
  EXPECT_EQ((*all)[1].conversation_id, p->first);
  auto page = store.MessagesAfter(m1.id, 1);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->size(), 1u);
  EXPECT_EQ((*page)[0].id, m2.id);
  auto end = store.MessagesAfter(m3.id, 10);
  ASSERT_TRUE(end.ok());
  EXPECT_TRUE(end->empty());
}

// ---------------------------------------------------------------------------------------------
// Markers
// ---------------------------------------------------------------------------------------------

TYPED_TEST(StoreConformance, ReadMarkerMovesOnlyForward) {
  auto& store = *this->store_;
  const int64_t a = this->NewUserId("alice"), b = this->NewUserId("bob");
  const int64_t c = this->NewUserId("carol");
  const int64_t g = this->Group(a, {b});
  auto up = store.MoveReadMarker(g, b, 5, 1000);
  ASSERT_TRUE(up.ok() && up->has_value());
  EXPECT_TRUE((*up)->moved);
  EXPECT_EQ((*up)->conversation_id, g);
  EXPECT_EQ((*up)->message_id, 5);
  EXPECT_EQ((*up)->read_at, 1000);

  for (int64_t id : {3, 5}) {
    auto back = store.MoveReadMarker(g, b, id, 2000);
    ASSERT_TRUE(back.ok() && back->has_value());
    EXPECT_FALSE((*back)->moved);
    EXPECT_EQ((*back)->message_id, 5);
    EXPECT_EQ((*back)->read_at, 1000);
  }
  const Conversation conv = this->Get(g);
  EXPECT_EQ(conv.Find(b)->read_marker, 5);
  EXPECT_EQ(conv.Find(b)->read_at, 1000);
  EXPECT_EQ(conv.Find(a)->read_marker, 0);

  auto more = store.MoveReadMarker(g, b, 9, 3000);
  ASSERT_TRUE(more.ok() && more->has_value());
  EXPECT_TRUE((*more)->moved);
  EXPECT_EQ((*more)->message_id, 9);
  EXPECT_EQ((*more)->read_at, 3000);

  auto stranger = store.MoveReadMarker(g, c, 9, 3000);
  ASSERT_TRUE(stranger.ok());
  EXPECT_FALSE(stranger->has_value());
}

TYPED_TEST(StoreConformance, RacingReadMarkersNeverGoBack) {
  const int64_t a = this->NewUserId("alice"), b = this->NewUserId("bob");
  const int64_t g = this->Group(a, {b});
  auto second = this->OpenStore();
  ASSERT_NE(second, nullptr);
  std::atomic<int64_t> highest{0};
  std::atomic<int> went_back{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    store::Store* s = t % 2 ? second.get() : this->store_.get();
    threads.emplace_back([&, s, t] {
      std::mt19937 rng(static_cast<unsigned>(t));
      for (int i = 0; i < 40; ++i) {
        const int64_t want = 1 + static_cast<int64_t>(rng() % 500);
        auto r = s->MoveReadMarker(g, b, want, 1000 + i);
        if (!r.ok() || !r->has_value()) {
          ++went_back;
          continue;
        }
        // The marker after the call is at least what was asked.
        if ((*r)->message_id < want) ++went_back;
        int64_t h = highest.load();
        while (want > h && !highest.compare_exchange_weak(h, want)) {
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(went_back.load(), 0);
  EXPECT_EQ(this->Get(g).Find(b)->read_marker, highest.load());
}

TYPED_TEST(StoreConformance, SaveDeliveredTakesTheMaximum) {
  auto& store = *this->store_;
  const int64_t a = this->NewUserId("alice"), b = this->NewUserId("bob");
  const int64_t c = this->NewUserId("carol"), d = this->NewUserId("dave");
  const int64_t g = this->Group(a, {b, c});
  ASSERT_TRUE(store.SaveDelivered({{g, b, 5}, {g, c, 7}}).ok());
  Conversation conv = this->Get(g);
  EXPECT_EQ(conv.Find(b)->delivered_marker, 5);
  EXPECT_EQ(conv.Find(c)->delivered_marker, 7);
  EXPECT_EQ(conv.Find(a)->delivered_marker, 0);

  ASSERT_TRUE(store.SaveDelivered({{g, b, 3}, {g, c, 8}}).ok());
  conv = this->Get(g);
  EXPECT_EQ(conv.Find(b)->delivered_marker, 5);  // never down
  EXPECT_EQ(conv.Find(c)->delivered_marker, 8);

  // A mark for someone who is not (or no longer) a participant changes nothing.
  ASSERT_TRUE(store.SaveDelivered({{g, d, 9}}).ok());
  EXPECT_EQ(this->Get(g).Find(d), nullptr);
  EXPECT_TRUE(store.SaveDelivered({}).ok());
}

TYPED_TEST(StoreConformance, DeliveredMarksRacingMessagesNeitherDeadlockNorFail) {
  // Delivered marks saved while senders of the same conversations append: both update
  // participant rows, and neither may fail or wait on the other for good.
  std::vector<int64_t> users;
  for (int i = 0; i < 6; ++i) users.push_back(this->NewUserId("u" + std::to_string(i)));
  std::vector<int64_t> groups;
  for (int i = 0; i < 3; ++i)
    groups.push_back(this->Group(users[0], {users.begin() + 1, users.end()}));
  auto second = this->OpenStore();
  ASSERT_NE(second, nullptr);
  std::atomic<int> failures{0};
  std::thread marks([&] {
    for (int round = 0; round < 100; ++round) {
      std::vector<domain::Watermark> batch;
      for (size_t g = 0; g < groups.size(); ++g) {
        for (size_t u = 0; u < users.size(); ++u) {
          // Reversed order on odd rounds: the store must order them itself.
          const size_t k = round % 2 ? users.size() - 1 - u : u;
          batch.push_back({groups[g], users[k], round + 1});
        }
      }
      if (!second->SaveDelivered(batch).ok()) ++failures;
    }
  });
  std::vector<StoredWaiter> w(300);
  for (int i = 0; i < 300; ++i) {
    this->store_->AppendMessage(
        NewMessage{groups[i % groups.size()], users[i % users.size()], "x", std::nullopt, 2000},
        w[i].Callback());
  }
  for (auto& x : w) {
    auto r = x.Get();
    if (!r.ok() || r->outcome != AppendOutcome::kCreated) ++failures;
  }
  marks.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(this->Get(groups[0]).Find(users[1])->delivered_marker, 100);
}

// ---------------------------------------------------------------------------------------------
// Edits, deletions and reactions (ConversationStore::ChangeMessage)
// ---------------------------------------------------------------------------------------------

template <typename Backend>
domain::StoredChange ChangeNow(store::Store& s, domain::MessageChange change) {
  StoredChangeWaiter w;
  s.ChangeMessage(std::move(change), w.Callback());
  auto r = w.Get();
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? *r : domain::StoredChange{};
}

TYPED_TEST(StoreConformance, ChangesFollowTheRulesAndTakePositionsFromTheIdCounter) {
  using Kind = domain::MessageChange::Kind;
  using domain::ChangeOutcome;
  const int64_t a = this->NewUserId("alice"), b = this->NewUserId("bob");
  const int64_t c = this->NewUserId("carol"), x = this->NewUserId("xavier");
  const int64_t g = this->Group(a, {b, c});
  auto& s = *this->store_;
  const domain::Message m = this->Sent(g, b, "helo");
  const domain::Message n = this->Sent(g, c, "next");
  auto change = [&](Kind k, int64_t id, int64_t actor, std::string text = "") {
    return ChangeNow<TypeParam>(s, {k, id, actor, std::move(text), 5000});
  };
  EXPECT_EQ(change(Kind::kEdit, m.id + 1000, b, "x").outcome, ChangeOutcome::kNoMessage);
  EXPECT_EQ(change(Kind::kEdit, m.id, x, "x").outcome, ChangeOutcome::kNotParticipant);
  EXPECT_EQ(change(Kind::kEdit, m.id, a, "x").outcome, ChangeOutcome::kNotAllowed);
  EXPECT_EQ(change(Kind::kDelete, m.id, c).outcome, ChangeOutcome::kNotAllowed);

  const auto edited = change(Kind::kEdit, m.id, b, "hello");
  ASSERT_EQ(edited.outcome, ChangeOutcome::kChanged);
  EXPECT_EQ(edited.message.change_id, n.id + 1);  // the next position after every id
  EXPECT_EQ(edited.message.edited_at, 5000);
  EXPECT_EQ(edited.message.content, "hello");
  EXPECT_EQ(edited.message.seq, m.seq);
  const auto same = change(Kind::kEdit, m.id, b, "hello");
  EXPECT_EQ(same.outcome, ChangeOutcome::kUnchanged);
  EXPECT_EQ(same.message.change_id, edited.message.change_id);

  const auto reacted = change(Kind::kReact, m.id, c, "+1");
  ASSERT_EQ(reacted.outcome, ChangeOutcome::kChanged);
  EXPECT_EQ(reacted.message.change_id, edited.message.change_id + 1);
  EXPECT_EQ(reacted.message.reactions, (std::vector<domain::Reaction>{{"+1", {c}}}));
  // The next message comes after the changes.
  const domain::Message after = this->Sent(g, a, "after");
  EXPECT_EQ(after.id, reacted.message.change_id + 1);
  auto last = s.LastMessageId();
  ASSERT_TRUE(last.ok());
  EXPECT_EQ(*last, after.id);

  // What is read back is what was answered.
  auto stored = s.GetMessage(m.id);
  ASSERT_TRUE(stored.ok() && stored->has_value());
  EXPECT_EQ((*stored)->content, "hello");
  EXPECT_EQ((*stored)->change_id, reacted.message.change_id);
  EXPECT_EQ((*stored)->reactions, reacted.message.reactions);
  EXPECT_EQ((*stored)->edited_at, 5000);

  // An admin deletes; the content and reactions go, the place stays.
  const auto deleted = change(Kind::kDelete, m.id, a);
  ASSERT_EQ(deleted.outcome, ChangeOutcome::kChanged);
  EXPECT_EQ(deleted.message.content, "");
  EXPECT_TRUE(deleted.message.reactions.empty());
  EXPECT_EQ(deleted.message.deleted_at, 5000);
  EXPECT_EQ(change(Kind::kDelete, m.id, b).outcome, ChangeOutcome::kUnchanged);
  EXPECT_EQ(change(Kind::kEdit, m.id, b, "again").outcome, ChangeOutcome::kDeleted);
  EXPECT_EQ(change(Kind::kReact, m.id, b, "+1").outcome, ChangeOutcome::kDeleted);
  auto gone = s.GetMessage(m.id);
  ASSERT_TRUE(gone.ok() && gone->has_value());
  EXPECT_EQ((*gone)->content, "");
  EXPECT_TRUE((*gone)->reactions.empty());
  EXPECT_EQ((*gone)->seq, m.seq);

  // sync order: by change_id, each message once.
  auto since = s.MessagesSince(c, n.id, 100);
  ASSERT_TRUE(since.ok());
  std::vector<int64_t> ids;
  for (const auto& msg : *since) ids.push_back(msg.id);
  EXPECT_THAT(ids, ElementsAre(after.id, m.id));
  // The cluster's repair reads: new messages by id, changed ones by change_id.
  auto created = s.MessagesAfter(n.id, 100);
  auto changed = s.ChangesAfter(n.id, 100);
  ASSERT_TRUE(created.ok() && changed.ok());
  ASSERT_EQ(created->size(), 1u);
  EXPECT_EQ(created->front().id, after.id);
  ASSERT_EQ(changed->size(), 1u);
  EXPECT_EQ(changed->front().id, m.id);
  EXPECT_EQ(changed->front().change_id, deleted.message.change_id);
  // Deleted messages are not unread.
  auto unread = s.CountUnread(g, a, 0);
  ASSERT_TRUE(unread.ok());
  EXPECT_EQ(*unread, 1);  // n (m is deleted, `after` is a's own)
}

TYPED_TEST(StoreConformance, ABurstOfReactionsCommitsInOneTransaction) {
  using Kind = domain::MessageChange::Kind;
  const int64_t a = this->NewUserId("alice");
  std::vector<int64_t> members;
  for (int i = 0; i < 30; ++i) members.push_back(this->NewUserId("u" + std::to_string(i)));
  const int64_t g = this->Group(a, members);
  const domain::Message m = this->Sent(g, a, "vote");
  const uint64_t batches_before = this->store_->writer().CommittedBatches();
  std::vector<StoredChangeWaiter> w(members.size() * 2);
  {
    auto block = this->HoldWriter(NewMessage{g, a, "first", std::nullopt, 2000});
    for (size_t i = 0; i < members.size(); ++i) {
      const std::string emoji = i % 2 ? "odd" : "even";
      this->store_->ChangeMessage({Kind::kReact, m.id, members[i], emoji, 3000}, w[i].Callback());
      // Half of them take theirs back at once, in the same batch.
      if (i % 3 == 0) {
        this->store_->ChangeMessage({Kind::kUnreact, m.id, members[i], emoji, 3000},
                                    w[members.size() + i].Callback());
      }
    }
  }
  int64_t last_change = 0;
  for (size_t i = 0; i < members.size(); ++i) {
    auto r = w[i].Get();
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(r->outcome, domain::ChangeOutcome::kChanged);
    EXPECT_GT(r->message.change_id, last_change);
    last_change = r->message.change_id;
    if (i % 3 == 0) {
      auto back = w[members.size() + i].Get();
      ASSERT_TRUE(back.ok());
      EXPECT_EQ(back->outcome, domain::ChangeOutcome::kChanged);
      EXPECT_GT(back->message.change_id, last_change);
      last_change = back->message.change_id;
    }
  }
  // The held message, then every change in one transaction.
  EXPECT_EQ(this->store_->writer().CommittedBatches() - batches_before, 2u);
  auto stored = this->store_->GetMessage(m.id);
  ASSERT_TRUE(stored.ok() && stored->has_value());
  EXPECT_EQ((*stored)->change_id, last_change);
  std::map<std::string, std::vector<int64_t>> want;
  for (size_t i = 0; i < members.size(); ++i) {
    if (i % 3 != 0) want[i % 2 ? "odd" : "even"].push_back(members[i]);
  }
  ASSERT_EQ((*stored)->reactions.size(), 2u);
  for (const auto& r : (*stored)->reactions) EXPECT_EQ(r.user_ids, want[r.emoji]) << r.emoji;
  // "even" came first, but its only user took it back at once: it left the list, and came
  // back (members[2]) after "odd".
  EXPECT_EQ((*stored)->reactions[0].emoji, "odd");
}

TYPED_TEST(StoreConformance, AReplyMustNameAMessageOfTheSameConversation) {
  const int64_t a = this->NewUserId("alice"), b = this->NewUserId("bob");
  const int64_t g = this->Group(a, {b});
  const int64_t h = this->Group(a, {b});
  const domain::Message here = this->Sent(g, a, "here");
  const domain::Message there = this->Sent(h, a, "there");
  auto send = [&](std::optional<int64_t> reply_to) {
    NewMessage nm{g, b, "re", std::nullopt, 3000};
    nm.reply_to = reply_to;
    StoredWaiter w;
    this->store_->AppendMessage(nm, w.Callback());
    auto r = w.Get();
    EXPECT_TRUE(r.ok());
    return r.ok() ? *r : StoredAppend{};
  };
  const auto ok = send(here.id);
  ASSERT_EQ(ok.outcome, AppendOutcome::kCreated);
  EXPECT_EQ(ok.message.reply_to, here.id);
  EXPECT_EQ(send(there.id).outcome, AppendOutcome::kBadReplyTo);
  EXPECT_EQ(send(there.id + 1000).outcome, AppendOutcome::kBadReplyTo);
  auto stored = this->store_->GetMessage(ok.message.id);
  ASSERT_TRUE(stored.ok() && stored->has_value());
  EXPECT_EQ((*stored)->reply_to, here.id);
  // Nothing of the refused ones was stored: the next seq follows.
  EXPECT_EQ(this->Sent(g, a, "next").seq, ok.message.seq + 1);
}

// ---------------------------------------------------------------------------------------------
// Uploads
// ---------------------------------------------------------------------------------------------

TYPED_TEST(StoreConformance, UploadsAreStoredInChunksAttachedOnceAndSwept) {
  using Kind = domain::MessageChange::Kind;
  const int64_t a = this->NewUserId("alice"), b = this->NewUserId("bob");
  const int64_t g = this->Group(a, {b});
  auto upload = [&](const std::string& id, int64_t uploader, std::vector<std::string> chunks,
                    bool complete = true, TimeMs at = 1000) {
    domain::Upload u;
    u.file = {.id = id,
              .filename = "f.bin",
              .content_type = "application/octet-stream",
              .created_at = at};
    u.uploader = uploader;
    ASSERT_TRUE(this->store_->CreateUpload(u).ok());
    int64_t size = 0;
    for (size_t i = 0; i < chunks.size(); ++i) {
      ASSERT_TRUE(this->store_->PutUploadChunk(id, static_cast<int64_t>(i), chunks[i]).ok());
      size += static_cast<int64_t>(chunks[i].size());
    }
    if (complete) {
      ASSERT_TRUE(this->store_->CompleteUpload(id, size).ok());
    }
  };
  const std::string bytes("a\0b\xFF\x00c", 6);  // NUL and high bytes survive
  upload("mine", a, {bytes, "tail"});
  upload("bobs", b, {"x"});
  upload("partial", a, {"x"}, /*complete=*/false);
  upload("old", a, {"x"}, true, /*at=*/10);
  upload("dropped", b, {"abc"}, /*complete=*/false);
  ASSERT_TRUE(this->store_->RemoveUpload("dropped").ok());  // an upload cut short

  auto found = this->store_->FindUpload("mine");
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->file.size, 10);
  EXPECT_EQ((*found)->file.filename, "f.bin");
  EXPECT_EQ((*found)->uploader, a);
  EXPECT_FALSE((*found)->conversation_id.has_value());
  auto chunk = this->store_->GetUploadChunk("mine", 0);
  ASSERT_TRUE(chunk.ok() && chunk->has_value());
  EXPECT_EQ(**chunk, bytes);
  chunk = this->store_->GetUploadChunk("mine", 2);
  ASSERT_TRUE(chunk.ok());
  EXPECT_FALSE(chunk->has_value());
  // Incomplete: not there yet.
  found = this->store_->FindUpload("partial");
  ASSERT_TRUE(found.ok());
  EXPECT_FALSE(found->has_value());
  // What no message carries, per uploader: the partial one's stored bytes count too.
  auto pending = [&](int64_t uploader) {
    auto r = this->store_->PendingUploadBytes(uploader);
    EXPECT_TRUE(r.ok());
    return r.ok() ? *r : -1;
  };
  EXPECT_EQ(pending(a), 10 + 1 + 1);
  EXPECT_EQ(pending(b), 1);

  // One batch: only the sender's own complete, free uploads attach, each once.
  auto with = [&](int64_t sender, std::vector<std::string> ids) {
    NewMessage nm{g, sender, "", std::nullopt, 3000};
    nm.attachment_ids = std::move(ids);
    return nm;
  };
  std::vector<StoredWaiter> w(5);
  {
    auto block = this->HoldWriter(NewMessage{g, a, "first", std::nullopt, 2000});
    this->store_->AppendMessage(with(b, {"mine"}), w[0].Callback());          // not b's
    this->store_->AppendMessage(with(a, {"partial"}), w[1].Callback());       // incomplete
    this->store_->AppendMessage(with(a, {"mine", "bobs"}), w[2].Callback());  // one not a's
    this->store_->AppendMessage(with(a, {"mine"}), w[3].Callback());          // attaches
    this->store_->AppendMessage(with(a, {"mine"}), w[4].Callback());          // taken now
  }
  for (size_t i : {0u, 1u, 2u, 4u}) {
    auto r = w[i].Get();
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->outcome, AppendOutcome::kBadAttachment) << i;
  }
  auto attached = w[3].Get();
  ASSERT_TRUE(attached.ok());
  ASSERT_EQ(attached->outcome, AppendOutcome::kCreated);
  ASSERT_EQ(attached->message.attachments.size(), 1u);
  EXPECT_EQ(attached->message.attachments[0].id, "mine");
  EXPECT_EQ(attached->message.attachments[0].size, 10);
  EXPECT_EQ(pending(a), 2);  // carried by a message now
  EXPECT_EQ(attached->message.attachments[0].content_type, "application/octet-stream");
  auto stored = this->store_->GetMessage(attached->message.id);
  ASSERT_TRUE(stored.ok() && stored->has_value());
  EXPECT_EQ((*stored)->attachments, attached->message.attachments);
  // The refused ones left no trace: the next seq follows.
  EXPECT_EQ(this->Sent(g, a, "next").seq, attached->message.seq + 1);
  found = this->store_->FindUpload("mine");
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->conversation_id, g);

  // Nothing is swept yet but the old orphan and the incomplete one (created at 1000).
  auto swept = this->store_->SweepUploads(/*orphaned_before=*/1001, 100);
  ASSERT_TRUE(swept.ok());
  EXPECT_EQ(*swept, 3);      // old, partial, bobs
  EXPECT_EQ(pending(a), 0);  // swept uploads free their room
  EXPECT_EQ(pending(b), 0);
  for (std::string id : {"old", "partial", "bobs"}) {
    auto gone = this->store_->GetUploadChunk(id, 0);
    ASSERT_TRUE(gone.ok());
    EXPECT_FALSE(gone->has_value()) << id;
  }
  // A deleted message's uploads go at once from view, and with the next sweep for good.
  StoredChangeWaiter del;
  this->store_->ChangeMessage({Kind::kDelete, attached->message.id, a, "", 4000}, del.Callback());
  auto deleted = del.Get();
  ASSERT_TRUE(deleted.ok());
  EXPECT_TRUE(deleted->message.attachments.empty());
  found = this->store_->FindUpload("mine");
  ASSERT_TRUE(found.ok());
  EXPECT_FALSE(found->has_value());
  stored = this->store_->GetMessage(attached->message.id);
  ASSERT_TRUE(stored.ok() && stored->has_value());
  EXPECT_TRUE((*stored)->attachments.empty());
  swept = this->store_->SweepUploads(0, 100);
  ASSERT_TRUE(swept.ok());
  EXPECT_EQ(*swept, 1);
  chunk = this->store_->GetUploadChunk("mine", 0);
  ASSERT_TRUE(chunk.ok());
  EXPECT_FALSE(chunk->has_value());
}

}  // namespace
}  // namespace mmchat::test
