// bus/redis/redis_presence: the Lua scripts against a real redis-server, through two
// nodes' buses: crossings reported once, in version order; a node that stops renewing is
// reaped by the others exactly once, with its last renewal as last_seen; a node that comes
// back registers what it has.
#include "bus/redis/redis_presence.h"

#include <gtest/gtest.h>

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "common/time.h"
#include "test_redis.h"

namespace mmchat::bus::redis {
namespace {

using namespace std::chrono_literals;
using test::WaitUntil;

// A node: its bus, its directory, the users it says it has, and the crossings it was told.
struct Node {
  Node(int port, const std::string& name) : bus(Options(port), &registry) {
    presence = std::make_unique<RedisPresence>(
        &bus, name, RedisPresenceOptions{.ttl = 900ms, .reap_interval = 100ms});
    presence->Start(
        [this] {
          std::lock_guard lock(mu);
          return local;
        },
        [this](std::function<void()> task) { boost::asio::post(turn, std::move(task)); },
        [this](int64_t user, TimeMs last_seen, int64_t version) {
          std::lock_guard lock(mu);
          gone.push_back({user, last_seen, version});
        },
        [this](int64_t user, int64_t version) {
          std::lock_guard lock(mu);
          back.push_back({user, 0, version});
        });
    bus.Start();
  }
  // Stopped before any member goes: no callback runs after.
  ~Node() {
    bus.Stop();
    turn.join();
  }
  static RedisBusOptions Options(int port) {
    RedisBusOptions o;
    o.url.host = "127.0.0.1";
    o.url.port = port;
    return o;
  }
  struct Change {
    int64_t user;
    TimeMs at;
    int64_t version;
  };
  std::vector<Change> Gone() {
    std::lock_guard lock(mu);
    return gone;
  }

  metrics::Registry registry;
  std::mutex mu;
  std::vector<int64_t> local;        // guarded by mu
  std::vector<Change> gone;          // guarded by mu
  std::vector<Change> back;          // guarded by mu
  boost::asio::thread_pool turn{1};  // the hub's presence strand, here
  RedisBus bus;
  std::unique_ptr<RedisPresence> presence;
};

TEST(RedisPresenceTest, OnlyTheFirstOpenAndTheLastCloseAnywhereCross) {
  test::TestRedis server;
  ASSERT_TRUE(server.ok());
  Node a(server.port(), "a"), b(server.port(), "b");
  ASSERT_TRUE(WaitUntil([&] { return a.bus.Live() && b.bus.Live(); }));
  // Let both register (their first renewal) before counting.
  std::this_thread::sleep_for(200ms);

  auto first = a.presence->Opened(7);
  EXPECT_TRUE(first.crossed);
  EXPECT_GT(first.version, 0);
  EXPECT_FALSE(b.presence->Opened(7).crossed);  // online already, on a
  EXPECT_FALSE(a.presence->Opened(7).crossed);  // a repeated open changes nothing
  auto snap = b.presence->Online();
  ASSERT_TRUE(snap.ok());
  EXPECT_EQ(snap->online, std::vector<int64_t>{7});
  EXPECT_GE(snap->version, first.version);
  EXPECT_FALSE(a.presence->Closed(7).crossed);  // still on b
  auto last = b.presence->Closed(7);
  EXPECT_TRUE(last.crossed);
  EXPECT_GT(last.version, first.version);
  snap = a.presence->Online();
  ASSERT_TRUE(snap.ok());
  EXPECT_TRUE(snap->online.empty());
}

TEST(RedisPresenceTest, ASilentNodeIsReapedOnceWithItsLastRenewalAsLastSeen) {
  test::TestRedis server;
  ASSERT_TRUE(server.ok());
  auto a = std::make_unique<Node>(server.port(), "a");
  Node b(server.port(), "b"), c(server.port(), "c");
  ASSERT_TRUE(WaitUntil([&] { return a->bus.Live() && b.bus.Live() && c.bus.Live(); }));
  std::this_thread::sleep_for(200ms);
  {
    std::lock_guard lock(a->mu);
    a->local = {1, 2};
  }
  ASSERT_TRUE(a->presence->Opened(1).crossed);
  ASSERT_TRUE(a->presence->Opened(2).crossed);
  ASSERT_TRUE(b.presence->Opened(2).crossed == false);  // 2 is on b too
  const TimeMs silenced = NowMs();
  a.reset();  // stops renewing, says nothing (no Leave): as if killed

  // b and c both reap every 100 ms: user 1 is reported once, by one of them; 2 stays online.
  ASSERT_TRUE(WaitUntil([&] { return b.Gone().size() + c.Gone().size() >= 1; }, 3000ms));
  std::this_thread::sleep_for(500ms);
  auto all = b.Gone();
  for (const auto& g : c.Gone()) all.push_back(g);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].user, 1);
  EXPECT_GT(all[0].version, 0);
  // The last renewal, at most a third of the TTL before it fell silent (Redis's clock and
  // ours are the same machine's).
  EXPECT_LE(all[0].at, silenced + 50);
  EXPECT_GE(all[0].at, silenced - 300 - 50);
  auto snap = b.presence->Online();
  ASSERT_TRUE(snap.ok());
  EXPECT_EQ(snap->online, std::vector<int64_t>{2});
}

TEST(RedisPresenceTest, ANodeBackFromAnOutageRegistersWhatItHasNow) {
  test::TestRedis server;
  ASSERT_TRUE(server.ok());
  Node a(server.port(), "a");
  ASSERT_TRUE(WaitUntil([&] { return a.bus.Live(); }));
  std::this_thread::sleep_for(200ms);
  ASSERT_TRUE(a.presence->Opened(5).crossed);
  server.Kill();
  ASSERT_TRUE(WaitUntil([&] { return !a.bus.Live(); }));
  // Unreachable: answered as if alone, and remembered.
  {
    std::lock_guard lock(a.mu);
    a.local = {6};
  }
  EXPECT_TRUE(a.presence->Closed(5).crossed);
  EXPECT_TRUE(a.presence->Opened(6).crossed);
  // An empty server comes back (it lost everything): the node registers user 6.
  ASSERT_TRUE(server.Restart());
  // The node hears what its registration changed after Redis holds it: both are awaited.
  ASSERT_TRUE(WaitUntil([&] {
    auto snap = a.presence->Online();
    if (!snap.ok() || snap->online != std::vector<int64_t>{6}) return false;
    std::lock_guard lock(a.mu);
    return !a.back.empty();
  }));
  std::lock_guard lock(a.mu);
  EXPECT_EQ(a.back.back().user, 6);  // back online as far as the cluster is concerned
}

}  // namespace
}  // namespace mmchat::bus::redis
