// API.md "Replies, edits, deletions, reactions" over real HTTP, on the store of the run: each
// rule with its errors, change_id and the sync that catches a client up on changes, unread
// counts without deleted messages, and a deleted message's text gone from the store.
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "harness.h"

namespace mmchat::test {
namespace {

constexpr int64_t kUnknownId = 999'999'999;
const std::string kThumbs = "\xf0\x9f\x91\x8d";  // 👍
const std::string kParty = "\xf0\x9f\x8e\x89";   // 🎉

class MessageChangesFixture : public ::testing::Test {
 protected:
  MessageChangesFixture()
      : server_(ServerOptions{.env = kNoAbuseLimits}), client_(server_.port()) {}

  void SetUp() override {
    alice_ = SignUp(server_, client_, "alice");
    bob_ = SignUp(server_, client_, "bob");
    carol_ = SignUp(server_, client_, "carol");
    dave_ = SignUp(server_, client_, "dave");
    auto p = client_.Post("/api/conversations/private", {{"user_id", bob_.id}}, alice_.token);
    ASSERT_EQ(p.status, 201) << p.body;
    private_ = p.json["id"].get<int64_t>();
    // alice is the group's admin; bob and carol are members; dave is a stranger.
    auto g = client_.Post("/api/conversations/group",
                          {{"name", "team"}, {"member_ids", {bob_.id, carol_.id}}}, alice_.token);
    ASSERT_EQ(g.status, 201) << g.body;
    group_ = g.json["id"].get<int64_t>();
  }

  Json Send(const Account& a, int64_t conversation, const std::string& content,
            std::optional<Json> reply_to = std::nullopt, int status = 201) {
    Json body = {{"conversation_id", conversation}, {"content", content}};
    if (reply_to) body["reply_to"] = *reply_to;
    auto r = client_.Post("/api/messages", body, a.token);
    EXPECT_EQ(r.status, status) << r.body;
    return r.json;
  }
  static std::string Path(int64_t message) { return "/api/messages/" + std::to_string(message); }
  HttpResult Edit(const Account& a, int64_t message, const Json& content) {
    return client_.Request("PATCH", Path(message), Json{{"content", content}}.dump(), a.token);
  }
  HttpResult Delete(const Account& a, int64_t message) {
    return client_.Request("DELETE", Path(message), "", a.token);
  }
  HttpResult React(const Account& a, int64_t message, const std::string& emoji, bool add = true) {
    return client_.Request(add ? "PUT" : "DELETE",
                           Path(message) + "/reactions/" + PercentEncode(emoji), "", a.token);
  }
  // The message as `a` lists it.
  Json Listed(const Account& a, int64_t conversation, int64_t message) {
    auto r =
        client_.Get("/api/conversations/" + std::to_string(conversation) + "/messages", a.token);
    EXPECT_EQ(r.status, 200) << r.body;
    for (const auto& m : r.json.value("messages", Json::array())) {
      if (m["id"] == message) return m;
    }
    return Json();
  }

  TestServer server_;
  HttpClient client_;
  Account alice_, bob_, carol_, dave_;
  int64_t private_ = 0, group_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Replies
// ---------------------------------------------------------------------------------------------

class MessageChangesReplyTest : public MessageChangesFixture {};

TEST_F(MessageChangesReplyTest, AReplyNamesAMessageOfTheSameConversation) {
  const Json first = Send(alice_, group_, "question");
  EXPECT_EQ(first["reply_to"], Json());
  EXPECT_EQ(first["attachments"], Json::array());
  EXPECT_EQ(first["reactions"], Json::array());
  EXPECT_EQ(first["edited_at"], Json());
  EXPECT_EQ(first["deleted_at"], Json());
  EXPECT_EQ(first["change_id"], first["id"]);
  const Json answer = Send(bob_, group_, "answer", first["id"]);
  EXPECT_EQ(answer["reply_to"], first["id"]);
  EXPECT_EQ(Listed(carol_, group_, answer["id"].get<int64_t>())["reply_to"], first["id"]);
  // A deleted message may still be answered.
  ASSERT_EQ(Delete(alice_, first["id"].get<int64_t>()).status, 204);
  EXPECT_EQ(Send(carol_, group_, "late answer", first["id"])["reply_to"], first["id"]);
  // null is no reply.
  EXPECT_EQ(Send(carol_, group_, "plain", Json())["reply_to"], Json());
}

TEST_F(MessageChangesReplyTest, AnyOtherReplyToIs400AndStoresNothing) {
  const Json elsewhere = Send(alice_, private_, "private words");
  for (const Json& bad : {elsewhere["id"], Json(kUnknownId), Json(0), Json(-3), Json("12"),
                          Json(1.5), Json::array()}) {
    auto r = client_.Post("/api/messages",
                          {{"conversation_id", group_}, {"content", "x"}, {"reply_to", bad}},
                          alice_.token);
    ExpectError(r, 400, "invalid_request");
  }
  auto listed =
      client_.Get("/api/conversations/" + std::to_string(group_) + "/messages", alice_.token);
  EXPECT_EQ(listed.json["messages"], Json::array()) << "a refused reply was stored";
  // The next message still gets seq 1: nothing was used up.
  EXPECT_EQ(Send(alice_, group_, "first")["seq"], 1);
}

TEST_F(MessageChangesReplyTest, AttachmentsOfNoUploadAre400) {
  auto r = client_.Post(
      "/api/messages",
      {{"conversation_id", group_}, {"content", "x"}, {"attachments", {"no-such-upload"}}},
      alice_.token);
  ExpectError(r, 400, "invalid_request");
  auto empty =
      client_.Post("/api/messages",
                   {{"conversation_id", group_}, {"content", "x"}, {"attachments", Json::array()}},
                   alice_.token);
  EXPECT_EQ(empty.status, 201) << empty.body;
}

// ---------------------------------------------------------------------------------------------
// Edits
// ---------------------------------------------------------------------------------------------

class MessageChangesEditTest : public MessageChangesFixture {};

TEST_F(MessageChangesEditTest, TheSenderEditsAndTheMessageTakesANewChangeId) {
  const Json m = Send(bob_, group_, "helo");
  const int64_t id = m["id"].get<int64_t>();
  const Json later = Send(carol_, group_, "something else");
  auto r = Edit(bob_, id, "hello");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json["id"], id);
  EXPECT_EQ(r.json["seq"], m["seq"]);
  EXPECT_EQ(r.json["content"], "hello");
  EXPECT_TRUE(r.json["edited_at"].is_string());
  EXPECT_EQ(r.json["created_at"], m["created_at"]);
  const int64_t change = r.json["change_id"].get<int64_t>();
  EXPECT_GT(change, later["id"].get<int64_t>()) << "above every id committed before";
  // Everyone reads the new text.
  const Json listed = Listed(alice_, group_, id);
  EXPECT_EQ(listed["content"], "hello");
  EXPECT_EQ(listed["change_id"], change);
  EXPECT_EQ(listed["edited_at"], r.json["edited_at"]);
  // A later message's id is above the change: one counter.
  EXPECT_GT(Send(alice_, group_, "after")["id"].get<int64_t>(), change);
  // The same text again changes nothing.
  auto same = Edit(bob_, id, "hello");
  ASSERT_EQ(same.status, 200) << same.body;
  EXPECT_EQ(same.json["change_id"], change);
}

TEST_F(MessageChangesEditTest, OnlyTheSenderEditsAndTheContentFollowsTheRulesOfSending) {
  const int64_t id = Send(bob_, group_, "mine")["id"].get<int64_t>();
  ExpectError(Edit(alice_, id, "admin's words"), 403, "forbidden");  // an admin is not the sender
  ExpectError(Edit(carol_, id, "carol's words"), 403, "forbidden");
  ExpectError(Edit(dave_, id, "stranger"), 403, "forbidden");
  ExpectError(Edit(bob_, kUnknownId, "x"), 404, "not_found");
  ExpectError(Edit(bob_, id, ""), 400, "invalid_request");
  ExpectError(Edit(bob_, id, std::string(4001, 'x')), 400, "invalid_request");
  ExpectError(Edit(bob_, id, 42), 400, "invalid_request");
  auto no_body = client_.Request("PATCH", Path(id), "{}", bob_.token);
  ExpectError(no_body, 400, "invalid_request");
  ExpectError(client_.Request("PATCH", "/api/messages/abc", R"({"content":"x"})", bob_.token), 404,
              "not_found");
  EXPECT_EQ(Listed(bob_, group_, id)["content"], "mine");
}

TEST_F(MessageChangesEditTest, ARemovedMemberCannotEditAnyMore) {
  const int64_t id = Send(carol_, group_, "before I go")["id"].get<int64_t>();
  auto out = client_.Request(
      "DELETE",
      "/api/conversations/" + std::to_string(group_) + "/participants/" + std::to_string(carol_.id),
      "", alice_.token);
  ASSERT_EQ(out.status, 204) << out.body;
  ExpectError(Edit(carol_, id, "changed"), 403, "forbidden");
  ExpectError(Delete(carol_, id), 403, "forbidden");
  ExpectError(React(carol_, id, kThumbs), 403, "forbidden");
}

// ---------------------------------------------------------------------------------------------
// Deletions
// ---------------------------------------------------------------------------------------------

class MessageChangesDeleteTest : public MessageChangesFixture {};

TEST_F(MessageChangesDeleteTest, ADeletedMessageKeepsItsPlaceAndLosesItsContent) {
  const Json first = Send(bob_, group_, "oops");
  const int64_t id = first["id"].get<int64_t>();
  ASSERT_EQ(React(carol_, id, kThumbs).status, 200);
  const Json second = Send(carol_, group_, "next", first["id"]);
  auto r = Delete(bob_, id);
  EXPECT_EQ(r.status, 204) << r.body;
  EXPECT_TRUE(r.body.empty());
  EXPECT_EQ(r.headers.count("content-length"), 0u) << "RFC 9110: none on a 204";
  const Json gone = Listed(alice_, group_, id);
  ASSERT_TRUE(gone.is_object()) << "a deleted message stays in the history";
  EXPECT_EQ(gone["content"], "");
  EXPECT_EQ(gone["reactions"], Json::array());
  EXPECT_EQ(gone["attachments"], Json::array());
  EXPECT_TRUE(gone["deleted_at"].is_string());
  for (const char* kept : {"id", "seq", "sender_id", "created_at", "reply_to"}) {
    EXPECT_EQ(gone[kept], first[kept]) << kept;
  }
  EXPECT_GT(gone["change_id"].get<int64_t>(), second["id"].get<int64_t>());
  // seq stays gapless: the next message is 3.
  EXPECT_EQ(Send(alice_, group_, "third")["seq"], 3);
  // Deleting again answers 204 and changes nothing.
  EXPECT_EQ(Delete(bob_, id).status, 204);
  EXPECT_EQ(Listed(alice_, group_, id)["change_id"], gone["change_id"]);
  // A deleted message is not edited nor reacted to.
  ExpectError(Edit(bob_, id, "undo"), 409, "conflict");
  ExpectError(React(alice_, id, kParty), 409, "conflict");
  ExpectError(React(carol_, id, kThumbs, false), 409, "conflict");
}

TEST_F(MessageChangesDeleteTest, TheSenderOrAGroupAdminDeletes) {
  const int64_t bobs = Send(bob_, group_, "bob's")["id"].get<int64_t>();
  ExpectError(Delete(carol_, bobs), 403, "forbidden");  // a member, not the sender
  ExpectError(Delete(dave_, bobs), 403, "forbidden");   // a stranger
  ExpectError(Delete(bob_, kUnknownId), 404, "not_found");
  EXPECT_EQ(Delete(alice_, bobs).status, 204);  // the group's admin
  EXPECT_TRUE(Listed(bob_, group_, bobs)["deleted_at"].is_string());
  // A private conversation has no admin: only the sender deletes there.
  const int64_t privately = Send(bob_, private_, "just us")["id"].get<int64_t>();
  ExpectError(Delete(alice_, privately), 403, "forbidden");
  EXPECT_EQ(Delete(bob_, privately).status, 204);
}

TEST_F(MessageChangesDeleteTest, DeletedMessagesDoNotCountAsUnread) {
  Send(bob_, group_, "one");
  const int64_t two = Send(bob_, group_, "two")["id"].get<int64_t>();
  auto before = client_.Get("/api/conversations/" + std::to_string(group_), alice_.token);
  ASSERT_EQ(before.status, 200);
  EXPECT_EQ(before.json["unread_count"], 2);
  EXPECT_EQ(before.json["last_message"]["content"], "two");
  ASSERT_EQ(Delete(bob_, two).status, 204);
  auto after = client_.Get("/api/conversations/" + std::to_string(group_), alice_.token);
  EXPECT_EQ(after.json["unread_count"], 1);
  auto list = client_.Get("/api/conversations", alice_.token);
  for (const auto& c : list.json["conversations"]) {
    if (c["id"] == group_) {
      EXPECT_EQ(c["unread_count"], 1) << c.dump();
      // The last message is still the deleted one, shown as deleted.
      EXPECT_EQ(c["last_message"]["id"], two) << c.dump();
      EXPECT_EQ(c["last_message"]["content"], "") << c.dump();
      EXPECT_TRUE(c["last_message"]["deleted_at"].is_string()) << c.dump();
    }
  }
  EXPECT_TRUE(after.json["last_message"]["deleted_at"].is_string()) << after.body;
}

TEST_F(MessageChangesDeleteTest, TheTextOfADeletedMessageIsNotLeftInTheStore) {
  const std::string secret = "the-launch-code-is-7-4-1-9-3";
  const std::string edited_away = "first-draft-of-a-typo-3-1-4";
  const int64_t id = Send(bob_, group_, secret)["id"].get<int64_t>();
  const int64_t other = Send(bob_, group_, edited_away)["id"].get<int64_t>();
  ASSERT_EQ(Edit(bob_, other, "fixed").status, 200);
  ASSERT_EQ(Delete(bob_, id).status, 204);
  // Afterwards: once the server has stopped (SQLite: the database file and its WAL).
  ASSERT_EQ(server_.Stop(), 0);
  const std::string contents = StoreContents(server_.dir());
  ASSERT_NE(contents.find("fixed"), std::string::npos) << "the check reads the store";
  EXPECT_EQ(contents.find(secret), std::string::npos) << "the deleted text is still stored";
  EXPECT_EQ(contents.find(edited_away), std::string::npos) << "the old text of an edit is stored";
}

// ---------------------------------------------------------------------------------------------
// Reactions
// ---------------------------------------------------------------------------------------------

class MessageChangesReactionTest : public MessageChangesFixture {};

TEST_F(MessageChangesReactionTest, ReactionsAreListedInTheOrderTheyCame) {
  const int64_t id = Send(alice_, group_, "news")["id"].get<int64_t>();
  auto r1 = React(bob_, id, kThumbs);
  ASSERT_EQ(r1.status, 200) << r1.body;
  EXPECT_EQ(r1.json["reactions"],
            Json::parse(R"([{"emoji":")" + kThumbs + R"(","count":1,"user_ids":[)" +
                        std::to_string(bob_.id) + "]}]"));
  ASSERT_EQ(React(carol_, id, kParty).status, 200);
  auto r3 = React(alice_, id, kThumbs);
  ASSERT_EQ(r3.status, 200);
  const Json& reactions = r3.json["reactions"];
  ASSERT_EQ(reactions.size(), 2u) << reactions.dump();
  EXPECT_EQ(reactions[0]["emoji"], kThumbs);
  EXPECT_EQ(reactions[0]["count"], 2);
  EXPECT_EQ(reactions[0]["user_ids"], Json({bob_.id, alice_.id}));
  EXPECT_EQ(reactions[1]["emoji"], kParty);
  EXPECT_EQ(reactions[1]["user_ids"], Json({carol_.id}));
  EXPECT_EQ(Listed(carol_, group_, id)["reactions"], reactions);
  // Removing: the emoji stays while someone has it, and goes with its last user.
  auto removed = React(bob_, id, kThumbs, false);
  ASSERT_EQ(removed.status, 200);
  EXPECT_EQ(removed.json["reactions"][0]["user_ids"], Json({alice_.id}));
  auto last = React(carol_, id, kParty, false);
  ASSERT_EQ(last.status, 200);
  EXPECT_EQ(last.json["reactions"].size(), 1u);
  EXPECT_GT(last.json["change_id"].get<int64_t>(), removed.json["change_id"].get<int64_t>());
}

TEST_F(MessageChangesReactionTest, RepeatingOrRemovingWhatIsNotThereChangesNothing) {
  const int64_t id = Send(alice_, group_, "news")["id"].get<int64_t>();
  auto first = React(bob_, id, kThumbs);
  ASSERT_EQ(first.status, 200);
  auto again = React(bob_, id, kThumbs);
  ASSERT_EQ(again.status, 200);
  EXPECT_EQ(again.json["change_id"], first.json["change_id"]);
  EXPECT_EQ(again.json["reactions"], first.json["reactions"]);
  auto not_mine = React(carol_, id, kThumbs, false);
  ASSERT_EQ(not_mine.status, 200);
  EXPECT_EQ(not_mine.json["change_id"], first.json["change_id"]);
  auto never = React(carol_, id, kParty, false);
  ASSERT_EQ(never.status, 200);
  EXPECT_EQ(never.json["change_id"], first.json["change_id"]);
}

TEST_F(MessageChangesReactionTest, AMessageHoldsAtMostTwentyEmoji) {
  const int64_t id = Send(alice_, group_, "vote")["id"].get<int64_t>();
  for (int i = 0; i < 20; ++i) {
    auto r = React(bob_, id, "e" + std::to_string(i));
    ASSERT_EQ(r.status, 200) << i << ": " << r.body;
  }
  ExpectError(React(carol_, id, "e20"), 400, "invalid_request");
  // An emoji already there still takes more users.
  auto more = React(carol_, id, "e7");
  ASSERT_EQ(more.status, 200) << more.body;
  EXPECT_EQ(more.json["reactions"].size(), 20u);
}

TEST_F(MessageChangesReactionTest, BadEmojiAre400) {
  const int64_t id = Send(alice_, group_, "x")["id"].get<int64_t>();
  for (const std::string& bad :
       {std::string("a b"), std::string("tab\tin"), std::string("\x01"), std::string(17, 'x'),
        std::string("\xff\xfe"), std::string("nbsp\xc2\xa0"), std::string("line\xe2\x80\xa8")}) {
    ExpectError(React(bob_, id, bad), 400, "invalid_request");
  }
  // 16 code points of 4 bytes each is fine.
  std::string sixteen;
  for (int i = 0; i < 16; ++i) sixteen += kThumbs;
  EXPECT_EQ(React(bob_, id, sixteen).status, 200);
  // Not percent-encoded at all: plain ASCII in the path.
  auto plain = client_.Request("PUT", Path(id) + "/reactions/ok", "", bob_.token);
  ASSERT_EQ(plain.status, 200) << plain.body;
  EXPECT_EQ(plain.json["reactions"].back()["emoji"], "ok");
  // A '+' in a path is a plus sign, not a space.
  auto plus = client_.Request("PUT", Path(id) + "/reactions/%2B1", "", bob_.token);
  ASSERT_EQ(plus.status, 200) << plus.body;
  EXPECT_EQ(plus.json["reactions"].back()["emoji"], "+1");
}

TEST_F(MessageChangesReactionTest, OnlyParticipantsReact) {
  const int64_t id = Send(alice_, group_, "x")["id"].get<int64_t>();
  ExpectError(React(dave_, id, kThumbs), 403, "forbidden");
  ExpectError(React(dave_, kUnknownId, kThumbs), 404, "not_found");
  ExpectError(React(dave_, id, kThumbs, false), 403, "forbidden");
  auto no_token = client_.Request("PUT", Path(id) + "/reactions/" + PercentEncode(kThumbs), "");
  ExpectError(no_token, 401, "unauthorized");
}

// ---------------------------------------------------------------------------------------------
// sync: created or changed since, in change_id order
// ---------------------------------------------------------------------------------------------

class MessageChangesSyncTest : public MessageChangesFixture {};

TEST_F(MessageChangesSyncTest, SyncBringsChangesToOldMessagesOnceInChangeIdOrder) {
  const int64_t a = Send(alice_, group_, "a")["id"].get<int64_t>();
  const int64_t b = Send(bob_, group_, "b")["id"].get<int64_t>();
  auto caught_up = client_.Get("/api/sync?since=0", carol_.token);
  ASSERT_EQ(caught_up.status, 200);
  const int64_t since = caught_up.json["next_since"].get<int64_t>();
  EXPECT_EQ(since, b);

  ASSERT_EQ(Edit(alice_, a, "a2").status, 200);                    // a changes
  const int64_t c = Send(bob_, group_, "c")["id"].get<int64_t>();  // c is new
  ASSERT_EQ(React(carol_, a, kThumbs).status, 200);                // a changes again
  ASSERT_EQ(Delete(bob_, b).status, 204);                          // b is deleted

  auto r = client_.Get("/api/sync?since=" + std::to_string(since), carol_.token);
  ASSERT_EQ(r.status, 200) << r.body;
  const Json& ms = r.json["messages"];
  ASSERT_EQ(ms.size(), 3u) << r.body;  // c, a (once, in its latest state), b
  EXPECT_EQ(ms[0]["id"], c);
  EXPECT_EQ(ms[1]["id"], a);
  EXPECT_EQ(ms[1]["content"], "a2");
  EXPECT_EQ(ms[1]["reactions"].size(), 1u);
  EXPECT_EQ(ms[2]["id"], b);
  EXPECT_TRUE(ms[2]["deleted_at"].is_string());
  EXPECT_LT(ms[0]["change_id"].get<int64_t>(), ms[1]["change_id"].get<int64_t>());
  EXPECT_LT(ms[1]["change_id"].get<int64_t>(), ms[2]["change_id"].get<int64_t>());
  EXPECT_EQ(r.json["next_since"], ms[2]["change_id"]);

  // Paging: one at a time still visits each once.
  std::vector<int64_t> seen;
  int64_t cursor = since;
  for (int guard = 0; guard < 10; ++guard) {
    auto page = client_.Get("/api/sync?limit=1&since=" + std::to_string(cursor), carol_.token);
    ASSERT_EQ(page.status, 200);
    for (const auto& m : page.json["messages"]) seen.push_back(m["id"].get<int64_t>());
    cursor = page.json["next_since"].get<int64_t>();
    if (!page.json["has_more"].get<bool>()) break;
  }
  EXPECT_EQ(seen, (std::vector<int64_t>{c, a, b}));
  // Nothing further.
  auto after = client_.Get("/api/sync?since=" + std::to_string(cursor), carol_.token);
  EXPECT_EQ(after.json["messages"], Json::array());
}

}  // namespace
}  // namespace mmchat::test
