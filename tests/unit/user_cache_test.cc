// domain::UserCache and the user service reading through it, on the real SQLite store: what a
// read costs (statements), when a kept user is read again, and that no change is lost to a
// read that raced it.
#include "domain/user_cache.h"

#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "chat_fakes.h"
#include "domain/user_service.h"
#include "fakes.h"
#include "store/common/statement_count.h"
#include "store/sqlite/sqlite_store.h"

namespace mmchat::domain {
namespace {

// The real store, with a hook run after FindUserById has read the row: the place where a
// concurrent change can fall between the read and the cache keeping it.
class HookedUsers final : public UserStore {
 public:
  explicit HookedUsers(UserStore* real) : real_(real) {}
  std::function<void()> after_read;

  Result<std::optional<UserRecord>> FindUserById(int64_t id) override {
    auto r = real_->FindUserById(id);
    if (after_read) std::exchange(after_read, nullptr)();
    return r;
  }
  Result<User> CreateUser(const NewUser& u) override { return real_->CreateUser(u); }
  Result<std::vector<User>> CreateUsers(const std::vector<NewUser>& u) override {
    return real_->CreateUsers(u);
  }
  Result<std::optional<UserRecord>> FindUserByEmail(std::string_view e) override {
    return real_->FindUserByEmail(e);
  }
  Result<std::optional<UserRecord>> FindUserByUsername(std::string_view n) override {
    return real_->FindUserByUsername(n);
  }
  Result<std::vector<User>> SearchUsersByPrefix(std::string_view p, int limit) override {
    return real_->SearchUsersByPrefix(p, limit);
  }
  Status UpdateProfile(int64_t id, const ProfileUpdate& u) override {
    return real_->UpdateProfile(id, u);
  }
  Status ReplacePassword(int64_t id, const std::string& h) override {
    return real_->ReplacePassword(id, h);
  }
  Result<LoginGate> BeginLoginAttempt(int64_t id, TimeMs now, TimeMs window_ms,
                                      int32_t max_failures) override {
    return real_->BeginLoginAttempt(id, now, window_ms, max_failures);
  }
  Status ClearLoginFailures(int64_t id) override { return real_->ClearLoginFailures(id); }
  Status SetLastSeen(int64_t id, TimeMs at) override { return real_->SetLastSeen(id, at); }
  Result<std::vector<UserRecord>> ListUsers(std::string_view p, int limit, int offset) override {
    return real_->ListUsers(p, limit, offset);
  }
  Status SetUserStatus(int64_t id, UserStatus st) override { return real_->SetUserStatus(id, st); }
  Status EraseUser(int64_t id) override { return real_->EraseUser(id); }

 private:
  UserStore* real_;
};

struct NobodyOnline final : PresenceView {
  bool IsOnline(int64_t) const override { return false; }
};

class UserCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store::sqlite::Options opts;
    opts.dsn = dir_.File("users.db");
    auto s = store::sqlite::SqliteStore::Open(opts);
    ASSERT_TRUE(s.ok()) << s.status().message();
    store_ = std::move(s).value();
    users_ = std::make_unique<HookedUsers>(store_.get());
    cache_ = std::make_unique<UserCache>(users_.get(), &bus_, clock_.Fn(), kTtl, 64);
    service_ = std::make_unique<UserService>(users_.get(), &nobody_, cache_.get(), &bus_);
    auto alice = store_->CreateUser({"alice", "alice@example.com", "h:pw", clock_.now});
    ASSERT_TRUE(alice.ok()) << alice.status().message();
    alice_ = alice->id;
  }

  // How many statements a Find of `id` ran.
  uint64_t FindCost(int64_t id) {
    const uint64_t before = store::StatementsOnThisThread();
    EXPECT_TRUE(cache_->Find(id).ok());
    return store::StatementsOnThisThread() - before;
  }
  std::string NameFromCache(int64_t id) {
    auto kept = cache_->Peek(id);
    return kept ? kept->user.username : "(not kept)";
  }

  static constexpr TimeMs kTtl = 1000;
  test::TempDir dir_;
  test::FakeClock clock_;
  test::RecordingBus bus_;
  NobodyOnline nobody_;
  std::unique_ptr<store::sqlite::SqliteStore> store_;
  std::unique_ptr<HookedUsers> users_;
  std::unique_ptr<UserCache> cache_;
  std::unique_ptr<UserService> service_;
  int64_t alice_ = 0;
};

TEST_F(UserCacheTest, KeepsAUserForTheTtl) {
  EXPECT_FALSE(cache_->Peek(alice_).has_value());
  EXPECT_GT(FindCost(alice_), 0u);  // the row is read
  EXPECT_EQ(FindCost(alice_), 0u);
  clock_.Advance(kTtl - 1);
  EXPECT_EQ(NameFromCache(alice_), "alice");
  clock_.Advance(1);
  EXPECT_FALSE(cache_->Peek(alice_).has_value());  // expired
  EXPECT_GT(FindCost(alice_), 0u);
}

TEST_F(UserCacheTest, AnUnknownUserIsNotFoundAndNotKept) {
  auto found = cache_->Find(alice_ + 100);
  ASSERT_TRUE(found.ok());
  EXPECT_FALSE(found->has_value());
  EXPECT_GT(FindCost(alice_ + 100), 0u);
}

TEST_F(UserCacheTest, NewsThatTheRowChangedForgetsIt) {
  const Event changes[] = {UserChanged{alice_}, TokensRevoked{alice_},
                           PresenceChanged{alice_, false, clock_.now}};
  for (const Event& e : changes) {
    ASSERT_TRUE(cache_->Find(alice_).ok());
    bus_.Publish(e);
    EXPECT_FALSE(cache_->Peek(alice_).has_value()) << e.index();
  }
  // Coming online changes nothing stored.
  ASSERT_TRUE(cache_->Find(alice_).ok());
  bus_.Publish(PresenceChanged{alice_, true, std::nullopt});
  EXPECT_TRUE(cache_->Peek(alice_).has_value());
}

TEST_F(UserCacheTest, AReadThatRacedAChangeIsNotKept) {
  // The read gets the old row; the change is written and announced before the cache keeps it.
  // Each kind of news, and a change of another user in the same shard, which must not spoil it.
  const std::vector<std::pair<std::string, std::function<void()>>> changes = {
      {"profile",
       [&] {
         ASSERT_TRUE(store_->UpdateProfile(alice_, {.username = "alicia"}).ok());
         bus_.Publish(UserChanged{alice_});
       }},
      {"reset",
       [&] {
         ASSERT_TRUE(store_->ReplacePassword(alice_, "h:other").ok());
         bus_.Publish(TokensRevoked{alice_});
       }},
      {"offline",
       [&] {
         ASSERT_TRUE(store_->SetLastSeen(alice_, clock_.now).ok());
         bus_.Publish(PresenceChanged{alice_, false, clock_.now});
       }},
  };
  for (const auto& [what, change] : changes) {
    SCOPED_TRACE(what);
    cache_->Forget(alice_);
    auto before = store_->FindUserById(alice_);
    ASSERT_TRUE(before.ok() && before->has_value());
    users_->after_read = change;
    auto stale = cache_->Find(alice_);
    ASSERT_TRUE(stale.ok() && stale->has_value());
    EXPECT_EQ((*stale)->token_version, (*before)->token_version);  // read from before
    EXPECT_FALSE(cache_->Peek(alice_).has_value());                // but not kept
    auto fresh = cache_->Find(alice_);
    ASSERT_TRUE(fresh.ok() && fresh->has_value());
    auto row = store_->FindUserById(alice_);
    EXPECT_EQ((*fresh)->token_version, (*row)->token_version);
    EXPECT_EQ((*fresh)->user.username, (*row)->user.username);
    EXPECT_EQ((*fresh)->user.last_seen, (*row)->user.last_seen);
  }
}

TEST_F(UserCacheTest, ConcurrentReadsNeverKeepARowOlderThanTheLastChange) {
  // One writer renames alice 200 times, announcing each; four readers read through the cache.
  // Once change k is announced, whatever the cache holds must be change k or later.
  constexpr int kChanges = 200;
  std::atomic<int> announced{0};
  std::atomic<bool> done{false};
  std::atomic<int> stale{0};
  auto number = [](const std::string& name) {
    return name == "alice" ? 0 : std::stoi(name.substr(1));
  };
  std::vector<std::thread> readers;
  for (int r = 0; r < 4; ++r) {
    readers.emplace_back([&] {
      while (!done) {
        const int floor = announced.load();
        if (auto kept = cache_->Peek(alice_); kept && number(kept->user.username) < floor) ++stale;
        if (!cache_->Find(alice_).ok()) ++stale;
      }
    });
  }
  for (int k = 1; k <= kChanges; ++k) {
    ASSERT_TRUE(store_->UpdateProfile(alice_, {.username = "n" + std::to_string(k)}).ok());
    bus_.Publish(UserChanged{alice_});
    announced = k;
  }
  done = true;
  for (auto& t : readers) t.join();
  EXPECT_EQ(stale.load(), 0);
  auto last = cache_->Find(alice_);
  ASSERT_TRUE(last.ok() && last->has_value());
  EXPECT_EQ((*last)->user.username, "n" + std::to_string(kChanges));
}

TEST_F(UserCacheTest, StaysBounded) {
  std::vector<NewUser> many;
  for (int i = 0; i < 300; ++i) {
    many.push_back(
        {"u" + std::to_string(i), "u" + std::to_string(i) + "@example.com", "h:pw", clock_.now});
  }
  auto made = store_->CreateUsers(many);
  ASSERT_TRUE(made.ok()) << made.status().message();
  for (const User& u : *made) ASSERT_TRUE(cache_->Find(u.id).ok());
  int kept = 0;
  for (const User& u : *made) kept += cache_->Peek(u.id).has_value() ? 1 : 0;
  EXPECT_GT(kept, 0);
  EXPECT_LE(kept, 64 + 16);  // about max_entries: each of the 16 shards may round up by one
}

TEST_F(UserCacheTest, AProfileUpdateIsSeenAtOnceAndAnOutsideChangeAfterTheTtl) {
  ASSERT_TRUE(service_->Get(alice_).ok());
  auto updated = service_->UpdateProfile(alice_, {.username = "alicia"});
  ASSERT_TRUE(updated.ok()) << updated.status().message();
  EXPECT_EQ(updated->username, "alicia");
  auto cached = service_->GetCached(alice_);
  ASSERT_TRUE(cached.has_value() && cached->ok());
  EXPECT_EQ((*cached)->username, "alicia");
  EXPECT_EQ(bus_.Of<UserChanged>().size(), 1u);

  // Another process changes the row and nobody tells this one (no cluster bus): the kept
  // profile answers until the ttl runs out, then the row is read again.
  ASSERT_TRUE(store_->UpdateProfile(alice_, {.username = "ali"}).ok());
  EXPECT_EQ(NameFromCache(alice_), "alicia");
  clock_.Advance(kTtl);
  EXPECT_FALSE(service_->GetCached(alice_).has_value());
  auto read = service_->Get(alice_);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(read->username, "ali");
}

TEST_F(UserCacheTest, GetCachedAnswersOnlyFromMemory) {
  EXPECT_FALSE(service_->GetCached(alice_).has_value());
  const uint64_t before = store::StatementsOnThisThread();
  EXPECT_FALSE(service_->GetCached(alice_).has_value());
  EXPECT_EQ(store::StatementsOnThisThread(), before);
  ASSERT_TRUE(service_->Get(alice_).ok());
  auto cached = service_->GetCached(alice_);
  ASSERT_TRUE(cached.has_value() && cached->ok());
  EXPECT_EQ((*cached)->email, "alice@example.com");
  const uint64_t after_get = store::StatementsOnThisThread();
  EXPECT_GT(after_get, before);  // Get read the row
  EXPECT_TRUE(service_->GetCached(alice_).has_value());
  EXPECT_EQ(store::StatementsOnThisThread(), after_get);
}

}  // namespace
}  // namespace mmchat::domain
