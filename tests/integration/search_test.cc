// API.md "Search" over real HTTP, on the store of the run: whole words and a last prefix,
// case and diacritics, separators, newest first with `before` and `limit`, only the caller's
// current conversations, edits and deletions, bad input, and a deleted message's words gone
// from the search index.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "harness.h"

namespace mmchat::test {
namespace {

class SearchTest : public ::testing::Test {
 protected:
  SearchTest() : server_(ServerOptions{.env = kNoAbuseLimits}), client_(server_.port()) {}

  void SetUp() override {
    alice_ = SignUp(server_, client_, "alice");
    bob_ = SignUp(server_, client_, "bob");
    carol_ = SignUp(server_, client_, "carol");
    dave_ = SignUp(server_, client_, "dave");
    auto g = client_.Post("/api/conversations/group",
                          {{"name", "team"}, {"member_ids", {bob_.id, carol_.id}}}, alice_.token);
    ASSERT_EQ(g.status, 201) << g.body;
    group_ = g.json["id"].get<int64_t>();
    auto p = client_.Post("/api/conversations/private", {{"user_id", dave_.id}}, alice_.token);
    ASSERT_EQ(p.status, 201) << p.body;
    private_ = p.json["id"].get<int64_t>();
  }

  int64_t Send(const Account& a, int64_t conversation, const std::string& content) {
    auto r = client_.Post("/api/messages",
                          {{"conversation_id", conversation}, {"content", content}}, a.token);
    EXPECT_EQ(r.status, 201) << r.body;
    return r.json.value("id", int64_t{0});
  }
  HttpResult Search(const Account& a, const std::string& q, const std::string& more = "") {
    return client_.Get("/api/search?q=" + PercentEncode(q) + more, a.token);
  }
  // The ids `a` finds for `q`, in the order of the answer.
  std::vector<int64_t> Found(const Account& a, const std::string& q, const std::string& more = "") {
    auto r = Search(a, q, more);
    EXPECT_EQ(r.status, 200) << q << ": " << r.body;
    std::vector<int64_t> ids;
    for (const auto& m : r.json.value("messages", Json::array())) ids.push_back(m["id"]);
    return ids;
  }

  TestServer server_;
  HttpClient client_;
  Account alice_, bob_, carol_, dave_;
  int64_t group_ = 0, private_ = 0;
};

using Ids = std::vector<int64_t>;

TEST_F(SearchTest, EveryWordMustOccurWholeAndTheLastMayBeAPrefix) {
  const int64_t fox = Send(alice_, group_, "The quick brown fox jumps");
  const int64_t concat = Send(bob_, group_, "concatenate the strings");
  const int64_t category = Send(carol_, group_, "a category of its own");
  EXPECT_EQ(Found(bob_, "quick fox"), Ids({fox}));
  EXPECT_EQ(Found(bob_, "fox qui"), Ids({fox}));  // the last word is a prefix
  EXPECT_EQ(Found(bob_, "qui fox"), Ids());       // the others are whole words
  EXPECT_EQ(Found(bob_, "quick cat"), Ids());     // every word must occur
  // "cat" starts "category", and is inside "concatenate": only the first is a match.
  EXPECT_EQ(Found(bob_, "cat"), Ids({category}));
  EXPECT_EQ(Found(bob_, "the"), Ids({concat, fox}));
  EXPECT_EQ(Found(bob_, "strings concatenate"), Ids({concat}));  // in any order
  EXPECT_EQ(Found(bob_, "jumpsx"), Ids());
}

TEST_F(SearchTest, CaseAndDiacriticsAreIgnored) {
  const int64_t cafe = Send(alice_, group_, "Meet at the Café Über at noon");
  const int64_t naive = Send(alice_, group_, "a NAÏVE plan");
  EXPECT_EQ(Found(bob_, "cafe"), Ids({cafe}));
  EXPECT_EQ(Found(bob_, "CAFÉ uber"), Ids({cafe}));
  EXPECT_EQ(Found(bob_, "über"), Ids({cafe}));
  EXPECT_EQ(Found(bob_, "naive plan"), Ids({naive}));
  EXPECT_EQ(Found(bob_, "naïv"), Ids({naive}));
}

TEST_F(SearchTest, PunctuationSymbolsAndEmojiSeparateWords) {
  const int64_t dashed = Send(alice_, group_, "hello-world, again!");
  const int64_t dotted = Send(alice_, group_, "see example.com/docs or mail bob@host.org");
  const int64_t fancy = Send(alice_, group_, "«wait»… then🎉party—now");
  EXPECT_EQ(Found(bob_, "world again"), Ids({dashed}));
  EXPECT_EQ(Found(bob_, "hello"), Ids({dashed}));
  EXPECT_EQ(Found(bob_, "example docs"), Ids({dotted}));
  EXPECT_EQ(Found(bob_, "host org"), Ids({dotted}));
  EXPECT_EQ(Found(bob_, "bob"), Ids({dotted}));
  EXPECT_EQ(Found(bob_, "wait then party now"), Ids({fancy}));
  // The separators of the query do the same.
  EXPECT_EQ(Found(bob_, "\"hello\" (world)"), Ids({dashed}));
  EXPECT_EQ(Found(bob_, "example.com"), Ids({dotted}));
  // A query without a word matches nothing.
  auto none = Search(bob_, "!!! ... 🎉");
  ASSERT_EQ(none.status, 200) << none.body;
  EXPECT_EQ(none.json, Json({{"messages", Json::array()}, {"has_more", false}}));
}

TEST_F(SearchTest, NewestFirstWithBeforeAndLimit) {
  Ids sent;
  for (int i = 0; i < 5; ++i) sent.push_back(Send(alice_, group_, "report " + std::to_string(i)));
  Send(alice_, group_, "unrelated");
  auto page = Search(bob_, "report", "&limit=2");
  ASSERT_EQ(page.status, 200) << page.body;
  EXPECT_EQ(page.json["has_more"], true);
  ASSERT_EQ(page.json["messages"].size(), 2u);
  EXPECT_EQ(page.json["messages"][0]["id"], sent[4]);
  EXPECT_EQ(page.json["messages"][1]["id"], sent[3]);
  // The messages are whole Message objects, as a listing gives them.
  const Json& m = page.json["messages"][0];
  EXPECT_EQ(m["conversation_id"], group_);
  EXPECT_EQ(m["content"], "report 4");
  EXPECT_EQ(m["sender_id"], alice_.id);
  EXPECT_TRUE(m["status"].is_string()) << m.dump();
  EXPECT_EQ(m["change_id"], m["id"]);
  EXPECT_EQ(Found(bob_, "report", "&limit=2&before=" + std::to_string(sent[3])),
            Ids({sent[2], sent[1]}));
  auto last = Search(bob_, "report", "&limit=2&before=" + std::to_string(sent[1]));
  ASSERT_EQ(last.status, 200);
  EXPECT_EQ(last.json["has_more"], false);
  ASSERT_EQ(last.json["messages"].size(), 1u);
  EXPECT_EQ(last.json["messages"][0]["id"], sent[0]);
  EXPECT_EQ(Found(bob_, "report"), Ids({sent[4], sent[3], sent[2], sent[1], sent[0]}));
}

TEST_F(SearchTest, TheLimitDefaultsTo20AndIsCappedAt100) {
  for (int i = 0; i < 101; ++i) Send(alice_, group_, "bulk " + std::to_string(i));
  auto plain = Search(bob_, "bulk");
  ASSERT_EQ(plain.status, 200);
  EXPECT_EQ(plain.json["messages"].size(), 20u);
  EXPECT_EQ(plain.json["has_more"], true);
  auto big = Search(bob_, "bulk", "&limit=1000");
  ASSERT_EQ(big.status, 200);
  EXPECT_EQ(big.json["messages"].size(), 100u);
  EXPECT_EQ(big.json["has_more"], true);
}

TEST_F(SearchTest, OnlyTheCallersCurrentConversationsAreSearched) {
  const int64_t in_group = Send(alice_, group_, "budget draft");
  const int64_t in_private = Send(alice_, private_, "budget secret");
  EXPECT_EQ(Found(alice_, "budget"), Ids({in_private, in_group}));
  EXPECT_EQ(Found(bob_, "budget"), Ids({in_group}));
  EXPECT_EQ(Found(dave_, "budget"), Ids({in_private}));
  // One conversation: the caller's own, or an error.
  EXPECT_EQ(Found(alice_, "budget", "&conversation_id=" + std::to_string(group_)), Ids({in_group}));
  ExpectError(Search(dave_, "budget", "&conversation_id=" + std::to_string(group_)), 403,
              "forbidden");
  ExpectError(Search(dave_, "budget", "&conversation_id=999999999"), 404, "not_found");
  // A removed member finds nothing of the conversation any more, old messages included.
  auto removed = client_.Request(
      "DELETE",
      "/api/conversations/" + std::to_string(group_) + "/participants/" + std::to_string(carol_.id),
      "", alice_.token);
  ASSERT_EQ(removed.status / 100, 2) << removed.body;
  EXPECT_EQ(Found(carol_, "budget"), Ids());
  ExpectError(Search(carol_, "budget", "&conversation_id=" + std::to_string(group_)), 403,
              "forbidden");
}

TEST_F(SearchTest, EditsAndDeletionsChangeWhatMatches) {
  const int64_t id = Send(alice_, group_, "meeting on tusday");
  const int64_t other = Send(alice_, group_, "meeting notes");
  EXPECT_EQ(Found(bob_, "tusday"), Ids({id}));
  auto edit = client_.Request("PATCH", "/api/messages/" + std::to_string(id),
                              Json{{"content", "meeting on tuesday"}}.dump(), alice_.token);
  ASSERT_EQ(edit.status, 200) << edit.body;
  EXPECT_EQ(Found(bob_, "tusday"), Ids());
  auto found = Search(bob_, "tuesday");
  ASSERT_EQ(found.status, 200);
  ASSERT_EQ(found.json["messages"].size(), 1u) << found.body;
  EXPECT_EQ(found.json["messages"][0]["content"], "meeting on tuesday");
  EXPECT_TRUE(found.json["messages"][0]["edited_at"].is_string());
  // Reactions change nothing of what matches.
  ASSERT_EQ(
      client_
          .Request("PUT", "/api/messages/" + std::to_string(id) + "/reactions/ok", "", bob_.token)
          .status,
      200);
  EXPECT_EQ(Found(bob_, "meeting"), Ids({other, id}));
  ASSERT_EQ(
      client_.Request("DELETE", "/api/messages/" + std::to_string(id), "", alice_.token).status,
      204);
  EXPECT_EQ(Found(bob_, "tuesday"), Ids());
  EXPECT_EQ(Found(bob_, "meeting"), Ids({other}));
}

TEST_F(SearchTest, BadInputIs400AndNoTokenIs401) {
  Send(alice_, group_, "anything");
  ExpectError(client_.Get("/api/search", bob_.token), 400, "invalid_request");
  ExpectError(client_.Get("/api/search?q=", bob_.token), 400, "invalid_request");
  ExpectError(Search(bob_, std::string(201, 'a')), 400, "invalid_request");
  EXPECT_EQ(Search(bob_, std::string(200, 'a')).status, 200);
  // 200 characters, not bytes.
  std::string accented;
  for (int i = 0; i < 200; ++i) accented += "é";
  EXPECT_EQ(Search(bob_, accented).status, 200);
  ExpectError(client_.Get("/api/search?q=%FF%FE", bob_.token), 400, "invalid_request");
  ExpectError(client_.Get("/api/search?q=a%00b", bob_.token), 400, "invalid_request");
  for (const char* bad : {"&limit=x", "&limit=-1", "&before=abc", "&before=0", "&conversation_id=x",
                          "&conversation_id=1.5"}) {
    ExpectError(Search(bob_, "anything", bad), 400, "invalid_request");
  }
  ExpectError(client_.Get("/api/search?q=anything"), 401, "unauthorized");
  ExpectError(client_.Get("/api/search?q=anything", "not-a-token"), 401, "unauthorized");
  // Query syntax of either store is plain text here.
  for (const char* q : {"\"", "a*", "NEAR(a b)", "a OR b", "a & !b", "'x':*", "col:word", "-", "\\",
                        "a AND", "(", ")"}) {
    EXPECT_EQ(Search(bob_, q).status, 200) << q;
  }
  EXPECT_EQ(Found(bob_, "any*"), Ids({Found(bob_, "anything").at(0)}));
}

TEST_F(SearchTest, ADeletedMessagesWordsLeaveTheSearchIndex) {
  // Unlike any other word here, so that the index keeps each whole (no shared prefix).
  Send(alice_, group_, "Zzcontrolé stays");
  const int64_t id = Send(alice_, group_, "Xxsecretè goes");
  ASSERT_EQ(Found(bob_, "xxsecrete").size(), 1u);
  ASSERT_EQ(
      client_.Request("DELETE", "/api/messages/" + std::to_string(id), "", alice_.token).status,
      204);
  EXPECT_EQ(Found(bob_, "xxsecrete"), Ids());
  ASSERT_EQ(server_.Stop(), 0);
  const std::string contents = StoreContents(server_.dir());
  if (OnPostgres()) {
    // The rows: the GIN index is an expression over them, and what it held of a deleted row
    // goes with VACUUM (docs/ARCHITECTURE.md).
    ASSERT_NE(contents.find("Zzcontrolé"), std::string::npos) << "the check reads the store";
  } else {
    // Folded (lower case, no accent), the word is only in the search index: the check reads it.
    ASSERT_NE(contents.find("zzcontrole"), std::string::npos) << "the check reads the index";
    EXPECT_EQ(contents.find("xxsecrete"), std::string::npos) << "the index keeps the word";
  }
  EXPECT_EQ(contents.find("Xxsecretè"), std::string::npos) << "the deleted text is stored";
}

}  // namespace
}  // namespace mmchat::test
