// The load tool's own arithmetic and input: nearest-rank percentiles, the tokens file, the
// /proc readings it reports, and the loopback addresses it connects from.
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

#include "bench/stats.h"
#include "bench/ws_pool.h"
#include "fakes.h"

namespace mmchat::bench {
namespace {

TEST(BenchStatsTest, NearestRankPercentiles) {
  std::vector<double> sample;
  for (int i = 100; i >= 1; --i) sample.push_back(i);  // unsorted on purpose
  const Percentiles p = ComputePercentiles(sample);
  EXPECT_EQ(p.count, 100u);
  EXPECT_EQ(p.p50, 50);
  EXPECT_EQ(p.p90, 90);
  EXPECT_EQ(p.p99, 99);
  EXPECT_EQ(p.max, 100);

  std::vector<double> one{7.5};
  const Percentiles q = ComputePercentiles(one);
  EXPECT_EQ(q.p50, 7.5);
  EXPECT_EQ(q.p99, 7.5);
  std::vector<double> none;
  EXPECT_EQ(ComputePercentiles(none).count, 0u);
  EXPECT_EQ(ComputePercentiles(none).max, 0);
}

TEST(BenchStatsTest, LoadsAccountsAndSkipsMalformedLines) {
  test::TempDir dir;
  const std::string path = dir.File("tokens.txt");
  std::ofstream(path) << "1 alice tok.a\nnot a number line\n\n22 bob tok.b\n3 carol\n";
  const auto accounts = LoadAccounts(path);
  ASSERT_EQ(accounts.size(), 2u);
  EXPECT_EQ(accounts[0].id, 1);
  EXPECT_EQ(accounts[0].username, "alice");
  EXPECT_EQ(accounts[0].token, "tok.a");
  EXPECT_EQ(accounts[1].id, 22);
  EXPECT_TRUE(LoadAccounts(dir.File("missing.txt")).empty());
}

TEST(BenchStatsTest, ReadsThisProcessFromProc) {
  EXPECT_GT(RssKib(getpid()), 0);
  volatile double x = 0;
  for (int i = 0; i < 20'000'000; ++i) x = x + i;  // some CPU time to see
  EXPECT_GT(CpuSeconds(getpid()), 0);
  EXPECT_EQ(RssKib(-5), -1);
  EXPECT_LT(CpuSeconds(-5), 0);
}

TEST(BenchStatsTest, SourceAddressesCycleThroughLoopback) {
  Target t;
  t.source_addresses = 3;
  EXPECT_EQ(SourceAddress(t, 0).to_string(), "127.0.0.1");
  EXPECT_EQ(SourceAddress(t, 2).to_string(), "127.0.0.3");
  EXPECT_EQ(SourceAddress(t, 3).to_string(), "127.0.0.1");
}

}  // namespace
}  // namespace mmchat::bench
