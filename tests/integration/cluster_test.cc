// Several server processes as one deployment (API.md: "All of this holds across server
// processes"; issue 13): two real mmchat nodes on one PostgreSQL database and one real
// redis-server of the test's own. A user connected to one node gets the events of requests
// the other node handled; a node whose Redis is gone keeps serving REST and its own
// connections, says so on /readyz, and joins the others again by itself.
//
// These run once (not again as pg.*): the nodes are always on PostgreSQL, which a cluster
// requires.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"
#include "tcp_proxy.h"
#include "test_postgres.h"
#include "test_redis.h"
#include "ws_client.h"

namespace mmchat::test {
namespace {

using namespace std::chrono_literals;

std::string Type(const Json& frame) {
  return frame.is_object() ? frame.value("type", std::string()) : std::string();
}

// How long a silent node still counts, in these tests.
constexpr int kTtlSec = 3;

// The next presence frame about `user` on `ws`; null after `timeout`.
Json NextPresenceOf(WsClient& ws, int64_t user, std::chrono::milliseconds timeout = 5s) {
  return ws.NextWhere(
      [user](Json& f) { return Type(f) == "presence" && f["data"]["user_id"] == user; }, timeout);
}

class ClusterTest : public ::testing::Test {
 protected:
  ClusterTest() {
    if (!redis_.ok() || db_.url().empty()) return;  // the failure is reported
    a_ = StartNode();
    b_ = StartNode();
    ca_ = std::make_unique<HttpClient>(a_->port());
    cb_ = std::make_unique<HttpClient>(b_->port());
  }

  std::unique_ptr<TestServer> StartNode(int ttl_sec = kTtlSec,
                                        const std::map<std::string, std::string>& env = {}) {
    ServerOptions o{.env = kNoAbuseLimits, .split = false};
    o.env["DATABASE_URL"] = db_.url();
    o.env["REDIS_URL"] = RedisUrl(redis_.port());
    o.env["CLUSTER_NODE_TTL_SEC"] = std::to_string(ttl_sec);
    for (const auto& [k, v] : env) o.env[k] = v;
    auto node = std::make_unique<TestServer>(o);
    // Subscribed: what the other node publishes from now on reaches this one.
    EXPECT_TRUE(node->WaitForLog("bus: subscribed to")) << node->Log();
    return node;
  }

  static std::string RedisUrl(int port) { return "redis://127.0.0.1:" + std::to_string(port); }

  // A node whose connections to Redis go through `proxy`.
  std::unique_ptr<TestServer> StartNodeBehind(const TcpProxy& proxy) {
    return StartNode(kTtlSec, {{"REDIS_URL", RedisUrl(proxy.port())}});
  }

  // kim and lou, signed up on A, and a group of the two.
  struct KimAndLou {
    Account kim, lou;
    int64_t group = 0;
  };
  KimAndLou SignUpKimAndLou() {
    KimAndLou out{SignUp(*a_, *ca_, "kim"), SignUp(*a_, *ca_, "lou")};
    out.group = Group(out.kim, {out.lou.id});
    return out;
  }

  // Makes the connections of `node` behind `proxy` go silent, runs `meanwhile`, and waits
  // until the node has found out and subscribed again.
  void SilenceUntilResubscribed(TestServer& node, TcpProxy& proxy,
                                const std::function<void()>& meanwhile) {
    const size_t before = Subscriptions(node);
    ASSERT_GT(proxy.Forwarding(), 0u);
    proxy.Blackhole();
    meanwhile();
    EXPECT_TRUE(Eventually([&] { return Subscriptions(node) > before; }, 15s)) << node.Log();
  }

  // How many times `node` has subscribed to the bus (once at start, again after each loss).
  static size_t Subscriptions(const TestServer& node) {
    const std::string log = node.Log();
    size_t n = 0;
    for (size_t at = log.find("bus: subscribed to"); at != std::string::npos;
         at = log.find("bus: subscribed to", at + 1)) {
      ++n;
    }
    return n;
  }

  // The ids of the messages committed in `conversation`, ascending.
  std::vector<int64_t> Committed(int64_t conversation) {
    std::vector<int64_t> ids;
    for (const auto& r : db_.Query("SELECT id FROM messages WHERE conversation_id = " +
                                   std::to_string(conversation) + " ORDER BY id")) {
      ids.push_back(std::stoll(r[0]));
    }
    return ids;
  }

  // `reader` received exactly `committed` as message events: in order, none twice, none
  // missing, and nothing after them.
  static void ExpectReceivedExactly(WsClient& reader, const std::vector<int64_t>& committed,
                                    const std::string& which) {
    std::vector<int64_t> ids;
    while (ids.size() < committed.size()) {
      Json m = reader.NextOfType("message", 10s);
      if (m.is_null()) break;
      ids.push_back(m["data"]["id"].get<int64_t>());
    }
    EXPECT_EQ(ids, committed) << which << " got " << ids.size() << " of " << committed.size();
    auto more = reader.NextOfType("message", 300ms);
    EXPECT_TRUE(more.is_null()) << which << ": " << more.dump();
  }

  // On how many nodes Redis counts `user` (its presence hash), by redis-cli: for a test that
  // must know a node has counted a connection before it closes another one.
  std::string NodesCounting(int64_t user) {
    return RedisCli("HGET mmchat:online " + std::to_string(user));
  }

  // The user's connections Redis counts over every node's tally (redis_connection_tally.h).
  std::string ConnectionsCounted(int64_t user) {
    return RedisCli(
        "EVAL \"local s = 0 for _, k in ipairs(redis.call('KEYS', 'mmchat:conns:*')) do "
        "s = s + tonumber(redis.call('HGET', k, ARGV[1]) or '0') end return s\" 0 " +
        std::to_string(user));
  }

  // What redis-cli answers to `args` (a shell command line), without the last newline.
  std::string RedisCli(const std::string& args) {
    const std::string cmd = "redis-cli -p " + std::to_string(redis_.port()) + " " + args + " 2>&1";
    std::string out;
    if (FILE* p = popen(cmd.c_str(), "r")) {
      char buf[64];
      while (fgets(buf, sizeof buf, p) != nullptr) out += buf;
      pclose(p);
    }
    while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
    return out;
  }

  // The bus state /readyz reports, "" when the answer is not a 200 with one.
  static std::string BusState(HttpClient& c) {
    auto r = c.Get("/readyz");
    if (r.status != 200 || !r.json.contains("bus")) return "";
    return r.json["bus"].get<std::string>();
  }

  // A conversation of `members` made by `creator` on node A (private for one other member).
  int64_t Group(const Account& creator, const std::vector<int64_t>& members) {
    auto r = ca_->Post("/api/conversations/group", {{"name", "team"}, {"member_ids", members}},
                       creator.token);
    EXPECT_EQ(r.status, 201) << r.body;
    return r.json.value("id", int64_t{0});
  }

  // `n` messages from `sender` on node A; their ids (fewer when a send failed).
  std::vector<int64_t> SendSome(const Account& sender, int64_t conversation, int n) {
    std::vector<int64_t> ids;
    for (int i = 0; i < n; ++i) {
      auto r = ca_->Post("/api/messages", {{"conversation_id", conversation}, {"content", "m"}},
                         sender.token);
      EXPECT_EQ(r.status, 201) << r.body;
      if (r.status == 201) ids.push_back(r.json["id"].get<int64_t>());
    }
    return ids;
  }

  TestRedis redis_;
  TestDatabase db_;
  std::unique_ptr<TestServer> a_, b_;
  std::unique_ptr<HttpClient> ca_, cb_;
};

TEST_F(ClusterTest, EventsOfRequestsOnOneNodeReachConnectionsOnTheOther) {
  ASSERT_TRUE(a_ && b_);
  EXPECT_EQ(BusState(*ca_), "ok");
  EXPECT_EQ(BusState(*cb_), "ok");
  // Signed up on different nodes: one database, one secret, tokens good on both.
  Account ann = SignUp(*a_, *ca_, "ann");
  Account bob = SignUp(*b_, *cb_, "bob");
  Account cat = SignUp(*a_, *ca_, "cat");
  WsClient ann_ws(a_->port(), ann.token);
  WsClient bob_ws(b_->port(), bob.token);
  WsClient cat_ws(b_->port(), cat.token);
  ASSERT_TRUE(ann_ws.connected() && bob_ws.connected() && cat_ws.connected());

  // A conversation made on A shows on B, with bob's own view.
  auto priv = ca_->Post("/api/conversations/private", {{"user_id", bob.id}}, ann.token);
  ASSERT_EQ(priv.status, 201) << priv.body;
  const int64_t conv = priv.json["id"].get<int64_t>();
  Json c = bob_ws.NextOfType("conversation");
  ASSERT_EQ(Type(c), "conversation") << c.dump();
  EXPECT_EQ(c["data"]["id"], conv);
  EXPECT_EQ(c["data"]["unread_count"], 0);

  // A message sent over REST on A reaches bob's connection on B, and the presence of bob's
  // connection on B shows in its status on A (a delivery receipt from B).
  auto sent = ca_->Post("/api/messages", {{"conversation_id", conv}, {"content", "hello from A"}},
                        ann.token);
  ASSERT_EQ(sent.status, 201) << sent.body;
  const int64_t mid = sent.json["id"].get<int64_t>();
  Json m = bob_ws.NextOfType("message");
  ASSERT_EQ(Type(m), "message") << m.dump();
  EXPECT_EQ(m["data"]["id"], mid);
  EXPECT_EQ(m["data"]["content"], "hello from A");
  Json dr = ann_ws.NextOfType("delivery_receipt", 5s);
  ASSERT_EQ(Type(dr), "delivery_receipt") << dr.dump();
  EXPECT_EQ(dr["data"]["user_id"], bob.id);
  EXPECT_EQ(dr["data"]["message_id"], mid);

  // Frames on B: a read and typing reach ann on A; a message sent on B reaches ann on A.
  bob_ws.Send({{"type", "read"}, {"conversation_id", conv}, {"message_id", mid}});
  Json rr = ann_ws.NextOfType("read_receipt");
  ASSERT_EQ(Type(rr), "read_receipt") << rr.dump();
  EXPECT_EQ(rr["data"]["user_id"], bob.id);
  EXPECT_EQ(rr["data"]["message_id"], mid);
  bob_ws.Send({{"type", "typing_start"}, {"conversation_id", conv}});
  Json ty = ann_ws.NextOfType("typing_start");
  ASSERT_EQ(Type(ty), "typing_start") << ty.dump();
  EXPECT_EQ(ty["data"]["user_id"], bob.id);
  bob_ws.Send({{"type", "message"}, {"ref", "r1"}, {"conversation_id", conv}, {"content", "hi A"}});
  Json ack = bob_ws.NextOfType("ack");
  ASSERT_EQ(ack["data"]["ok"], true) << ack.dump();
  Json back = ann_ws.NextOfType("message");
  ASSERT_EQ(Type(back), "message") << back.dump();
  EXPECT_EQ(back["data"]["content"], "hi A");
  EXPECT_EQ(back["data"]["id"], ack["data"]["result"]["id"]);

  // Membership made on A reaches the members' connections on B: the group, its messages, and
  // a removal (after which cat gets nothing more of it).
  const int64_t group = Group(ann, {bob.id, cat.id});
  Json g = cat_ws.NextOfType("conversation");
  ASSERT_EQ(Type(g), "conversation") << g.dump();
  EXPECT_EQ(g["data"]["id"], group);
  EXPECT_EQ(g["data"]["participants"].size(), 3u);
  ASSERT_EQ(
      ca_->Post("/api/messages", {{"conversation_id", group}, {"content", "to all"}}, ann.token)
          .status,
      201);
  Json gm = cat_ws.NextOfType("message");
  EXPECT_EQ(gm["data"]["content"], "to all") << gm.dump();
  auto removed = ca_->Request(
      "DELETE",
      "/api/conversations/" + std::to_string(group) + "/participants/" + std::to_string(cat.id), "",
      ann.token);
  ASSERT_EQ(removed.status, 204) << removed.body;
  Json gone = cat_ws.NextOfType("conversation_removed");
  ASSERT_EQ(Type(gone), "conversation_removed") << gone.dump();
  EXPECT_EQ(gone["data"]["conversation_id"], group);
  ASSERT_EQ(ca_->Post("/api/messages", {{"conversation_id", group}, {"content", "not for cat"}},
                      ann.token)
                .status,
            201);
  // The marker: a message cat is a recipient of, sent after; the first message cat sees.
  ASSERT_EQ(ca_->Post("/api/messages",
                      {{"conversation_id",
                        ca_->Post("/api/conversations/private", {{"user_id", cat.id}}, ann.token)
                            .json["id"]},
                       {"content", "marker"}},
                      ann.token)
                .status,
            201);
  Json next = cat_ws.NextOfType("message");
  EXPECT_EQ(next["data"]["content"], "marker") << next.dump();
}

TEST_F(ClusterTest, AProfileChangeAndAPasswordResetOnOneNodeTakeEffectOnTheOther) {
  ASSERT_TRUE(a_ && b_);
  Account dan = SignUp(*a_, *ca_, "dan");
  Account eve = SignUp(*a_, *ca_, "eve");
  // B has read (and keeps) dan's profile.
  auto before = cb_->Get("/api/users/" + std::to_string(dan.id), eve.token);
  ASSERT_EQ(before.status, 200) << before.body;
  ASSERT_EQ(before.json["username"], "dan");
  ASSERT_EQ(ca_->Put("/api/me", {{"username", "daniel"}}, dan.token).status, 200);
  // News of the change reaches B at once (one bus hop), not after B's cache time.
  EXPECT_TRUE(Eventually(
      [&] {
        return cb_->Get("/api/users/" + std::to_string(dan.id), eve.token).json["username"] ==
               "daniel";
      },
      2s));

  WsClient on_b(b_->port(), dan.token);
  ASSERT_TRUE(on_b.connected());
  ASSERT_EQ(ca_->Post("/api/forgot/initiate", {{"email", dan.email}}).status, 202);
  ASSERT_TRUE(a_->WaitForLog("otp: to=" + dan.email + " subject=\"Your MmChat password reset"));
  auto code = a_->LatestCode(dan.email);
  ASSERT_TRUE(code);
  auto reset =
      ca_->Post("/api/forgot/reset",
                {{"email", dan.email}, {"otp", *code}, {"new_password", "brand new password"}});
  ASSERT_EQ(reset.status, 200) << reset.body;
  // The connection opened with a revoked token ends on B too (1008), and B refuses the token.
  EXPECT_EQ(on_b.WaitClosed(5s), 1008);
  ExpectError(cb_->Get("/api/me", dan.token), 401, "unauthorized");
}

TEST_F(ClusterTest, WithRedisGoneEachNodeServesAloneAndTheyJoinAgainWhenItReturns) {
  ASSERT_TRUE(a_ && b_);
  Account fay = SignUp(*a_, *ca_, "fay");
  Account gus = SignUp(*a_, *ca_, "gus");
  auto priv = ca_->Post("/api/conversations/private", {{"user_id", gus.id}}, fay.token);
  ASSERT_EQ(priv.status, 201);
  const int64_t conv = priv.json["id"].get<int64_t>();
  WsClient fay_on_a(a_->port(), fay.token);
  WsClient gus_on_a(a_->port(), gus.token);
  WsClient gus_on_b(b_->port(), gus.token);
  ASSERT_TRUE(fay_on_a.connected() && gus_on_a.connected() && gus_on_b.connected());

  redis_.Kill();
  ASSERT_TRUE(Eventually([&] { return BusState(*ca_) == "down" && BusState(*cb_) == "down"; }));
  // Still ready (200, with the bus state), still serving REST, still pushing to its own.
  auto alone = ca_->Post("/api/messages", {{"conversation_id", conv}, {"content", "while alone"}},
                         fay.token);
  ASSERT_EQ(alone.status, 201) << alone.body;
  Json local = gus_on_a.NextOfType("message");
  EXPECT_EQ(local["data"]["content"], "while alone") << local.dump();
  EXPECT_EQ(cb_->Get("/api/conversations/" + std::to_string(conv) + "/messages", gus.token).status,
            200);

  ASSERT_TRUE(redis_.Restart());
  ASSERT_TRUE(Eventually([&] { return BusState(*ca_) == "ok" && BusState(*cb_) == "ok"; }, 15s));
  auto joined =
      ca_->Post("/api/messages", {{"conversation_id", conv}, {"content", "together"}}, fay.token);
  ASSERT_EQ(joined.status, 201) << joined.body;
  // B's connection gets what it missed (read from the store when the bus came back), then
  // the new message: in order, each once.
  Json missed = gus_on_b.NextOfType("message");
  EXPECT_EQ(missed["data"]["id"], alone.json["id"]) << missed.dump();
  Json m = gus_on_b.NextOfType("message");
  EXPECT_EQ(m["data"]["id"], joined.json["id"]) << m.dump();
  auto more = gus_on_b.NextOfType("message", 500ms);
  EXPECT_TRUE(more.is_null()) << more.dump();

  // Presence after a Redis that came back empty (its counts and versions start over): fay,
  // connected on A all along, is online on B; when she leaves, B hears it.
  const std::string fay_path = "/api/users/" + std::to_string(fay.id) + "/last-seen";
  EXPECT_TRUE(Eventually([&] { return cb_->Get(fay_path, gus.token).json["online"] == true; }));
  fay_on_a.Close();
  EXPECT_TRUE(Eventually([&] { return cb_->Get(fay_path, gus.token).json["online"] == false; }))
      << cb_->Get(fay_path, gus.token).body;
}

// API.md: messages of one conversation reach each connection in ascending id order, across
// processes. Two nodes commit into one conversation at once; readers on both nodes get every
// message once, in id order, whatever order the bus brought the other node's in.
TEST_F(ClusterTest, TwoNodesSendingIntoOneConversationReachEveryReaderInIdOrder) {
  ASSERT_TRUE(a_ && b_);
  Account hal = SignUp(*a_, *ca_, "hal");
  Account ida = SignUp(*a_, *ca_, "ida");
  Account joe = SignUp(*a_, *ca_, "joe");
  const int64_t group = Group(hal, {ida.id, joe.id});
  WsClient joe_on_a(a_->port(), joe.token);
  WsClient joe_on_b(b_->port(), joe.token);
  WsClient hal_ws(a_->port(), hal.token);
  WsClient ida_ws(b_->port(), ida.token);
  ASSERT_TRUE(joe_on_a.connected() && joe_on_b.connected() && hal_ws.connected() &&
              ida_ws.connected());
  constexpr int kEach = 300;
  // Each sender writes its frames without waiting for acks: many batches per node.
  std::thread on_a([&] {
    for (int i = 0; i < kEach; ++i) {
      hal_ws.Send(
          {{"type", "message"}, {"conversation_id", group}, {"content", "a" + std::to_string(i)}});
    }
  });
  std::thread on_b([&] {
    for (int i = 0; i < kEach; ++i) {
      ida_ws.Send(
          {{"type", "message"}, {"conversation_id", group}, {"content", "b" + std::to_string(i)}});
    }
  });
  on_a.join();
  on_b.join();
  for (WsClient* reader : {&joe_on_a, &joe_on_b}) {
    std::vector<int64_t> ids;
    while (ids.size() < 2 * kEach) {
      Json m = reader->NextOfType("message", 10s);
      if (m.is_null()) break;
      ids.push_back(m["data"]["id"].get<int64_t>());
    }
    ASSERT_EQ(ids.size(), 2u * kEach);
    EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
    EXPECT_EQ(std::adjacent_find(ids.begin(), ids.end()), ids.end());  // no duplicate
    // Exactly the committed ones.
    const auto rows =
        db_.Query("SELECT id FROM messages WHERE conversation_id = " + std::to_string(group) +
                  " ORDER BY id");
    ASSERT_EQ(rows.size(), ids.size());
    for (size_t i = 0; i < rows.size(); ++i) EXPECT_EQ(std::stoll(rows[i][0]), ids[i]);
  }
}

// API.md: online while the user has a connection on any node; `presence` on the first open
// and the last close cluster-wide; the user's state reads the same on every node.
// The bus breaks under a stream of messages, the two ways Redis drops a subscriber while
// staying up: it is killed (CLIENT KILL TYPE pubsub), and it falls behind past its output
// buffer limit (node B stopped while A publishes). Afterwards each connection holds exactly
// the messages committed, in id order, each once: the nodes repaired from the store.
TEST_F(ClusterTest, ABusBrokenMidStreamLosesNoMessage) {
  ASSERT_TRUE(a_ && b_);
  // Nodes of their own whose connections may hold what B must catch up on (8 MB).
  const std::map<std::string, std::string> roomy = {{"WS_MAX_QUEUE_BYTES", "67108864"}};
  auto a = StartNode(kTtlSec, roomy);
  auto b = StartNode(kTtlSec, roomy);
  // Named, not bound: clang 14 (the sanitizer builds) cannot capture structured bindings.
  const KimAndLou people = SignUpKimAndLou();
  const Account &kim = people.kim, &lou = people.lou;
  const int64_t group = people.group;
  WsClient kim_ws(a->port(), kim.token);
  WsClient lou_on_a(a->port(), lou.token);
  WsClient lou_on_b(b->port(), lou.token);
  ASSERT_TRUE(kim_ws.connected() && lou_on_a.connected() && lou_on_b.connected());
  const auto subscriptions = Subscriptions;
  auto send = [&](int i, const std::string& content) {
    kim_ws.Send({{"type", "message"},
                 {"conversation_id", group},
                 {"content", content},
                 {"ref", std::to_string(i)}});
  };
  auto acked = [&](int n) {
    for (int i = 0; i < n; ++i) {
      Json ack = kim_ws.NextOfType("ack", 10s);
      if (!ack.is_object() || ack["data"]["ok"] != true) return false;
    }
    return true;
  };

  // 1. Both subscriptions killed in the middle of a stream.
  const size_t a_before = subscriptions(*a), b_before = subscriptions(*b);
  constexpr int kKilled = 200;
  for (int i = 0; i < kKilled; ++i) {
    if (i == kKilled / 2) RedisCli("CLIENT KILL TYPE pubsub");
    send(i, "k" + std::to_string(i));
  }
  ASSERT_TRUE(acked(kKilled));
  EXPECT_TRUE(Eventually([&] { return subscriptions(*a) > a_before; })) << a->Log();
  EXPECT_TRUE(Eventually([&] { return subscriptions(*b) > b_before; })) << b->Log();

  // 2. B falls behind: stopped while A publishes more than the sockets' buffers (several
  //    MB on loopback) and a 64 KiB pubsub output buffer hold, so Redis drops it.
  ASSERT_EQ(RedisCli("CONFIG SET client-output-buffer-limit \"pubsub 65536 0 0\""), "OK");
  const size_t b_behind = subscriptions(*b);
  ASSERT_EQ(kill(b->pid(), SIGSTOP), 0);
  constexpr int kBehind = 2000;
  const std::string big(3900, 'x');
  for (int i = 0; i < kBehind; ++i) send(kKilled + i, big);
  const bool all_acked = acked(kBehind);
  ASSERT_EQ(kill(b->pid(), SIGCONT), 0);
  RedisCli("CONFIG SET client-output-buffer-limit \"pubsub 33554432 8388608 60\"");
  ASSERT_TRUE(all_acked);
  EXPECT_TRUE(Eventually([&] { return subscriptions(*b) > b_behind; }, 15s)) << b->Log();

  const auto committed = Committed(group);
  ASSERT_EQ(committed.size(), static_cast<size_t>(kKilled + kBehind));
  ExpectReceivedExactly(lou_on_a, committed, "on A");
  ExpectReceivedExactly(lou_on_b, committed, "on B");
}

// A node whose connections to Redis stay open but go silent (a network that drops without a
// word, an old primary cut off after a failover) finds out by its probes and its commands'
// deadlines, and connects again; what was sent both ways meanwhile reaches every connection.
TEST_F(ClusterTest, ANodeWhoseRedisGoesSilentFindsOutAndCatchesUp) {
  ASSERT_TRUE(a_ && b_);
  TcpProxy proxy(redis_.port());
  auto c = StartNodeBehind(proxy);
  HttpClient cc(c->port());
  // Named, not bound: clang 14 (the sanitizer builds) cannot capture structured bindings.
  const KimAndLou people = SignUpKimAndLou();
  const Account &kim = people.kim, &lou = people.lou;
  const int64_t group = people.group;
  WsClient lou_on_a(a_->port(), lou.token);
  WsClient lou_on_c(c->port(), lou.token);
  ASSERT_TRUE(lou_on_a.connected() && lou_on_c.connected());
  auto send = [&](HttpClient& via, const std::string& content) {
    auto r =
        via.Post("/api/messages", {{"conversation_id", group}, {"content", content}}, kim.token);
    EXPECT_EQ(r.status, 201) << r.body;
  };
  send(*ca_, "before");

  // Both ways while it lasts: what A publishes never reaches C's subscription, and what C
  // publishes goes nowhere. REST keeps working on C.
  SilenceUntilResubscribed(*c, proxy, [&] {
    for (int i = 0; i < 20; ++i) {
      send(*ca_, "from A " + std::to_string(i));
      send(cc, "from C " + std::to_string(i));
    }
  });
  for (int i = 0; i < 5; ++i) {
    send(*ca_, "after, from A " + std::to_string(i));
    send(cc, "after, from C " + std::to_string(i));
  }
  const auto committed = Committed(group);
  ASSERT_EQ(committed.size(), 51u);
  ExpectReceivedExactly(lou_on_a, committed, "on A");
  ExpectReceivedExactly(lou_on_c, committed, "on C");
}

// Changes (edits, reactions) made on two nodes at once reach every reader, on either node, in
// ascending change_id order, each once: API.md's order of message_updated, across processes.
TEST_F(ClusterTest, ChangesOnTwoNodesReachEveryReaderInChangeIdOrder) {
  ASSERT_TRUE(a_ && b_);
  Account hal = SignUp(*a_, *ca_, "hal");
  Account ida = SignUp(*a_, *ca_, "ida");
  Account joe = SignUp(*a_, *ca_, "joe");
  const int64_t group = Group(hal, {ida.id, joe.id});
  const std::vector<int64_t> targets = SendSome(joe, group, 4);
  ASSERT_EQ(targets.size(), 4u);
  WsClient joe_on_a(a_->port(), joe.token);
  WsClient joe_on_b(b_->port(), joe.token);
  ASSERT_TRUE(joe_on_a.connected() && joe_on_b.connected());
  constexpr int kEach = 60;
  std::mutex mu;
  std::vector<int64_t> made;  // the change_ids the calls answered
  auto react = [&](HttpClient& via, const Account& who, const std::string& emoji) {
    for (int i = 0; i < kEach; ++i) {
      const std::string path =
          "/api/messages/" + std::to_string(targets[i % targets.size()]) + "/reactions/" + emoji;
      // Add, then take back: every call changes the message.
      auto r = via.Request(i / targets.size() % 2 ? "DELETE" : "PUT", path, "", who.token);
      EXPECT_EQ(r.status, 200) << r.body;
      if (r.status != 200) return;
      std::lock_guard lock(mu);
      made.push_back(r.json["change_id"].get<int64_t>());
    }
  };
  std::thread on_a([&] {
    HttpClient c(a_->port());
    react(c, hal, "a");
  });
  std::thread on_b([&] {
    HttpClient c(b_->port());
    react(c, ida, "b");
  });
  on_a.join();
  on_b.join();
  std::sort(made.begin(), made.end());
  ASSERT_EQ(made.size(), 2u * kEach);
  for (WsClient* reader : {&joe_on_a, &joe_on_b}) {
    std::vector<int64_t> got;
    while (got.size() < made.size()) {
      Json u = reader->NextOfType("message_updated", 10s);
      if (u.is_null()) break;
      got.push_back(u["data"]["change_id"].get<int64_t>());
    }
    EXPECT_EQ(got, made);  // ascending, none twice, none missing
    EXPECT_TRUE(reader->NextOfType("message_updated", 300ms).is_null());
  }
}

// Changes a node missed while its Redis connections were silent are read back from the
// database: each changed message's latest state reaches the node's connections, in change_id
// order, once (a change superseded meanwhile by a later one of the same message is not sent).
TEST_F(ClusterTest, ChangesLostOnTheBusAreCaughtUp) {
  ASSERT_TRUE(a_ && b_);
  TcpProxy proxy(redis_.port());
  auto c = StartNodeBehind(proxy);
  const KimAndLou people = SignUpKimAndLou();
  const Account &kim = people.kim, &lou = people.lou;
  const int64_t group = people.group;
  const std::vector<int64_t> targets = SendSome(kim, group, 3);
  ASSERT_EQ(targets.size(), 3u);
  WsClient lou_on_c(c->port(), lou.token);
  ASSERT_TRUE(lou_on_c.connected());
  std::map<int64_t, int64_t> latest;  // message -> its last change_id
  std::map<int64_t, std::string> text;
  SilenceUntilResubscribed(*c, proxy, [&] {
    for (int i = 0; i < 12; ++i) {
      const int64_t id = targets[i % targets.size()];
      const std::string content = "edit " + std::to_string(i);
      auto r = ca_->Request("PATCH", "/api/messages/" + std::to_string(id),
                            Json{{"content", content}}.dump(), kim.token);
      ASSERT_EQ(r.status, 200) << r.body;
      latest[id] = r.json["change_id"].get<int64_t>();
      text[id] = content;
    }
  });
  // One more after the loss: it comes after what was caught up.
  auto after = ca_->Request("DELETE", "/api/messages/" + std::to_string(targets[0]), "", kim.token);
  ASSERT_EQ(after.status, 204) << after.body;
  std::vector<int64_t> got;
  std::map<int64_t, Json> last_seen;
  for (;;) {
    Json u = lou_on_c.NextOfType("message_updated", 10s);
    if (u.is_null()) break;
    got.push_back(u["data"]["change_id"].get<int64_t>());
    last_seen[u["data"]["id"].get<int64_t>()] = u["data"];
    if (u["data"]["deleted_at"].is_string()) break;  // the change after the loss
  }
  EXPECT_TRUE(std::is_sorted(got.begin(), got.end())) << ::testing::PrintToString(got);
  EXPECT_EQ(std::adjacent_find(got.begin(), got.end()), got.end()) << "a change came twice";
  ASSERT_EQ(last_seen.size(), targets.size());
  EXPECT_TRUE(last_seen[targets[0]]["deleted_at"].is_string());
  for (size_t i = 1; i < targets.size(); ++i) {
    EXPECT_EQ(last_seen[targets[i]]["change_id"], latest[targets[i]]);
    EXPECT_EQ(last_seen[targets[i]]["content"], text[targets[i]]);
  }
  EXPECT_TRUE(lou_on_c.NextOfType("message_updated", 300ms).is_null());
}

// A password reset whose news a node lost (its Redis connections silent at the time): once
// the node is back on the bus it reads its users' token versions again, and the connection
// opened with the revoked token ends (1008); others stay.
TEST_F(ClusterTest, AResetWhoseNewsWasLostStillEndsTheConnectionsOfTheOldToken) {
  ASSERT_TRUE(a_ && b_);
  TcpProxy proxy(redis_.port());
  auto c = StartNodeBehind(proxy);
  // Named, not bound: clang 14 (the sanitizer builds) cannot capture structured bindings.
  const KimAndLou people = SignUpKimAndLou();
  const Account &kim = people.kim, &lou = people.lou;
  const int64_t group = people.group;
  WsClient lou_on_c(c->port(), lou.token);
  WsClient kim_on_c(c->port(), kim.token);
  ASSERT_TRUE(lou_on_c.connected() && kim_on_c.connected());

  SilenceUntilResubscribed(*c, proxy, [&] {
    ASSERT_EQ(ca_->Post("/api/forgot/initiate", {{"email", lou.email}}).status, 202);
    ASSERT_TRUE(a_->WaitForLog("otp: to=" + lou.email + " subject=\"Your MmChat password reset"));
    auto code = a_->LatestCode(lou.email);
    ASSERT_TRUE(code);
    auto reset =
        ca_->Post("/api/forgot/reset",
                  {{"email", lou.email}, {"otp", *code}, {"new_password", "brand new password"}});
    ASSERT_EQ(reset.status, 200) << reset.body;
  });
  EXPECT_EQ(lou_on_c.WaitClosed(10s), 1008);

  // kim's token was not revoked: her connection on C still gets the group's messages.
  auto sent = ca_->Post("/api/messages", {{"conversation_id", group}, {"content", "still here"}},
                        lou.token);
  ExpectError(sent, 401, "unauthorized");  // lou's old token is refused outright
  sent = ca_->Post("/api/messages", {{"conversation_id", group}, {"content", "still here"}},
                   kim.token);
  ASSERT_EQ(sent.status, 201) << sent.body;
  Json m = kim_on_c.NextOfType("message", 10s);
  ASSERT_FALSE(m.is_null());
  EXPECT_EQ(m["data"]["id"], sent.json["id"]);
}

// Node C beside A and B, its connections to Redis through a proxy the test can silence;
// kim and lou, signed up on A, and their group.
class ClusterMembershipTest : public ClusterTest {
 protected:
  ClusterMembershipTest() : proxy_(redis_.port()) {
    if (!a_ || !b_) return;
    c_ = StartNodeBehind(proxy_);
    cc_ = std::make_unique<HttpClient>(c_->port());
    people_ = SignUpKimAndLou();
  }

  // What C publishes from now on is lost.
  void SilenceC() {
    ASSERT_GT(proxy_.Forwarding(), 0u);
    proxy_.Blackhole();
  }

  // kim's message to the group, sent on B.
  int64_t SendOnB(const std::string& content) {
    auto sent =
        cb_->Post("/api/messages", {{"conversation_id", people_.group}, {"content", content}},
                  people_.kim.token);
    EXPECT_EQ(sent.status, 201) << sent.body;
    return sent.json.value("id", int64_t{0});
  }

  std::string GroupPath() const { return "/api/conversations/" + std::to_string(people_.group); }

  TcpProxy proxy_;
  std::unique_ptr<TestServer> c_;
  std::unique_ptr<HttpClient> cc_;
  KimAndLou people_;
};

// A message committed right after a member was added reaches the new member, also when the
// news of the add is late (here: lost in the silent Redis connections of the node that made
// it). The node holding the member's connection waits for the members the message committed
// under, then reads them from the database and tells the new member before the message.
TEST_F(ClusterMembershipTest, AMessageRightAfterAnAddReachesTheNewMemberWhenTheAddsNewsIsLate) {
  ASSERT_TRUE(c_);
  Account max = SignUp(*a_, *ca_, "max");
  WsClient max_on_b(b_->port(), max.token);
  WsClient lou_on_b(b_->port(), people_.lou.token);
  ASSERT_TRUE(max_on_b.connected() && lou_on_b.connected());

  SilenceC();
  auto added = cc_->Post(GroupPath() + "/participants", {{"user_id", max.id}}, people_.kim.token);
  ASSERT_EQ(added.status, 201) << added.body;
  const int64_t id = SendOnB("welcome max");

  Json f = max_on_b.NextWhere(
      [](Json& f) { return Type(f) == "conversation" || Type(f) == "message"; }, 10s);
  ASSERT_EQ(Type(f), "conversation") << "max was not told he joined first: " << f.dump();
  EXPECT_EQ(f["data"]["id"], people_.group);
  EXPECT_EQ(f["data"]["participants"].size(), 3u) << f.dump();
  Json m = max_on_b.NextOfType("message", 10s);
  ASSERT_FALSE(m.is_null()) << "max never got the first message after he joined";
  EXPECT_EQ(m["data"]["id"], id);
  ExpectReceivedExactly(lou_on_b, {id}, "lou");
}

// The same for a removal: the removed member's connection is told, and gets nothing sent
// after the removal, though the news of it never came.
TEST_F(ClusterMembershipTest, AMessageRightAfterARemovalSkipsTheRemovedMemberWhenTheNewsIsLost) {
  ASSERT_TRUE(c_);
  WsClient kim_on_b(b_->port(), people_.kim.token);
  WsClient lou_on_b(b_->port(), people_.lou.token);
  ASSERT_TRUE(kim_on_b.connected() && lou_on_b.connected());

  SilenceC();
  auto removed =
      cc_->Request("DELETE", GroupPath() + "/participants/" + std::to_string(people_.lou.id), "",
                   people_.kim.token);
  ASSERT_EQ(removed.status, 204) << removed.body;
  const int64_t id = SendOnB("lou is gone");

  Json f = lou_on_b.NextWhere(
      [](Json& f) { return Type(f) == "conversation_removed" || Type(f) == "message"; }, 10s);
  ASSERT_EQ(Type(f), "conversation_removed") << f.dump();
  EXPECT_EQ(f["data"]["conversation_id"], people_.group);
  ExpectReceivedExactly(kim_on_b, {id}, "kim");
  Json after = lou_on_b.NextOfType("message", 500ms);
  EXPECT_TRUE(after.is_null()) << "lou got a message sent after his removal: " << after.dump();
}

// Membership news a node lost (its Redis connections silent at the time) is told once the
// node is back on the bus: the added member gets the conversation, the removed one
// conversation_removed, a member of a group made meanwhile gets it; the messages sent after
// go by the new members.
TEST_F(ClusterMembershipTest, MembershipNewsLostMeanwhileIsToldOnceTheNodeIsBack) {
  ASSERT_TRUE(c_);
  Account max = SignUp(*a_, *ca_, "max");
  WsClient max_on_c(c_->port(), max.token);
  WsClient lou_on_c(c_->port(), people_.lou.token);
  ASSERT_TRUE(max_on_c.connected() && lou_on_c.connected());

  int64_t later = 0;
  SilenceUntilResubscribed(*c_, proxy_, [&] {
    auto added = ca_->Post(GroupPath() + "/participants", {{"user_id", max.id}}, people_.kim.token);
    ASSERT_EQ(added.status, 201) << added.body;
    auto removed =
        ca_->Request("DELETE", GroupPath() + "/participants/" + std::to_string(people_.lou.id), "",
                     people_.kim.token);
    ASSERT_EQ(removed.status, 204) << removed.body;
    later = Group(people_.kim, {max.id});
  });

  std::map<int64_t, Json> told;  // conversation id -> the conversation event max got
  for (int i = 0; i < 2; ++i) {
    Json f = max_on_c.NextOfType("conversation", 10s);
    ASSERT_FALSE(f.is_null()) << "max was told of " << told.size() << " of 2 conversations";
    told[f["data"]["id"].get<int64_t>()] = f["data"];
  }
  ASSERT_TRUE(told.contains(people_.group) && told.contains(later));
  EXPECT_EQ(told[people_.group]["participants"].size(), 2u) << told[people_.group].dump();
  Json gone = lou_on_c.NextOfType("conversation_removed", 10s);
  ASSERT_FALSE(gone.is_null()) << "lou was never told he was removed";
  EXPECT_EQ(gone["data"]["conversation_id"], people_.group);

  const int64_t id = SendOnB("max is in, lou is out");
  ExpectReceivedExactly(max_on_c, {id}, "max");
  Json after = lou_on_c.NextOfType("message", 500ms);
  EXPECT_TRUE(after.is_null()) << "lou got a message sent after his removal: " << after.dump();
}

// A typing_stop a node lost (its Redis connections silent at the time) is sent by that node
// itself once it knows it lost events, so no one is left "typing" for good.
TEST_F(ClusterTest, ATypingStopWhoseNewsWasLostIsSentAfterTheLoss) {
  ASSERT_TRUE(a_ && b_);
  TcpProxy proxy(redis_.port());
  auto c = StartNodeBehind(proxy);
  // Named, not bound: clang 14 (the sanitizer builds) cannot capture structured bindings.
  const KimAndLou people = SignUpKimAndLou();
  const Account &kim = people.kim, &lou = people.lou;
  const int64_t group = people.group;
  WsClient kim_on_a(a_->port(), kim.token);
  WsClient lou_on_c(c->port(), lou.token);
  ASSERT_TRUE(kim_on_a.connected() && lou_on_c.connected());
  auto typing = [&](const std::string& type) {
    kim_on_a.Send({{"type", type}, {"conversation_id", group}, {"ref", type}});
    Json ack = kim_on_a.NextOfType("ack");
    ASSERT_TRUE(ack.is_object() && ack["data"]["ok"] == true) << ack.dump();
  };
  typing("typing_start");
  Json start = lou_on_c.NextOfType("typing_start");
  ASSERT_FALSE(start.is_null());
  EXPECT_EQ(start["data"]["user_id"], kim.id);

  SilenceUntilResubscribed(*c, proxy, [&] { typing("typing_stop"); });
  Json stop = lou_on_c.NextOfType("typing_stop", 10s);
  ASSERT_FALSE(stop.is_null()) << "lou still sees kim typing";
  EXPECT_EQ(stop["data"]["user_id"], kim.id);
  EXPECT_EQ(stop["data"]["conversation_id"], group);
}

// A failover: the nodes' Redis is replaced by another, empty one at the same address, while
// their connections to the old one stay open and silent. Both nodes move to the new server,
// messages sent meanwhile reach every connection once, and presence is counted there again.
TEST_F(ClusterTest, AfterAFailoverToAnotherRedisTheNodesMeetThere) {
  ASSERT_TRUE(a_ && b_);
  TestRedis replacement;
  ASSERT_TRUE(replacement.ok());
  TcpProxy proxy(redis_.port());
  auto c = StartNodeBehind(proxy);
  auto d = StartNodeBehind(proxy);
  HttpClient cc(c->port());
  // Named, not bound: clang 14 (the sanitizer builds) cannot capture structured bindings.
  const KimAndLou people = SignUpKimAndLou();
  const Account &kim = people.kim, &lou = people.lou;
  const int64_t group = people.group;
  WsClient lou_on_d(d->port(), lou.token);
  ASSERT_TRUE(lou_on_d.connected());
  auto online_on_c = [&] {
    auto r = cc.Get("/api/users/" + std::to_string(lou.id) + "/last-seen", kim.token);
    return r.status == 200 && r.json.value("online", false);
  };
  ASSERT_TRUE(Eventually(online_on_c)) << "lou's connection on D counts on C";

  const size_t c_before = Subscriptions(*c), d_before = Subscriptions(*d);
  proxy.Repoint(replacement.port());
  proxy.Blackhole();
  for (int i = 0; i < 20; ++i) {
    auto r = cc.Post("/api/messages", {{"conversation_id", group}, {"content", std::to_string(i)}},
                     kim.token);
    EXPECT_EQ(r.status, 201) << r.body;
  }
  EXPECT_TRUE(Eventually([&] { return Subscriptions(*c) > c_before; }, 15s)) << c->Log();
  EXPECT_TRUE(Eventually([&] { return Subscriptions(*d) > d_before; }, 15s)) << d->Log();
  auto r = cc.Post("/api/messages", {{"conversation_id", group}, {"content", "after"}}, kim.token);
  EXPECT_EQ(r.status, 201) << r.body;
  ExpectReceivedExactly(lou_on_d, Committed(group), "on D");

  // The new server knows lou is online (D registered her there), and her leaving is heard.
  EXPECT_TRUE(Eventually(online_on_c, 10s));
  lou_on_d.Close();
  EXPECT_TRUE(Eventually([&] { return !online_on_c(); }, 10s));
}

TEST_F(ClusterTest, PresenceCountsTheConnectionsOfEveryNode) {
  ASSERT_TRUE(a_ && b_);
  Account kim = SignUp(*a_, *ca_, "kim");
  Account lou = SignUp(*a_, *ca_, "lou");
  ASSERT_EQ(ca_->Post("/api/conversations/private", {{"user_id", lou.id}}, kim.token).status, 201);
  const std::string kim_path = "/api/users/" + std::to_string(kim.id) + "/last-seen";
  WsClient lou_on_b(b_->port(), lou.token);
  ASSERT_TRUE(lou_on_b.connected());

  auto kim_on_a = std::make_unique<WsClient>(a_->port(), kim.token);
  ASSERT_TRUE(kim_on_a->connected());
  Json on = NextPresenceOf(lou_on_b, kim.id);
  ASSERT_EQ(Type(on), "presence") << on.dump();
  EXPECT_EQ(on["data"]["online"], true);
  // Both nodes say so, B from what it heard.
  EXPECT_TRUE(Eventually([&] { return cb_->Get(kim_path, lou.token).json["online"] == true; }));
  EXPECT_EQ(ca_->Get(kim_path, lou.token).json["online"], true);

  // A second connection on the other node, then the first one closing: no news.
  auto kim_on_b = std::make_unique<WsClient>(b_->port(), kim.token);
  ASSERT_TRUE(kim_on_b->connected());
  // B counts it after the upgrade: closing A's before would rightly go through offline.
  ASSERT_TRUE(Eventually([&] { return NodesCounting(kim.id) == "2"; })) << NodesCounting(kim.id);
  kim_on_a->Close();
  kim_on_a.reset();
  Json none = NextPresenceOf(lou_on_b, kim.id, 1500ms);
  EXPECT_TRUE(none.is_null()) << none.dump();
  EXPECT_EQ(ca_->Get(kim_path, lou.token).json["online"], true);
  EXPECT_EQ(cb_->Get(kim_path, lou.token).json["online"], true);

  // The last connection anywhere: offline, with last_seen, on both nodes.
  kim_on_b->Close();
  Json off = NextPresenceOf(lou_on_b, kim.id);
  ASSERT_EQ(Type(off), "presence") << off.dump();
  EXPECT_EQ(off["data"]["online"], false);
  EXPECT_TRUE(off["data"]["last_seen"].is_string()) << off.dump();
  for (HttpClient* c : {ca_.get(), cb_.get()}) {
    EXPECT_TRUE(Eventually([&] {
      auto r = c->Get(kim_path, lou.token);
      return r.json["online"] == false && r.json["last_seen"] == off["data"]["last_seen"];
    })) << c->Get(kim_path, lou.token).body;
  }
}

// A node that dies without a word: its users are offline elsewhere within
// CLUSTER_NODE_TTL_SEC, with last_seen set and `presence` sent, and nobody is left online for
// ever; the node started again is a new life, not a ghost of the old one.
TEST_F(ClusterTest, AKilledNodesUsersGoOfflineWithinTheTtlAndAStoppedNodesAtOnce) {
  ASSERT_TRUE(a_ && b_);
  Account max = SignUp(*a_, *ca_, "max");
  Account ned = SignUp(*a_, *ca_, "ned");
  Account ora = SignUp(*a_, *ca_, "ora");
  ASSERT_EQ(ca_->Post("/api/conversations/private", {{"user_id", max.id}}, ned.token).status, 201);
  ASSERT_EQ(ca_->Post("/api/conversations/private", {{"user_id", ora.id}}, ned.token).status, 201);
  WsClient ned_on_b(b_->port(), ned.token);
  ASSERT_TRUE(ned_on_b.connected());
  {
    WsClient max_on_a(a_->port(), max.token);
    ASSERT_TRUE(max_on_a.connected());
    ASSERT_EQ(NextPresenceOf(ned_on_b, max.id)["data"]["online"], true);
    a_->Stop(SIGKILL);
    const auto killed = std::chrono::steady_clock::now();
    Json off = NextPresenceOf(ned_on_b, max.id, std::chrono::seconds(kTtlSec + 3));
    ASSERT_EQ(Type(off), "presence") << off.dump();
    const auto took = std::chrono::steady_clock::now() - killed;
    EXPECT_EQ(off["data"]["online"], false);
    EXPECT_TRUE(off["data"]["last_seen"].is_string()) << off.dump();
    EXPECT_LE(took, std::chrono::seconds(kTtlSec + 1));
    auto seen = cb_->Get("/api/users/" + std::to_string(max.id) + "/last-seen", ned.token);
    EXPECT_EQ(seen.json["online"], false) << seen.body;
    EXPECT_EQ(seen.json["last_seen"], off["data"]["last_seen"]) << seen.body;
  }

  // Started again (a new life, here with a TTL far longer than the wait below): it learns
  // who is online elsewhere; a user connecting there is online; and a clean stop (SIGTERM)
  // takes that user offline at once, which the reaper could not have done in that time.
  constexpr int kLongTtlSec = 60;
  a_ = StartNode(kLongTtlSec);
  ca_ = std::make_unique<HttpClient>(a_->port());
  EXPECT_TRUE(Eventually([&] {
    return ca_->Get("/api/users/" + std::to_string(ned.id) + "/last-seen", max.token)
               .json["online"] == true;
  }));
  WsClient ora_on_a(a_->port(), ora.token);
  ASSERT_TRUE(ora_on_a.connected());
  ASSERT_EQ(NextPresenceOf(ned_on_b, ora.id)["data"]["online"], true);
  EXPECT_EQ(a_->Stop(SIGTERM), 0);
  Json off = NextPresenceOf(ned_on_b, ora.id, 10s);
  ASSERT_EQ(Type(off), "presence") << off.dump();
  EXPECT_EQ(off["data"]["online"], false);
}

// Issue 13: the per-user message rate holds over the deployment, not per node.
TEST_F(ClusterTest, AUsersConnectionCapHoldsOverTheNodes) {
  ASSERT_TRUE(a_ && b_);
  const std::map<std::string, std::string> cap = {{"WS_MAX_CONNS_PER_USER", "3"}};
  auto c = StartNode(kTtlSec, cap);
  auto d = StartNode(kTtlSec, cap);
  HttpClient cc(c->port());
  Account kai = SignUp(*c, cc, "kai");
  Account lea = SignUp(*c, cc, "lea");
  // Until Redis counts `n` of kai's connections (a node tells it after the upgrade).
  auto counted = [&](int n) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (ConnectionsCounted(kai.id) != std::to_string(n)) {
      if (std::chrono::steady_clock::now() > until) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return true;
  };

  auto first_on_c = std::make_unique<WsClient>(c->port(), kai.token);
  WsClient second_on_c(c->port(), kai.token);
  WsClient first_on_d(d->port(), kai.token);
  ASSERT_TRUE(first_on_c->connected() && second_on_c.connected() && first_on_d.connected());
  ASSERT_TRUE(counted(3)) << ConnectionsCounted(kai.id);
  // Neither node holds 3 of them, yet a fourth is refused on both.
  for (TestServer* node : {c.get(), d.get()}) {
    WsClient fourth(node->port(), kai.token);
    EXPECT_FALSE(fourth.connected());
    ExpectError(fourth.refusal(), 429, "rate_limited");
  }
  WsClient lea_on_d(d->port(), lea.token);  // another user has a cap of its own
  EXPECT_TRUE(lea_on_d.connected());

  // One closes on c: d takes one more.
  first_on_c->Close();
  first_on_c.reset();
  ASSERT_TRUE(counted(2)) << ConnectionsCounted(kai.id);
  WsClient second_on_d(d->port(), kai.token);
  EXPECT_TRUE(second_on_d.connected()) << second_on_d.refusal().body;
  ASSERT_TRUE(counted(3));

  // A killed node's connections stop counting once it is counted out of the cluster.
  c->Stop(SIGKILL);
  bool let_in = false;
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(kTtlSec + 5);
  while (!let_in && std::chrono::steady_clock::now() < until) {
    WsClient third_on_d(d->port(), kai.token);
    let_in = third_on_d.connected();
    if (!let_in) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_TRUE(let_in) << "the killed node's connection still counts";
}

TEST_F(ClusterTest, AUsersMessageRateHoldsWhenItSendsThroughTwoNodes) {
  ASSERT_TRUE(a_ && b_);
  // Two nodes of their own with a rate: a burst of 4, then one a second.
  const std::map<std::string, std::string> rate = {{"MSG_RATE_PER_SEC", "1"},
                                                   {"MSG_RATE_BURST", "4"}};
  auto c = StartNode(kTtlSec, rate);
  auto d = StartNode(kTtlSec, rate);
  HttpClient cc(c->port()), cd(d->port());
  Account kai = SignUp(*c, cc, "kai");
  Account lea = SignUp(*d, cd, "lea");
  const int64_t group = Group(kai, {lea.id});
  auto send = [&](HttpClient& via, const Account& who, int i) {
    return via.Post("/api/messages", {{"conversation_id", group}, {"content", std::to_string(i)}},
                    who.token);
  };

  WsClient kai_ws(d->port(), kai.token);
  ASSERT_TRUE(kai_ws.connected());

  // Sent in turn through both nodes: each counting alone would take 8 at once.
  const auto start = std::chrono::steady_clock::now();
  int accepted = 0;
  for (int i = 0; i < 12; ++i) {
    auto r = send(i % 2 ? cd : cc, kai, i);
    if (r.status == 201) {
      ++accepted;
    } else {
      ExpectError(r, 429, "rate_limited");
    }
  }
  const auto elapsed =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - start)
          .count();
  EXPECT_GE(accepted, 4);
  EXPECT_LE(accepted, 4 + static_cast<int>(elapsed) + 1) << "in " << elapsed << " s";
  // Refused messages were not stored.
  const auto rows =
      db_.Query("SELECT count(*) FROM messages WHERE conversation_id = " + std::to_string(group));
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(std::stoi(rows[0][0]), accepted);

  // Over WebSocket the same count holds: of three at once, at most one more (the rate's
  // refill meanwhile) goes.
  for (int i = 0; i < 3; ++i) {
    kai_ws.Send({{"type", "message"}, {"conversation_id", group}, {"content", "ws"}, {"ref", "r"}});
  }
  int refused = 0;
  for (int i = 0; i < 3; ++i) {
    Json ack = kai_ws.NextOfType("ack");
    ASSERT_TRUE(ack.is_object()) << "only " << i << " acks";
    if (ack["data"]["ok"] == false) {
      ++refused;
      EXPECT_EQ(ack["data"]["error"]["code"], "rate_limited") << ack.dump();
    }
  }
  EXPECT_GE(refused, 2);
  // Another user has a burst of its own.
  EXPECT_EQ(send(cc, lea, 100).status, 201);
}

// The metric names in `text`: every `mmchat_...` word (alert names are MmChat..., so they are
// not taken).
std::set<std::string> MetricNamesIn(const std::string& text) {
  std::set<std::string> names;
  static const std::regex kName(R"(\bmmchat_[a-z0-9_]+)");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), kName);
       it != std::sregex_iterator(); ++it) {
    names.insert(it->str());
  }
  return names;
}

// Every `expr` string anywhere in a Grafana dashboard.
void CollectExprs(const Json& j, std::vector<std::string>& out) {
  if (j.is_object()) {
    for (const auto& [key, value] : j.items()) {
      if (key == "expr" && value.is_string()) out.push_back(value.get<std::string>());
      CollectExprs(value, out);
    }
  } else if (j.is_array()) {
    for (const auto& v : j) CollectExprs(v, out);
  }
}

std::string ReadDoc(const std::string& name) {
  std::ifstream in(std::string(MMCHAT_DOCS_DIR) + "/" + name, std::ios::binary);
  EXPECT_TRUE(in.good()) << name;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// docs/operations.md: the Grafana dashboard and the Prometheus alert rules query only metrics
// the server exports. A cluster node on PostgreSQL exports every family there is (the pool's
// and the bus's too); after some traffic, the labelled ones have series as well.
TEST_F(ClusterTest, TheDashboardAndTheAlertRulesUseOnlyMetricsTheServerExports) {
  ASSERT_TRUE(a_ && b_);
  auto [kim, lou, group] = SignUpKimAndLou();
  WsClient lou_ws(b_->port(), lou.token);
  SendSome(kim, group, 5);
  ASSERT_TRUE(lou_ws.NextOfType("message").is_object());
  lou_ws.Send({{"type", "message"}, {"conversation_id", group}, {"content", "ws"}, {"ref", "r"}});
  ASSERT_TRUE(lou_ws.NextOfType("ack").is_object());
  EXPECT_EQ(ca_->Get("/api/nowhere").status, 404);

  std::set<std::string> exported;
  for (auto* c : {ca_.get(), cb_.get()}) {
    auto r = c->Get("/metrics");
    ASSERT_EQ(r.status, 200);
    std::istringstream lines(r.body);
    for (std::string line; std::getline(lines, line);) {
      if (line.empty() || line[0] == '#') continue;
      exported.insert(line.substr(0, line.find_first_of("{ ")));
    }
  }

  const std::string dashboard_text = ReadDoc("ops/grafana-dashboard.json");
  std::vector<std::string> exprs;
  CollectExprs(Json::parse(dashboard_text), exprs);
  ASSERT_GE(exprs.size(), 10u) << "the dashboard has too few queries to be of use";
  for (const auto& e : exprs) {
    EXPECT_FALSE(MetricNamesIn(e).empty()) << "a query on no metric of the server: " << e;
  }
  // Names anywhere: the queries, and the server list's label_values(...).
  for (const auto& n : MetricNamesIn(dashboard_text)) {
    EXPECT_TRUE(exported.count(n)) << n << " in the dashboard";
  }
  // And each query is PromQL that parses: promtool checks them as recording rules, with
  // Grafana's variables replaced as Grafana would.
  const TempDir scratch;
  const auto& dir = scratch.path();
  {
    std::ofstream rules(dir / "dashboard-rules.yml");
    rules << "groups:\n  - name: dashboard\n    rules:\n";
    for (size_t i = 0; i < exprs.size(); ++i) {
      std::string e = std::regex_replace(exprs[i], std::regex(R"(\$__rate_interval)"), "5m");
      e = std::regex_replace(e, std::regex(R"(\$instance)"), ".*");
      rules << "      - record: dashboard_query_" << i << "\n        expr: " << Json(e).dump()
            << "\n";
    }
  }
  const auto check =
      RunProgram(MMCHAT_PROMTOOL, {"check", "rules", "dashboard-rules.yml"}, {}, dir);
  EXPECT_EQ(check.exit_code, 0) << check.output;
  // Besides the server's, the rules may use Prometheus' own `up` (is the target scraped).
  const auto rule_names = MetricNamesIn(ReadDoc("ops/prometheus-rules.yml"));
  ASSERT_GE(rule_names.size(), 5u);
  for (const auto& n : rule_names) EXPECT_TRUE(exported.count(n)) << n << " in the alert rules";
}

}  // namespace
}  // namespace mmchat::test
