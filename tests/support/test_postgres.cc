#include "test_postgres.h"

#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

namespace mmchat::test {
PgConn ConnectTo(const std::string& url) {
  PgConn conn(PQconnectdb(url.c_str()), PQfinish);
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    ADD_FAILURE() << "cannot connect to the test PostgreSQL: " << PQerrorMessage(conn.get());
    return {nullptr, PQfinish};
  }
  PQsetNoticeProcessor(
      conn.get(), [](void*, const char*) {}, nullptr);
  return conn;
}

std::vector<std::vector<std::string>> Rows(PGconn* conn, const std::string& sql) {
  std::vector<std::vector<std::string>> out;
  PGresult* r = PQexec(conn, sql.c_str());
  const auto st = PQresultStatus(r);
  if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
    ADD_FAILURE() << sql << ": " << PQresultErrorMessage(r);
  } else if (st == PGRES_TUPLES_OK) {
    for (int i = 0; i < PQntuples(r); ++i) {
      auto& row = out.emplace_back();
      for (int j = 0; j < PQnfields(r); ++j) {
        row.push_back(PQgetisnull(r, i, j) ? "NULL" : PQgetvalue(r, i, j));
      }
    }
  }
  PQclear(r);
  return out;
}

std::string TestPostgresUrl() {
  const char* url = std::getenv("MMCHAT_TEST_DATABASE_URL");
  if (url == nullptr || *url == '\0') {
    ADD_FAILURE() << "MMCHAT_TEST_DATABASE_URL is not set: the PostgreSQL tests need the server "
                     "that scripts/with-postgres.sh starts (scripts/test.sh does it; by hand: "
                     "scripts/with-postgres.sh ctest --test-dir build ...)";
    return "";
  }
  return url;
}

std::string WithDatabase(const std::string& url, const std::string& database) {
  const size_t scheme = url.find("://");
  const size_t slash = url.find('/', scheme == std::string::npos ? 0 : scheme + 3);
  if (slash == std::string::npos) return url + "/" + database;
  const size_t query = url.find('?', slash);
  return url.substr(0, slash + 1) + database +
         (query == std::string::npos ? "" : url.substr(query));
}

std::string CreateTestDatabase(const std::string& name) {
  const std::string admin_url = TestPostgresUrl();
  if (admin_url.empty()) return "";
  auto admin = ConnectTo(admin_url);
  if (!admin) return "";
  PGresult* r = PQexec(admin.get(), ("CREATE DATABASE " + name).c_str());
  const bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
  if (!ok) ADD_FAILURE() << "CREATE DATABASE " << name << ": " << PQresultErrorMessage(r);
  PQclear(r);
  return ok ? WithDatabase(admin_url, name) : "";
}

void DropTestDatabase(const std::string& name) {
  const std::string admin_url = TestPostgresUrl();
  if (admin_url.empty()) return;
  if (auto admin = ConnectTo(admin_url)) {
    Rows(admin.get(), "DROP DATABASE IF EXISTS " + name + " WITH (FORCE)");
  }
}

std::vector<std::vector<std::string>> QueryAt(const std::string& url, const std::string& sql) {
  auto conn = ConnectTo(url);
  return conn ? Rows(conn.get(), sql) : std::vector<std::vector<std::string>>{};
}

std::string UniqueDatabaseName(const std::string& prefix) {
  static std::atomic<int> counter{0};
  return prefix + std::to_string(getpid()) + "_" + std::to_string(++counter);
}

TestDatabase::TestDatabase() : name_(UniqueDatabaseName("mmchat_t")) {
  url_ = CreateTestDatabase(name_);
}

TestDatabase::~TestDatabase() {
  if (url_.empty()) return;
  if (::testing::Test::HasFailure()) {
    std::fprintf(stderr, "kept database %s\n", name_.c_str());
    return;
  }
  DropTestDatabase(name_);
}

std::vector<std::vector<std::string>> TestDatabase::Query(const std::string& sql) const {
  if (url_.empty()) return {};
  return QueryAt(url_, sql);
}

std::string TestDatabase::QueryOne(const std::string& sql) const {
  auto rows = Query(sql);
  return rows.empty() || rows[0].empty() ? "" : rows[0][0];
}

PrivatePostgres::PrivatePostgres() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "mmchat-pg-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp failed";
    return;
  }
  dir_ = tmpl;
  const std::string init = std::string(PG_SERVER_SCRIPT) + " init '" + dir_ + "'";
  FILE* out = popen(init.c_str(), "r");
  char line[512] = {};
  if (out == nullptr || fgets(line, sizeof line, out) == nullptr || pclose(out) != 0) {
    ADD_FAILURE() << init << " failed";
    return;
  }
  url_ = line;
  while (!url_.empty() && (url_.back() == '\n' || url_.back() == '\r')) url_.pop_back();
  if (!Control("start")) url_.clear();
}

PrivatePostgres::~PrivatePostgres() {
  if (dir_.empty()) return;
  const std::string destroy = std::string(PG_SERVER_SCRIPT) + " destroy '" + dir_ + "'";
  if (std::system(destroy.c_str()) != 0) std::fprintf(stderr, "%s failed\n", destroy.c_str());
}

bool PrivatePostgres::Control(const std::string& args) {
  const std::string cmd = std::string(PG_SERVER_SCRIPT) + " " + args.substr(0, args.find(' ')) +
                          " '" + dir_ + "'" +
                          (args.find(' ') == std::string::npos ? "" : args.substr(args.find(' ')));
  const int rc = std::system(cmd.c_str());
  if (rc != 0) ADD_FAILURE() << cmd << " failed (" << rc << ")";
  return rc == 0;
}

}  // namespace mmchat::test
