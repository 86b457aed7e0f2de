// The private PostgreSQL server scripts/with-postgres.sh starts for the tests: its URL, a
// fresh database per test (dropped afterwards), raw SQL behind the server's back, and
// stopping and starting the server for the outage tests. Shared by the unit and integration
// tests.
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace mmchat::test {

// The server's URL (MMCHAT_TEST_DATABASE_URL), or "" with a test failure saying how to get
// one when the tests were started without it.
std::string TestPostgresUrl();
// `url` with its database name replaced.
std::string WithDatabase(const std::string& url, const std::string& database);

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
  std::string admin_url_;
  std::string name_;
  std::string url_;
};

// Runs the test server's control script (`stop fast`, `stop immediate`, `start`); false (with
// a test failure) when it fails or there is none.
bool PgCtl(const std::string& args);

}  // namespace mmchat::test
