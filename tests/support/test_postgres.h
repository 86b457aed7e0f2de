// PostgreSQL for the tests: the private server scripts/with-postgres.sh starts (its URL, a
// fresh database per test, dropped afterwards, raw SQL behind the server's back), and servers
// of a test's own that it may stop and start (scripts/pg-server.sh) without disturbing the
// tests running beside it. Shared by the unit and integration tests.
#pragma once

#include <libpq-fe.h>

#include <memory>
#include <string>
#include <vector>

namespace mmchat::test {

// The server's URL (MMCHAT_TEST_DATABASE_URL), or "" with a test failure saying how to get
// one when the tests were started without it.
std::string TestPostgresUrl();
// `url` with its database name replaced.
std::string WithDatabase(const std::string& url, const std::string& database);

// A raw libpq connection for a test's own statements; null (with a test failure) when it
// cannot open.
using PgConn = std::unique_ptr<PGconn, decltype(&PQfinish)>;
PgConn ConnectTo(const std::string& url);
// Every row of `sql` on `conn`, each column as text ("NULL" for NULL); a failure is a test
// failure.
std::vector<std::vector<std::string>> Rows(PGconn* conn, const std::string& sql);

// Creates a database on the test server; its URL ("" with a test failure when it cannot).
std::string CreateTestDatabase(const std::string& name);
// Drops it, ending any session still on it.
void DropTestDatabase(const std::string& name);
// Every row of `sql` on the database at `url`, each column as text ("NULL" for NULL); a
// failure is a test failure.
std::vector<std::vector<std::string>> QueryAt(const std::string& url, const std::string& sql);
// A name no other test of any process uses: `prefix`, the process id and a counter.
std::string UniqueDatabaseName(const std::string& prefix);

// A database of its own on the test server, created now and dropped (with any session still
// on it) when this ends, unless `keep` says to leave it for a look after a failure.
class TestDatabase {
 public:
  TestDatabase();
  ~TestDatabase();
  TestDatabase(const TestDatabase&) = delete;
  TestDatabase& operator=(const TestDatabase&) = delete;

  // Empty when there is no test server (the failure is already reported).
  const std::string& url() const { return url_; }
  const std::string& name() const { return name_; }
  // Every row of `sql`, each column as text ("NULL" for NULL); a failure is a test failure.
  std::vector<std::vector<std::string>> Query(const std::string& sql) const;
  // The first column of the first row ("" for no row).
  std::string QueryOne(const std::string& sql) const;

 private:
  std::string name_;
  std::string url_;
};

// A PostgreSQL server of one test's own, in a temporary directory: initialized and started
// now (a second or two), destroyed with this object.
class PrivatePostgres {
 public:
  PrivatePostgres();
  ~PrivatePostgres();
  PrivatePostgres(const PrivatePostgres&) = delete;
  PrivatePostgres& operator=(const PrivatePostgres&) = delete;

  // The superuser's URL to its `postgres` database ("" when it could not start).
  const std::string& url() const { return url_; }
  // `stop fast`, `stop immediate` (a crash) or `start`; false (with a test failure) on error.
  bool Control(const std::string& args);

 private:
  std::string dir_;
  std::string url_;
};

}  // namespace mmchat::test
