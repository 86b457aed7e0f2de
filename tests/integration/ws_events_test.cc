// API.md "WebSocket" events against the real binary over real sockets: which connections get
// each event type and which do not, several devices per user, presence and last_seen, typing
// with its expiry, read and delivery receipts with the message status they lead to,
// conversation changes with each reader's own view, and message order under a burst.
//
// Proving that nothing arrived, without sleeping: after the action under test, the test causes
// a later "marker" event that the connection IS a recipient of, and asserts that the first frame
// it sees (of that type) is the marker. A connection writes its frames in the order they were
// queued, so a frame sent by mistake would have come before the marker.
//
// Presence and delivery receipts may interleave with anything (peers open and close, receipts
// go out on a timer): NextEvent skips them; tests about them look for them by type.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <latch>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/time.h"
#include "harness.h"
#include "ws_client.h"

namespace mmchat::test {
namespace {

using namespace std::chrono_literals;

const std::regex kRfc3339Millis(R"(^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$)");
constexpr int64_t kUnknownId = 999'999'999;

bool IsRfc3339(const Json& v) {
  return v.is_string() && std::regex_match(v.get<std::string>(), kRfc3339Millis);
}

// These tests open many connections and send as fast as they can: no abuse limits (they have
// their own tests in abuse_limits_test.cc).
ServerOptions WithTypingTimeout(int seconds) {
  ServerOptions o{.env = kNoAbuseLimits};
  o.env["WS_TYPING_TIMEOUT_SEC"] = std::to_string(seconds);
  return o;
}

std::string Type(const Json& frame) {
  return frame.is_object() ? frame.value("type", std::string()) : std::string();
}

bool IsNoise(const Json& frame) {
  const std::string t = Type(frame);
  return t == "presence" || t == "delivery_receipt";
}

// The next frame for which `want` holds, discarding the others; null after `timeout` or when
// the connection ended.
template <class Pred>
Json NextWhere(WsClient& ws, Pred want, std::chrono::milliseconds timeout = 5s) {
  return ws.NextWhere([&](Json& f) { return want(f); }, timeout);
}

// The next frame that is neither presence nor a delivery receipt.
Json NextEvent(WsClient& ws) {
  return NextWhere(ws, [](const Json& f) { return !IsNoise(f); });
}

// The next typing_start or typing_stop.
Json NextTyping(WsClient& ws) {
  return NextWhere(ws, [](const Json& f) {
    const std::string t = Type(f);
    return t == "typing_start" || t == "typing_stop";
  });
}

Json TypingFrame(const std::string& type, int64_t conversation) {
  return {{"type", type}, {"conversation_id", conversation}};
}

Json TypingData(int64_t conversation, int64_t user) {
  return {{"conversation_id", conversation}, {"user_id", user}};
}

// user id -> role of a Conversation object's participants.
std::map<int64_t, std::string> Roles(const Json& conversation) {
  std::map<int64_t, std::string> out;
  for (const auto& p : conversation.value("participants", Json::array())) {
    out[p.value("user_id", int64_t{0})] = p.value("role", std::string());
  }
  return out;
}

// The fields of a pushed Message that must equal the stored one (status may move on).
void ExpectSameMessage(const Json& got, const Json& want) {
  for (const char* key :
       {"id", "conversation_id", "seq", "sender_id", "content", "client_id", "created_at"}) {
    EXPECT_EQ(got.value(key, Json()), want.value(key, Json())) << key << ": " << got.dump();
  }
  EXPECT_TRUE(got.contains("status")) << got.dump();
}

class WsEventsFixture : public ::testing::Test {
 protected:
  // A 1 s typing expiry also makes the delivery-receipt tick 250 ms.
  explicit WsEventsFixture(ServerOptions options = WithTypingTimeout(1))
      : server_(std::move(options)), client_(server_.port()) {}

  Account User(const std::string& name) { return SignUp(server_, client_, name); }

  // Opens a connection and waits until the hub has registered it: the server reads frames
  // only after registering, so the pong to a ping proves that every later event reaches it.
  // Frames before the pong may only be noise; they go to `early` when given.
  std::unique_ptr<WsClient> Connect(const Account& a, std::vector<Json>* early = nullptr) {
    EXPECT_TRUE(server_.WaitForBus());
    auto ws = std::make_unique<WsClient>(server_.ws_port(), a.token);
    EXPECT_TRUE(ws->connected()) << ws->refusal().body;
    if (!ws->connected()) return ws;
    ws->Send({{"type", "ping"}});
    for (;;) {
      Json f = ws->Next();
      if (f.is_null()) {
        ADD_FAILURE() << "no pong for " << a.username;
        break;
      }
      if (Type(f) == "pong") break;
      // Under SplitNodes() the news of a conversation made over REST (the other node) just
      // before may be taken from the bus (WaitForBus) but not yet handed to the hub when this
      // connection opens: it can come after the 101.
      const bool in_flight = SplitNodes() && Type(f) == "conversation";
      EXPECT_TRUE(IsNoise(f) || in_flight) << "before the first pong: " << f.dump();
      if (early) early->push_back(f);
    }
    return ws;
  }

  static std::string ConvPath(int64_t conversation) {
    return "/api/conversations/" + std::to_string(conversation);
  }

  int64_t Group(const Account& creator, const std::vector<int64_t>& members,
                const std::string& name = "team") {
    auto r = client_.Post("/api/conversations/group", {{"name", name}, {"member_ids", members}},
                          creator.token);
    EXPECT_EQ(r.status, 201) << r.body;
    return r.json.value("id", int64_t{0});
  }
  int64_t Private(const Account& a, const Account& b) {
    auto r = client_.Post("/api/conversations/private", {{"user_id", b.id}}, a.token);
    EXPECT_TRUE(r.status == 201 || r.status == 200) << r.body;
    return r.json.value("id", int64_t{0});
  }
  // `ws` (a connection of `who`) got nothing so far: `who` makes a group of its own, and the
  // first frame the connection sees is about that group (frames go out in queue order).
  void ExpectNothingBeforeOwnGroup(const Account& who, WsClient& ws) {
    const int64_t own = Group(who, {}, "own");
    Json f = ws.Next();
    ASSERT_EQ(Type(f), "conversation") << f.dump();
    EXPECT_EQ(f["data"]["id"], own);
  }
  Json SendHttp(const Account& a, int64_t conversation, const std::string& content,
                const std::optional<std::string>& client_id = std::nullopt, int status = 201) {
    Json body = {{"conversation_id", conversation}, {"content", content}};
    if (client_id) body["client_id"] = *client_id;
    auto r = client_.Post("/api/messages", body, a.token);
    EXPECT_EQ(r.status, status) << r.body;
    return r.json;
  }
  int64_t Send(const Account& a, int64_t conversation, const std::string& content) {
    return SendHttp(a, conversation, content).value("id", int64_t{0});
  }
  Json ReadHttp(const Account& a, int64_t conversation, int64_t message) {
    auto r = client_.Post("/api/messages/read",
                          {{"conversation_id", conversation}, {"message_id", message}}, a.token);
    EXPECT_EQ(r.status, 200) << r.body;
    return r.json;
  }
  // The conversation's messages as `a` lists them (a listing counts as delivery to `a`).
  Json History(const Account& a, int64_t conversation) {
    auto r = client_.Get(ConvPath(conversation) + "/messages?limit=100", a.token);
    EXPECT_EQ(r.status, 200) << r.body;
    return r.json.value("messages", Json::array());
  }
  std::string StatusOf(const Account& sender, int64_t conversation, int64_t message) {
    for (const auto& m : History(sender, conversation)) {
      if (m.value("id", int64_t{0}) == message) return m.value("status", std::string());
    }
    return "(missing)";
  }
  Json View(const Account& a, int64_t conversation) {
    auto r = client_.Get(ConvPath(conversation), a.token);
    EXPECT_EQ(r.status, 200) << r.body;
    return r.json;
  }
  void RemoveParticipant(const Account& actor, int64_t conversation, int64_t user) {
    auto r =
        client_.Request("DELETE", ConvPath(conversation) + "/participants/" + std::to_string(user),
                        "", actor.token);
    EXPECT_EQ(r.status, 204) << r.body;
  }

  // The mmchat_ws_connections gauge (of the node holding them: harness.h, SplitNodes).
  double OpenConnections() {
    auto r = HttpClient(server_.ws_port()).Get("/metrics");
    std::istringstream in(r.body);
    const std::string name = "mmchat_ws_connections ";
    for (std::string line; std::getline(in, line);) {
      if (line.rfind(name, 0) == 0) return std::stod(line.substr(name.size()));
    }
    return -1;
  }
  // Waits until the hub counts `n` open connections (a close it has fully taken in).
  bool WaitForOpenConnections(int n) {
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (std::chrono::steady_clock::now() < deadline) {
      if (OpenConnections() == n) return true;
      std::this_thread::sleep_for(5ms);
    }
    return false;
  }

  TestServer server_;
  HttpClient client_;
};

// =============================================================================================
// message: every participant's connections, the sender's other devices and sending connection
// =============================================================================================

class WsEventsMessageTest : public WsEventsFixture {};

TEST_F(WsEventsMessageTest, HttpMessageReachesEveryDeviceOfEveryParticipantAndNoOneElse) {
  Account alice = User("alice");
  Account bob = User("bob");
  Account carol = User("carol");  // shares no conversation with them
  const int64_t conv = Group(alice, {bob.id});
  auto a1 = Connect(alice);
  auto a2 = Connect(alice);
  auto b1 = Connect(bob);
  auto b2 = Connect(bob);
  auto c = Connect(carol);

  Json sent = SendHttp(alice, conv, "hello");
  for (WsClient* ws : {a1.get(), a2.get(), b1.get(), b2.get()}) {
    Json f = NextEvent(*ws);
    ASSERT_EQ(Type(f), "message") << f.dump();
    ExpectSameMessage(f["data"], sent);
  }
  // carol got nothing at all (not even presence): her first frame is about her own group.
  ExpectNothingBeforeOwnGroup(carol, *c);
}

TEST_F(WsEventsMessageTest, WsMessageFrameReachesTheSendingConnectionToo) {
  Account alice = User("alice");
  Account bob = User("bob");
  const int64_t conv = Group(alice, {bob.id});
  auto a1 = Connect(alice);
  auto a2 = Connect(alice);
  auto b = Connect(bob);

  a1->Send({{"type", "message"},
            {"ref", "r1"},
            {"conversation_id", conv},
            {"content", "by ws"},
            {"client_id", "c-1"}});
  // The sending connection gets both the ack and the message event (in either order).
  Json ack, pushed;
  for (int i = 0; i < 2; ++i) {
    Json f = NextEvent(*a1);
    if (Type(f) == "ack") {
      ack = f;
    } else if (Type(f) == "message") {
      pushed = f;
    } else {
      FAIL() << f.dump();
    }
  }
  ASSERT_TRUE(ack.is_object() && pushed.is_object());
  EXPECT_EQ(ack["data"]["ref"], "r1");
  EXPECT_EQ(ack["data"]["ok"], true);
  const Json& result = ack["data"]["result"];
  EXPECT_EQ(result["content"], "by ws");
  EXPECT_EQ(result["client_id"], "c-1");
  EXPECT_EQ(result["sender_id"], alice.id);
  ExpectSameMessage(pushed["data"], result);
  for (WsClient* ws : {a2.get(), b.get()}) {
    Json f = NextEvent(*ws);
    ASSERT_EQ(Type(f), "message") << f.dump();
    ExpectSameMessage(f["data"], result);
  }
}

TEST_F(WsEventsMessageTest, RepeatedClientIdMakesNoSecondEvent) {
  Account alice = User("alice");
  Account bob = User("bob");
  const int64_t conv = Private(alice, bob);
  auto b = Connect(bob);

  Json first = SendHttp(alice, conv, "once", "dup-1");
  Json again = SendHttp(alice, conv, "once", "dup-1", /*status=*/200);
  EXPECT_EQ(again["id"], first["id"]);
  auto a = Connect(alice);
  a->Send({{"type", "message"},
           {"ref", "retry"},
           {"conversation_id", conv},
           {"content", "once"},
           {"client_id", "dup-1"}});
  Json ack = a->NextOfType("ack");
  ASSERT_EQ(ack["data"]["ok"], true) << ack.dump();
  EXPECT_EQ(ack["data"]["result"]["id"], first["id"]);

  const int64_t next = Send(alice, conv, "next");
  // bob: the original once, then the next one; the retries announced nothing.
  Json f = NextEvent(*b);
  EXPECT_EQ(f["data"]["id"], first["id"]) << f.dump();
  f = NextEvent(*b);
  EXPECT_EQ(f["data"]["id"], next) << f.dump();
  // alice's connection (open before the WS retry) saw no message before the next one.
  f = a->NextOfType("message");
  EXPECT_EQ(f["data"]["id"], next) << f.dump();
}

// =============================================================================================
// message_updated: edits, deletions and reactions reach every participant's connections
// =============================================================================================

class WsEventsMessageUpdatedTest : public WsEventsFixture {
 protected:
  HttpResult Change(const std::string& method, const Account& a, int64_t message,
                    const std::string& rest = "", const std::string& body = "") {
    return client_.Request(method, "/api/messages/" + std::to_string(message) + rest, body,
                           a.token);
  }
};

TEST_F(WsEventsMessageUpdatedTest, EveryChangeReachesEveryDeviceInChangeIdOrder) {
  Account alice = User("alice");
  Account bob = User("bob");
  Account carol = User("carol");  // shares no conversation with them
  const int64_t conv = Group(alice, {bob.id});
  auto a1 = Connect(alice);
  auto a2 = Connect(alice);
  auto b = Connect(bob);
  auto c = Connect(carol);
  const int64_t id = Send(bob, conv, "helo");
  for (WsClient* ws : {a1.get(), a2.get(), b.get()}) ASSERT_EQ(Type(NextEvent(*ws)), "message");

  auto edit = Change("PATCH", bob, id, "", R"({"content":"hello"})");
  ASSERT_EQ(edit.status, 200) << edit.body;
  auto react = Change("PUT", alice, id, "/reactions/%F0%9F%91%8D");
  ASSERT_EQ(react.status, 200) << react.body;
  auto del = Change("DELETE", alice, id);  // the group's admin
  ASSERT_EQ(del.status, 204) << del.body;

  // The actor's own devices too (a1 reacted and deleted), each change once, in order.
  for (WsClient* ws : {a1.get(), a2.get(), b.get()}) {
    Json f1 = NextEvent(*ws);
    ASSERT_EQ(Type(f1), "message_updated") << f1.dump();
    EXPECT_EQ(f1["data"]["content"], "hello");
    EXPECT_EQ(f1["data"]["change_id"], edit.json["change_id"]);
    EXPECT_TRUE(f1["data"]["edited_at"].is_string());
    EXPECT_TRUE(f1["data"].contains("status"));
    Json f2 = NextEvent(*ws);
    ASSERT_EQ(Type(f2), "message_updated") << f2.dump();
    EXPECT_EQ(f2["data"]["reactions"], react.json["reactions"]);
    EXPECT_EQ(f2["data"]["change_id"], react.json["change_id"]);
    Json f3 = NextEvent(*ws);
    ASSERT_EQ(Type(f3), "message_updated") << f3.dump();
    EXPECT_EQ(f3["data"]["id"], id);
    EXPECT_EQ(f3["data"]["content"], "");
    EXPECT_EQ(f3["data"]["reactions"], Json::array());
    EXPECT_TRUE(f3["data"]["deleted_at"].is_string());
    EXPECT_GT(f3["data"]["change_id"].get<int64_t>(), f2["data"]["change_id"].get<int64_t>());
  }
  // carol heard nothing of it: her first frame is about her own group.
  ExpectNothingBeforeOwnGroup(carol, *c);
}

TEST_F(WsEventsMessageUpdatedTest, ACallThatChangesNothingSendsNoEvent) {
  Account alice = User("alice");
  Account bob = User("bob");
  const int64_t conv = Private(alice, bob);
  auto b = Connect(bob);
  const int64_t id = Send(alice, conv, "same");
  ASSERT_EQ(Type(NextEvent(*b)), "message");
  ASSERT_EQ(Change("PATCH", alice, id, "", R"({"content":"same"})").status, 200);
  ASSERT_EQ(Change("DELETE", bob, id, "/reactions/x").status, 200);  // bob has no "x"
  ASSERT_EQ(Change("PATCH", bob, id, "", R"({"content":"not mine"})").status, 403);
  // The marker: the next event bob sees is this reaction, not anything before it.
  auto marker = Change("PUT", alice, id, "/reactions/y");
  ASSERT_EQ(marker.status, 200);
  Json f = NextEvent(*b);
  ASSERT_EQ(Type(f), "message_updated") << f.dump();
  EXPECT_EQ(f["data"]["change_id"], marker.json["change_id"]);
}

TEST_F(WsEventsMessageUpdatedTest, AReplyByWebSocketCarriesReplyTo) {
  Account alice = User("alice");
  Account bob = User("bob");
  const int64_t conv = Private(alice, bob);
  auto a = Connect(alice);
  auto b = Connect(bob);
  const int64_t first = Send(alice, conv, "question");
  ASSERT_EQ(Type(NextEvent(*b)), "message");
  b->Send({{"type", "message"},
           {"ref", "r"},
           {"conversation_id", conv},
           {"content", "answer"},
           {"reply_to", first}});
  Json ack = b->NextOfType("ack");
  ASSERT_EQ(ack["data"]["ok"], true) << ack.dump();
  EXPECT_EQ(ack["data"]["result"]["reply_to"], first);
  Json pushed = a->NextOfType("message");
  while (pushed.is_object() && pushed["data"]["id"] == first) pushed = a->NextOfType("message");
  EXPECT_EQ(pushed["data"]["reply_to"], first) << pushed.dump();
  b->Send({{"type", "message"},
           {"ref", "bad"},
           {"conversation_id", conv},
           {"content", "x"},
           {"reply_to", 999999999}});
  Json refused =
      b->NextWhere([](Json& f) { return Type(f) == "ack" && f["data"]["ref"] == "bad"; });
  ASSERT_EQ(refused["data"]["ok"], false) << refused.dump();
  EXPECT_EQ(refused["data"]["error"]["code"], "invalid_request");
}

// =============================================================================================
// A new connection: events from the moment its handshake completed
// =============================================================================================

class WsEventsConnectTest : public WsEventsFixture {
 protected:
  WsEventsConnectTest() : WsEventsFixture(WithTypingTimeout(60)) {}
};

// A client may act as soon as its handshake completes (Connect's ping is not part of the
// contract), so an event caused right after must reach the new connection. The typing relay
// is the quickest event there is: no database on its path.
TEST_F(WsEventsConnectTest, EventRightAfterTheUpgradeReachesTheNewConnection) {
  Account alice = User("alice");
  Account bob = User("bob");
  const int64_t conv = Private(alice, bob);
  auto a = Connect(alice);
  constexpr int kTries = 200;
  int lost_at = 0;  // the first try whose connection missed the event
  for (int i = 1; i <= kTries && lost_at == 0; ++i) {
    WsClient b(server_.ws_port(), bob.token);
    ASSERT_TRUE(b.connected());
    // Alternating, as only a change of state is relayed.
    const char* type = i % 2 == 1 ? "typing_start" : "typing_stop";
    a->Send(TypingFrame(type, conv));
    if (Type(NextTyping(b)) != type) lost_at = i;
    b.Close();
  }
  EXPECT_EQ(lost_at, 0) << "connection #" << lost_at
                        << " missed a typing_start sent after its handshake completed";
}

// =============================================================================================
// Ordering under a burst from several senders, over HTTP and WS at once
// =============================================================================================

class WsEventsOrderingTest : public WsEventsFixture {};

TEST_F(WsEventsOrderingTest, BurstOf500ArrivesOnceInIdOrderWithGaplessSeqOnEveryConnection) {
  constexpr int kPerSender = 125;  // 4 senders: 500 messages
  constexpr size_t kTotal = 4 * kPerSender;
  Account alice = User("alice");
  Account bob = User("bob");
  Account carol = User("carol");
  Account dave = User("dave");
  const int64_t conv = Group(alice, {bob.id, carol.id, dave.id});
  auto a1 = Connect(alice);
  auto a2 = Connect(alice);
  auto b = Connect(bob);
  auto c = Connect(carol);
  auto d = Connect(dave);

  // alice and bob send over HTTP, each from its own thread and connection; carol and dave send
  // message frames on their WebSocket connections, all at the same time.
  std::vector<int> http_status[2];
  std::vector<int64_t> http_ids[2];
  const Account* http_senders[2] = {&alice, &bob};
  WsClient* ws_senders[2] = {c.get(), d.get()};
  std::latch start(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      HttpClient http(server_.port());
      start.arrive_and_wait();
      for (int i = 0; i < kPerSender; ++i) {
        Json body = {{"conversation_id", conv},
                     {"content", "h" + std::to_string(t) + "-" + std::to_string(i)}};
        try {
          auto r = http.Post("/api/messages", body, http_senders[t]->token);
          http_status[t].push_back(r.status);
          if (r.status == 201) http_ids[t].push_back(r.json["id"].get<int64_t>());
        } catch (const std::exception&) {
          http_status[t].push_back(-1);
        }
      }
    });
  }
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      start.arrive_and_wait();
      for (int i = 0; i < kPerSender; ++i) {
        ws_senders[t]->Send({{"type", "message"},
                             {"ref", std::to_string(i)},
                             {"conversation_id", conv},
                             {"content", "w" + std::to_string(t) + "-" + std::to_string(i)}});
      }
    });
  }
  for (auto& th : threads) th.join();

  std::set<int64_t> sent;
  for (int t = 0; t < 2; ++t) {
    ASSERT_EQ(http_ids[t].size(), static_cast<size_t>(kPerSender))
        << "HTTP sender " << t << " got a non-201";
    sent.insert(http_ids[t].begin(), http_ids[t].end());
  }

  struct Conn {
    const char* name;
    WsClient* ws;
    int acks;  // acks expected on this connection
  };
  const Conn conns[] = {{"alice#1", a1.get(), 0},
                        {"alice#2", a2.get(), 0},
                        {"bob", b.get(), 0},
                        {"carol", c.get(), kPerSender},
                        {"dave", d.get(), kPerSender}};
  for (const Conn& conn : conns) {
    std::vector<Json> got;
    int acks = 0;
    while (got.size() < kTotal || acks < conn.acks) {
      Json f = NextWhere(*conn.ws,
                         [](const Json& x) { return Type(x) == "message" || Type(x) == "ack"; });
      if (f.is_null()) break;
      if (Type(f) == "ack") {
        ++acks;
        EXPECT_EQ(f["data"]["ok"], true) << f.dump();
        if (f["data"]["ok"] == true) sent.insert(f["data"]["result"]["id"].get<int64_t>());
      } else {
        got.push_back(f["data"]);
      }
    }
    ASSERT_EQ(got.size(), kTotal) << conn.name;
    EXPECT_EQ(acks, conn.acks) << conn.name;
    int64_t prev = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      const int64_t id = got[i].value("id", int64_t{0});
      EXPECT_GT(id, prev) << conn.name << " frame " << i << ": " << got[i].dump();
      EXPECT_EQ(got[i].value("seq", int64_t{0}), static_cast<int64_t>(i) + 1)
          << conn.name << " frame " << i << ": " << got[i].dump();
      EXPECT_EQ(got[i]["conversation_id"], conv);
      prev = id;
    }
    std::set<int64_t> ids;
    for (const auto& m : got) ids.insert(m.value("id", int64_t{0}));
    EXPECT_EQ(ids.size(), kTotal) << conn.name;
  }
  // The ids pushed are the ids the senders were told about.
  EXPECT_EQ(sent.size(), kTotal);

  // Exactly once: after the 500, the next message on every connection is a later one.
  const int64_t last = Send(alice, conv, "last");
  for (const Conn& conn : conns) {
    Json f = conn.ws->NextOfType("message");
    EXPECT_EQ(f["data"]["id"], last) << conn.name << ": " << f.dump();
    EXPECT_FALSE(sent.count(f["data"].value("id", int64_t{0}))) << conn.name;
  }
}

// =============================================================================================
// presence: to users sharing a conversation, on the first open and the last close
// =============================================================================================

class WsEventsPresenceTest : public WsEventsFixture {};

TEST_F(WsEventsPresenceTest, FirstConnectionIsAnnouncedToPeersOnly) {
  Account alice = User("alice");
  Account bob = User("bob");
  Account carol = User("carol");  // shares no conversation with alice
  const int64_t conv = Group(bob, {alice.id});
  auto b = Connect(bob);
  auto c = Connect(carol);

  std::vector<Json> early;
  auto a = Connect(alice, &early);
  // bob's own announcement may still be on its way when alice connects (presence is announced
  // asynchronously); what alice must never get is her own.
  for (const Json& f : early) EXPECT_NE(f["data"]["user_id"], alice.id) << f.dump();
  Json p = b->NextOfType("presence");
  ASSERT_EQ(Type(p), "presence") << p.dump();
  // Never connected before: no last_seen yet.
  EXPECT_EQ(p["data"], (Json{{"user_id", alice.id}, {"online", true}, {"last_seen", nullptr}}));

  // alice is not told about herself: her first frame is bob's later message.
  const int64_t m = Send(bob, conv, "marker");
  Json f = a->Next();
  while (Type(f) == "presence" && f["data"]["user_id"] != alice.id) f = a->Next();  // bob's
  ASSERT_EQ(Type(f), "message") << f.dump();
  EXPECT_EQ(f["data"]["id"], m);
  // carol heard of nobody: her first frame is about her own group.
  ExpectNothingBeforeOwnGroup(carol, *c);
}

TEST_F(WsEventsPresenceTest, SecondDeviceAndNonLastCloseAreSilentAndLastCloseSetsLastSeen) {
  Account alice = User("alice");
  Account bob = User("bob");
  Account carol = User("carol");  // bob's peer, not alice's
  Private(alice, bob);
  Private(bob, carol);
  auto b = Connect(bob);

  auto a1 = Connect(alice);
  Json p = b->NextOfType("presence");
  EXPECT_EQ(p["data"]["user_id"], alice.id) << p.dump();
  EXPECT_EQ(p["data"]["online"], true) << p.dump();

  auto a2 = Connect(alice);                // a second device: no presence
  a1->Close();                             // not the last one: no presence
  ASSERT_TRUE(WaitForOpenConnections(2));  // bob and alice#2: the close was taken in
  // Still online through the other device.
  auto user = client_.Get("/api/users/" + std::to_string(alice.id), bob.token);
  EXPECT_EQ(user.json["online"], true) << user.body;
  auto seen = client_.Get("/api/users/" + std::to_string(alice.id) + "/last-seen", bob.token);
  EXPECT_EQ(seen.json["online"], true) << seen.body;

  // Marker: carol comes online; it must be the next presence bob sees.
  auto c = Connect(carol);
  p = b->NextOfType("presence");
  EXPECT_EQ(p["data"]["user_id"], carol.id) << "alice's second device or first close: " << p.dump();
  EXPECT_EQ(p["data"]["online"], true) << p.dump();

  // The last close: offline with last_seen now.
  a2->Close();
  p = b->NextOfType("presence");
  ASSERT_EQ(Type(p), "presence") << p.dump();
  EXPECT_EQ(p["data"]["user_id"], alice.id) << p.dump();
  EXPECT_EQ(p["data"]["online"], false) << p.dump();
  EXPECT_TRUE(IsRfc3339(p["data"]["last_seen"])) << p.dump();

  seen = client_.Get("/api/users/" + std::to_string(alice.id) + "/last-seen", bob.token);
  ASSERT_EQ(seen.status, 200) << seen.body;
  EXPECT_EQ(
      seen.json,
      (Json{{"user_id", alice.id}, {"online", false}, {"last_seen", p["data"]["last_seen"]}}));
  user = client_.Get("/api/users/" + std::to_string(alice.id), bob.token);
  EXPECT_EQ(user.json["online"], false) << user.body;
  EXPECT_EQ(user.json["last_seen"], p["data"]["last_seen"]) << user.body;

  // carol, no peer of alice's, heard nothing of her: her first frame is about her own group.
  ExpectNothingBeforeOwnGroup(carol, *c);
}

// API.md: a user is offline once the last connection closed, "then last_seen is set". A
// reader right after the close, under load, must see either still online, or offline with
// this session's last_seen: never offline with no last_seen or the previous session's.
TEST_F(WsEventsPresenceTest, ReadRightAfterTheLastCloseIsOnlineOrOfflineWithThisSessionsTime) {
  constexpr int kUsers = 8;
  constexpr int kRounds = 6;
  Account reader = User("reader");
  std::vector<Account> users;
  for (int i = 0; i < kUsers; ++i) users.push_back(User("user" + std::to_string(i)));
  std::mutex mu;
  std::vector<std::string> wrong;
  int offline_reads = 0;
  std::vector<std::thread> threads;
  for (const Account& u : users) {
    threads.emplace_back([&, u] {
      HttpClient http(server_.port());
      const std::string path = "/api/users/" + std::to_string(u.id) + "/last-seen";
      for (int round = 0; round < kRounds; ++round) {
        // A second of slack below the session's start: the clocks are the same machine's.
        const std::string opened = FormatRfc3339(NowMs() - 1000);
        {
          WsClient ws(server_.ws_port(), u.token);
          if (!ws.connected()) {
            std::lock_guard lock(mu);
            wrong.push_back(u.username + " could not connect: " + ws.refusal().body);
            return;
          }
          ws.Close();
        }
        // 20 reads, and on until one sees the close (a loaded machine may take longer).
        const auto deadline = std::chrono::steady_clock::now() + 5s;
        bool offline = false;
        for (int read = 0; read < 20 || (!offline && std::chrono::steady_clock::now() < deadline);
             ++read) {
          auto r = http.Get(path, reader.token);
          std::lock_guard lock(mu);
          if (r.status != 200) {
            wrong.push_back(u.username + ": " + std::to_string(r.status) + " " + r.body);
            continue;
          }
          if (r.json["online"] == true) continue;
          offline = true;
          ++offline_reads;
          const Json& seen = r.json["last_seen"];
          if (!seen.is_string() || seen.get<std::string>() < opened) {
            wrong.push_back(u.username + " round " + std::to_string(round) + ": " + r.body +
                            " (session opened after " + opened + ")");
          }
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_TRUE(wrong.empty()) << wrong.size() << " wrong reads, the first: " << wrong.front();
  EXPECT_GT(offline_reads, 0);  // the reads did reach past the close
}

TEST_F(WsEventsPresenceTest, ComingBackOnlineCarriesThePreviousLastSeen) {
  Account alice = User("alice");
  Account bob = User("bob");
  Private(alice, bob);
  auto b = Connect(bob);

  auto a = Connect(alice);
  Json p = b->NextOfType("presence");
  EXPECT_EQ(p["data"]["online"], true) << p.dump();
  auto seen = client_.Get("/api/users/" + std::to_string(alice.id) + "/last-seen", bob.token);
  EXPECT_EQ(seen.json["online"], true) << seen.body;
  EXPECT_EQ(seen.json["user_id"], alice.id) << seen.body;

  a->Close();
  p = b->NextOfType("presence");
  ASSERT_EQ(p["data"]["online"], false) << p.dump();
  const Json last_seen = p["data"]["last_seen"];
  ASSERT_TRUE(IsRfc3339(last_seen)) << p.dump();

  a = Connect(alice);
  p = b->NextOfType("presence");
  EXPECT_EQ(p["data"], (Json{{"user_id", alice.id}, {"online", true}, {"last_seen", last_seen}}));
}

// =============================================================================================
// typing_start / typing_stop: relayed to the other participants; expiry and disconnect end it
// =============================================================================================

// A long expiry, so that every typing_stop these tests see comes from what they did.
class WsEventsTypingTest : public WsEventsFixture {
 protected:
  WsEventsTypingTest() : WsEventsFixture(WithTypingTimeout(60)) {}
};

// The 1 s expiry of the base fixture.
class WsEventsTypingExpiryTest : public WsEventsFixture {};

TEST_F(WsEventsTypingTest, StartAndStopAreRelayedToTheOtherParticipantsOnly) {
  Account alice = User("alice");
  Account bob = User("bob");
  Account carol = User("carol");
  Account dave = User("dave");  // in none of it
  const int64_t conv = Group(alice, {bob.id, carol.id});
  auto a1 = Connect(alice);
  auto a2 = Connect(alice);
  auto b = Connect(bob);
  auto c = Connect(carol);
  auto d = Connect(dave);

  a1->Send({{"type", "typing_start"}, {"ref", "t1"}, {"conversation_id", conv}});
  Json ack = a1->NextOfType("ack");
  EXPECT_EQ(ack["data"], (Json{{"ref", "t1"}, {"ok", true}})) << "no result for typing";
  for (WsClient* ws : {b.get(), c.get()}) {
    Json f = NextTyping(*ws);
    EXPECT_EQ(Type(f), "typing_start") << f.dump();
    EXPECT_EQ(f["data"], TypingData(conv, alice.id)) << f.dump();
  }
  a1->Send({{"type", "typing_stop"}, {"ref", "t2"}, {"conversation_id", conv}});
  ack = a1->NextOfType("ack");
  EXPECT_EQ(ack["data"], (Json{{"ref", "t2"}, {"ok", true}}));
  for (WsClient* ws : {b.get(), c.get()}) {
    Json f = NextTyping(*ws);
    EXPECT_EQ(Type(f), "typing_stop") << f.dump();
    EXPECT_EQ(f["data"], TypingData(conv, alice.id)) << f.dump();
  }

  // alice's own devices heard none of it: their first typing frame is bob's.
  b->Send({{"type", "typing_start"}, {"ref", "tb"}, {"conversation_id", conv}});
  EXPECT_EQ(b->NextOfType("ack")["data"]["ok"], true);
  for (WsClient* ws : {a1.get(), a2.get()}) {
    Json f = NextTyping(*ws);
    EXPECT_EQ(Type(f), "typing_start") << f.dump();
    EXPECT_EQ(f["data"], TypingData(conv, bob.id)) << f.dump();
  }
  // dave: his first frame is about his own group.
  ExpectNothingBeforeOwnGroup(dave, *d);
}

// A change of state is relayed; a repeated start only refreshes the state (the server ends it
// with a stop when the refreshes cease), and a stop while not typing is quiet.
TEST_F(WsEventsTypingTest, StartsAndStopsAreRelayedOnlyWhenTheStateChanges) {
  Account alice = User("alice");
  Account bob = User("bob");
  const int64_t conv = Private(alice, bob);
  auto a = Connect(alice);
  auto b = Connect(bob);

  // stop (not typing: quiet), start, start, stop, stop (quiet), start.
  const char* sequence[] = {"typing_stop", "typing_start", "typing_start",
                            "typing_stop", "typing_stop",  "typing_start"};
  int ref = 0;
  for (const char* type : sequence) {
    Json frame = TypingFrame(type, conv);
    frame["ref"] = std::to_string(++ref);
    a->Send(frame);
    Json ack = a->NextOfType("ack");
    EXPECT_EQ(ack["data"], (Json{{"ref", std::to_string(ref)}, {"ok", true}})) << type;
  }
  for (const char* want : {"typing_start", "typing_stop", "typing_start"}) {
    Json f = NextTyping(*b);
    EXPECT_EQ(Type(f), want) << f.dump();
    EXPECT_EQ(f["data"], TypingData(conv, alice.id)) << f.dump();
  }
}

TEST_F(WsEventsTypingExpiryTest, TypingNotRefreshedEndsWithAServerSentStop) {
  Account alice = User("alice");
  Account bob = User("bob");
  const int64_t conv = Private(alice, bob);
  auto a = Connect(alice);
  auto b = Connect(bob);

  a->Send({{"type", "typing_start"}, {"ref", "s"}, {"conversation_id", conv}});
  EXPECT_EQ(a->NextOfType("ack")["data"]["ok"], true);
  Json f = NextTyping(*b);
  EXPECT_EQ(Type(f), "typing_start") << f.dump();
  // Nobody sends a stop: the server does, after WS_TYPING_TIMEOUT_SEC=1.
  f = NextTyping(*b);
  EXPECT_EQ(Type(f), "typing_stop") << f.dump();
  EXPECT_EQ(f["data"], TypingData(conv, alice.id)) << f.dump();

  // The state is over: a stop now is quiet, and a new start is relayed.
  a->Send({{"type", "typing_stop"}, {"ref", "late-stop"}, {"conversation_id", conv}});
  EXPECT_EQ(a->NextOfType("ack")["data"]["ok"], true);
  a->Send({{"type", "typing_start"}, {"ref", "again"}, {"conversation_id", conv}});
  EXPECT_EQ(a->NextOfType("ack")["data"]["ok"], true);
  f = NextTyping(*b);
  EXPECT_EQ(Type(f), "typing_start") << f.dump();

  // The expiry stop went to bob only: alice's first typing frame is bob's.
  b->Send({{"type", "typing_start"}, {"conversation_id", conv}});
  f = NextTyping(*a);
  EXPECT_EQ(Type(f), "typing_start") << f.dump();
  EXPECT_EQ(f["data"], TypingData(conv, bob.id)) << f.dump();
}

TEST_F(WsEventsTypingTest, ClosingTheConnectionThatStartedItEndsTheTyping) {
  Account alice = User("alice");
  Account bob = User("bob");
  Account carol = User("carol");
  const int64_t conv = Group(alice, {bob.id, carol.id});
  auto a1 = Connect(alice);
  auto a2 = Connect(alice);
  auto b = Connect(bob);
  auto c = Connect(carol);

  a1->Send({{"type", "typing_start"}, {"ref", "s"}, {"conversation_id", conv}});
  EXPECT_EQ(a1->NextOfType("ack")["data"]["ok"], true);
  Json f = NextTyping(*b);
  EXPECT_EQ(Type(f), "typing_start") << f.dump();

  // Closing alice's other device does not end it: bob's next typing frame is carol's.
  a2->Close();
  ASSERT_TRUE(WaitForOpenConnections(3));
  c->Send({{"type", "typing_start"}, {"ref", "c"}, {"conversation_id", conv}});
  EXPECT_EQ(c->NextOfType("ack")["data"]["ok"], true);
  f = NextTyping(*b);
  EXPECT_EQ(Type(f), "typing_start") << f.dump();
  EXPECT_EQ(f["data"], TypingData(conv, carol.id)) << "alice's other device closed: " << f.dump();

  // Closing the one that started it does (the 60 s expiry is far away).
  a1->Close();
  f = NextTyping(*b);
  EXPECT_EQ(Type(f), "typing_stop") << f.dump();
  EXPECT_EQ(f["data"], TypingData(conv, alice.id)) << f.dump();
  f = NextTyping(*c);
  EXPECT_EQ(Type(f), "typing_stop") << f.dump();
  EXPECT_EQ(f["data"], TypingData(conv, alice.id)) << f.dump();
}

TEST_F(WsEventsTypingTest, RemovingATypistFromTheConversationEndsItsTyping) {
  Account alice = User("alice");
  Account bob = User("bob");
  Account carol = User("carol");
  const int64_t conv = Group(alice, {bob.id, carol.id});
  auto a = Connect(alice);
  auto b = Connect(bob);
  auto c = Connect(carol);

  b->Send({{"type", "typing_start"}, {"ref", "s"}, {"conversation_id", conv}});
  EXPECT_EQ(b->NextOfType("ack")["data"]["ok"], true);
  for (WsClient* ws : {a.get(), c.get()}) EXPECT_EQ(Type(NextTyping(*ws)), "typing_start");

  RemoveParticipant(alice, conv, bob.id);
  for (WsClient* ws : {a.get(), c.get()}) {
    Json f = NextTyping(*ws);
    EXPECT_EQ(Type(f), "typing_stop") << f.dump();
    EXPECT_EQ(f["data"], TypingData(conv, bob.id)) << f.dump();
  }
}

TEST_F(WsEventsTypingTest, TypingOutsideYourConversationsIsRefused) {
  Account alice = User("alice");
  Account bob = User("bob");
  Account carol = User("carol");
  const int64_t theirs = Private(bob, carol);
  auto a = Connect(alice);
  auto b = Connect(bob);
  auto c = Connect(carol);

  a->Send({{"type", "typing_start"}, {"ref", "x1"}, {"conversation_id", theirs}});
  Json ack = a->NextOfType("ack");
  EXPECT_EQ(ack["data"]["ref"], "x1");
  EXPECT_EQ(ack["data"]["ok"], false);
  EXPECT_EQ(ack["data"]["error"]["code"], "forbidden") << ack.dump();

  a->Send({{"type", "typing_start"}, {"ref", "x2"}, {"conversation_id", kUnknownId}});
  ack = a->NextOfType("ack");
  EXPECT_EQ(ack["data"]["ok"], false);
  EXPECT_EQ(ack["data"]["error"]["code"], "not_found") << ack.dump();

  // Without a ref, the failure is an error event.
  a->Send(TypingFrame("typing_stop", theirs));
  Json err = a->NextOfType("error");
  EXPECT_EQ(err["data"]["code"], "forbidden") << err.dump();

  // bob heard nothing from alice: his first typing frame is carol's.
  c->Send(TypingFrame("typing_start", theirs));
  Json f = NextTyping(*b);
  EXPECT_EQ(f["data"], TypingData(theirs, carol.id)) << f.dump();
}

// =============================================================================================
// read_receipt and delivery_receipt, and the message status they lead to
// =============================================================================================

class WsEventsReceiptTest : public WsEventsFixture {};

TEST_F(WsEventsReceiptTest, ReadFrameIsAckedAndTheReceiptGoesToTheOthersOnly) {
  Account alice = User("alice");
  Account bob = User("bob");
  const int64_t conv = Private(alice, bob);
  auto a = Connect(alice);
  auto b1 = Connect(bob);
  auto b2 = Connect(bob);

  const int64_t m1 = Send(alice, conv, "hi");
  EXPECT_EQ(b1->NextOfType("message")["data"]["id"], m1);
  b1->Send({{"type", "read"}, {"ref", "r1"}, {"conversation_id", conv}, {"message_id", m1}});
  Json ack = b1->NextOfType("ack");
  ASSERT_EQ(ack["data"]["ok"], true) << ack.dump();
  EXPECT_EQ(ack["data"]["ref"], "r1");
  const Json& result = ack["data"]["result"];
  EXPECT_EQ(result["conversation_id"], conv);
  EXPECT_EQ(result["message_id"], m1);
  ASSERT_TRUE(IsRfc3339(result["read_at"])) << ack.dump();

  Json rr = a->NextOfType("read_receipt");
  EXPECT_EQ(rr["data"], (Json{{"conversation_id", conv},
                              {"user_id", bob.id},
                              {"message_id", m1},
                              {"read_at", result["read_at"]}}));
  EXPECT_EQ(StatusOf(alice, conv, m1), "read");

  // The reader's own devices got no receipt: their first one is alice's.
  const int64_t m2 = Send(bob, conv, "back");
  ReadHttp(alice, conv, m2);
  for (WsClient* ws : {b1.get(), b2.get()}) {
    Json f = ws->NextOfType("read_receipt");
    EXPECT_EQ(f["data"]["user_id"], alice.id) << f.dump();
    EXPECT_EQ(f["data"]["message_id"], m2) << f.dump();
  }
}

TEST_F(WsEventsReceiptTest, HttpReadSendsAReceiptOnlyWhenTheMarkerMoves) {
  Account alice = User("alice");
  Account bob = User("bob");
  const int64_t conv = Private(alice, bob);
  auto a = Connect(alice);

  const int64_t m1 = Send(alice, conv, "one");
  const int64_t m2 = Send(alice, conv, "two");
  Json mark = ReadHttp(bob, conv, m2);
  Json rr = a->NextOfType("read_receipt");
  EXPECT_EQ(rr["data"], (Json{{"conversation_id", conv},
                              {"user_id", bob.id},
                              {"message_id", m2},
                              {"read_at", mark["read_at"]}}));

  // An older and the same message: the marker stays, no receipt.
  EXPECT_EQ(ReadHttp(bob, conv, m1)["message_id"], m2);
  EXPECT_EQ(ReadHttp(bob, conv, m2)["message_id"], m2);
  const int64_t m3 = Send(alice, conv, "three");
  ReadHttp(bob, conv, m3);
  rr = a->NextOfType("read_receipt");
  EXPECT_EQ(rr["data"]["message_id"], m3) << rr.dump();
}

TEST_F(WsEventsReceiptTest, PushedMessageTurnsDeliveredAndTheSenderIsTold) {
  Account alice = User("alice");
  Account bob = User("bob");
  const int64_t conv = Private(alice, bob);
  auto a = Connect(alice);

  // bob has no connection and listed nothing: sent.
  const int64_t m1 = Send(alice, conv, "while away");
  EXPECT_EQ(StatusOf(alice, conv, m1), "sent");

  auto b = Connect(bob);
  const int64_t m2 = Send(alice, conv, "pushed");
  EXPECT_EQ(b->NextOfType("message")["data"]["id"], m2);
  Json dr = a->NextOfType("delivery_receipt");
  ASSERT_EQ(Type(dr), "delivery_receipt") << dr.dump();
  EXPECT_EQ(dr["data"]["conversation_id"], conv);
  EXPECT_EQ(dr["data"]["user_id"], bob.id);
  EXPECT_EQ(dr["data"]["message_id"], m2);
  EXPECT_TRUE(IsRfc3339(dr["data"]["delivered_at"])) << dr.dump();
  EXPECT_EQ(dr["data"].size(), 4u) << dr.dump();
  if (SplitNodes()) {
    // REST runs on the other node, which counts bob's delivery one bus hop after alice's
    // frame went out (docs/API.md, cluster: message statuses).
    Eventually([&] { return StatusOf(alice, conv, m2) == "delivered"; });
  }
  EXPECT_EQ(StatusOf(alice, conv, m2), "delivered");

  // bob is not told of his own delivery: his first receipt is alice's, for his message.
  const int64_t m3 = Send(bob, conv, "reply");
  dr = b->NextOfType("delivery_receipt");
  EXPECT_EQ(dr["data"]["user_id"], alice.id) << dr.dump();
  EXPECT_EQ(dr["data"]["message_id"], m3) << dr.dump();
}

TEST_F(WsEventsReceiptTest, SendersOwnDevicesReceivingItMakeNoDeliveryReceipt) {
  Account alice = User("alice");
  Account bob = User("bob");
  // Two conversations, so that a wrong receipt in x cannot merge into the marker in y; the
  // hub announces its batch in conversation order, x first.
  const int64_t x = Group(alice, {bob.id}, "x");
  const int64_t y = Group(alice, {bob.id}, "y");
  ASSERT_LT(x, y);
  auto a1 = Connect(alice);
  auto a2 = Connect(alice);
  auto b = Connect(bob);

  const int64_t m1 = Send(alice, x, "mine");
  for (WsClient* ws : {a1.get(), a2.get(), b.get()}) {
    EXPECT_EQ(ws->NextOfType("message")["data"]["id"], m1);
  }
  Json dr = a1->NextOfType("delivery_receipt");
  EXPECT_EQ(dr["data"]["user_id"], bob.id) << dr.dump();

  // Marker: bob's message in y reaches alice's devices; that receipt must be bob's first.
  const int64_t m2 = Send(bob, y, "marker");
  for (WsClient* ws : {a1.get(), a2.get()}) {
    EXPECT_EQ(ws->NextOfType("message")["data"]["id"], m2);
  }
  dr = b->NextOfType("delivery_receipt");
  EXPECT_EQ(dr["data"]["conversation_id"], y) << "a receipt for alice's own message: " << dr.dump();
  EXPECT_EQ(dr["data"]["user_id"], alice.id) << dr.dump();
  EXPECT_EQ(dr["data"]["message_id"], m2) << dr.dump();
}

TEST_F(WsEventsReceiptTest, ListingAndSyncCountAsDelivery) {
  Account alice = User("alice");
  Account bob = User("bob");  // never connects
  const int64_t conv = Private(alice, bob);
  auto a = Connect(alice);

  const int64_t m1 = Send(alice, conv, "one");
  ASSERT_EQ(History(bob, conv).size(), 1u);
  Json dr = a->NextOfType("delivery_receipt");
  EXPECT_EQ(dr["data"]["user_id"], bob.id) << dr.dump();
  EXPECT_EQ(dr["data"]["message_id"], m1) << dr.dump();

  const int64_t m2 = Send(alice, conv, "two");
  auto sync = client_.Get("/api/sync?since=" + std::to_string(m1), bob.token);
  ASSERT_EQ(sync.status, 200) << sync.body;
  ASSERT_EQ(sync.json["messages"].size(), 1u) << sync.body;
  dr = a->NextOfType("delivery_receipt");
  EXPECT_EQ(dr["data"]["user_id"], bob.id) << dr.dump();
  EXPECT_EQ(dr["data"]["message_id"], m2) << dr.dump();
  EXPECT_EQ(StatusOf(alice, conv, m2), "delivered");
}

TEST_F(WsEventsReceiptTest, GroupMessageIsDeliveredOnceEveryOtherMemberHasIt) {
  Account alice = User("alice");
  Account bob = User("bob");
  Account carol = User("carol");  // never connects
  const int64_t conv = Group(alice, {bob.id, carol.id});
  auto a = Connect(alice);
  auto b = Connect(bob);

  const int64_t m1 = Send(alice, conv, "all");
  Json dr = a->NextOfType("delivery_receipt");
  EXPECT_EQ(dr["data"]["user_id"], bob.id) << dr.dump();
  EXPECT_EQ(StatusOf(alice, conv, m1), "sent") << "carol has not received it";

  ASSERT_EQ(History(carol, conv).size(), 1u);
  // carol's receipt goes to both others (bob's first receipt: he is not told of his own).
  for (WsClient* ws : {a.get(), b.get()}) {
    dr = ws->NextOfType("delivery_receipt");
    EXPECT_EQ(dr["data"]["user_id"], carol.id) << dr.dump();
    EXPECT_EQ(dr["data"]["message_id"], m1) << dr.dump();
  }
  EXPECT_EQ(StatusOf(alice, conv, m1), "delivered");
}

// =============================================================================================
// conversation / conversation_removed: creation, rename, membership and role changes
// =============================================================================================

class WsEventsConversationTest : public WsEventsFixture {};

TEST_F(WsEventsConversationTest, CreatedGroupIsAnnouncedToEveryMemberAndNoOneElse) {
  Account alice = User("alice");
  Account bob = User("bob");
  Account carol = User("carol");
  auto a = Connect(alice);
  auto b = Connect(bob);
  auto c = Connect(carol);

  const int64_t conv = Group(alice, {bob.id}, "team");
  for (const auto& [who, ws] : {std::pair{&alice, a.get()}, std::pair{&bob, b.get()}}) {
    Json f = NextEvent(*ws);
    ASSERT_EQ(Type(f), "conversation") << f.dump();
    const Json& data = f["data"];
    EXPECT_EQ(data["id"], conv);
    EXPECT_EQ(data["type"], "group");
    EXPECT_EQ(data["name"], "team");
    EXPECT_EQ(data["created_by"], alice.id);
    EXPECT_EQ(Roles(data),
              (std::map<int64_t, std::string>{{alice.id, "admin"}, {bob.id, "member"}}));
    EXPECT_EQ(data, View(*who, conv)) << who->username;
  }
  // carol: her first frame is about her own group.
  ExpectNothingBeforeOwnGroup(carol, *c);
}

TEST_F(WsEventsConversationTest, NewPrivateConversationIsAnnouncedOnceToBoth) {
  Account alice = User("alice");
  Account bob = User("bob");
  auto a = Connect(alice);
  auto b = Connect(bob);

  auto r = client_.Post("/api/conversations/private", {{"user_id", bob.id}}, alice.token);
  ASSERT_EQ(r.status, 201) << r.body;
  const int64_t conv = r.json["id"].get<int64_t>();
  for (WsClient* ws : {a.get(), b.get()}) {
    Json f = NextEvent(*ws);
    ASSERT_EQ(Type(f), "conversation") << f.dump();
    EXPECT_EQ(f["data"]["id"], conv);
    EXPECT_EQ(f["data"]["type"], "private");
    EXPECT_TRUE(f["data"]["name"].is_null()) << f.dump();
    EXPECT_EQ(Roles(f["data"]).size(), 2u) << f.dump();
  }
  // It already exists: 200 and no event; the next one either sees is the marker group.
  r = client_.Post("/api/conversations/private", {{"user_id", alice.id}}, bob.token);
  EXPECT_EQ(r.status, 200) << r.body;
  const int64_t marker = Group(alice, {bob.id}, "marker");
  for (WsClient* ws : {a.get(), b.get()}) {
    Json f = NextEvent(*ws);
    EXPECT_EQ(f["data"]["id"], marker) << f.dump();
  }
}

TEST_F(WsEventsConversationTest, RenameAndRoleChangeReachEveryoneWithTheirOwnView) {
  Account alice = User("alice");
  Account bob = User("bob");
  const int64_t conv = Group(alice, {bob.id});
  const int64_t m1 = Send(alice, conv, "one");
  const int64_t m2 = Send(alice, conv, "two");
  ReadHttp(bob, conv, m1);
  auto a = Connect(alice);
  auto b = Connect(bob);

  auto r = client_.Put(ConvPath(conv), {{"name", "renamed"}}, alice.token);
  ASSERT_EQ(r.status, 200) << r.body;
  Json fa = NextEvent(*a);
  Json fb = NextEvent(*b);
  ASSERT_EQ(Type(fa), "conversation") << fa.dump();
  ASSERT_EQ(Type(fb), "conversation") << fb.dump();
  for (const Json* f : {&fa, &fb}) {
    EXPECT_EQ((*f)["data"]["id"], conv);
    EXPECT_EQ((*f)["data"]["name"], "renamed");
    EXPECT_EQ((*f)["data"]["last_message"]["id"], m2) << f->dump();
  }
  // Each reader's own marker and unread count (sending moved alice's marker to m2).
  EXPECT_EQ(fa["data"]["last_read_message_id"], m2) << fa.dump();
  EXPECT_EQ(fa["data"]["unread_count"], 0) << fa.dump();
  EXPECT_EQ(fb["data"]["last_read_message_id"], m1) << fb.dump();
  EXPECT_EQ(fb["data"]["unread_count"], 1) << fb.dump();

  r = client_.Put(ConvPath(conv) + "/participants/" + std::to_string(bob.id), {{"role", "admin"}},
                  alice.token);
  ASSERT_EQ(r.status, 200) << r.body;
  for (WsClient* ws : {a.get(), b.get()}) {
    Json f = NextEvent(*ws);
    ASSERT_EQ(Type(f), "conversation") << f.dump();
    EXPECT_EQ(Roles(f["data"]),
              (std::map<int64_t, std::string>{{alice.id, "admin"}, {bob.id, "admin"}}));
  }
}

TEST_F(WsEventsConversationTest, AddedParticipantIsAnnouncedAndStartsReceivingMessages) {
  Account alice = User("alice");
  Account bob = User("bob");
  Account carol = User("carol");
  const int64_t conv = Group(alice, {bob.id});
  auto a = Connect(alice);
  auto b = Connect(bob);
  auto c = Connect(carol);

  const int64_t before = Send(alice, conv, "before carol");
  for (WsClient* ws : {a.get(), b.get()}) EXPECT_EQ(NextEvent(*ws)["data"]["id"], before);

  auto r = client_.Post(ConvPath(conv) + "/participants", {{"user_id", carol.id}}, alice.token);
  ASSERT_EQ(r.status, 201) << r.body;
  const std::map<int64_t, std::string> roles = {
      {alice.id, "admin"}, {bob.id, "member"}, {carol.id, "member"}};
  for (const auto& [who, ws] :
       {std::pair{&alice, a.get()}, std::pair{&bob, b.get()}, std::pair{&carol, c.get()}}) {
    // carol's first event is this one: the earlier message was not hers to get.
    Json f = NextEvent(*ws);
    ASSERT_EQ(Type(f), "conversation") << who->username << ": " << f.dump();
    EXPECT_EQ(f["data"]["id"], conv);
    EXPECT_EQ(Roles(f["data"]), roles) << f.dump();
    const Json view = View(*who, conv);
    EXPECT_EQ(f["data"]["unread_count"], view["unread_count"]) << who->username;
    EXPECT_EQ(f["data"]["last_read_message_id"], view["last_read_message_id"]) << who->username;
  }

  const int64_t after = Send(alice, conv, "welcome");
  Json f = NextEvent(*c);
  ASSERT_EQ(Type(f), "message") << f.dump();
  EXPECT_EQ(f["data"]["id"], after);
}

TEST_F(WsEventsConversationTest, RemovedParticipantGetsConversationRemovedAndNothingMore) {
  Account alice = User("alice");
  Account bob = User("bob");
  Account carol = User("carol");
  const int64_t conv = Group(alice, {bob.id, carol.id});
  const int64_t other = Private(alice, bob);  // for the marker
  auto a = Connect(alice);
  auto b = Connect(bob);
  auto c = Connect(carol);

  RemoveParticipant(alice, conv, bob.id);
  Json f = NextEvent(*b);
  ASSERT_EQ(Type(f), "conversation_removed") << f.dump();
  EXPECT_EQ(f["data"], (Json{{"conversation_id", conv}}));
  for (WsClient* ws : {a.get(), c.get()}) {
    f = NextEvent(*ws);
    ASSERT_EQ(Type(f), "conversation") << f.dump();
    EXPECT_EQ(f["data"]["id"], conv);
    EXPECT_EQ(Roles(f["data"]),
              (std::map<int64_t, std::string>{{alice.id, "admin"}, {carol.id, "member"}}));
  }

  const int64_t after = Send(alice, conv, "without bob");
  for (WsClient* ws : {a.get(), c.get()}) EXPECT_EQ(NextEvent(*ws)["data"]["id"], after);
  // bob: nothing more of that conversation; his next event is the marker elsewhere.
  const int64_t marker = Send(alice, other, "marker");
  f = NextEvent(*b);
  ASSERT_EQ(Type(f), "message") << f.dump();
  EXPECT_EQ(f["data"]["id"], marker) << f.dump();
}

TEST_F(WsEventsConversationTest, LeavingIsAnnouncedAndTheEarliestMemberBecomesAdmin) {
  Account alice = User("alice");
  Account bob = User("bob");
  Account carol = User("carol");
  const int64_t conv = Group(alice, {bob.id});
  auto add = client_.Post(ConvPath(conv) + "/participants", {{"user_id", carol.id}}, alice.token);
  ASSERT_EQ(add.status, 201) << add.body;
  auto a = Connect(alice);
  auto b = Connect(bob);
  auto c = Connect(carol);

  // The only admin leaves: bob (joined before carol) takes over.
  RemoveParticipant(alice, conv, alice.id);
  Json f = NextEvent(*a);
  ASSERT_EQ(Type(f), "conversation_removed") << f.dump();
  EXPECT_EQ(f["data"], (Json{{"conversation_id", conv}}));
  for (WsClient* ws : {b.get(), c.get()}) {
    f = NextEvent(*ws);
    ASSERT_EQ(Type(f), "conversation") << f.dump();
    EXPECT_EQ(Roles(f["data"]),
              (std::map<int64_t, std::string>{{bob.id, "admin"}, {carol.id, "member"}}));
  }

  // A member leaves.
  RemoveParticipant(carol, conv, carol.id);
  f = NextEvent(*c);
  ASSERT_EQ(Type(f), "conversation_removed") << f.dump();
  EXPECT_EQ(f["data"], (Json{{"conversation_id", conv}}));
  f = NextEvent(*b);
  ASSERT_EQ(Type(f), "conversation") << f.dump();
  EXPECT_EQ(Roles(f["data"]), (std::map<int64_t, std::string>{{bob.id, "admin"}}));

  // Neither alice nor carol hears of it any more: their next event is a new conversation.
  Send(bob, conv, "alone");
  const int64_t pa = Private(bob, alice);
  const int64_t pc = Private(bob, carol);
  f = NextEvent(*a);
  EXPECT_EQ(f["data"]["id"], pa) << f.dump();
  f = NextEvent(*c);
  EXPECT_EQ(f["data"]["id"], pc) << f.dump();
}

}  // namespace
}  // namespace mmchat::test
