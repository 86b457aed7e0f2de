// bus/redis/redis_send_rate: the GCRA script against a real redis-server, through two nodes'
// buses: a user's burst and rate count over both nodes; the wait it answers is when the next
// message is due; with Redis gone each node counts alone (never refusing for Redis's sake).
#include "bus/redis/redis_send_rate.h"

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <memory>
#include <thread>

#include "test_redis.h"

namespace mmchat::bus::redis {
namespace {

using namespace std::chrono_literals;
using test::WaitUntil;

constexpr double kPerSecond = 2;  // one message every 500 ms
constexpr double kBurst = 3;

struct Node {
  explicit Node(int port) : bus(Options(port), &registry) { bus.Start(); }
  ~Node() { bus.Stop(); }
  static RedisBusOptions Options(int port) {
    RedisBusOptions o;
    o.url.host = "127.0.0.1";
    o.url.port = port;
    return o;
  }
  // Acquire, waited for: 0 or the ms to wait.
  int64_t Take(int64_t user) {
    // Shared: an answer after the wait gave up lands here unread.
    auto answer = std::make_shared<std::promise<int64_t>>();
    auto f = answer->get_future();
    rate.Acquire(user, [answer](int64_t wait_ms) { answer->set_value(wait_ms); });
    if (f.wait_for(5s) != std::future_status::ready) {
      ADD_FAILURE() << "no answer";
      return -1;
    }
    return f.get();
  }

  metrics::Registry registry;
  RedisBus bus;
  domain::LocalSendRate local{kPerSecond, kBurst};
  RedisSendRate rate{&bus, kPerSecond, kBurst, &local};
};

TEST(RedisSendRateTest, AUsersBurstAndRateCountOverEveryNode) {
  test::TestRedis server;
  ASSERT_TRUE(server.ok());
  Node a(server.port()), b(server.port());
  ASSERT_TRUE(WaitUntil([&] { return a.bus.Live() && b.bus.Live(); }));

  // The burst of 3, spent through both nodes; the 4th is refused on either.
  EXPECT_EQ(a.Take(7), 0);
  EXPECT_EQ(b.Take(7), 0);
  EXPECT_EQ(a.Take(7), 0);
  const int64_t wait = b.Take(7);
  EXPECT_GT(wait, 0);
  EXPECT_LE(wait, 500);
  EXPECT_GT(a.Take(7), 0);
  // Another user has a burst of its own.
  EXPECT_EQ(b.Take(8), 0);
  // Once the wait is over, one more (and only one) is allowed.
  std::this_thread::sleep_for(std::chrono::milliseconds(wait + 20));
  EXPECT_EQ(b.Take(7), 0);
  EXPECT_GT(a.Take(7), 0);
  // Each node's own buckets were never used while Redis answered.
  EXPECT_EQ(a.local.TryTake(7), 0);
}

TEST(RedisSendRateTest, WithRedisGoneEachNodeCountsAlone) {
  test::TestRedis server;
  ASSERT_TRUE(server.ok());
  Node a(server.port()), b(server.port());
  ASSERT_TRUE(WaitUntil([&] { return a.bus.Live() && b.bus.Live(); }));
  server.Kill();
  ASSERT_TRUE(WaitUntil([&] { return !a.bus.Live() && !b.bus.Live(); }));
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(a.Take(7), 0);
    EXPECT_EQ(b.Take(7), 0);
  }
  EXPECT_GT(a.Take(7), 0);
  EXPECT_GT(b.Take(7), 0);
}

}  // namespace
}  // namespace mmchat::bus::redis
