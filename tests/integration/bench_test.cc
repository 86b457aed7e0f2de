// mmchat-bench end to end at tiny sizes: provisioning with `mmchat user add`, then each
// scenario against the real server. Proves the tool works; speed is in BENCHMARKS.md, not here.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

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
    const RunResult added = RunBinary({"user", "add", "--count", "6", "--prefix", "bench",
                                       "--password", "benchpass1", "--tokens", "tokens.txt"},
                                      {{"SQLITE_DSN", server_.db_path().string()},
                                       {"JWT_SECRET", "integration-test-secret-0123456789"}},
                                      server_.dir());
    ASSERT_EQ(added.exit_code, 0) << added.output;
  }
  RunResult Bench(std::vector<std::string> args) {
    args.insert(args.end(), {"--port", std::to_string(server_.port()), "--tokens", "tokens.txt"});
    return RunProgram(MMCHAT_BENCH_BINARY, args, {}, server_.dir());
  }

  TestServer server_;
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

TEST_F(BenchTest, BadTokensFileIsRefused) {
  std::ofstream(server_.dir() / "empty.txt") << "";
  const RunResult r = RunProgram(MMCHAT_BENCH_BINARY,
                                 {"idle", "--port", std::to_string(server_.port()), "--tokens",
                                  "empty.txt", "--server-pid", std::to_string(server_.pid())},
                                 {}, server_.dir());
  EXPECT_EQ(r.exit_code, 2) << r.output;
}

}  // namespace
}  // namespace mmchat::test
