// API.md "Conversations" over real HTTP: private and group conversations, the list, renaming,
// participants and roles, leaving, and what removed users (and never-members) can still see.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <latch>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"

namespace mmchat::test {
namespace {

// Milliseconds since the epoch of an RFC 3339 UTC timestamp with milliseconds.
int64_t ParseMillis(const Json& v) {
  const std::string s = v.is_string() ? v.get<std::string>() : v.dump();
  std::tm tm{};
  int ms = 0;
  if (std::sscanf(s.c_str(), "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                  &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) != 7) {
    ADD_FAILURE() << "not a timestamp: " << s;
    return 0;
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return static_cast<int64_t>(timegm(&tm)) * 1000 + ms;
}

int64_t NowMillis() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

// Waits until the (shared) wall clock has passed `ms`, so that the server's next timestamp is
// strictly later than one it already handed out.
void AwaitClockAfter(int64_t ms) {
  while (NowMillis() <= ms) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

// The participant entry of `user_id`, or null.
Json FindParticipant(const Json& conversation, int64_t user_id) {
  if (!conversation.contains("participants")) return nullptr;
  for (const auto& p : conversation["participants"]) {
    if (p.value("user_id", int64_t{0}) == user_id) return p;
  }
  return nullptr;
}

std::set<int64_t> ParticipantIds(const Json& conversation) {
  std::set<int64_t> out;
  if (!conversation.contains("participants")) return out;
  for (const auto& p : conversation["participants"]) out.insert(p.value("user_id", int64_t{0}));
  return out;
}

std::string Role(const Json& conversation, int64_t user_id) {
  const Json p = FindParticipant(conversation, user_id);
  return p.is_object() ? p.value("role", "") : "(absent)";
}

class ConversationsTest : public ::testing::Test {
 protected:
  ConversationsTest() : client_(server_.port()) {}

  static std::string Path(int64_t id) { return "/api/conversations/" + std::to_string(id); }
  static std::string ParticipantPath(int64_t id, int64_t user) {
    return Path(id) + "/participants/" + std::to_string(user);
  }

  HttpResult Private(const Account& caller, const Json& body) {
    return client_.Post("/api/conversations/private", body, caller.token);
  }
  HttpResult Private(const Account& caller, int64_t other) {
    return Private(caller, Json{{"user_id", other}});
  }
  HttpResult Group(const Account& caller, const Json& body) {
    return client_.Post("/api/conversations/group", body, caller.token);
  }
  HttpResult Group(const Account& caller, const std::string& name,
                   const std::vector<int64_t>& members) {
    return Group(caller, Json{{"name", name}, {"member_ids", members}});
  }
  // A group that must be created; returns its id.
  int64_t MakeGroup(const Account& caller, const std::vector<int64_t>& members,
                    const std::string& name = "team") {
    auto r = Group(caller, name, members);
    EXPECT_EQ(r.status, 201) << r.body;
    return r.json.value("id", int64_t{0});
  }
  int64_t MakePrivate(const Account& caller, const Account& other) {
    auto r = Private(caller, other.id);
    EXPECT_TRUE(r.status == 201 || r.status == 200) << r.body;
    return r.json.value("id", int64_t{0});
  }
  HttpResult List(const Account& caller) { return client_.Get("/api/conversations", caller.token); }
  std::vector<int64_t> ListIds(const Account& caller) {
    auto r = List(caller);
    EXPECT_EQ(r.status, 200) << r.body;
    std::vector<int64_t> ids;
    if (r.json.is_object() && r.json["conversations"].is_array()) {
      for (const auto& c : r.json["conversations"]) ids.push_back(c.value("id", int64_t{0}));
    }
    return ids;
  }
  HttpResult Get(const Account& caller, int64_t id) { return client_.Get(Path(id), caller.token); }
  HttpResult Rename(const Account& caller, int64_t id, const Json& body) {
    return client_.Put(Path(id), body, caller.token);
  }
  HttpResult Add(const Account& caller, int64_t id, const Json& body) {
    return client_.Post(Path(id) + "/participants", body, caller.token);
  }
  HttpResult Add(const Account& caller, int64_t id, int64_t user) {
    return Add(caller, id, Json{{"user_id", user}});
  }
  HttpResult SetRoleBody(const Account& caller, int64_t id, int64_t user, const Json& body) {
    return client_.Put(ParticipantPath(id, user), body, caller.token);
  }
  HttpResult SetRole(const Account& caller, int64_t id, int64_t user, const std::string& role) {
    return SetRoleBody(caller, id, user, Json{{"role", role}});
  }
  HttpResult Remove(const Account& caller, int64_t id, int64_t user) {
    return client_.Request("DELETE", ParticipantPath(id, user), "", caller.token);
  }
  HttpResult SendRaw(const Account& caller, int64_t id, const std::string& content) {
    return client_.Post("/api/messages", {{"conversation_id", id}, {"content", content}},
                        caller.token);
  }
  // Sends a message that must be accepted; returns it.
  Json Send(const Account& caller, int64_t id, const std::string& content) {
    auto r = SendRaw(caller, id, content);
    EXPECT_EQ(r.status, 201) << r.body;
    return r.json;
  }
  HttpResult Messages(const Account& caller, int64_t id) {
    return client_.Get(Path(id) + "/messages", caller.token);
  }
  HttpResult MarkRead(const Account& caller, int64_t id, int64_t message_id) {
    return client_.Post("/api/messages/read", {{"conversation_id", id}, {"message_id", message_id}},
                        caller.token);
  }
  // The ids of conversations whose messages GET /api/sync?since=0 returns to the caller.
  std::set<int64_t> SyncedConversations(const Account& caller) {
    auto r = client_.Get("/api/sync?since=0", caller.token);
    EXPECT_EQ(r.status, 200) << r.body;
    std::set<int64_t> out;
    if (r.json.is_object() && r.json["messages"].is_array()) {
      for (const auto& m : r.json["messages"]) out.insert(m.value("conversation_id", int64_t{0}));
    }
    return out;
  }

  // Everything a user outside conversation `id` must be refused (API.md: 403, and nothing of it
  // in the list or in sync).
  void ExpectLockedOut(const Account& user, int64_t id, int64_t some_message_id) {
    SCOPED_TRACE("locked out: " + user.username);
    ExpectError(Get(user, id), 403, "forbidden");
    ExpectError(Messages(user, id), 403, "forbidden");
    ExpectError(SendRaw(user, id, "let me in"), 403, "forbidden");
    ExpectError(MarkRead(user, id, some_message_id), 403, "forbidden");
    const auto ids = ListIds(user);
    EXPECT_EQ(std::count(ids.begin(), ids.end(), id), 0);
    EXPECT_FALSE(SyncedConversations(user).contains(id));
  }

  TestServer server_;
  HttpClient client_;
};

using ConversationsPrivateTest = ConversationsTest;
using ConversationsGroupTest = ConversationsTest;
using ConversationsListTest = ConversationsTest;
using ConversationsGetTest = ConversationsTest;
using ConversationsRenameTest = ConversationsTest;
using ConversationsAddTest = ConversationsTest;
using ConversationsRoleTest = ConversationsTest;
using ConversationsRemoveTest = ConversationsTest;
using ConversationsAccessTest = ConversationsTest;

// ---------------------------------------------------------------------------------------------
// POST /api/conversations/private
// ---------------------------------------------------------------------------------------------

TEST_F(ConversationsPrivateTest, NewConversationIs201WithTheConversationShape) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  auto r = Private(alice, bob.id);
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(r.headers.at("content-type"), "application/json");
  ExpectConversationShape(r.json);
  EXPECT_GT(r.json["id"].get<int64_t>(), 0);
  EXPECT_EQ(r.json["type"], "private");
  EXPECT_TRUE(r.json["name"].is_null());
  EXPECT_EQ(r.json["created_by"], alice.id);
  ASSERT_EQ(r.json["participants"].size(), 2u) << r.body;
  EXPECT_EQ(ParticipantIds(r.json), (std::set<int64_t>{alice.id, bob.id}));
  EXPECT_EQ(FindParticipant(r.json, alice.id)["username"], "alice");
  EXPECT_EQ(FindParticipant(r.json, bob.id)["username"], "bob");
  EXPECT_TRUE(FindParticipant(r.json, bob.id)["profile_picture"].is_null());
  EXPECT_TRUE(r.json["last_message"].is_null());
  EXPECT_EQ(r.json["unread_count"], 0);
  EXPECT_EQ(r.json["last_read_message_id"], 0);
}

TEST_F(ConversationsPrivateTest, ParticipantsCarryTheirProfilePicture) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  auto me = client_.Put("/api/me", {{"profile_picture", "https://example.com/b.png"}}, bob.token);
  ASSERT_EQ(me.status, 200) << me.body;
  auto r = Private(alice, bob.id);
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(FindParticipant(r.json, bob.id)["profile_picture"], "https://example.com/b.png");
  EXPECT_TRUE(FindParticipant(r.json, alice.id)["profile_picture"].is_null());
}

TEST_F(ConversationsPrivateTest, ExistingConversationIs200WithTheSameIdFromEitherSide) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  auto first = Private(alice, bob.id);
  ASSERT_EQ(first.status, 201) << first.body;
  const int64_t id = first.json["id"];

  auto again = Private(alice, bob.id);
  ASSERT_EQ(again.status, 200) << again.body;
  ExpectConversationShape(again.json);
  EXPECT_EQ(again.json["id"], id);
  EXPECT_EQ(again.json["type"], "private");

  auto other_side = Private(bob, alice.id);
  ASSERT_EQ(other_side.status, 200) << other_side.body;
  ExpectConversationShape(other_side.json);
  EXPECT_EQ(other_side.json["id"], id);
  EXPECT_EQ(ParticipantIds(other_side.json), (std::set<int64_t>{alice.id, bob.id}));

  EXPECT_EQ(ListIds(alice), std::vector<int64_t>{id});
  EXPECT_EQ(ListIds(bob), std::vector<int64_t>{id});
}

TEST_F(ConversationsPrivateTest, ExistingConversationAnswerIsTheCallersView) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const int64_t id = MakePrivate(alice, bob);
  const Json m = Send(alice, id, "hello");
  auto r = Private(bob, alice.id);
  ASSERT_EQ(r.status, 200) << r.body;
  ASSERT_TRUE(r.json["last_message"].is_object()) << r.body;
  EXPECT_EQ(r.json["last_message"]["id"], m["id"]);
  EXPECT_EQ(r.json["last_message"]["content"], "hello");
  EXPECT_EQ(r.json["unread_count"], 1);
  EXPECT_EQ(r.json["last_read_message_id"], 0);
}

TEST_F(ConversationsPrivateTest, DifferentPairsGetDifferentConversations) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const Account carol = SignUp(server_, client_, "carol");
  const int64_t ab = MakePrivate(alice, bob);
  const int64_t ac = MakePrivate(alice, carol);
  const int64_t bc = MakePrivate(carol, bob);
  EXPECT_NE(ab, ac);
  EXPECT_NE(ab, bc);
  EXPECT_NE(ac, bc);
}

TEST_F(ConversationsPrivateTest, WithOneselfIs400) {
  const Account alice = SignUp(server_, client_, "alice");
  ExpectError(Private(alice, alice.id), 400, "invalid_request");
  EXPECT_TRUE(ListIds(alice).empty());
}

TEST_F(ConversationsPrivateTest, UnknownUserIs404) {
  const Account alice = SignUp(server_, client_, "alice");
  ExpectError(Private(alice, alice.id + 1000), 404, "not_found");
  EXPECT_TRUE(ListIds(alice).empty());
}

TEST_F(ConversationsPrivateTest, MissingOrInvalidUserIdIs400) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  for (const Json& body :
       {Json::object(), Json{{"user_id", nullptr}}, Json{{"user_id", std::to_string(bob.id)}},
        Json{{"user_id", 0}}, Json{{"user_id", -1}}, Json{{"user_id", 1.5}},
        Json{{"user_id", Json::array({bob.id})}}, Json{{"user_id", true}}, Json{{"other", bob.id}},
        Json::array({bob.id})}) {
    SCOPED_TRACE(body.dump());
    ExpectError(Private(alice, body), 400, "invalid_request");
  }
  ExpectError(client_.Request("POST", "/api/conversations/private", "{\"user_id\":", alice.token),
              400, "invalid_request");
  ExpectError(client_.Request("POST", "/api/conversations/private", "", alice.token), 400,
              "invalid_request");
  EXPECT_TRUE(ListIds(alice).empty());
}

TEST_F(ConversationsPrivateTest, ConcurrentCreationFromBothSidesMakesExactlyOne) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  constexpr int kThreads = 8;
  std::vector<int> statuses(kThreads, 0);
  std::vector<int64_t> ids(kThreads, 0);
  std::vector<std::string> bodies(kThreads);
  std::latch start(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      const bool from_alice = i % 2 == 0;
      const Account& caller = from_alice ? alice : bob;
      const Account& other = from_alice ? bob : alice;
      HttpClient client(server_.port());
      client.Get("/healthz");  // connect before the start line
      start.arrive_and_wait();
      auto r = client.Post("/api/conversations/private", {{"user_id", other.id}}, caller.token);
      statuses[i] = r.status;
      bodies[i] = r.body;
      if (r.json.is_object()) ids[i] = r.json.value("id", int64_t{0});
    });
  }
  for (auto& t : threads) t.join();

  int created = 0;
  for (int i = 0; i < kThreads; ++i) {
    EXPECT_TRUE(statuses[i] == 200 || statuses[i] == 201) << bodies[i];
    if (statuses[i] == 201) ++created;
    EXPECT_GT(ids[i], 0) << bodies[i];
    EXPECT_EQ(ids[i], ids[0]) << bodies[i];
  }
  EXPECT_EQ(created, 1);
  EXPECT_EQ(ListIds(alice), std::vector<int64_t>{ids[0]});
  EXPECT_EQ(ListIds(bob), std::vector<int64_t>{ids[0]});
}

// ---------------------------------------------------------------------------------------------
// POST /api/conversations/group
// ---------------------------------------------------------------------------------------------

TEST_F(ConversationsGroupTest, CreatorIsAdminAndMembersAreMembers) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const Account carol = SignUp(server_, client_, "carol");
  auto r = Group(alice, "team", {bob.id, carol.id});
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(r.headers.at("content-type"), "application/json");
  ExpectConversationShape(r.json);
  EXPECT_EQ(r.json["type"], "group");
  EXPECT_EQ(r.json["name"], "team");
  EXPECT_EQ(r.json["created_by"], alice.id);
  ASSERT_EQ(r.json["participants"].size(), 3u) << r.body;
  EXPECT_EQ(Role(r.json, alice.id), "admin");
  EXPECT_EQ(Role(r.json, bob.id), "member");
  EXPECT_EQ(Role(r.json, carol.id), "member");
  EXPECT_EQ(FindParticipant(r.json, carol.id)["username"], "carol");
  EXPECT_TRUE(r.json["last_message"].is_null());
  EXPECT_EQ(r.json["unread_count"], 0);
  EXPECT_EQ(r.json["last_read_message_id"], 0);

  // Every member sees it.
  const int64_t id = r.json["id"];
  for (const Account* a : {&alice, &bob, &carol}) {
    EXPECT_EQ(ListIds(*a), std::vector<int64_t>{id}) << a->username;
  }
}

TEST_F(ConversationsGroupTest, NameIsOneToOneHundredCodePoints) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  ExpectError(Group(alice, "", {bob.id}), 400, "invalid_request");
  ExpectError(Group(alice, std::string(101, 'n'), {bob.id}), 400, "invalid_request");
  std::string e101;
  for (int i = 0; i < 101; ++i) e101 += "\xC3\xA9";  // é
  ExpectError(Group(alice, e101, {bob.id}), 400, "invalid_request");
  EXPECT_TRUE(ListIds(alice).empty());

  auto one = Group(alice, "x", {bob.id});
  ASSERT_EQ(one.status, 201) << one.body;
  EXPECT_EQ(one.json["name"], "x");
  auto hundred = Group(alice, std::string(100, 'n'), {bob.id});
  ASSERT_EQ(hundred.status, 201) << hundred.body;
  EXPECT_EQ(hundred.json["name"], std::string(100, 'n'));

  std::string e100, emoji100;
  for (int i = 0; i < 100; ++i) {
    e100 += "\xC3\xA9";              // 2 bytes each: 200 bytes
    emoji100 += "\xF0\x9F\x98\x80";  // 4 bytes each: 400 bytes
  }
  auto multibyte = Group(alice, e100, {bob.id});
  ASSERT_EQ(multibyte.status, 201) << multibyte.body;
  EXPECT_EQ(multibyte.json["name"], e100);
  auto emoji = Group(alice, emoji100, {bob.id});
  ASSERT_EQ(emoji.status, 201) << emoji.body;
  EXPECT_EQ(emoji.json["name"], emoji100);
  EXPECT_EQ(ListIds(alice).size(), 4u);
}

TEST_F(ConversationsGroupTest, MissingOrNonStringNameIs400) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  ExpectError(Group(alice, Json{{"member_ids", {bob.id}}}), 400, "invalid_request");
  ExpectError(Group(alice, Json{{"name", nullptr}, {"member_ids", {bob.id}}}), 400,
              "invalid_request");
  ExpectError(Group(alice, Json{{"name", 5}, {"member_ids", {bob.id}}}), 400, "invalid_request");
  ExpectError(client_.Request("POST", "/api/conversations/group", "not json", alice.token), 400,
              "invalid_request");
  EXPECT_TRUE(ListIds(alice).empty());
}

TEST_F(ConversationsGroupTest, UnknownMemberIs404AndNothingIsCreated) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  ExpectError(Group(alice, "team", {bob.id, bob.id + 1000}), 404, "not_found");
  ExpectError(Group(alice, "team", {bob.id + 1000, bob.id}), 404, "not_found");
  EXPECT_TRUE(ListIds(alice).empty());
  EXPECT_TRUE(ListIds(bob).empty());
}

TEST_F(ConversationsGroupTest, MemberIdsNotAnArrayOfIdsIs400) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  for (const Json& members : {Json(bob.id), Json(std::to_string(bob.id)), Json{{"id", bob.id}},
                              Json::array({std::to_string(bob.id)}), Json::array({0}),
                              Json::array({-3}), Json::array({1.5}), Json::array({nullptr})}) {
    SCOPED_TRACE(members.dump());
    ExpectError(Group(alice, Json{{"name", "team"}, {"member_ids", members}}), 400,
                "invalid_request");
  }
  EXPECT_TRUE(ListIds(alice).empty());
  EXPECT_TRUE(ListIds(bob).empty());
}

TEST_F(ConversationsGroupTest, DuplicateIdsAndTheCreatorsOwnIdAreHarmless) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  auto r = Group(alice, "team", {bob.id, alice.id, bob.id, alice.id});
  ASSERT_EQ(r.status, 201) << r.body;
  ASSERT_EQ(r.json["participants"].size(), 2u) << r.body;
  EXPECT_EQ(Role(r.json, alice.id), "admin");
  EXPECT_EQ(Role(r.json, bob.id), "member");
}

// ---------------------------------------------------------------------------------------------
// GET /api/conversations
// ---------------------------------------------------------------------------------------------

TEST_F(ConversationsListTest, EmptyForANewUser) {
  const Account alice = SignUp(server_, client_, "alice");
  auto r = List(alice);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.headers.at("content-type"), "application/json");
  ASSERT_TRUE(r.json["conversations"].is_array()) << r.body;
  EXPECT_TRUE(r.json["conversations"].empty());
}

TEST_F(ConversationsListTest, OnlyTheCallersConversations) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const Account carol = SignUp(server_, client_, "carol");
  const int64_t ab = MakePrivate(alice, bob);
  const int64_t bc = MakePrivate(bob, carol);
  EXPECT_EQ(ListIds(alice), std::vector<int64_t>{ab});
  EXPECT_EQ(ListIds(carol), std::vector<int64_t>{bc});
  auto b = ListIds(bob);
  std::sort(b.begin(), b.end());
  EXPECT_EQ(b, (std::vector<int64_t>{std::min(ab, bc), std::max(ab, bc)}));
}

TEST_F(ConversationsListTest, NewestActivityFirstAndAMessageMovesAConversationToTheTop) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const Account carol = SignUp(server_, client_, "carol");
  auto older = Private(alice, bob.id);
  ASSERT_EQ(older.status, 201) << older.body;
  const int64_t older_id = older.json["id"];
  AwaitClockAfter(ParseMillis(older.json["created_at"]));
  auto middle = Group(alice, "middle", {carol.id});
  ASSERT_EQ(middle.status, 201) << middle.body;
  const int64_t middle_id = middle.json["id"];
  AwaitClockAfter(ParseMillis(middle.json["created_at"]));
  auto newer = Private(alice, carol.id);
  ASSERT_EQ(newer.status, 201) << newer.body;
  const int64_t newer_id = newer.json["id"];
  AwaitClockAfter(ParseMillis(newer.json["created_at"]));

  EXPECT_EQ(ListIds(alice), (std::vector<int64_t>{newer_id, middle_id, older_id}));

  const Json m = Send(bob, older_id, "bump");
  ASSERT_GT(ParseMillis(m["created_at"]), ParseMillis(newer.json["created_at"]));
  EXPECT_EQ(ListIds(alice), (std::vector<int64_t>{older_id, newer_id, middle_id}));
  EXPECT_EQ(ListIds(bob), std::vector<int64_t>{older_id});
  AwaitClockAfter(ParseMillis(m["created_at"]));

  const Json m2 = Send(carol, middle_id, "bump too");
  ASSERT_GT(ParseMillis(m2["created_at"]), ParseMillis(m["created_at"]));
  EXPECT_EQ(ListIds(alice), (std::vector<int64_t>{middle_id, older_id, newer_id}));
  EXPECT_EQ(ListIds(carol), (std::vector<int64_t>{middle_id, newer_id}));
}

TEST_F(ConversationsListTest, IncludesParticipantsLastMessageUnreadCountAndReadMarker) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const Account carol = SignUp(server_, client_, "carol");
  const int64_t id = MakeGroup(alice, {bob.id, carol.id});
  const Json m1 = Send(alice, id, "one");
  const Json m2 = Send(alice, id, "two");
  const Json m3 = Send(carol, id, "three");

  auto entry = [&](const Account& a) -> Json {
    auto r = List(a);
    EXPECT_EQ(r.status, 200) << r.body;
    if (!r.json.is_object() || r.json["conversations"].size() != 1) {
      ADD_FAILURE() << r.body;
      return Json::object();
    }
    const Json c = r.json["conversations"][0];
    ExpectConversationShape(c);
    return c;
  };

  // Bob has read nothing: all three are from others.
  Json b = entry(bob);
  EXPECT_EQ(b["id"], id);
  EXPECT_EQ(ParticipantIds(b), (std::set<int64_t>{alice.id, bob.id, carol.id}));
  EXPECT_EQ(Role(b, alice.id), "admin");
  ASSERT_TRUE(b["last_message"].is_object()) << b.dump();
  EXPECT_EQ(b["last_message"]["id"], m3["id"]);
  EXPECT_EQ(b["last_message"]["content"], "three");
  EXPECT_EQ(b["last_message"]["sender_id"], carol.id);
  EXPECT_EQ(b["last_message"]["conversation_id"], id);
  EXPECT_EQ(b["unread_count"], 3);
  EXPECT_EQ(b["last_read_message_id"], 0);

  // Sending moved Alice's marker to her last message; only Carol's is unread.
  Json a = entry(alice);
  EXPECT_EQ(a["unread_count"], 1);
  EXPECT_EQ(a["last_read_message_id"], m2["id"]);
  Json c = entry(carol);
  EXPECT_EQ(c["unread_count"], 0);
  EXPECT_EQ(c["last_read_message_id"], m3["id"]);

  // Bob reads up to m1: two left.
  auto read = MarkRead(bob, id, m1["id"]);
  ASSERT_EQ(read.status, 200) << read.body;
  b = entry(bob);
  EXPECT_EQ(b["unread_count"], 2);
  EXPECT_EQ(b["last_read_message_id"], m1["id"]);

  // GET /:id agrees with the list.
  auto single = Get(bob, id);
  ASSERT_EQ(single.status, 200) << single.body;
  EXPECT_EQ(single.json["unread_count"], 2);
  EXPECT_EQ(single.json["last_read_message_id"], m1["id"]);
  EXPECT_EQ(single.json["last_message"]["id"], m3["id"]);

  // Bob's own message moves his marker: nothing unread, his message is the last one.
  const Json m4 = Send(bob, id, "four");
  b = entry(bob);
  EXPECT_EQ(b["unread_count"], 0);
  EXPECT_EQ(b["last_read_message_id"], m4["id"]);
  EXPECT_EQ(b["last_message"]["id"], m4["id"]);
  a = entry(alice);
  EXPECT_EQ(a["unread_count"], 2);  // m3 and m4
  EXPECT_EQ(a["last_read_message_id"], m2["id"]);
}

// ---------------------------------------------------------------------------------------------
// GET /api/conversations/:id
// ---------------------------------------------------------------------------------------------

TEST_F(ConversationsGetTest, ParticipantGetsTheConversation) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const int64_t id = MakeGroup(alice, {bob.id}, "team");
  for (const Account* a : {&alice, &bob}) {
    auto r = Get(*a, id);
    ASSERT_EQ(r.status, 200) << r.body;
    ExpectConversationShape(r.json);
    EXPECT_EQ(r.json["id"], id);
    EXPECT_EQ(r.json["name"], "team");
    EXPECT_EQ(ParticipantIds(r.json), (std::set<int64_t>{alice.id, bob.id}));
  }
}

TEST_F(ConversationsGetTest, NonParticipantIs403) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const Account eve = SignUp(server_, client_, "eve");
  ExpectError(Get(eve, MakeGroup(alice, {bob.id})), 403, "forbidden");
  ExpectError(Get(eve, MakePrivate(alice, bob)), 403, "forbidden");
}

TEST_F(ConversationsGetTest, UnknownOrNonNumericIdIs404) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const int64_t id = MakePrivate(alice, bob);
  ExpectError(Get(alice, id + 1000), 404, "not_found");
  for (const char* bad : {"abc", "0", "-1", "1x", "99999999999999999999999"}) {
    SCOPED_TRACE(bad);
    ExpectError(client_.Get(std::string("/api/conversations/") + bad, alice.token), 404,
                "not_found");
  }
}

TEST_F(ConversationsGetTest, EveryRouteNeedsAToken) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const int64_t id = MakeGroup(alice, {bob.id});
  const std::string p = ParticipantPath(id, bob.id);
  ExpectError(client_.Post("/api/conversations/private", {{"user_id", bob.id}}), 401,
              "unauthorized");
  ExpectError(client_.Post("/api/conversations/group", {{"name", "x"}, {"member_ids", {bob.id}}}),
              401, "unauthorized");
  ExpectError(client_.Get("/api/conversations"), 401, "unauthorized");
  ExpectError(client_.Get(Path(id)), 401, "unauthorized");
  ExpectError(client_.Put(Path(id), {{"name", "x"}}), 401, "unauthorized");
  ExpectError(client_.Post(Path(id) + "/participants", {{"user_id", bob.id}}), 401, "unauthorized");
  ExpectError(client_.Put(p, {{"role", "admin"}}), 401, "unauthorized");
  ExpectError(client_.Request("DELETE", p), 401, "unauthorized");
  ExpectError(client_.Get(Path(id), "not-a-jwt"), 401, "unauthorized");
  // Nothing changed.
  auto r = Get(alice, id);
  EXPECT_EQ(r.json["name"], "team");
  EXPECT_EQ(Role(r.json, bob.id), "member");
}

// ---------------------------------------------------------------------------------------------
// PUT /api/conversations/:id
// ---------------------------------------------------------------------------------------------

TEST_F(ConversationsRenameTest, AdminRenames) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const int64_t id = MakeGroup(alice, {bob.id}, "old");
  auto r = Rename(alice, id, {{"name", "new name"}});
  ASSERT_EQ(r.status, 200) << r.body;
  ExpectConversationShape(r.json);
  EXPECT_EQ(r.json["id"], id);
  EXPECT_EQ(r.json["name"], "new name");
  EXPECT_EQ(Get(bob, id).json["name"], "new name");

  std::string e100;
  for (int i = 0; i < 100; ++i) e100 += "\xC3\xA9";
  auto multibyte = Rename(alice, id, {{"name", e100}});
  ASSERT_EQ(multibyte.status, 200) << multibyte.body;
  EXPECT_EQ(multibyte.json["name"], e100);

  // A promoted member may rename too.
  ASSERT_EQ(SetRole(alice, id, bob.id, "admin").status, 200);
  auto by_bob = Rename(bob, id, {{"name", "bob's"}});
  ASSERT_EQ(by_bob.status, 200) << by_bob.body;
  EXPECT_EQ(by_bob.json["name"], "bob's");
}

TEST_F(ConversationsRenameTest, MemberIs403) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const int64_t id = MakeGroup(alice, {bob.id}, "old");
  ExpectError(Rename(bob, id, {{"name", "mine"}}), 403, "forbidden");
  EXPECT_EQ(Get(alice, id).json["name"], "old");
}

TEST_F(ConversationsRenameTest, PrivateIs400) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const int64_t id = MakePrivate(alice, bob);
  ExpectError(Rename(alice, id, {{"name", "ours"}}), 400, "invalid_request");
  ExpectError(Rename(bob, id, {{"name", "ours"}}), 400, "invalid_request");
  EXPECT_TRUE(Get(alice, id).json["name"].is_null());
}

TEST_F(ConversationsRenameTest, InvalidNameIs400) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const int64_t id = MakeGroup(alice, {bob.id}, "old");
  for (const Json& body :
       {Json{{"name", ""}}, Json{{"name", std::string(101, 'n')}}, Json::object(),
        Json{{"name", nullptr}}, Json{{"name", 42}}, Json{{"name", Json::array({"x"})}}}) {
    SCOPED_TRACE(body.dump());
    ExpectError(Rename(alice, id, body), 400, "invalid_request");
  }
  ExpectError(client_.Request("PUT", Path(id), "{", alice.token), 400, "invalid_request");
  EXPECT_EQ(Get(alice, id).json["name"], "old");
}

TEST_F(ConversationsRenameTest, NonParticipantIs403AndUnknownIs404) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const Account eve = SignUp(server_, client_, "eve");
  const int64_t id = MakeGroup(alice, {bob.id}, "old");
  ExpectError(Rename(eve, id, {{"name", "pwned"}}), 403, "forbidden");
  ExpectError(Rename(alice, id + 1000, {{"name", "x"}}), 404, "not_found");
  ExpectError(client_.Put("/api/conversations/abc", {{"name", "x"}}, alice.token), 404,
              "not_found");
  EXPECT_EQ(Get(alice, id).json["name"], "old");
}

// ---------------------------------------------------------------------------------------------
// POST /api/conversations/:id/participants
// ---------------------------------------------------------------------------------------------

TEST_F(ConversationsAddTest, AdminAddsAMemberByDefaultOrAnAdminWhenAsked) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const Account carol = SignUp(server_, client_, "carol");
  const Account dave = SignUp(server_, client_, "dave");
  const Account erin = SignUp(server_, client_, "erin");
  const int64_t id = MakeGroup(alice, {bob.id});

  auto r = Add(alice, id, carol.id);
  ASSERT_EQ(r.status, 201) << r.body;
  ExpectConversationShape(r.json);
  EXPECT_EQ(r.json["id"], id);
  EXPECT_EQ(ParticipantIds(r.json), (std::set<int64_t>{alice.id, bob.id, carol.id}));
  EXPECT_EQ(Role(r.json, carol.id), "member");
  EXPECT_EQ(FindParticipant(r.json, carol.id)["username"], "carol");

  auto as_admin = Add(alice, id, {{"user_id", dave.id}, {"role", "admin"}});
  ASSERT_EQ(as_admin.status, 201) << as_admin.body;
  EXPECT_EQ(Role(as_admin.json, dave.id), "admin");

  auto as_member = Add(dave, id, {{"user_id", erin.id}, {"role", "member"}});
  ASSERT_EQ(as_member.status, 201) << as_member.body;
  EXPECT_EQ(Role(as_member.json, erin.id), "member");
  EXPECT_EQ(as_member.json["participants"].size(), 5u);

  // The new participants see it, with the whole history.
  EXPECT_EQ(ListIds(carol), std::vector<int64_t>{id});
  EXPECT_EQ(Get(erin, id).status, 200);
}

TEST_F(ConversationsAddTest, NewParticipantSeesTheWholeHistory) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const Account carol = SignUp(server_, client_, "carol");
  const int64_t id = MakeGroup(alice, {bob.id});
  const Json m1 = Send(alice, id, "before carol");
  const Json m2 = Send(bob, id, "still before");
  ASSERT_EQ(Add(alice, id, carol.id).status, 201);
  auto msgs = Messages(carol, id);
  ASSERT_EQ(msgs.status, 200) << msgs.body;
  ASSERT_EQ(msgs.json["messages"].size(), 2u) << msgs.body;
  EXPECT_EQ(msgs.json["messages"][0]["id"], m1["id"]);
  EXPECT_EQ(msgs.json["messages"][1]["id"], m2["id"]);
  EXPECT_TRUE(SyncedConversations(carol).contains(id));
  auto c = Get(carol, id);
  EXPECT_EQ(c.json["unread_count"], 2);
  EXPECT_EQ(c.json["last_message"]["id"], m2["id"]);
}

TEST_F(ConversationsAddTest, MemberIs403) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const Account carol = SignUp(server_, client_, "carol");
  const int64_t id = MakeGroup(alice, {bob.id});
  ExpectError(Add(bob, id, carol.id), 403, "forbidden");
  ExpectError(Add(bob, id, {{"user_id", carol.id}, {"role", "admin"}}), 403, "forbidden");
  EXPECT_EQ(ParticipantIds(Get(alice, id).json), (std::set<int64_t>{alice.id, bob.id}));
  EXPECT_TRUE(ListIds(carol).empty());
}

TEST_F(ConversationsAddTest, CurrentParticipantIs409) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const int64_t id = MakeGroup(alice, {bob.id});
  ExpectError(Add(alice, id, bob.id), 409, "conflict");
  ExpectError(Add(alice, id, {{"user_id", bob.id}, {"role", "admin"}}), 409, "conflict");
  ExpectError(Add(alice, id, alice.id), 409, "conflict");
  auto c = Get(alice, id);
  EXPECT_EQ(c.json["participants"].size(), 2u);
  EXPECT_EQ(Role(c.json, bob.id), "member");
}

TEST_F(ConversationsAddTest, UnknownUserIs404) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const int64_t id = MakeGroup(alice, {bob.id});
  ExpectError(Add(alice, id, bob.id + 1000), 404, "not_found");
  EXPECT_EQ(Get(alice, id).json["participants"].size(), 2u);
}

TEST_F(ConversationsAddTest, PrivateIs400) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const Account carol = SignUp(server_, client_, "carol");
  const int64_t id = MakePrivate(alice, bob);
  ExpectError(Add(alice, id, carol.id), 400, "invalid_request");
  EXPECT_EQ(ParticipantIds(Get(alice, id).json), (std::set<int64_t>{alice.id, bob.id}));
  EXPECT_TRUE(ListIds(carol).empty());
}

TEST_F(ConversationsAddTest, BadRoleOrUserIdIs400) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const Account carol = SignUp(server_, client_, "carol");
  const int64_t id = MakeGroup(alice, {bob.id});
  for (const Json& body :
       {Json{{"user_id", carol.id}, {"role", "owner"}}, Json{{"user_id", carol.id}, {"role", ""}},
        Json{{"user_id", carol.id}, {"role", "Admin"}}, Json{{"user_id", carol.id}, {"role", 1}},
        Json::object(), Json{{"user_id", std::to_string(carol.id)}}, Json{{"user_id", 0}},
        Json{{"role", "member"}}}) {
    SCOPED_TRACE(body.dump());
    ExpectError(Add(alice, id, body), 400, "invalid_request");
  }
  EXPECT_TRUE(ListIds(carol).empty());
}

TEST_F(ConversationsAddTest, NonParticipantIs403AndUnknownConversationIs404) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const Account eve = SignUp(server_, client_, "eve");
  const int64_t id = MakeGroup(alice, {bob.id});
  ExpectError(Add(eve, id, eve.id), 403, "forbidden");
  ExpectError(Add(alice, id + 1000, eve.id), 404, "not_found");
  EXPECT_TRUE(ListIds(eve).empty());
}

// ---------------------------------------------------------------------------------------------
// PUT /api/conversations/:id/participants/:userId
// ---------------------------------------------------------------------------------------------

TEST_F(ConversationsRoleTest, AdminPromotesAndDemotes) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const Account carol = SignUp(server_, client_, "carol");
  const int64_t id = MakeGroup(alice, {bob.id, carol.id});

  auto up = SetRole(alice, id, bob.id, "admin");
  ASSERT_EQ(up.status, 200) << up.body;
  ExpectConversationShape(up.json);
  EXPECT_EQ(up.json["id"], id);
  EXPECT_EQ(Role(up.json, bob.id), "admin");
  EXPECT_EQ(Role(up.json, carol.id), "member");
  EXPECT_EQ(Role(Get(carol, id).json, bob.id), "admin");

  // The new admin can act as one, even on the one who promoted it.
  auto down = SetRole(bob, id, alice.id, "member");
  ASSERT_EQ(down.status, 200) << down.body;
  EXPECT_EQ(Role(down.json, alice.id), "member");
  EXPECT_EQ(Role(down.json, bob.id), "admin");
  ExpectError(SetRole(alice, id, carol.id, "admin"), 403, "forbidden");

  // Setting the current role is fine.
  auto same = SetRole(bob, id, carol.id, "member");
  ASSERT_EQ(same.status, 200) << same.body;
  EXPECT_EQ(Role(same.json, carol.id), "member");
}

TEST_F(ConversationsRoleTest, MemberIs403) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const Account carol = SignUp(server_, client_, "carol");
  const int64_t id = MakeGroup(alice, {bob.id, carol.id});
  ExpectError(SetRole(bob, id, bob.id, "admin"), 403, "forbidden");
  ExpectError(SetRole(bob, id, carol.id, "admin"), 403, "forbidden");
  ExpectError(SetRole(bob, id, alice.id, "member"), 403, "forbidden");
  auto c = Get(alice, id);
  EXPECT_EQ(Role(c.json, alice.id), "admin");
  EXPECT_EQ(Role(c.json, bob.id), "member");
  EXPECT_EQ(Role(c.json, carol.id), "member");
}

TEST_F(ConversationsRoleTest, NonParticipantTargetIs404) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const Account eve = SignUp(server_, client_, "eve");
  const int64_t id = MakeGroup(alice, {bob.id});
  ExpectError(SetRole(alice, id, eve.id, "admin"), 404, "not_found");
  ExpectError(SetRole(alice, id, eve.id + 1000, "admin"), 404, "not_found");
  ExpectError(client_.Put(Path(id) + "/participants/abc", {{"role", "admin"}}, alice.token), 404,
              "not_found");
  EXPECT_TRUE(ListIds(eve).empty());
}

TEST_F(ConversationsRoleTest, NonParticipantCallerIs403AndUnknownConversationIs404) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const Account eve = SignUp(server_, client_, "eve");
  const int64_t id = MakeGroup(alice, {bob.id});
  ExpectError(SetRole(eve, id, bob.id, "admin"), 403, "forbidden");
  ExpectError(SetRole(alice, id + 1000, bob.id, "admin"), 404, "not_found");
  EXPECT_EQ(Role(Get(alice, id).json, bob.id), "member");
}

TEST_F(ConversationsRoleTest, PrivateIs400) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const int64_t id = MakePrivate(alice, bob);
  ExpectError(SetRole(alice, id, bob.id, "admin"), 400, "invalid_request");
  ExpectError(SetRole(alice, id, alice.id, "admin"), 400, "invalid_request");
  auto c = Get(alice, id);
  EXPECT_EQ(Role(c.json, alice.id), Role(c.json, bob.id));
}

TEST_F(ConversationsRoleTest, BadOrMissingRoleIs400) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const int64_t id = MakeGroup(alice, {bob.id});
  for (const Json& body : {Json::object(), Json{{"role", nullptr}}, Json{{"role", "owner"}},
                           Json{{"role", "ADMIN"}}, Json{{"role", true}}}) {
    SCOPED_TRACE(body.dump());
    ExpectError(SetRoleBody(alice, id, bob.id, body), 400, "invalid_request");
  }
  ExpectError(client_.Request("PUT", ParticipantPath(id, bob.id), "[", alice.token), 400,
              "invalid_request");
  EXPECT_EQ(Role(Get(alice, id).json, bob.id), "member");
}

// docs/API.md: demoting the only admin is refused (400), so a group always keeps an admin.
TEST_F(ConversationsRoleTest, DemotingTheOnlyAdminIs400) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const int64_t id = MakeGroup(alice, {bob.id});
  ExpectError(SetRole(alice, id, alice.id, "member"), 400, "invalid_request");
  EXPECT_EQ(Role(Get(alice, id).json, alice.id), "admin");

  // With a second admin, either may step down, but not the last one left.
  ASSERT_EQ(SetRole(alice, id, bob.id, "admin").status, 200);
  auto r = SetRole(alice, id, alice.id, "member");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Role(r.json, alice.id), "member");
  EXPECT_EQ(Role(r.json, bob.id), "admin");
  ExpectError(SetRole(bob, id, bob.id, "member"), 400, "invalid_request");
  EXPECT_EQ(Role(Get(bob, id).json, bob.id), "admin");
}

// Two admins stepping down (or demoting each other) at the same moment must not leave the group
// without an admin: the "only admin" check has to hold against concurrent role changes.
TEST_F(ConversationsRoleTest, ConcurrentDemotionsNeverLeaveTheGroupWithoutAnAdmin) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const Account carol = SignUp(server_, client_, "carol");
  constexpr int kRounds = 500;
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    const int64_t id = MakeGroup(alice, {bob.id, carol.id});
    ASSERT_EQ(SetRole(alice, id, bob.id, "admin").status, 200);
    // Even rounds: each demotes itself; odd rounds: each demotes the other.
    const bool self = round % 2 == 0;
    std::latch start(2);
    std::vector<int> statuses(2, 0);
    std::vector<std::thread> threads;
    for (int i = 0; i < 2; ++i) {
      threads.emplace_back([&, i] {
        const Account& caller = i == 0 ? alice : bob;
        const Account& target = self ? caller : (i == 0 ? bob : alice);
        HttpClient client(server_.port());
        client.Get("/healthz");
        start.arrive_and_wait();
        statuses[i] =
            client.Put(ParticipantPath(id, target.id), {{"role", "member"}}, caller.token).status;
      });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(std::count(statuses.begin(), statuses.end(), 200), 1)
        << statuses[0] << " " << statuses[1];
    auto after = Get(carol, id);
    ASSERT_EQ(after.status, 200) << after.body;
    int admins = 0;
    for (const auto& p : after.json["participants"]) admins += p["role"] == "admin" ? 1 : 0;
    ASSERT_EQ(admins, 1) << after.body;
  }
}

// ---------------------------------------------------------------------------------------------
// DELETE /api/conversations/:id/participants/:userId
// ---------------------------------------------------------------------------------------------

TEST_F(ConversationsRemoveTest, AdminRemovesAMember) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const Account carol = SignUp(server_, client_, "carol");
  const int64_t id = MakeGroup(alice, {bob.id, carol.id});
  auto r = Remove(alice, id, bob.id);
  ASSERT_EQ(r.status, 204) << r.body;
  EXPECT_TRUE(r.body.empty()) << r.body;
  auto c = Get(alice, id);
  ASSERT_EQ(c.status, 200) << c.body;
  EXPECT_EQ(ParticipantIds(c.json), (std::set<int64_t>{alice.id, carol.id}));
  EXPECT_TRUE(ListIds(bob).empty());

  // An admin may remove another admin too.
  ASSERT_EQ(SetRole(alice, id, carol.id, "admin").status, 200);
  ASSERT_EQ(Remove(carol, id, alice.id).status, 204);
  EXPECT_EQ(ParticipantIds(Get(carol, id).json), (std::set<int64_t>{carol.id}));
}

TEST_F(ConversationsRemoveTest, MemberMayLeave) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const Account carol = SignUp(server_, client_, "carol");
  const int64_t id = MakeGroup(alice, {bob.id, carol.id});
  auto r = Remove(bob, id, bob.id);
  ASSERT_EQ(r.status, 204) << r.body;
  EXPECT_EQ(ParticipantIds(Get(alice, id).json), (std::set<int64_t>{alice.id, carol.id}));
  ExpectError(Get(bob, id), 403, "forbidden");
  EXPECT_TRUE(ListIds(bob).empty());
  // Leaving twice: no longer a participant.
  ExpectError(Remove(bob, id, bob.id), 403, "forbidden");
}

TEST_F(ConversationsRemoveTest, MemberRemovingAnotherIs403) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const Account carol = SignUp(server_, client_, "carol");
  const Account eve = SignUp(server_, client_, "eve");
  const int64_t id = MakeGroup(alice, {bob.id, carol.id});
  ExpectError(Remove(bob, id, carol.id), 403, "forbidden");
  ExpectError(Remove(bob, id, alice.id), 403, "forbidden");
  ExpectError(Remove(bob, id, eve.id), 403, "forbidden");
  EXPECT_EQ(ParticipantIds(Get(alice, id).json), (std::set<int64_t>{alice.id, bob.id, carol.id}));
}

TEST_F(ConversationsRemoveTest, RemovingANonParticipantIs404) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const Account eve = SignUp(server_, client_, "eve");
  const int64_t id = MakeGroup(alice, {bob.id});
  ExpectError(Remove(alice, id, eve.id), 404, "not_found");
  ExpectError(Remove(alice, id, eve.id + 1000), 404, "not_found");
  ExpectError(client_.Request("DELETE", Path(id) + "/participants/abc", "", alice.token), 404,
              "not_found");
  EXPECT_EQ(ParticipantIds(Get(alice, id).json), (std::set<int64_t>{alice.id, bob.id}));
}

TEST_F(ConversationsRemoveTest, NonParticipantCallerIs403AndUnknownConversationIs404) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const Account eve = SignUp(server_, client_, "eve");
  const int64_t id = MakeGroup(alice, {bob.id});
  ExpectError(Remove(eve, id, bob.id), 403, "forbidden");
  ExpectError(Remove(eve, id, eve.id), 403, "forbidden");
  ExpectError(Remove(alice, id + 1000, bob.id), 404, "not_found");
  ExpectError(client_.Request("DELETE", "/api/conversations/abc/participants/1", "", alice.token),
              404, "not_found");
  EXPECT_EQ(ParticipantIds(Get(alice, id).json), (std::set<int64_t>{alice.id, bob.id}));
}

TEST_F(ConversationsRemoveTest, PrivateIs400) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const int64_t id = MakePrivate(alice, bob);
  ExpectError(Remove(alice, id, bob.id), 400, "invalid_request");
  ExpectError(Remove(alice, id, alice.id), 400, "invalid_request");
  ExpectError(Remove(bob, id, bob.id), 400, "invalid_request");
  EXPECT_EQ(ParticipantIds(Get(alice, id).json), (std::set<int64_t>{alice.id, bob.id}));
  EXPECT_EQ(Get(bob, id).status, 200);
}

TEST_F(ConversationsRemoveTest, WhenTheLastAdminLeavesTheEarliestJoinedMemberBecomesAdmin) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const Account carol = SignUp(server_, client_, "carol");
  const Account dave = SignUp(server_, client_, "dave");
  ASSERT_LT(bob.id, carol.id);
  ASSERT_LT(carol.id, dave.id);
  auto created = Group(alice, "team", {});
  ASSERT_EQ(created.status, 201) << created.body;
  const int64_t id = created.json["id"];

  // Added in the reverse order of their ids, each strictly later than the one before, so that
  // "earliest joined_at" and "lowest id" name different users.
  int64_t last_join = ParseMillis(FindParticipant(created.json, alice.id)["joined_at"]);
  for (const Account* a : {&dave, &carol, &bob}) {
    AwaitClockAfter(last_join);
    auto r = Add(alice, id, a->id);
    ASSERT_EQ(r.status, 201) << r.body;
    const int64_t joined = ParseMillis(FindParticipant(r.json, a->id)["joined_at"]);
    ASSERT_GT(joined, last_join) << r.body;
    last_join = joined;
  }

  ASSERT_EQ(Remove(alice, id, alice.id).status, 204);
  auto after = Get(dave, id);
  ASSERT_EQ(after.status, 200) << after.body;
  EXPECT_EQ(ParticipantIds(after.json), (std::set<int64_t>{bob.id, carol.id, dave.id}));
  EXPECT_EQ(Role(after.json, dave.id), "admin");
  EXPECT_EQ(Role(after.json, carol.id), "member");
  EXPECT_EQ(Role(after.json, bob.id), "member");

  // The new admin acts as one; when it leaves too, the next earliest takes over.
  ASSERT_EQ(Rename(dave, id, {{"name", "dave's"}}).status, 200);
  ASSERT_EQ(Remove(dave, id, dave.id).status, 204);
  after = Get(bob, id);
  ASSERT_EQ(after.status, 200) << after.body;
  EXPECT_EQ(Role(after.json, carol.id), "admin");
  EXPECT_EQ(Role(after.json, bob.id), "member");
}

TEST_F(ConversationsRemoveTest, WhenTheLastAdminLeavesTheRuleHoldsForMembersJoinedTogether) {
  // Members added at creation share the creator's joined_at; the API's rule picks the earliest
  // joined_at among them, whatever the tie-break.
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const Account carol = SignUp(server_, client_, "carol");
  const Account dave = SignUp(server_, client_, "dave");
  const int64_t id = MakeGroup(alice, {carol.id, bob.id});
  auto created = Get(alice, id);
  AwaitClockAfter(ParseMillis(FindParticipant(created.json, alice.id)["joined_at"]));
  ASSERT_EQ(Add(alice, id, dave.id).status, 201);
  auto before = Get(alice, id);
  ASSERT_EQ(before.status, 200) << before.body;

  // The expected heir: earliest joined_at among the remaining, then the lower user id.
  int64_t heir = 0;
  std::pair<int64_t, int64_t> best{INT64_MAX, INT64_MAX};
  for (const auto& p : before.json["participants"]) {
    const int64_t uid = p["user_id"];
    if (uid == alice.id) continue;
    const std::pair<int64_t, int64_t> key{ParseMillis(p["joined_at"]), uid};
    if (key < best) {
      best = key;
      heir = uid;
    }
  }
  ASSERT_NE(heir, dave.id);  // dave joined strictly later

  ASSERT_EQ(Remove(alice, id, alice.id).status, 204);
  auto after = Get(dave, id);
  ASSERT_EQ(after.status, 200) << after.body;
  int admins = 0;
  for (const auto& p : after.json["participants"]) {
    if (p["role"] == "admin") ++admins;
  }
  EXPECT_EQ(admins, 1) << after.body;
  EXPECT_EQ(Role(after.json, heir), "admin") << after.body;
  EXPECT_EQ(Role(after.json, dave.id), "member");
}

TEST_F(ConversationsRemoveTest, AnAdminLeavingWhileAnotherAdminStaysPromotesNobody) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const Account carol = SignUp(server_, client_, "carol");
  const int64_t id = MakeGroup(alice, {bob.id, carol.id});
  ASSERT_EQ(SetRole(alice, id, carol.id, "admin").status, 200);
  ASSERT_EQ(Remove(alice, id, alice.id).status, 204);
  auto after = Get(bob, id);
  ASSERT_EQ(after.status, 200) << after.body;
  EXPECT_EQ(Role(after.json, carol.id), "admin");
  EXPECT_EQ(Role(after.json, bob.id), "member");
}

TEST_F(ConversationsRemoveTest, RemovedUserCanBeAddedBack) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const int64_t id = MakeGroup(alice, {bob.id});
  const Json m = Send(alice, id, "hello");
  ASSERT_EQ(Remove(alice, id, bob.id).status, 204);
  ExpectError(Get(bob, id), 403, "forbidden");
  auto r = Add(alice, id, bob.id);
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(Role(r.json, bob.id), "member");
  auto msgs = Messages(bob, id);
  ASSERT_EQ(msgs.status, 200) << msgs.body;
  ASSERT_EQ(msgs.json["messages"].size(), 1u) << msgs.body;
  EXPECT_EQ(msgs.json["messages"][0]["id"], m["id"]);
}

// ---------------------------------------------------------------------------------------------
// Removed users and never-members see nothing
// ---------------------------------------------------------------------------------------------

TEST_F(ConversationsAccessTest, RemovedUserSeesNothingOfTheConversation) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const Account carol = SignUp(server_, client_, "carol");
  const int64_t group = MakeGroup(alice, {bob.id, carol.id});
  const int64_t dm = MakePrivate(alice, bob);
  const Json m1 = Send(alice, group, "before");
  Send(bob, group, "mine");
  const Json dm_msg = Send(alice, dm, "direct");

  // Bob sees the group before his removal.
  ASSERT_EQ(Messages(bob, group).status, 200);
  ASSERT_TRUE(SyncedConversations(bob).contains(group));

  ASSERT_EQ(Remove(alice, group, bob.id).status, 204);
  const Json m3 = Send(carol, group, "after");
  ExpectLockedOut(bob, group, m1["id"]);
  ExpectLockedOut(bob, group, m3["id"]);
  // His other conversation is unaffected.
  EXPECT_EQ(ListIds(bob), std::vector<int64_t>{dm});
  EXPECT_EQ(SyncedConversations(bob), std::set<int64_t>{dm});
  EXPECT_EQ(Get(bob, dm).status, 200);
  EXPECT_EQ(MarkRead(bob, dm, dm_msg["id"]).status, 200);
  // The others still see everything.
  auto msgs = Messages(carol, group);
  ASSERT_EQ(msgs.status, 200) << msgs.body;
  EXPECT_EQ(msgs.json["messages"].size(), 3u);
}

TEST_F(ConversationsAccessTest, MemberWhoLeftSeesNothingOfTheConversation) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const int64_t group = MakeGroup(alice, {bob.id});
  const Json m1 = Send(alice, group, "before");
  ASSERT_EQ(Remove(bob, group, bob.id).status, 204);
  Send(alice, group, "after");
  ExpectLockedOut(bob, group, m1["id"]);
  EXPECT_TRUE(SyncedConversations(bob).empty());
}

TEST_F(ConversationsAccessTest, NeverMemberGets403Everywhere) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const Account eve = SignUp(server_, client_, "eve");
  const int64_t group = MakeGroup(alice, {bob.id});
  const int64_t dm = MakePrivate(alice, bob);
  const Json gm = Send(alice, group, "group secret");
  const Json dmm = Send(bob, dm, "private secret");
  ExpectLockedOut(eve, group, gm["id"]);
  ExpectLockedOut(eve, dm, dmm["id"]);
  EXPECT_TRUE(ListIds(eve).empty());
  EXPECT_TRUE(SyncedConversations(eve).empty());
  // The participants' answers to the same calls, for contrast.
  EXPECT_EQ(Messages(bob, group).status, 200);
  EXPECT_EQ(MarkRead(alice, dm, dmm["id"]).status, 200);
}

}  // namespace
}  // namespace mmchat::test
