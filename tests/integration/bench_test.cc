// mmchat-bench end to end at tiny sizes: provisioning with `mmchat user add`, then each
// scenario against the real server. Proves the tool works; speed is in BENCHMARKS.md, not here.
#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "bench/stats.h"
#include "harness.h"

namespace mmchat::test {
namespace {

// The last line of the tool's output that parses as a JSON object (its summary line).
Json SummaryLine(const std::string& output) {
  std::istringstream in(output);
  std::string line;
  Json last;
  while (std::getline(in, line)) {
    Json j = Json::parse(line, nullptr, false);
    if (j.is_object()) last = j;
  }
  return last;
}

class BenchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // On the running server's database (either store), with its secret.
    auto env = StoreEnv(server_.dir());
    env["JWT_SECRET"] = "integration-test-secret-0123456789";
    const RunResult added = RunBinary({"user", "add", "--count", "6", "--prefix", "bench",
                                       "--password", "benchpass1", "--tokens", "tokens.txt"},
                                      env, server_.dir());
    ASSERT_EQ(added.exit_code, 0) << added.output;
  }
  RunResult Bench(std::vector<std::string> args) {
    args.insert(args.end(), {"--port", std::to_string(server_.port()), "--tokens", "tokens.txt"});
    return RunProgram(BenchBinary(), args, {}, server_.dir());
  }

  TestServer server_{ServerOptions{.env = kNoAbuseLimits}};
};

TEST_F(BenchTest, IdleHoldsConnectionsAndReportsServerMemory) {
  const RunResult r = Bench({"idle", "--steps", "3,12", "--settle-sec", "0.2", "--server-pid",
                             std::to_string(server_.pid())});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const Json summary = SummaryLine(r.output);
  ASSERT_TRUE(summary.is_object()) << r.output;
  EXPECT_EQ(summary["scenario"], "idle");
  ASSERT_EQ(summary["steps"].size(), 2u) << r.output;
  EXPECT_EQ(summary["steps"][0]["connections"], 3);
  EXPECT_EQ(summary["steps"][1]["connections"], 12);
  EXPECT_EQ(summary["steps"][1]["failed"], 0);
  EXPECT_GT(summary["steps"][1]["server_rss_kib"].get<int64_t>(), 0);
}

TEST_F(BenchTest, FanoutDeliversEveryAckedMessageToTheOtherMembers) {
  const RunResult r =
      Bench({"fanout", "--groups", "2", "--members", "3", "--senders", "1", "--duration-sec", "0.5",
             "--server-pid", std::to_string(server_.pid())});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const Json summary = SummaryLine(r.output);
  ASSERT_TRUE(summary.is_object()) << r.output;
  EXPECT_EQ(summary["scenario"], "fanout");
  const int64_t acked = summary["messages_acked"].get<int64_t>();
  EXPECT_GT(acked, 0) << r.output;
  EXPECT_EQ(summary["deliveries"].get<int64_t>(), acked * 2) << r.output;  // 2 other members
  EXPECT_EQ(summary["lost"], 0);
  EXPECT_GE(summary["latency_ms"]["max"].get<double>(), summary["latency_ms"]["p50"].get<double>());
}

TEST_F(BenchTest, FanoutWithTooFewAccountsIsRefused) {
  const RunResult r = Bench({"fanout", "--groups", "3", "--members", "3"});
  EXPECT_EQ(r.exit_code, 2) << r.output;
}

TEST_F(BenchTest, DirectDeliversEveryAckedMessageToTheOtherUser) {
  const RunResult r = Bench({"direct", "--pairs", "3", "--window", "2", "--duration-sec", "0.5",
                             "--server-pid", std::to_string(server_.pid())});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const Json summary = SummaryLine(r.output);
  ASSERT_TRUE(summary.is_object()) << r.output;
  EXPECT_EQ(summary["scenario"], "direct");
  EXPECT_EQ(summary["senders"], 6);
  const int64_t acked = summary["messages_acked"].get<int64_t>();
  EXPECT_GT(acked, 0) << r.output;
  EXPECT_EQ(summary["deliveries"].get<int64_t>(), acked) << r.output;  // one other user each
  EXPECT_EQ(summary["lost"], 0);
  EXPECT_EQ(summary["messages_unacked"], 0);
  EXPECT_GE(summary["latency_ms"]["max"].get<double>(), summary["latency_ms"]["p50"].get<double>());
  EXPECT_GE(summary["server_cpu_percent"].get<double>(), 0);
}

TEST_F(BenchTest, DirectWithTooFewAccountsIsRefused) {
  const RunResult r = Bench({"direct", "--pairs", "4"});
  EXPECT_EQ(r.exit_code, 2) << r.output;
}

TEST_F(BenchTest, PersistAcksOnlyCommittedMessages) {
  const RunResult r = Bench({"persist", "--senders", "4", "--window", "2", "--duration-sec", "0.5",
                             "--label", "FULL", "--server-pid", std::to_string(server_.pid())});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const Json summary = SummaryLine(r.output);
  ASSERT_TRUE(summary.is_object()) << r.output;
  EXPECT_EQ(summary["scenario"], "persist");
  EXPECT_EQ(summary["label"], "FULL");
  EXPECT_NE(r.output.find("FULL "), std::string::npos) << r.output;  // in the table too
  EXPECT_EQ(summary["errors"], 0);
  const int64_t acked = summary["messages_acked"].get<int64_t>();
  EXPECT_GT(acked, 0) << r.output;
  EXPECT_GE(summary["ack_latency_ms"]["max"].get<double>(),
            summary["ack_latency_ms"]["p50"].get<double>());
  // Every acked message is in the database: the senders' conversations hold that many.
  HttpClient http(server_.port());
  int64_t stored = 0;
  const auto accounts = bench::LoadAccounts((server_.dir() / "tokens.txt").string());
  for (size_t i = 0; i < 4; ++i) {
    const HttpResult list = http.Get("/api/conversations", accounts[i].token);
    ASSERT_EQ(list.status, 200) << list.body;
    ASSERT_EQ(list.json["conversations"].size(), 1u) << list.body;  // a group of its own
    stored += list.json["conversations"][0]["last_message"]["seq"].get<int64_t>();
  }
  EXPECT_EQ(stored, acked);
}

TEST_F(BenchTest, SearchLoadsTheStoreThenSearchesIt) {
  const RunResult r =
      Bench({"search", "--messages", "400", "--conversations", "4", "--visible-every", "2",
             "--connections", "2", "--search-sec", "0.5", "--vocabulary", "50"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const Json summary = SummaryLine(r.output);
  ASSERT_TRUE(summary.is_object()) << r.output;
  EXPECT_EQ(summary["scenario"], "search");
  EXPECT_EQ(summary["messages_loaded"], 400);
  EXPECT_GT(summary["searches"].get<int64_t>(), 0) << r.output;
  EXPECT_EQ(summary["non_2xx"], 0);
  EXPECT_EQ(summary["errors"], 0);
  // The searcher (the first account) is in groups 0 and 2 of the four: every message starts
  // with the tool's marker word, and what it finds is only theirs.
  const auto accounts = bench::LoadAccounts((server_.dir() / "tokens.txt").string());
  HttpClient http(server_.port());
  const HttpResult mine = http.Get("/api/conversations", accounts[0].token);
  ASSERT_EQ(mine.status, 200) << mine.body;
  ASSERT_EQ(mine.json["conversations"].size(), 2u) << mine.body;
  std::set<int64_t> visible;
  for (const auto& c : mine.json["conversations"]) visible.insert(c["id"].get<int64_t>());
  const HttpResult found = http.Get("/api/search?q=bench&limit=100", accounts[0].token);
  ASSERT_EQ(found.status, 200) << found.body;
  ASSERT_EQ(found.json["messages"].size(), 100u);
  for (const auto& m : found.json["messages"]) {
    EXPECT_TRUE(visible.contains(m["conversation_id"].get<int64_t>())) << m.dump();
  }
}

TEST_F(BenchTest, HttpSmallGetsAreAllAnswered) {
  const RunResult r = Bench({"http", "--kind", "small", "--connections", "4", "--duration-sec",
                             "0.3", "--server-pid", std::to_string(server_.pid())});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const Json summary = SummaryLine(r.output);
  ASSERT_TRUE(summary.is_object()) << r.output;
  EXPECT_EQ(summary["scenario"], "http");
  EXPECT_EQ(summary["path"], "/api/me");
  EXPECT_GT(summary["requests"].get<int64_t>(), 0) << r.output;
  EXPECT_EQ(summary["non_2xx"], 0);
  EXPECT_EQ(summary["errors"], 0);
  EXPECT_GE(summary["latency_ms"]["max"].get<double>(), summary["latency_ms"]["p50"].get<double>());
}

TEST_F(BenchTest, HttpHistoryReadsFullPages) {
  const RunResult r = Bench({"http", "--kind", "history", "--connections", "4", "--threads", "2",
                             "--duration-sec", "0.3"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const Json summary = SummaryLine(r.output);
  ASSERT_TRUE(summary.is_object()) << r.output;
  EXPECT_EQ(summary["kind"], "history");
  EXPECT_GT(summary["requests"].get<int64_t>(), 0) << r.output;
  EXPECT_EQ(summary["non_2xx"], 0);
  EXPECT_EQ(summary["errors"], 0);
  EXPECT_GT(summary["body_bytes_per_response"].get<int64_t>(), 50 * 100);  // 50 messages
  EXPECT_EQ(summary["server_cpu_percent"], -1);                            // no --server-pid
}

// The tool puts the first user in the conversations itself, half private and half groups, each
// with one message, half of them from another member; every connection then lists them.
TEST_F(BenchTest, HttpConversationsListsEveryConversation) {
  const RunResult r =
      Bench({"http", "--kind", "conversations", "--conversations", "10", "--connections", "3",
             "--duration-sec", "0.3", "--server-pid", std::to_string(server_.pid())});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const Json summary = SummaryLine(r.output);
  ASSERT_TRUE(summary.is_object()) << r.output;
  EXPECT_EQ(summary["kind"], "conversations");
  EXPECT_EQ(summary["path"], "/api/conversations");
  EXPECT_GT(summary["requests"].get<int64_t>(), 0) << r.output;
  EXPECT_EQ(summary["non_2xx"], 0);
  EXPECT_EQ(summary["errors"], 0);
  EXPECT_GT(summary["body_bytes_per_response"].get<int64_t>(), 10 * 100);  // 10 last messages
  EXPECT_EQ(summary["conversations"],
            (Json{{"total", 10}, {"private", 5}, {"groups", 5}, {"unread", 4}}));

  // What the measured user (the first account) sees.
  const auto accounts = bench::LoadAccounts((server_.dir() / "tokens.txt").string());
  HttpClient http(server_.port());
  const HttpResult list = http.Get("/api/conversations", accounts[0].token);
  ASSERT_EQ(list.status, 200) << list.body;
  ASSERT_EQ(list.json["conversations"].size(), 10u) << list.body;
  int privates = 0, unread = 0;
  std::multiset<size_t> group_sizes;
  for (const Json& c : list.json["conversations"]) {
    EXPECT_TRUE(c["last_message"].is_object()) << c.dump();
    unread += c["unread_count"].get<int>();
    if (c["type"] == "private") {
      ++privates;
      EXPECT_EQ(c["participants"].size(), 2u);
    } else {
      group_sizes.insert(c["participants"].size());
    }
  }
  EXPECT_EQ(privates, 5);
  EXPECT_EQ(unread, 4);  // one message each
  // 3, 4, 5, 6 and 7 members, but there are only 6 accounts.
  EXPECT_EQ(group_sizes, (std::multiset<size_t>{3, 4, 5, 6, 6}));
}

// Private conversations need a partner each: 12 conversations, 6 of them private, need 7.
TEST_F(BenchTest, HttpConversationsWithTooFewAccountsIsRefused) {
  const RunResult r = Bench({"http", "--kind", "conversations", "--conversations", "12"});
  EXPECT_EQ(r.exit_code, 2) << r.output;
}

// Tokens the server refuses (here: signed with another secret) make every connection fail.
// The run still ends, reporting the failures, also past its first step (an earlier version
// spun forever once every connection of a step had failed).
TEST_F(BenchTest, IdleWithRefusedTokensEndsAndReportsTheFailures) {
  std::ofstream out(server_.dir() / "stale.txt");
  out << "1 nobody eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl\n";
  out.close();
  const RunResult r = RunProgram(
      BenchBinary(),
      {"idle", "--port", std::to_string(server_.port()), "--tokens", "stale.txt", "--steps", "3,6",
       "--settle-sec", "0.1", "--server-pid", std::to_string(server_.pid())},
      {}, server_.dir());
  EXPECT_EQ(r.exit_code, 1) << r.output;
  const Json summary = SummaryLine(r.output);
  ASSERT_TRUE(summary.is_object()) << r.output;
  ASSERT_EQ(summary["steps"].size(), 2u) << r.output;
  EXPECT_EQ(summary["steps"][1]["connections"], 0);
  EXPECT_EQ(summary["steps"][1]["failed"], 6);
}

TEST_F(BenchTest, BadTokensFileIsRefused) {
  std::ofstream(server_.dir() / "empty.txt") << "";
  const RunResult r = RunProgram(BenchBinary(),
                                 {"idle", "--port", std::to_string(server_.port()), "--tokens",
                                  "empty.txt", "--server-pid", std::to_string(server_.pid())},
                                 {}, server_.dir());
  EXPECT_EQ(r.exit_code, 2) << r.output;
}

}  // namespace
}  // namespace mmchat::test
