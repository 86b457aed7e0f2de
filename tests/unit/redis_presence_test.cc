// bus/redis/redis_presence: the Lua scripts against a real redis-server, through two
// nodes' buses: crossings reported once, in version order; a node that stops renewing is
// reaped by the others exactly once, with its last renewal as last_seen; a node that comes
// back registers what it has, with the times of the closes Redis did not hear. Read answers
// for one user over every node, offline with its last close's time.
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
#include "tcp_proxy.h"
#include "test_redis.h"

namespace mmchat::bus::redis {
namespace {

using namespace std::chrono_literals;
using test::WaitUntil;

// A node: its bus, its directory, the users it says it has, and the crossings it was told.
struct Node {
  Node(int port, const std::string& name, std::chrono::milliseconds ttl = 900ms)
      : bus(Options(port), &registry) {
    presence = std::make_unique<RedisPresence>(
        &bus, name, RedisPresenceOptions{.ttl = ttl, .reap_interval = 100ms});
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
    // A connection gone silent is found out in a fraction of a second.
    o.probe_interval = 100ms;
    o.probe_timeout = 500ms;
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
  EXPECT_FALSE(a.presence->Closed(7, 1000).crossed);  // still on b
  auto reading = a.presence->Read(7);
  ASSERT_TRUE(reading.ok()) << reading.status().message();
  EXPECT_TRUE(reading->online);
  EXPECT_EQ(reading->last_seen, std::nullopt);
  auto last = b.presence->Closed(7, 2000);
  EXPECT_TRUE(last.crossed);
  EXPECT_GT(last.version, first.version);
  snap = a.presence->Online();
  ASSERT_TRUE(snap.ok());
  EXPECT_TRUE(snap->online.empty());
  // Offline on every node at once, with the last close's time (not the first's).
  reading = a.presence->Read(7);
  ASSERT_TRUE(reading.ok()) << reading.status().message();
  EXPECT_FALSE(reading->online);
  EXPECT_EQ(reading->last_seen, std::optional<TimeMs>(2000));
  // A user never seen: offline, no time.
  reading = b.presence->Read(8);
  ASSERT_TRUE(reading.ok()) << reading.status().message();
  EXPECT_FALSE(reading->online);
  EXPECT_EQ(reading->last_seen, std::nullopt);
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
  // Readers get the same last_seen the reaper reported.
  auto reading = c.presence->Read(1);
  ASSERT_TRUE(reading.ok()) << reading.status().message();
  EXPECT_FALSE(reading->online);
  EXPECT_EQ(reading->last_seen, std::optional<TimeMs>(all[0].at));
  reading = c.presence->Read(2);
  ASSERT_TRUE(reading.ok()) << reading.status().message();
  EXPECT_TRUE(reading->online);
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
  EXPECT_TRUE(a.presence->Closed(5, NowMs()).crossed);
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

// Redis kept its data, but this node could not reach it when a user's last connection closed:
// the registration once it is back takes the user out with the time of that close, which is
// what readers on other nodes get, and what the node is told to announce.
TEST(RedisPresenceTest, ACloseRedisDidNotHearCountsFromItsOwnTime) {
  test::TestRedis server;
  ASSERT_TRUE(server.ok());
  test::TcpProxy proxy(server.port());
  ASSERT_NE(proxy.port(), 0);
  // Never reaped meanwhile: a long TTL.
  Node a(proxy.port(), "a", 10s), b(server.port(), "b", 10s);
  ASSERT_TRUE(WaitUntil([&] { return a.bus.Live() && b.bus.Live(); }));
  std::this_thread::sleep_for(200ms);
  ASSERT_TRUE(a.presence->Opened(5).crossed);

  proxy.Blackhole();
  ASSERT_TRUE(WaitUntil([&] { return !a.bus.Live(); }));
  const TimeMs closed_at = NowMs() - 5000;  // far from any time Redis could make up
  EXPECT_TRUE(a.presence->Closed(5, closed_at).crossed);  // unheard: as if alone
  // Still online as far as Redis knows, until a is back and registers.
  ASSERT_TRUE(WaitUntil([&] {
    std::lock_guard lock(a.mu);
    return !a.gone.empty();
  }));
  {
    std::lock_guard lock(a.mu);
    ASSERT_EQ(a.gone.size(), 1u);
    EXPECT_EQ(a.gone[0].user, 5);
    EXPECT_EQ(a.gone[0].at, closed_at);
    EXPECT_GT(a.gone[0].version, 0);
  }
  auto reading = b.presence->Read(5);
  ASSERT_TRUE(reading.ok()) << reading.status().message();
  EXPECT_FALSE(reading->online);
  EXPECT_EQ(reading->last_seen, std::optional<TimeMs>(closed_at));
}

}  // namespace
}  // namespace mmchat::bus::redis
