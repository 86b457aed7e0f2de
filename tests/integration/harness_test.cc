// The harness's own checks: a test must not pass because its tools looked away. The teardown of
// TestServer (a crash, an error line, a sanitizer report), HttpClient's one retry, and the
// store helpers (StoreIntegrityCheck, StoreContents) on the store of the run.
#include "harness.h"

#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <cstdio>
#include <fstream>
#include <set>
#include <string>
#include <thread>

namespace mmchat::test {
namespace {

namespace net = boost::asio;
using tcp = net::ip::tcp;

// Appends `line` to the server's log, as if the server had written it.
void AppendToLog(const TestServer& server, const std::string& line) {
  std::ofstream(server.dir() / "server.log", std::ios::app) << line << "\n";
}

TEST(HarnessTeardownTest, ADeathTheTestDidNotSeeFails) {
  EXPECT_NONFATAL_FAILURE(
      {
        TestServer server;
        // SIGKILL rather than SIGSEGV: under ASan the latter would also write a report.
        kill(server.pid(), SIGKILL);
        siginfo_t info{};
        waitid(P_PID, server.pid(), &info, WEXITED | WNOWAIT);  // dead, left for the teardown
      },
      "exited by itself during the test, with 137");
}

TEST(HarnessTeardownTest, AnErrorLineFailsUnlessExpected) {
  EXPECT_NONFATAL_FAILURE(
      {
        TestServer server;
        AppendToLog(server, "2026-11-23T10:00:00.123Z error sqlite: disk I/O error");
      },
      "sqlite: disk I/O error");
  TestServer expected({.expected_errors = {"sqlite: disk I/O error"}});
  AppendToLog(expected, "2026-11-23T10:00:00.123Z error sqlite: disk I/O error");
}

TEST(HarnessTeardownTest, ASanitizerReportFailsEvenWhenTheTestStoppedTheServer) {
  EXPECT_NONFATAL_FAILURE(
      {
        TestServer server;
        EXPECT_EQ(server.Stop(SIGKILL), 128 + SIGKILL);
        AppendToLog(server, "==42==ERROR: AddressSanitizer: heap-use-after-free on address 0x1");
      },
      "heap-use-after-free");
}

TEST(HarnessTeardownTest, AServerTheTestStoppedIsNotCheckedAgain) {
  TestServer server;
  EXPECT_EQ(server.Stop(SIGKILL), 128 + SIGKILL);
  AppendToLog(server, "2026-11-23T10:00:00.123Z error provoked by the test");
}

// A one-connection-at-a-time HTTP peer on 127.0.0.1 that answers each request (headers only)
// with `answer`. Requests are numbered from 1 across connections: after those in `close_after`
// it closes the connection; at those in `drop` it closes it without answering.
class FakeHttpPeer {
 public:
  FakeHttpPeer(std::string answer, std::set<int> close_after, std::set<int> drop)
      : acceptor_(ioc_, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0)),
        answer_(std::move(answer)),
        close_after_(std::move(close_after)),
        drop_(std::move(drop)) {
    thread_ = std::thread([this] { Serve(); });
  }
  ~FakeHttpPeer() {
    stop_ = true;
    net::io_context ioc;  // wakes the accept with a connection of our own
    tcp::socket s(ioc);
    boost::system::error_code ec;
    s.connect(acceptor_.local_endpoint(), ec);
    thread_.join();
  }
  uint16_t port() const { return acceptor_.local_endpoint().port(); }
  int requests() const { return requests_.load(); }
  int closed() const { return closed_.load(); }

 private:
  void Serve() {
    while (!stop_) {
      tcp::socket s(ioc_);
      boost::system::error_code ec;
      acceptor_.accept(s, ec);
      if (ec || stop_) return;
      net::streambuf buf;
      for (;;) {
        const size_t n = net::read_until(s, buf, "\r\n\r\n", ec);
        if (ec) break;
        buf.consume(n);
        const int request = ++requests_;
        if (drop_.contains(request)) break;
        net::write(s, net::buffer(answer_), ec);
        if (ec || close_after_.contains(request)) break;
      }
      s.close(ec);
      ++closed_;
    }
  }

  net::io_context ioc_;
  tcp::acceptor acceptor_;
  const std::string answer_;
  const std::set<int> close_after_;
  const std::set<int> drop_;
  std::atomic<int> requests_{0};
  std::atomic<int> closed_{0};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

const std::string kOk = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";

TEST(HarnessHttpClientTest, ConnectionClosedWhileIdleIsReopened) {
  // The first connection answers one request and closes: the next request goes out on a new
  // connection, as nothing of it was written on the old one.
  FakeHttpPeer peer(kOk, /*close_after=*/{1}, /*drop=*/{});
  HttpClient client(peer.port());
  EXPECT_EQ(client.Get("/a").status, 200);
  ASSERT_TRUE(Eventually([&] { return peer.closed() == 1; }));
  EXPECT_EQ(client.Get("/b").status, 200);
  EXPECT_EQ(peer.requests(), 2);
}

TEST(HarnessHttpClientTest, RequestIsNotSentTwiceWhenTheAnswerFails) {
  // The peer reads the request and closes without answering: a failure, not a second send.
  FakeHttpPeer peer(kOk, /*close_after=*/{}, /*drop=*/{1});
  HttpClient client(peer.port());
  EXPECT_THROW(client.Post("/api/messages", {{"content", "once"}}), std::runtime_error);
  EXPECT_EQ(peer.requests(), 1);
  // Nor on a kept-alive connection: the first request is answered, the second is not.
  FakeHttpPeer keeps_one(kOk, /*close_after=*/{}, /*drop=*/{2});
  HttpClient again(keeps_one.port());
  EXPECT_EQ(again.Get("/a").status, 200);
  EXPECT_THROW(again.Post("/api/messages", {{"content", "once"}}), std::runtime_error);
  EXPECT_EQ(keeps_one.requests(), 2);
}

// ---------------------------------------------------------------------------------------------
// Store helpers
// ---------------------------------------------------------------------------------------------

// A migrated database of a directory of its own (StoreEnv), with a table of the test's: two
// rows and an index.
class HarnessStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const RunResult migrated = RunBinary({"--migrate"}, StoreEnv(dir_), dir_);
    ASSERT_EQ(migrated.exit_code, 0) << migrated.output;
    QueryStore(dir_, "CREATE TABLE probe (a INTEGER, b TEXT)");
    QueryStore(dir_, "CREATE INDEX probe_a ON probe (a)");
    QueryStore(dir_, "INSERT INTO probe VALUES (1, 'first row'), (2, 'second row')");
  }
  const TempDir scratch_;
  const std::filesystem::path dir_ = scratch_.path();
};

TEST_F(HarnessStoreTest, IntegrityCheckFindsARowMissingFromAnIndex) {
  ASSERT_EQ(StoreIntegrityCheck(dir_), "ok");
  if (OnPostgres()) {
    // A row inserted while the index is not maintained (each QueryStore is a new session).
    QueryStore(dir_,
               "UPDATE pg_index SET indisready = false WHERE indexrelid = 'probe_a'::regclass");
    QueryStore(dir_, "INSERT INTO probe VALUES (3, 'third row')");
    QueryStore(dir_,
               "UPDATE pg_index SET indisready = true WHERE indexrelid = 'probe_a'::regclass");
  } else {
    // The index is redefined behind SQLite's back: its entries hold `a`, the table's rows say
    // they should hold `b`.
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((dir_ / "chat.db").c_str(), &db), SQLITE_OK);
    EXPECT_EQ(sqlite3_exec(db,
                           "PRAGMA writable_schema = ON; UPDATE sqlite_master SET sql = 'CREATE "
                           "INDEX probe_a ON probe (b)' WHERE name = 'probe_a'",
                           nullptr, nullptr, nullptr),
              SQLITE_OK)
        << sqlite3_errmsg(db);
    sqlite3_close(db);
  }
  const std::string problems = StoreIntegrityCheck(dir_);
  EXPECT_NE(problems, "ok");
  EXPECT_NE(problems.find("probe_a"), std::string::npos) << problems;
}

TEST_F(HarnessStoreTest, ContentsHoldEveryTablesRows) {
  const auto tables = StoreTables(dir_);
  EXPECT_TRUE(std::find(tables.begin(), tables.end(), "probe") != tables.end());
  EXPECT_TRUE(std::find(tables.begin(), tables.end(), "users") != tables.end());
  QueryStore(dir_, "INSERT INTO settings (key, value) VALUES ('probe key', 'a stored value')");
  const std::string contents = StoreContents(dir_);
  for (const char* stored : {"first row", "second row", "probe key", "a stored value"}) {
    EXPECT_NE(contents.find(stored), std::string::npos) << stored;
  }
  EXPECT_EQ(contents.find("third row"), std::string::npos);
}

}  // namespace
}  // namespace mmchat::test
