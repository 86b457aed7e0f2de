// The building blocks of the abuse limits: token buckets by key and connection leases.
#include <gtest/gtest.h>

#include <boost/asio/ip/address.hpp>
#include <string>
#include <vector>

#include "common/rate_limiter.h"
#include "http/connection_limits.h"

namespace mmchat {
namespace {

TEST(RateLimiterTest, AllowsTheBurstThenRefusesWithTheWaitUntilTheNextToken) {
  RateLimiter<int> limiter(/*per_second=*/2, /*burst=*/3);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(limiter.TryTake(7, 1000), 0) << i;
  EXPECT_NEAR(limiter.TryTake(7, 1000), 500, 1);  // 2 per second: one token every 500 ms
  EXPECT_NEAR(limiter.TryTake(7, 1200), 300, 1);  // refused attempts spend nothing
  EXPECT_EQ(limiter.TryTake(7, 1500), 0);
  EXPECT_NEAR(limiter.TryTake(7, 1500), 500, 1);
}

TEST(RateLimiterTest, KeysHaveTheirOwnBuckets) {
  RateLimiter<std::string> limiter(1, 1);
  EXPECT_EQ(limiter.TryTake("a", 0), 0);
  EXPECT_GT(limiter.TryTake("a", 0), 0);
  EXPECT_EQ(limiter.TryTake("b", 0), 0);
}

TEST(RateLimiterTest, RefillStopsAtTheBurst) {
  RateLimiter<int> limiter(10, 2);
  EXPECT_EQ(limiter.TryTake(1, 0), 0);
  // An hour idle gives back the burst, not 36,000 tokens.
  for (int i = 0; i < 2; ++i) EXPECT_EQ(limiter.TryTake(1, 3'600'000), 0) << i;
  EXPECT_GT(limiter.TryTake(1, 3'600'000), 0);
}

TEST(RateLimiterTest, ZeroRateIsUnlimited) {
  RateLimiter<int> limiter(0, 1);
  EXPECT_FALSE(limiter.enabled());
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(limiter.TryTake(1, 0), 0);
  EXPECT_EQ(limiter.keys(), 0u);
}

TEST(RateLimiterTest, ForgetsKeysWhoseBucketRefilled) {
  RateLimiter<int> limiter(1, 1);
  for (int k = 0; k < 5000; ++k) limiter.TryTake(k, 0);
  EXPECT_GE(limiter.keys(), 1024u);
  // Much later every bucket is full again: the next prune drops them all.
  for (int k = 5000; k < 10000; ++k) limiter.TryTake(k, 1'000'000);
  EXPECT_LE(limiter.keys(), 5000u);  // 10,000 if none were forgotten
}

TEST(RateLimiterTest, ATimeGoingBackwardsGivesNoExtraTokens) {
  RateLimiter<int> limiter(1, 1);
  EXPECT_EQ(limiter.TryTake(1, 10'000), 0);
  EXPECT_GT(limiter.TryTake(1, 5'000), 0);
  EXPECT_GT(limiter.TryTake(1, 10'500), 0);
  EXPECT_EQ(limiter.TryTake(1, 11'000), 0);
}

using http::ConnectionLimits;
const auto kA = boost::asio::ip::make_address("192.0.2.1");
const auto kB = boost::asio::ip::make_address("2001:db8::1");

TEST(ConnectionLimitsTest, PerAddressLimitAndReleaseOnDestruction) {
  ConnectionLimits limits(/*max_total=*/0, /*max_per_address=*/2);
  ConnectionLimits::Refusal why;
  auto a1 = limits.Acquire(kA, &why);
  auto a2 = limits.Acquire(kA, &why);
  EXPECT_TRUE(a1 && a2);
  EXPECT_EQ(a1.address(), kA);
  auto a3 = limits.Acquire(kA, &why);
  EXPECT_FALSE(a3);
  EXPECT_EQ(why, ConnectionLimits::Refusal::kPerAddress);
  auto b1 = limits.Acquire(kB, &why);
  EXPECT_TRUE(b1);
  EXPECT_EQ(limits.open(), 3u);
  {
    ConnectionLimits::Lease moved = std::move(a1);  // a move keeps one place, not two
    EXPECT_FALSE(a1);
    EXPECT_EQ(limits.open(), 3u);
  }
  EXPECT_EQ(limits.open(), 2u);
  EXPECT_TRUE(limits.Acquire(kA, &why));
  EXPECT_EQ(why, ConnectionLimits::Refusal::kNone);
}

TEST(ConnectionLimitsTest, TotalLimit) {
  ConnectionLimits limits(/*max_total=*/2, /*max_per_address=*/0);
  ConnectionLimits::Refusal why;
  std::vector<ConnectionLimits::Lease> held;
  held.push_back(limits.Acquire(kA, &why));
  held.push_back(limits.Acquire(kB, &why));
  EXPECT_FALSE(limits.Acquire(kA, &why));
  EXPECT_EQ(why, ConnectionLimits::Refusal::kTotal);
  held.clear();
  EXPECT_EQ(limits.open(), 0u);
  EXPECT_TRUE(limits.Acquire(kA, &why));
}

}  // namespace
}  // namespace mmchat
