// store::sqlite::SqliteStore on a temporary file: migrations, users, codes, settings.
#include "store/sqlite/sqlite_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "fakes.h"
#include "store/sqlite/connection.h"
#include "store/sqlite/migrations.h"

namespace mmchat::store::sqlite {
namespace {

using domain::CodePurpose;
using domain::NewUser;
using domain::PendingCode;
using domain::ProfileUpdate;
using domain::User;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A raw SQLite handle for looking behind the store's back.
class RawDb {
 public:
  explicit RawDb(const std::string& path) {
    if (sqlite3_open(path.c_str(), &db_) != SQLITE_OK) ADD_FAILURE() << sqlite3_errmsg(db_);
  }
  ~RawDb() { sqlite3_close(db_); }

  // The first column of every row of `sql`, as text.
  std::vector<std::string> Column(const std::string& sql) {
    std::vector<std::string> out;
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
      ADD_FAILURE() << sql << ": " << sqlite3_errmsg(db_);
      return out;
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
      const auto* t = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
      out.push_back(t ? t : "NULL");
    }
    sqlite3_finalize(st);
    return out;
  }
  std::string One(const std::string& sql) {
    auto c = Column(sql);
    return c.empty() ? "" : c[0];
  }
  void Exec(const std::string& sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      ADD_FAILURE() << sql << ": " << (err ? err : "?");
    }
    sqlite3_free(err);
  }

 private:
  sqlite3* db_ = nullptr;
};

class SqliteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { store_ = OpenStore(); }

  std::unique_ptr<SqliteStore> OpenStore() {
    Options opts;
    opts.dsn = path_;
    auto s = SqliteStore::Open(opts);
    EXPECT_TRUE(s.ok()) << s.status().message();
    return s.ok() ? std::move(s).value() : nullptr;
  }

  User Create(const std::string& username, const std::string& email, TimeMs at = 1000) {
    auto u = store_->CreateUser(NewUser{username, email, "hash-of-" + username, at});
    EXPECT_TRUE(u.ok()) << u.status().message();
    return u.ok() ? *u : User{};
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

  domain::UserRecord Find(int64_t id) {
    auto r = store_->FindUserById(id);
    EXPECT_TRUE(r.ok() && r->has_value());
    return r.ok() && r->has_value() ? **r : domain::UserRecord{};
  }

  test::TempDir dir_;
  const std::string path_ = dir_.File("store.db");
  std::unique_ptr<SqliteStore> store_;
};

// ---------------------------------------------------------------------------------------------
// Opening and migrations
// ---------------------------------------------------------------------------------------------

TEST_F(SqliteStoreTest, MigrationsAppliedOnceAndReopenIsANoOp) {
  ASSERT_NE(store_, nullptr);
  store_.reset();
  store_ = OpenStore();
  ASSERT_NE(store_, nullptr);
  store_.reset();

  RawDb db(path_);
  const int latest = LatestSchemaVersion();
  ASSERT_GE(latest, 1);
  EXPECT_EQ(db.One("SELECT COUNT(*) FROM schema_migrations"), std::to_string(latest));
  EXPECT_EQ(db.One("SELECT COUNT(DISTINCT version) FROM schema_migrations"),
            std::to_string(latest));
  EXPECT_EQ(db.One("SELECT MAX(version) FROM schema_migrations"), std::to_string(latest));
  EXPECT_EQ(db.One("SELECT MIN(version) FROM schema_migrations"), "1");
  // The tables of migration 1 exist.
  EXPECT_THAT(db.Column("SELECT name FROM sqlite_master WHERE type = 'table' AND name IN "
                        "('users', 'verification_codes', 'settings') ORDER BY name"),
              ElementsAre("settings", "users", "verification_codes"));
}

TEST_F(SqliteStoreTest, MigrateReportsWhatItApplied) {
  store_.reset();
  auto conn = Connection::Open(dir_.File("fresh.db"), "NORMAL");
  ASSERT_TRUE(conn.ok()) << conn.status().message();
  int applied = -1;
  ASSERT_TRUE(Migrate(conn->get(), &applied).ok());
  EXPECT_EQ(applied, LatestSchemaVersion());
  ASSERT_TRUE(Migrate(conn->get(), &applied).ok());
  EXPECT_EQ(applied, 0);
}

TEST_F(SqliteStoreTest, DataSurvivesReopen) {
  const User u = Create("alice", "alice@example.com");
  store_.reset();
  store_ = OpenStore();
  ASSERT_NE(store_, nullptr);
  EXPECT_EQ(Find(u.id).user.username, "alice");
}

TEST_F(SqliteStoreTest, NewerSchemaIsRefused) {
  store_.reset();
  const int newer = LatestSchemaVersion() + 1;
  {
    RawDb db(path_);
    db.Exec("INSERT INTO schema_migrations(version, name, applied_at) VALUES (" +
            std::to_string(newer) + ", 'from the future', 0)");
  }
  Options opts;
  opts.dsn = path_;
  auto s = SqliteStore::Open(opts);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(), HasSubstr("schema version " + std::to_string(newer)));
  EXPECT_THAT(s.status().message(), HasSubstr("newer"));
}

TEST_F(SqliteStoreTest, JournalModeIsWal) {
  RawDb db(path_);
  EXPECT_EQ(db.One("PRAGMA journal_mode"), "wal");
}

TEST_F(SqliteStoreTest, UnopenablePathIsAnError) {
  Options opts;
  opts.dsn = dir_.File("no/such/dir/x.db");
  auto s = SqliteStore::Open(opts);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kUnavailable);
}

TEST_F(SqliteStoreTest, Ping) { EXPECT_TRUE(store_->Ping().ok()); }

// ---------------------------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------------------------

TEST_F(SqliteStoreTest, CreateAndFind) {
  const User u = Create("Alice", "alice@example.com", 12345);
  EXPECT_GT(u.id, 0);
  EXPECT_EQ(u.username, "Alice");
  EXPECT_EQ(u.email, "alice@example.com");
  EXPECT_EQ(u.created_at, 12345);

  const domain::UserRecord rec = Find(u.id);
  EXPECT_EQ(rec.user.username, "Alice");
  EXPECT_EQ(rec.user.email, "alice@example.com");
  EXPECT_EQ(rec.user.created_at, 12345);
  EXPECT_FALSE(rec.user.profile_picture.has_value());
  EXPECT_FALSE(rec.user.last_seen.has_value());
  EXPECT_EQ(rec.password_hash, "hash-of-Alice");
  EXPECT_EQ(rec.token_version, 0);
  EXPECT_EQ(rec.failed_logins, 0);

  const User v = Create("bob", "bob@example.com");
  EXPECT_NE(v.id, u.id);
}

TEST_F(SqliteStoreTest, FindsAreCaseInsensitive) {
  const User u = Create("Alice", "Alice@Example.com");
  for (const char* name : {"Alice", "alice", "ALICE", "aLiCe"}) {
    auto r = store_->FindUserByUsername(name);
    ASSERT_TRUE(r.ok());
    ASSERT_TRUE(r->has_value()) << name;
    EXPECT_EQ((*r)->user.id, u.id);
  }
  for (const char* email : {"alice@example.com", "ALICE@EXAMPLE.COM", "Alice@Example.com"}) {
    auto r = store_->FindUserByEmail(email);
    ASSERT_TRUE(r.ok());
    ASSERT_TRUE(r->has_value()) << email;
    EXPECT_EQ((*r)->user.id, u.id);
  }
}

TEST_F(SqliteStoreTest, FindUnknownGivesNothing) {
  Create("alice", "alice@example.com");
  auto by_id = store_->FindUserById(9999);
  ASSERT_TRUE(by_id.ok());
  EXPECT_FALSE(by_id->has_value());
  auto by_name = store_->FindUserByUsername("alic");
  ASSERT_TRUE(by_name.ok());
  EXPECT_FALSE(by_name->has_value());
  auto by_email = store_->FindUserByEmail("alice@example.co");
  ASSERT_TRUE(by_email.ok());
  EXPECT_FALSE(by_email->has_value());
  // No pattern matching in an exact look-up.
  auto wildcard = store_->FindUserByUsername("al%");
  ASSERT_TRUE(wildcard.ok());
  EXPECT_FALSE(wildcard->has_value());
}

TEST_F(SqliteStoreTest, CreateUserConflicts) {
  Create("Alice", "alice@example.com");
  auto name = store_->CreateUser(NewUser{"ALICE", "other@example.com", "h", 1});
  ASSERT_FALSE(name.ok());
  EXPECT_EQ(name.status().code(), StatusCode::kConflict);
  EXPECT_THAT(name.status().message(), HasSubstr("username"));

  auto email = store_->CreateUser(NewUser{"carol", "ALICE@example.COM", "h", 1});
  ASSERT_FALSE(email.ok());
  EXPECT_EQ(email.status().code(), StatusCode::kConflict);
  EXPECT_THAT(email.status().message(), HasSubstr("email"));

  // Nothing was inserted by the failed attempts.
  EXPECT_FALSE(store_->FindUserByUsername("carol")->has_value());
  EXPECT_FALSE(store_->FindUserByEmail("other@example.com")->has_value());
}

TEST_F(SqliteStoreTest, SearchByPrefix) {
  for (const char* name : {"Alice", "alan", "bal", "Bob", "al", "ALBERT", "xal", "a"}) {
    Create(name, std::string(name) + "@example.com");
  }
  // Case-insensitive prefix, ordered case-insensitively by username.
  EXPECT_THAT(Search("al"), ElementsAre("al", "alan", "ALBERT", "Alice"));
  EXPECT_THAT(Search("AL"), ElementsAre("al", "alan", "ALBERT", "Alice"));
  EXPECT_THAT(Search("ali"), ElementsAre("Alice"));
  EXPECT_THAT(Search("alice"), ElementsAre("Alice"));
  EXPECT_THAT(Search("alicex"), ElementsAre());
  EXPECT_THAT(Search("b"), ElementsAre("bal", "Bob"));
  EXPECT_THAT(Search("z"), ElementsAre());
  // Limit keeps the first ones in order.
  EXPECT_THAT(Search("al", 2), ElementsAre("al", "alan"));
  EXPECT_THAT(Search("a", 1), ElementsAre("a"));
  EXPECT_THAT(Search("", 3), ElementsAre("a", "al", "alan"));
}

TEST_F(SqliteStoreTest, SearchPrefixWildcardsAreLiteral) {
  for (const char* name : {"a_b", "axb", "a.b", "a-b", "abc", "a%b"}) {
    // '%' is not a valid username, but the store does not validate; it must still be literal.
    Create(name, std::string(name[1] == '%' ? "pct" : name) + "@example.com");
  }
  EXPECT_THAT(Search("a_"), ElementsAre("a_b"));
  EXPECT_THAT(Search("a%"), ElementsAre("a%b"));
  EXPECT_THAT(Search("a."), ElementsAre("a.b"));
  EXPECT_THAT(Search("a-"), ElementsAre("a-b"));
  EXPECT_THAT(Search("%"), ElementsAre());
  EXPECT_THAT(Search("_"), ElementsAre());
}

TEST_F(SqliteStoreTest, SearchReturnsPublicFields) {
  const User u = Create("alice", "alice@example.com", 777);
  ASSERT_TRUE(store_->UpdateProfile(u.id, ProfileUpdate{std::nullopt, "https://x.io/a.png"}).ok());
  auto r = store_->SearchUsersByPrefix("ali", 10);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].id, u.id);
  EXPECT_EQ((*r)[0].created_at, 777);
  EXPECT_EQ((*r)[0].profile_picture, std::optional<std::string>("https://x.io/a.png"));
}

TEST_F(SqliteStoreTest, UpdateProfile) {
  const User u = Create("alice", "alice@example.com");
  const User other = Create("bob", "bob@example.com");

  // Set the picture only.
  ASSERT_TRUE(store_->UpdateProfile(u.id, ProfileUpdate{std::nullopt, "https://x.io/a.png"}).ok());
  EXPECT_EQ(Find(u.id).user.profile_picture, std::optional<std::string>("https://x.io/a.png"));
  EXPECT_EQ(Find(u.id).user.username, "alice");

  // Change the username only: the picture stays.
  ASSERT_TRUE(store_->UpdateProfile(u.id, ProfileUpdate{"alicia", std::nullopt}).ok());
  EXPECT_EQ(Find(u.id).user.username, "alicia");
  EXPECT_EQ(Find(u.id).user.profile_picture, std::optional<std::string>("https://x.io/a.png"));

  // An inner nullopt clears the picture.
  ProfileUpdate clear;
  clear.profile_picture = std::optional<std::string>();
  ASSERT_TRUE(store_->UpdateProfile(u.id, clear).ok());
  EXPECT_FALSE(Find(u.id).user.profile_picture.has_value());
  EXPECT_EQ(Find(u.id).user.username, "alicia");

  // An empty update changes nothing and is fine.
  ASSERT_TRUE(store_->UpdateProfile(u.id, ProfileUpdate{}).ok());
  EXPECT_EQ(Find(u.id).user.username, "alicia");

  // Changing only the case of one's own name is not a conflict.
  ASSERT_TRUE(store_->UpdateProfile(u.id, ProfileUpdate{"ALICIA", std::nullopt}).ok());
  EXPECT_EQ(Find(u.id).user.username, "ALICIA");

  // Another user's name, in any case, is.
  Status taken = store_->UpdateProfile(u.id, ProfileUpdate{"BOB", "https://x.io/b.png"});
  EXPECT_EQ(taken.code(), StatusCode::kConflict);
  EXPECT_THAT(taken.message(), HasSubstr("username"));
  EXPECT_EQ(Find(u.id).user.username, "ALICIA");
  EXPECT_FALSE(Find(u.id).user.profile_picture.has_value());  // nothing half-applied
  EXPECT_EQ(Find(other.id).user.username, "bob");

  EXPECT_EQ(store_->UpdateProfile(9999, ProfileUpdate{"zed", std::nullopt}).code(),
            StatusCode::kNotFound);
}

TEST_F(SqliteStoreTest, ReplacePasswordBumpsTokenVersionAndClearsFailures) {
  const User u = Create("alice", "alice@example.com");
  ASSERT_TRUE(store_->BeginLoginAttempt(u.id, 5000, 60'000, 10).ok());
  ASSERT_EQ(Find(u.id).failed_logins, 1);
  ASSERT_TRUE(store_->ReplacePassword(u.id, "new-hash").ok());
  domain::UserRecord rec = Find(u.id);
  EXPECT_EQ(rec.password_hash, "new-hash");
  EXPECT_EQ(rec.token_version, 1);
  EXPECT_EQ(rec.failed_logins, 0);
  ASSERT_TRUE(store_->ReplacePassword(u.id, "newer-hash").ok());
  EXPECT_EQ(Find(u.id).token_version, 2);
  EXPECT_EQ(store_->ReplacePassword(9999, "x").code(), StatusCode::kNotFound);
}

TEST_F(SqliteStoreTest, LoginAttemptWindow) {
  const User u = Create("alice", "alice@example.com");
  const TimeMs t = 1'000'000;
  const TimeMs window = 15 * 60'000;
  auto begin = [&](TimeMs now, int32_t max = 3) {
    auto g = store_->BeginLoginAttempt(u.id, now, window, max);
    EXPECT_TRUE(g.ok());
    return *g;
  };
  EXPECT_TRUE(begin(t).allowed);
  EXPECT_TRUE(begin(t + 1000).allowed);
  EXPECT_TRUE(begin(t + 2000).allowed);
  domain::UserRecord rec = Find(u.id);
  EXPECT_EQ(rec.failed_logins, 3);
  EXPECT_EQ(rec.failed_window_start, t);  // the window starts at the first attempt

  // At the limit: refused until the window is over, and a refusal counts nothing.
  domain::LoginGate refused = begin(t + window - 1);
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.window_start, t);
  EXPECT_EQ(Find(u.id).failed_logins, 3);

  // Once the window has passed, counting starts over in a new window.
  domain::LoginGate fresh = begin(t + window);
  EXPECT_TRUE(fresh.allowed);
  EXPECT_EQ(fresh.window_start, t + window);
  rec = Find(u.id);
  EXPECT_EQ(rec.failed_logins, 1);
  EXPECT_EQ(rec.failed_window_start, t + window);

  ASSERT_TRUE(store_->ClearLoginFailures(u.id).ok());
  EXPECT_EQ(Find(u.id).failed_logins, 0);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(begin(t + window + 10).allowed);
  EXPECT_FALSE(begin(t + window + 10).allowed);

  // Attempts are per user.
  const User v = Create("bob", "bob@example.com");
  EXPECT_TRUE(store_->BeginLoginAttempt(v.id, t + window + 10, window, 3)->allowed);
}

TEST_F(SqliteStoreTest, ConcurrentLoginAttemptsNeverExceedTheLimit) {
  const User u = Create("alice", "alice@example.com");
  std::atomic<int> allowed{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      for (int k = 0; k < 10; ++k) {
        auto g = store_->BeginLoginAttempt(u.id, 1000, 60'000, 10);
        if (g.ok() && g->allowed) ++allowed;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(allowed.load(), 10);
  EXPECT_EQ(Find(u.id).failed_logins, 10);
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

TEST_F(SqliteStoreTest, PutAndFindCode) {
  ASSERT_TRUE(store_->PutCode(SignupCode("bob@example.com", 5000)).ok());
  auto found = store_->FindCode(CodePurpose::kSignup, "bob@example.com");
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
  auto reset = store_->FindCode(CodePurpose::kReset, "bob@example.com");
  ASSERT_TRUE(reset.ok());
  EXPECT_FALSE(reset->has_value());
  auto other = store_->FindCode(CodePurpose::kSignup, "rob@example.com");
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->has_value());
}

TEST_F(SqliteStoreTest, ResetCodeWithoutSignupFields) {
  PendingCode c;
  c.purpose = CodePurpose::kReset;
  c.email = "bob@example.com";
  c.code_hash = "h";
  c.sent_at = 1;
  c.expires_at = 2;
  ASSERT_TRUE(store_->PutCode(c).ok());
  auto found = store_->FindCode(CodePurpose::kReset, "bob@example.com");
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->purpose, CodePurpose::kReset);
  EXPECT_EQ((*found)->username, "");
}

TEST_F(SqliteStoreTest, PutCodeReplaces) {
  ASSERT_TRUE(store_->PutCode(SignupCode("bob@example.com", 5000)).ok());
  ASSERT_TRUE(store_->ReserveCodeAttempt(CodePurpose::kSignup, "bob@example.com", 5).ok());
  ASSERT_TRUE(store_->ConsumeCode(CodePurpose::kSignup, "bob@example.com", 5000).ok());
  ASSERT_TRUE(store_->PutCode(SignupCode("bob@example.com", 9000)).ok());
  auto found = store_->FindCode(CodePurpose::kSignup, "bob@example.com");
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->code_hash, "hash-9000");
  EXPECT_EQ((*found)->sent_at, 9000);
  EXPECT_EQ((*found)->attempts, 0);
  EXPECT_FALSE((*found)->used);
}

TEST_F(SqliteStoreTest, ReserveCodeAttemptCountsAndStopsAtTheLimit) {
  ASSERT_TRUE(store_->PutCode(SignupCode("bob@example.com", 5000)).ok());
  auto first = store_->ReserveCodeAttempt(CodePurpose::kSignup, "bob@example.com", 2);
  ASSERT_TRUE(first.ok() && first->has_value());
  EXPECT_EQ((*first)->attempts, 1);
  EXPECT_EQ((*first)->code_hash, "hash-5000");
  EXPECT_EQ((*first)->sent_at, 5000);
  EXPECT_EQ((*first)->username, "bob");
  auto second = store_->ReserveCodeAttempt(CodePurpose::kSignup, "bob@example.com", 2);
  ASSERT_TRUE(second.ok() && second->has_value());
  EXPECT_EQ((*second)->attempts, 2);
  // The limit is reached: no code, and nothing more counted.
  auto third = store_->ReserveCodeAttempt(CodePurpose::kSignup, "bob@example.com", 2);
  ASSERT_TRUE(third.ok());
  EXPECT_FALSE(third->has_value());
  EXPECT_EQ((*store_->FindCode(CodePurpose::kSignup, "bob@example.com"))->attempts, 2);
  // No row: nothing.
  auto none = store_->ReserveCodeAttempt(CodePurpose::kReset, "bob@example.com", 5);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  // A used code is not offered either.
  ASSERT_TRUE(store_->PutCode(SignupCode("amy@example.com", 7000)).ok());
  ASSERT_TRUE(*store_->ConsumeCode(CodePurpose::kSignup, "amy@example.com", 7000));
  EXPECT_FALSE(store_->ReserveCodeAttempt(CodePurpose::kSignup, "amy@example.com", 5)->has_value());
}

TEST_F(SqliteStoreTest, PurgeCodesDropsOnlyOlderOnes) {
  ASSERT_TRUE(store_->PutCode(SignupCode("old@example.com", 1000)).ok());
  ASSERT_TRUE(store_->PutCode(SignupCode("new@example.com", 5000)).ok());
  ASSERT_TRUE(store_->PurgeCodes(5000).ok());
  EXPECT_FALSE(store_->FindCode(CodePurpose::kSignup, "old@example.com")->has_value());
  EXPECT_TRUE(store_->FindCode(CodePurpose::kSignup, "new@example.com")->has_value());
}

TEST_F(SqliteStoreTest, ConsumeCodeOnlyOnce) {
  ASSERT_TRUE(store_->PutCode(SignupCode("bob@example.com", 5000)).ok());
  // Another sent_at (a replaced code) is not consumed.
  auto stale = store_->ConsumeCode(CodePurpose::kSignup, "bob@example.com", 4000);
  ASSERT_TRUE(stale.ok());
  EXPECT_FALSE(*stale);
  // Nor is another purpose's.
  auto wrong_purpose = store_->ConsumeCode(CodePurpose::kReset, "bob@example.com", 5000);
  ASSERT_TRUE(wrong_purpose.ok());
  EXPECT_FALSE(*wrong_purpose);

  auto first = store_->ConsumeCode(CodePurpose::kSignup, "bob@example.com", 5000);
  ASSERT_TRUE(first.ok());
  EXPECT_TRUE(*first);
  auto second = store_->ConsumeCode(CodePurpose::kSignup, "bob@example.com", 5000);
  ASSERT_TRUE(second.ok());
  EXPECT_FALSE(*second);
  EXPECT_TRUE((*store_->FindCode(CodePurpose::kSignup, "bob@example.com"))->used);
}

TEST_F(SqliteStoreTest, DeleteCode) {
  ASSERT_TRUE(store_->PutCode(SignupCode("bob@example.com", 5000)).ok());
  PendingCode reset = SignupCode("bob@example.com", 6000);
  reset.purpose = CodePurpose::kReset;
  ASSERT_TRUE(store_->PutCode(reset).ok());
  ASSERT_TRUE(store_->DeleteCode(CodePurpose::kSignup, "bob@example.com").ok());
  EXPECT_FALSE(store_->FindCode(CodePurpose::kSignup, "bob@example.com")->has_value());
  EXPECT_TRUE(store_->FindCode(CodePurpose::kReset, "bob@example.com")->has_value());
  EXPECT_TRUE(store_->DeleteCode(CodePurpose::kSignup, "nobody@example.com").ok());
}

// ---------------------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------------------

TEST_F(SqliteStoreTest, GetOrCreateSettingKeepsTheFirstValue) {
  auto first = store_->GetOrCreateSetting("jwt_secret", "first");
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(*first, "first");
  auto second = store_->GetOrCreateSetting("jwt_secret", "second");
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(*second, "first");
  auto other = store_->GetOrCreateSetting("other", "x");
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(*other, "x");

  // And across a reopen.
  store_.reset();
  store_ = OpenStore();
  ASSERT_NE(store_, nullptr);
  auto after = store_->GetOrCreateSetting("jwt_secret", "third");
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(*after, "first");
}

}  // namespace
}  // namespace mmchat::store::sqlite
