// API.md "Messages" (and the Message object) over real HTTP: sending with its validation and
// idempotency, listing with cursors, seq and id ordering under concurrent senders, read and
// delivery receipts with their statuses, sync, and durability across a SIGTERM restart.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <latch>
#include <map>
#include <mutex>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"

namespace mmchat::test {
namespace {

const std::regex kRfc3339Millis(R"(^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$)");

const std::string kEAcute = "\xc3\xa9";         // é: 1 code point, 2 bytes
const std::string kEmoji = "\xf0\x9f\x98\x80";  // 😀: 1 code point, 4 bytes (2 UTF-16 units)
constexpr int64_t kUnknownId = 999'999'999;

std::string Repeat(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

std::vector<int64_t> Ids(const Json& messages) {
  std::vector<int64_t> out;
  for (const auto& m : messages) out.push_back(m["id"].get<int64_t>());
  return out;
}

// Shared helpers; each suite below derives its own fixture so that suite names say what they
// cover.
class MessagesFixture : public ::testing::Test {
 protected:
  MessagesFixture() : client_(server_.port()) {}

  int64_t Private(const Account& a, const Account& b) {
    auto r = client_.Post("/api/conversations/private", {{"user_id", b.id}}, a.token);
    EXPECT_TRUE(r.status == 201 || r.status == 200) << r.body;
    return r.json.value("id", int64_t{0});
  }
  int64_t Group(const Account& creator, const std::vector<int64_t>& members,
                const std::string& name = "team") {
    auto r = client_.Post("/api/conversations/group", {{"name", name}, {"member_ids", members}},
                          creator.token);
    EXPECT_EQ(r.status, 201) << r.body;
    return r.json.value("id", int64_t{0});
  }

  static Json SendBody(int64_t conversation, const std::string& content,
                       const std::optional<std::string>& client_id = std::nullopt) {
    Json body = {{"conversation_id", conversation}, {"content", content}};
    if (client_id) body["client_id"] = *client_id;
    return body;
  }
  HttpResult Send(const Account& a, int64_t conversation, const std::string& content,
                  const std::optional<std::string>& client_id = std::nullopt) {
    return client_.Post("/api/messages", SendBody(conversation, content, client_id), a.token);
  }
  // Sends and expects 201; returns the Message.
  Json SendOk(const Account& a, int64_t conversation, const std::string& content,
              const std::optional<std::string>& client_id = std::nullopt) {
    auto r = Send(a, conversation, content, client_id);
    EXPECT_EQ(r.status, 201) << r.body;
    return r.json;
  }
  HttpResult List(const Account& a, int64_t conversation, const std::string& query = "") {
    return client_.Get("/api/conversations/" + std::to_string(conversation) + "/messages" +
                           (query.empty() ? "" : "?" + query),
                       a.token);
  }
  HttpResult Read(const Account& a, int64_t conversation, int64_t message) {
    return client_.Post("/api/messages/read",
                        {{"conversation_id", conversation}, {"message_id", message}}, a.token);
  }
  HttpResult Conversation(const Account& a, int64_t conversation) {
    return client_.Get("/api/conversations/" + std::to_string(conversation), a.token);
  }
  HttpResult Sync(const Account& a, const std::string& query) {
    return client_.Get("/api/sync?" + query, a.token);
  }

  // The status of message `id` in `viewer`'s listing of the newest messages ("" if absent).
  std::string StatusIn(HttpClient& client, const Account& viewer, int64_t conversation,
                       int64_t id) {
    auto r = client.Get("/api/conversations/" + std::to_string(conversation) + "/messages",
                        viewer.token);
    EXPECT_EQ(r.status, 200) << r.body;
    if (!r.json.is_object()) return "";
    for (const auto& m : r.json["messages"]) {
      if (m["id"] == id) return m["status"].get<std::string>();
    }
    return "";
  }
  std::string StatusIn(const Account& viewer, int64_t conversation, int64_t id) {
    return StatusIn(client_, viewer, conversation, id);
  }

  // Every message of the conversation, ascending, paging backwards with before=.
  static Json AllMessages(HttpClient& client, const Account& a, int64_t conversation) {
    std::vector<Json> pages;
    std::string query = "limit=100";
    for (int guard = 0; guard < 1000; ++guard) {
      auto r = client.Get(
          "/api/conversations/" + std::to_string(conversation) + "/messages?" + query, a.token);
      EXPECT_EQ(r.status, 200) << r.body;
      if (r.status != 200 || r.json["messages"].empty()) break;
      pages.push_back(r.json["messages"]);
      if (!r.json["has_more"].get<bool>()) break;
      query = "limit=100&before=" + std::to_string(r.json["messages"][0]["id"].get<int64_t>());
    }
    Json all = Json::array();
    for (auto it = pages.rbegin(); it != pages.rend(); ++it) {
      for (const auto& m : *it) all.push_back(m);
    }
    return all;
  }
  Json AllMessages(const Account& a, int64_t conversation) {
    return AllMessages(client_, a, conversation);
  }

  // These tests send hundreds of messages as fast as they can: no abuse limits (they have
  // their own tests in abuse_limits_test.cc).
  TestServer server_{ServerOptions{.env = kNoAbuseLimits}};
  HttpClient client_;
};

// ---------------------------------------------------------------------------------------------
// POST /api/messages
// ---------------------------------------------------------------------------------------------

class MessagesSendTest : public MessagesFixture {
 protected:
  void SetUp() override {
    alice_ = SignUp(server_, client_, "alice");
    bob_ = SignUp(server_, client_, "bob");
    conv_ = Private(alice_, bob_);
    ASSERT_GT(conv_, 0);
  }
  Account alice_, bob_;
  int64_t conv_ = 0;
};

TEST_F(MessagesSendTest, CreatedMessageHasTheDocumentedShape) {
  auto r = Send(alice_, conv_, "hello bob", "c-1");
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(r.headers.at("content-type"), "application/json");
  ExpectMessageShape(r.json);
  EXPECT_EQ(r.json["conversation_id"], conv_);
  EXPECT_EQ(r.json["seq"], 1);
  EXPECT_EQ(r.json["sender_id"], alice_.id);
  EXPECT_EQ(r.json["content"], "hello bob");
  EXPECT_EQ(r.json["client_id"], "c-1");
  EXPECT_EQ(r.json["status"], "sent");

  auto plain = Send(alice_, conv_, "no key");
  ASSERT_EQ(plain.status, 201) << plain.body;
  ExpectMessageShape(plain.json);
  EXPECT_TRUE(plain.json["client_id"].is_null()) << plain.body;
  EXPECT_EQ(plain.json["seq"], 2);
  EXPECT_GT(plain.json["id"].get<int64_t>(), r.json["id"].get<int64_t>());

  // The listing returns the same message.
  auto list = List(bob_, conv_);
  ASSERT_EQ(list.status, 200) << list.body;
  ASSERT_EQ(list.json["messages"].size(), 2u) << list.body;
  const Json& first = list.json["messages"][0];
  ExpectMessageShape(first);
  for (const char* field :
       {"id", "conversation_id", "seq", "sender_id", "content", "client_id", "created_at"}) {
    EXPECT_EQ(first[field], r.json[field]) << field;
  }
}

TEST_F(MessagesSendTest, ContentLengthCountsCodePoints) {
  ExpectError(Send(alice_, conv_, ""), 400, "invalid_request");

  // 4000 characters of 4 bytes each (16,000 bytes, 8,000 UTF-16 units) are within the limit.
  const std::string max_emoji = Repeat(kEmoji, 4000);
  auto ok = Send(alice_, conv_, max_emoji);
  ASSERT_EQ(ok.status, 201) << ok.body.substr(0, 200);
  EXPECT_EQ(ok.json["content"], max_emoji);
  auto ok2 = Send(alice_, conv_, Repeat(kEAcute, 4000));
  EXPECT_EQ(ok2.status, 201) << ok2.body.substr(0, 200);
  auto ok3 = Send(alice_, conv_, Repeat("a", 4000));
  EXPECT_EQ(ok3.status, 201) << ok3.body.substr(0, 200);

  ExpectError(Send(alice_, conv_, Repeat(kEAcute, 4001)), 400, "invalid_request");
  ExpectError(Send(alice_, conv_, Repeat("a", 4001)), 400, "invalid_request");
  ExpectError(Send(alice_, conv_, Repeat(kEmoji, 4001)), 400, "invalid_request");

  // Rejected sends consumed no seq.
  auto next = SendOk(alice_, conv_, "after");
  EXPECT_EQ(next["seq"], 4);
}

TEST_F(MessagesSendTest, InvalidUtf8Is400) {
  const std::string prefix = R"({"conversation_id":)" + std::to_string(conv_) + R"(,"content":")";
  for (const std::string& bad :
       {std::string("\xff\xfe"), std::string("ab\xc3"), std::string("\xc0\xaf"),
        std::string("\xed\xa0\x80"), std::string("\\ud800")}) {
    auto r = client_.Request("POST", "/api/messages", prefix + bad + "\"}", alice_.token);
    ExpectError(r, 400, "invalid_request");
  }
  EXPECT_TRUE(List(alice_, conv_).json["messages"].empty());
}

TEST_F(MessagesSendTest, ClientIdOver64CharactersIs400) {
  ExpectError(Send(alice_, conv_, "x", Repeat("k", 65)), 400, "invalid_request");
  ExpectError(Send(alice_, conv_, "x", Repeat(kEAcute, 65)), 400, "invalid_request");
  auto ok = Send(alice_, conv_, "x", Repeat("k", 64));
  ASSERT_EQ(ok.status, 201) << ok.body;
  EXPECT_EQ(ok.json["client_id"], Repeat("k", 64));
  auto ok_multi = Send(alice_, conv_, "y", Repeat(kEAcute, 64));
  ASSERT_EQ(ok_multi.status, 201) << ok_multi.body;
  EXPECT_EQ(ok_multi.json["client_id"], Repeat(kEAcute, 64));
  auto wrong_type =
      client_.Post("/api/messages",
                   {{"conversation_id", conv_}, {"content", "x"}, {"client_id", 5}}, alice_.token);
  ExpectError(wrong_type, 400, "invalid_request");
}

TEST_F(MessagesSendTest, RepeatedClientIdReturnsTheOriginalAndCreatesNothing) {
  auto first = Send(alice_, conv_, "original", "retry-1");
  ASSERT_EQ(first.status, 201) << first.body;

  auto again = Send(alice_, conv_, "changed text", "retry-1");
  ASSERT_EQ(again.status, 200) << again.body;
  ExpectMessageShape(again.json);
  for (const char* field :
       {"id", "conversation_id", "seq", "sender_id", "content", "client_id", "created_at"}) {
    EXPECT_EQ(again.json[field], first.json[field]) << field;
  }

  // The seq did not advance, and only one message exists.
  auto next = SendOk(alice_, conv_, "next");
  EXPECT_EQ(next["seq"], 2);
  auto list = List(alice_, conv_);
  ASSERT_EQ(list.status, 200) << list.body;
  ASSERT_EQ(list.json["messages"].size(), 2u) << list.body;
  EXPECT_EQ(list.json["messages"][0]["content"], "original");

  // The same key from another sender is a new message.
  auto bobs = Send(bob_, conv_, "bob's", "retry-1");
  ASSERT_EQ(bobs.status, 201) << bobs.body;
  EXPECT_NE(bobs.json["id"], first.json["id"]);
  EXPECT_EQ(bobs.json["seq"], 3);
  EXPECT_EQ(bobs.json["sender_id"], bob_.id);
  EXPECT_EQ(bobs.json["client_id"], "retry-1");
  EXPECT_EQ(AllMessages(alice_, conv_).size(), 3u);
}

TEST_F(MessagesSendTest, NonParticipantIs403AndUnknownConversationIs404) {
  const Account carol = SignUp(server_, client_, "carol");
  ExpectError(Send(carol, conv_, "let me in"), 403, "forbidden");
  ExpectError(Send(carol, conv_, "let me in", "k1"), 403, "forbidden");
  ExpectError(Send(alice_, kUnknownId, "anyone?"), 404, "not_found");
  EXPECT_TRUE(List(alice_, conv_).json["messages"].empty());
  // A failed send does not use up a seq.
  EXPECT_EQ(SendOk(alice_, conv_, "first")["seq"], 1);
}

TEST_F(MessagesSendTest, MissingOrMistypedFieldsAre400) {
  for (const Json& body :
       {Json::object(), Json{{"conversation_id", conv_}}, Json{{"content", "hi"}},
        Json{{"conversation_id", nullptr}, {"content", "hi"}},
        Json{{"conversation_id", conv_}, {"content", nullptr}},
        Json{{"conversation_id", std::to_string(conv_)}, {"content", "hi"}},
        Json{{"conversation_id", conv_}, {"content", 5}},
        Json{{"conversation_id", -1}, {"content", "hi"}},
        Json{{"conversation_id", 1.5}, {"content", "hi"}}}) {
    ExpectError(client_.Post("/api/messages", body, alice_.token), 400, "invalid_request");
  }
  ExpectError(client_.Request("POST", "/api/messages", "{not json", alice_.token), 400,
              "invalid_request");
  ExpectError(client_.Request("POST", "/api/messages", "[1,2]", alice_.token), 400,
              "invalid_request");
  ExpectError(client_.Post("/api/messages", SendBody(conv_, "hi")), 401, "unauthorized");
  EXPECT_TRUE(List(alice_, conv_).json["messages"].empty());
}

TEST_F(MessagesSendTest, IdsIncreaseAndSeqCountsPerConversation) {
  const Account carol = SignUp(server_, client_, "carol");
  const int64_t other = Group(alice_, {bob_.id, carol.id});
  int64_t last_id = 0;
  std::map<int64_t, int64_t> last_seq;
  for (int i = 0; i < 12; ++i) {
    const int64_t c = (i % 3 == 0) ? other : conv_;
    const Account& who = (i % 2 == 0) ? alice_ : bob_;
    Json m = SendOk(who, c, "m" + std::to_string(i));
    ASSERT_TRUE(m.is_object());
    EXPECT_GT(m["id"].get<int64_t>(), last_id);
    last_id = m["id"].get<int64_t>();
    EXPECT_EQ(m["seq"].get<int64_t>(), ++last_seq[c]) << m.dump();
    EXPECT_EQ(m["conversation_id"], c);
  }
  EXPECT_EQ(last_seq[other], 4);
  EXPECT_EQ(last_seq[conv_], 8);
}

TEST(MessagesLimitTest, MaxMessageLenIsConfigurable) {
  TestServer server(ServerOptions{.env = {{"MAX_MESSAGE_LEN", "10"}}});
  HttpClient client(server.port());
  const Account alice = SignUp(server, client, "alice");
  const Account bob = SignUp(server, client, "bob");
  auto conv = client.Post("/api/conversations/private", {{"user_id", bob.id}}, alice.token);
  ASSERT_EQ(conv.status, 201) << conv.body;
  const int64_t id = conv.json["id"].get<int64_t>();
  auto send = [&](const std::string& content) {
    return client.Post("/api/messages", {{"conversation_id", id}, {"content", content}},
                       alice.token);
  };
  EXPECT_EQ(send(Repeat("a", 10)).status, 201);
  EXPECT_EQ(send(Repeat(kEmoji, 10)).status, 201);
  ExpectError(send(Repeat("a", 11)), 400, "invalid_request");
  ExpectError(send(Repeat(kEAcute, 11)), 400, "invalid_request");
  ExpectError(send(Repeat(kEmoji, 11)), 400, "invalid_request");
}

// ---------------------------------------------------------------------------------------------
// GET /api/conversations/:id/messages
// ---------------------------------------------------------------------------------------------

class MessagesListTest : public MessagesFixture {
 protected:
  static constexpr int kCount = 120;
  void SetUp() override {
    alice_ = SignUp(server_, client_, "alice");
    bob_ = SignUp(server_, client_, "bob");
    conv_ = Private(alice_, bob_);
    ASSERT_GT(conv_, 0);
    // Another conversation's messages interleave ids, so ids of conv_ are not contiguous.
    const Account carol = SignUp(server_, client_, "carol");
    const int64_t other = Private(alice_, carol);
    for (int i = 0; i < kCount; ++i) {
      Json m = SendOk(i % 2 ? bob_ : alice_, conv_, "msg " + std::to_string(i));
      ASSERT_TRUE(m.is_object());
      ids_.push_back(m["id"].get<int64_t>());
      if (i % 10 == 0) SendOk(alice_, other, "elsewhere");
    }
  }
  // The ids of one page, after checking the common page shape.
  std::vector<int64_t> Page(const std::string& query, bool* has_more) {
    auto r = List(alice_, conv_, query);
    EXPECT_EQ(r.status, 200) << query << ": " << r.body;
    if (r.status != 200) return {};
    EXPECT_TRUE(r.json["has_more"].is_boolean()) << r.body;
    *has_more = r.json["has_more"].get<bool>();
    for (const auto& m : r.json["messages"]) EXPECT_EQ(m["conversation_id"], conv_);
    return Ids(r.json["messages"]);
  }
  std::vector<int64_t> Slice(size_t from, size_t to) const {
    return {ids_.begin() + static_cast<ptrdiff_t>(from), ids_.begin() + static_cast<ptrdiff_t>(to)};
  }

  Account alice_, bob_;
  int64_t conv_ = 0;
  std::vector<int64_t> ids_;  // ascending, in send order
};

TEST_F(MessagesListTest, DefaultPageIsTheNewest50Ascending) {
  auto r = List(alice_, conv_);
  ASSERT_EQ(r.status, 200) << r.body;
  ASSERT_TRUE(r.json["messages"].is_array());
  for (const auto& m : r.json["messages"]) ExpectMessageShape(m);
  EXPECT_EQ(Ids(r.json["messages"]), Slice(kCount - 50, kCount));
  EXPECT_EQ(r.json["has_more"], true);
  // Seq numbers follow the ids: the page holds seqs 71..120.
  EXPECT_EQ(r.json["messages"].front()["seq"], kCount - 50 + 1);
  EXPECT_EQ(r.json["messages"].back()["seq"], kCount);
  EXPECT_EQ(r.json["messages"].back()["content"], "msg 119");
}

TEST_F(MessagesListTest, LimitIsCappedAt100) {
  bool more = false;
  EXPECT_EQ(Page("limit=500", &more), Slice(kCount - 100, kCount));
  EXPECT_TRUE(more);
  EXPECT_EQ(Page("limit=101", &more), Slice(kCount - 100, kCount));
  EXPECT_EQ(Page("limit=7", &more), Slice(kCount - 7, kCount));
  EXPECT_TRUE(more);
  EXPECT_EQ(Page("limit=1000&after=" + std::to_string(ids_[0]), &more), Slice(1, 101));
  EXPECT_TRUE(more);
}

TEST_F(MessagesListTest, PagingBackwardsVisitsEveryMessageOnce) {
  for (int limit : {40, 50, 1, 100}) {  // 40 divides 120 exactly: the last page is full
    std::vector<int64_t> seen;
    std::string query = "limit=" + std::to_string(limit);
    bool more = true;
    int pages = 0;
    while (more && pages++ < 200) {
      auto page = Page(query, &more);
      ASSERT_FALSE(page.empty()) << query;
      EXPECT_LE(page.size(), static_cast<size_t>(limit));
      EXPECT_TRUE(std::is_sorted(page.begin(), page.end()));
      if (!seen.empty()) {
        EXPECT_LT(page.back(), seen.front()) << query;
      }
      // Everything but the last page is full.
      if (more) {
        EXPECT_EQ(page.size(), static_cast<size_t>(limit)) << query;
      }
      seen.insert(seen.begin(), page.begin(), page.end());
      query = "limit=" + std::to_string(limit) + "&before=" + std::to_string(page.front());
    }
    EXPECT_EQ(seen, ids_) << "limit " << limit;
    EXPECT_EQ(pages, (kCount + limit - 1) / limit) << "limit " << limit;
    // Before the oldest message there is nothing.
    bool m = true;
    EXPECT_TRUE(Page("before=" + std::to_string(ids_.front()), &m).empty());
    EXPECT_FALSE(m);
  }
  // before= an exact id excludes it.
  bool more = false;
  EXPECT_EQ(Page("limit=3&before=" + std::to_string(ids_[10]), &more), Slice(7, 10));
  EXPECT_TRUE(more);
  EXPECT_EQ(Page("limit=10&before=" + std::to_string(ids_[10]), &more), Slice(0, 10));
  EXPECT_FALSE(more);  // exactly ten older messages exist
}

TEST_F(MessagesListTest, PagingForwardsVisitsEveryMessageOnce) {
  for (int limit : {40, 50, 1, 100}) {
    std::vector<int64_t> seen;
    // after=0 starts at the oldest message, as since=0 does for sync.
    std::string query = "limit=" + std::to_string(limit) + "&after=0";
    bool more = true;
    int pages = 0;
    while (more && pages++ < 200) {
      auto page = Page(query, &more);
      ASSERT_FALSE(page.empty()) << query;
      EXPECT_LE(page.size(), static_cast<size_t>(limit));
      EXPECT_TRUE(std::is_sorted(page.begin(), page.end()));
      if (!seen.empty()) {
        EXPECT_GT(page.front(), seen.back()) << query;
      }
      if (more) {
        EXPECT_EQ(page.size(), static_cast<size_t>(limit)) << query;
      }
      seen.insert(seen.end(), page.begin(), page.end());
      query = "limit=" + std::to_string(limit) + "&after=" + std::to_string(page.back());
    }
    EXPECT_EQ(seen, ids_) << "limit " << limit;
    EXPECT_EQ(pages, (kCount + limit - 1) / limit) << "limit " << limit;
  }
  bool more = true;
  EXPECT_TRUE(Page("after=" + std::to_string(ids_.back()), &more).empty());
  EXPECT_FALSE(more);
  EXPECT_TRUE(Page("after=" + std::to_string(ids_.back() + 1000), &more).empty());
  EXPECT_FALSE(more);
  // after= an exact id excludes it; ten newer messages exactly fill a page of ten.
  EXPECT_EQ(Page("limit=3&after=" + std::to_string(ids_[100]), &more), Slice(101, 104));
  EXPECT_TRUE(more);
  EXPECT_EQ(Page("limit=19&after=" + std::to_string(ids_[100]), &more), Slice(101, kCount));
  EXPECT_FALSE(more);
}

TEST_F(MessagesListTest, BadCursorsAndLimitsAre400) {
  const std::string id = std::to_string(ids_[50]);
  const std::vector<std::string> queries = {
      "limit=0",    "limit=abc", "limit=-5",  "limit=",   "limit=1.5",
      "before=abc", "before=-1", "after=abc", "after=-1", "before=" + id + "&after=" + id};
  for (const std::string& q : queries) {
    ExpectError(List(alice_, conv_, q), 400, "invalid_request");
  }
}

TEST_F(MessagesListTest, OnlyParticipantsList) {
  const Account dave = SignUp(server_, client_, "dave");
  ExpectError(List(dave, conv_), 403, "forbidden");
  ExpectError(List(alice_, kUnknownId), 404, "not_found");
  ExpectError(client_.Get("/api/conversations/" + std::to_string(conv_) + "/messages"), 401,
              "unauthorized");
}

// ---------------------------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------------------------

class MessagesConcurrencyTest : public MessagesFixture {};

TEST_F(MessagesConcurrencyTest, ConcurrentSendersGetGaplessSeqsInIdOrder) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 125;  // 1,000 in total
  std::vector<Account> users;
  for (const char* name : {"alice", "bob", "carol", "dave"}) {
    users.push_back(SignUp(server_, client_, name));
  }
  const int64_t conv = Group(users[0], {users[1].id, users[2].id, users[3].id});
  ASSERT_GT(conv, 0);

  struct Sent {
    int status = 0;
    int64_t id = 0;
    int64_t seq = 0;
    std::string content;
  };
  std::vector<std::vector<Sent>> sent(kThreads);
  std::latch start(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      HttpClient client(server_.port());
      const Account& me = users[static_cast<size_t>(t) % users.size()];
      start.arrive_and_wait();
      for (int i = 0; i < kPerThread; ++i) {
        Sent s;
        s.content = "t" + std::to_string(t) + "-" + std::to_string(i);
        try {
          auto r = client.Post("/api/messages", SendBody(conv, s.content), me.token);
          s.status = r.status;
          if (r.status == 201) {
            s.id = r.json["id"].get<int64_t>();
            s.seq = r.json["seq"].get<int64_t>();
          }
        } catch (const std::exception&) {
          s.status = -1;
        }
        sent[static_cast<size_t>(t)].push_back(s);
      }
    });
  }
  for (auto& th : threads) th.join();

  std::map<int64_t, Sent> by_id;
  std::set<int64_t> seqs;
  for (const auto& list : sent) {
    for (const auto& s : list) {
      ASSERT_EQ(s.status, 201) << s.content;
      EXPECT_TRUE(by_id.emplace(s.id, s).second) << "duplicate id " << s.id;
      EXPECT_TRUE(seqs.insert(s.seq).second) << "duplicate seq " << s.seq;
    }
  }
  ASSERT_EQ(by_id.size(), static_cast<size_t>(kThreads * kPerThread));
  // Each sender's own messages were committed in its order.
  for (const auto& list : sent) {
    for (size_t i = 1; i < list.size(); ++i) {
      EXPECT_GT(list[i].id, list[i - 1].id);
      EXPECT_GT(list[i].seq, list[i - 1].seq);
    }
  }

  // The stored history: seq 1..1000 without gaps, ascending with the id.
  const Json all = AllMessages(users[1], conv);
  ASSERT_EQ(all.size(), static_cast<size_t>(kThreads * kPerThread));
  int64_t prev_id = 0;
  for (size_t i = 0; i < all.size(); ++i) {
    const Json& m = all[i];
    EXPECT_EQ(m["seq"].get<int64_t>(), static_cast<int64_t>(i) + 1) << m.dump();
    EXPECT_GT(m["id"].get<int64_t>(), prev_id) << m.dump();
    prev_id = m["id"].get<int64_t>();
    auto it = by_id.find(prev_id);
    ASSERT_NE(it, by_id.end()) << m.dump();
    EXPECT_EQ(m["seq"], it->second.seq);
    EXPECT_EQ(m["content"], it->second.content);
  }
}

TEST_F(MessagesConcurrencyTest, SameClientIdConcurrentlyMakesOneMessage) {
  constexpr int kThreads = 8;
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const int64_t conv = Private(alice, bob);
  ASSERT_GT(conv, 0);
  for (int round = 0; round < 3; ++round) {
    const std::string key = "same-" + std::to_string(round);
    std::vector<HttpResult> results(kThreads);
    std::latch start(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        HttpClient client(server_.port());
        start.arrive_and_wait();
        try {
          results[static_cast<size_t>(t)] =
              client.Post("/api/messages", SendBody(conv, "from thread " + std::to_string(t), key),
                          alice.token);
        } catch (const std::exception& e) {
          results[static_cast<size_t>(t)].body = e.what();
        }
      });
    }
    for (auto& th : threads) th.join();
    int created = 0;
    std::set<int64_t> ids;
    std::set<std::string> contents;
    for (const auto& r : results) {
      ASSERT_TRUE(r.status == 201 || r.status == 200) << r.body;
      if (r.status == 201) ++created;
      ids.insert(r.json["id"].get<int64_t>());
      contents.insert(r.json["content"].get<std::string>());
      EXPECT_EQ(r.json["client_id"], key);
      EXPECT_EQ(r.json["seq"], round + 1);
    }
    EXPECT_EQ(created, 1) << "round " << round;
    EXPECT_EQ(ids.size(), 1u) << "round " << round;
    EXPECT_EQ(contents.size(), 1u) << "round " << round;
  }
  EXPECT_EQ(AllMessages(bob, conv).size(), 3u);
}

// ---------------------------------------------------------------------------------------------
// Receipts and statuses
// ---------------------------------------------------------------------------------------------

class MessagesReceiptsTest : public MessagesFixture {
 protected:
  void SetUp() override {
    alice_ = SignUp(server_, client_, "alice");
    bob_ = SignUp(server_, client_, "bob");
    conv_ = Private(alice_, bob_);
    ASSERT_GT(conv_, 0);
  }
  Account alice_, bob_;
  int64_t conv_ = 0;
};

TEST_F(MessagesReceiptsTest, PrivateMessageGoesSentDeliveredRead) {
  Json m = SendOk(alice_, conv_, "hi bob");
  ASSERT_TRUE(m.is_object());
  EXPECT_EQ(m["status"], "sent");
  const int64_t id = m["id"].get<int64_t>();
  // The sender's own listing is no delivery to the recipient.
  EXPECT_EQ(StatusIn(alice_, conv_, id), "sent");
  EXPECT_EQ(StatusIn(alice_, conv_, id), "sent");

  auto listed = List(bob_, conv_);
  ASSERT_EQ(listed.status, 200) << listed.body;
  ASSERT_EQ(listed.json["messages"].size(), 1u);
  EXPECT_EQ(StatusIn(alice_, conv_, id), "delivered");
  auto conv = Conversation(alice_, conv_);
  ASSERT_EQ(conv.status, 200) << conv.body;
  EXPECT_EQ(conv.json["last_message"]["id"], id);
  EXPECT_EQ(conv.json["last_message"]["status"], "delivered");

  auto read = Read(bob_, conv_, id);
  ASSERT_EQ(read.status, 200) << read.body;
  EXPECT_EQ(read.headers.at("content-type"), "application/json");
  EXPECT_EQ(read.json["conversation_id"], conv_);
  EXPECT_EQ(read.json["message_id"], id);
  ASSERT_TRUE(read.json["read_at"].is_string()) << read.body;
  EXPECT_TRUE(std::regex_match(read.json["read_at"].get<std::string>(), kRfc3339Millis));
  EXPECT_EQ(StatusIn(alice_, conv_, id), "read");
  EXPECT_EQ(Conversation(alice_, conv_).json["last_message"]["status"], "read");

  // A newer message starts over at "sent" while the older one stays "read".
  Json m2 = SendOk(alice_, conv_, "again");
  EXPECT_EQ(StatusIn(alice_, conv_, m2["id"].get<int64_t>()), "sent");
  EXPECT_EQ(StatusIn(alice_, conv_, id), "read");
}

TEST_F(MessagesReceiptsTest, ReadingWithoutListingMarksReadAndDelivered) {
  Json m = SendOk(alice_, conv_, "hi");
  const int64_t id = m["id"].get<int64_t>();
  ASSERT_EQ(Read(bob_, conv_, id).status, 200);
  EXPECT_EQ(StatusIn(alice_, conv_, id), "read");
}

TEST_F(MessagesReceiptsTest, SyncCountsAsDelivery) {
  Json m1 = SendOk(alice_, conv_, "one");
  Json m2 = SendOk(alice_, conv_, "two");
  const int64_t id1 = m1["id"].get<int64_t>();
  const int64_t id2 = m2["id"].get<int64_t>();
  // Sync returning only the first delivers only the first.
  auto s = Sync(bob_, "since=0&limit=1");
  ASSERT_EQ(s.status, 200) << s.body;
  ASSERT_EQ(Ids(s.json["messages"]), std::vector<int64_t>{id1});
  EXPECT_EQ(StatusIn(alice_, conv_, id1), "delivered");
  EXPECT_EQ(StatusIn(alice_, conv_, id2), "sent");
  ASSERT_EQ(Sync(bob_, "since=" + std::to_string(id1)).status, 200);
  EXPECT_EQ(StatusIn(alice_, conv_, id2), "delivered");
}

TEST_F(MessagesReceiptsTest, GroupStatusWaitsForEveryOtherParticipant) {
  const Account carol = SignUp(server_, client_, "carol");
  const int64_t group = Group(alice_, {bob_.id, carol.id});
  ASSERT_GT(group, 0);
  Json m = SendOk(alice_, group, "hello all");
  const int64_t id = m["id"].get<int64_t>();

  ASSERT_EQ(List(bob_, group).status, 200);
  EXPECT_EQ(StatusIn(alice_, group, id), "sent");  // carol has not received it
  ASSERT_EQ(Sync(carol, "since=0").status, 200);
  EXPECT_EQ(StatusIn(alice_, group, id), "delivered");

  ASSERT_EQ(Read(bob_, group, id).status, 200);
  EXPECT_EQ(StatusIn(alice_, group, id), "delivered");  // carol has not read it
  ASSERT_EQ(Read(carol, group, id).status, 200);
  EXPECT_EQ(StatusIn(alice_, group, id), "read");

  // One reader reading is not "read", even when the other had it delivered first.
  Json m2 = SendOk(bob_, group, "bob here");
  const int64_t id2 = m2["id"].get<int64_t>();
  ASSERT_EQ(Read(carol, group, id2).status, 200);
  EXPECT_EQ(StatusIn(bob_, group, id2), "sent");  // alice: neither delivered nor read yet
  ASSERT_EQ(List(alice_, group).status, 200);
  EXPECT_EQ(StatusIn(bob_, group, id2), "delivered");
  ASSERT_EQ(Read(alice_, group, id2).status, 200);
  EXPECT_EQ(StatusIn(bob_, group, id2), "read");
}

TEST_F(MessagesReceiptsTest, ReadMarkerNeverMovesBack) {
  const int64_t id1 = SendOk(alice_, conv_, "one")["id"].get<int64_t>();
  const int64_t id2 = SendOk(alice_, conv_, "two")["id"].get<int64_t>();
  auto r2 = Read(bob_, conv_, id2);
  ASSERT_EQ(r2.status, 200) << r2.body;
  EXPECT_EQ(r2.json["message_id"], id2);

  auto r1 = Read(bob_, conv_, id1);
  ASSERT_EQ(r1.status, 200) << r1.body;
  EXPECT_EQ(r1.json["conversation_id"], conv_);
  EXPECT_EQ(r1.json["message_id"], id2);  // the current marker, unchanged
  EXPECT_EQ(r1.json["read_at"], r2.json["read_at"]);
  auto again = Read(bob_, conv_, id2);
  ASSERT_EQ(again.status, 200) << again.body;
  EXPECT_EQ(again.json["message_id"], id2);
  EXPECT_EQ(again.json["read_at"], r2.json["read_at"]);

  auto view = Conversation(bob_, conv_);
  ASSERT_EQ(view.status, 200) << view.body;
  EXPECT_EQ(view.json["last_read_message_id"], id2);
  EXPECT_EQ(view.json["unread_count"], 0);
}

TEST_F(MessagesReceiptsTest, ReadErrors) {
  const Account carol = SignUp(server_, client_, "carol");
  const int64_t other = Private(alice_, carol);
  const int64_t mine = SendOk(alice_, conv_, "in conv")["id"].get<int64_t>();
  const int64_t elsewhere = SendOk(alice_, other, "in other")["id"].get<int64_t>();

  ExpectError(Read(alice_, conv_, elsewhere), 404, "not_found");  // another conversation's
  ExpectError(Read(bob_, conv_, elsewhere), 404, "not_found");
  ExpectError(Read(bob_, conv_, kUnknownId), 404, "not_found");
  ExpectError(Read(carol, conv_, mine), 403, "forbidden");
  ExpectError(Read(bob_, kUnknownId, mine), 404, "not_found");
  for (const Json& body :
       {Json::object(), Json{{"conversation_id", conv_}}, Json{{"message_id", mine}},
        Json{{"conversation_id", conv_}, {"message_id", "1"}},
        Json{{"conversation_id", conv_}, {"message_id", 0}}}) {
    ExpectError(client_.Post("/api/messages/read", body, bob_.token), 400, "invalid_request");
  }
  ExpectError(
      client_.Post("/api/messages/read", {{"conversation_id", conv_}, {"message_id", mine}}), 401,
      "unauthorized");
  // None of that moved bob's marker.
  EXPECT_EQ(Conversation(bob_, conv_).json["last_read_message_id"], 0);
  EXPECT_EQ(StatusIn(alice_, conv_, mine), "sent");
}

TEST_F(MessagesReceiptsTest, SendingMovesTheSendersReadMarker) {
  const int64_t a1 = SendOk(alice_, conv_, "a1")["id"].get<int64_t>();
  auto view = Conversation(alice_, conv_);
  ASSERT_EQ(view.status, 200) << view.body;
  EXPECT_EQ(view.json["last_read_message_id"], a1);
  EXPECT_EQ(view.json["unread_count"], 0);

  // Bob had one unread; his own reply moves his marker past it.
  auto bob_view = Conversation(bob_, conv_);
  EXPECT_EQ(bob_view.json["unread_count"], 1);
  EXPECT_EQ(bob_view.json["last_read_message_id"], 0);
  const int64_t b1 = SendOk(bob_, conv_, "b1")["id"].get<int64_t>();
  bob_view = Conversation(bob_, conv_);
  EXPECT_EQ(bob_view.json["last_read_message_id"], b1);
  EXPECT_EQ(bob_view.json["unread_count"], 0);
  // ...which alice sees as "read" on her message.
  EXPECT_EQ(StatusIn(alice_, conv_, a1), "read");
}

TEST_F(MessagesReceiptsTest, UnreadCountCountsOthersMessagesAboveTheMarker) {
  std::vector<int64_t> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(SendOk(alice_, conv_, "m")["id"].get<int64_t>());
  auto bob_view = Conversation(bob_, conv_);
  ASSERT_EQ(bob_view.status, 200) << bob_view.body;
  EXPECT_EQ(bob_view.json["unread_count"], 3);
  EXPECT_EQ(Conversation(alice_, conv_).json["unread_count"], 0);  // her own do not count

  // Listing delivers but does not read.
  ASSERT_EQ(List(bob_, conv_).status, 200);
  EXPECT_EQ(Conversation(bob_, conv_).json["unread_count"], 3);

  ASSERT_EQ(Read(bob_, conv_, ids[1]).status, 200);
  bob_view = Conversation(bob_, conv_);
  EXPECT_EQ(bob_view.json["unread_count"], 1);
  EXPECT_EQ(bob_view.json["last_read_message_id"], ids[1]);
  ASSERT_EQ(Read(bob_, conv_, ids[2]).status, 200);
  EXPECT_EQ(Conversation(bob_, conv_).json["unread_count"], 0);

  // The list of conversations carries the same counts.
  SendOk(alice_, conv_, "more");
  auto all = client_.Get("/api/conversations", bob_.token);
  ASSERT_EQ(all.status, 200) << all.body;
  ASSERT_EQ(all.json["conversations"].size(), 1u);
  EXPECT_EQ(all.json["conversations"][0]["unread_count"], 1);
}

TEST_F(MessagesReceiptsTest, DeliveredSurvivesARestart) {
  const int64_t m1 = SendOk(alice_, conv_, "one")["id"].get<int64_t>();
  const int64_t m2 = SendOk(alice_, conv_, "two")["id"].get<int64_t>();
  const int64_t m3 = SendOk(alice_, conv_, "three")["id"].get<int64_t>();
  ASSERT_EQ(Read(bob_, conv_, m1).status, 200);
  ASSERT_EQ(Sync(bob_, "since=" + std::to_string(m1) + "&limit=1").status, 200);  // m2
  EXPECT_EQ(StatusIn(alice_, conv_, m1), "read");
  EXPECT_EQ(StatusIn(alice_, conv_, m2), "delivered");
  EXPECT_EQ(StatusIn(alice_, conv_, m3), "sent");

  // Right away, most likely before the periodic flush: the shutdown flush must write it.
  EXPECT_EQ(server_.Stop(), 0);
  TestServer restarted(ServerOptions{.dir = server_.dir()});
  HttpClient client(restarted.port());
  EXPECT_EQ(StatusIn(client, alice_, conv_, m1), "read");
  EXPECT_EQ(StatusIn(client, alice_, conv_, m2), "delivered");
  EXPECT_EQ(StatusIn(client, alice_, conv_, m3), "sent");
}

// ---------------------------------------------------------------------------------------------
// GET /api/sync
// ---------------------------------------------------------------------------------------------

class MessagesSyncTest : public MessagesFixture {
 protected:
  void SetUp() override {
    alice_ = SignUp(server_, client_, "alice");
    bob_ = SignUp(server_, client_, "bob");
    carol_ = SignUp(server_, client_, "carol");
    const int64_t ab = Private(alice_, bob_);
    const int64_t group = Group(alice_, {bob_.id, carol_.id});
    const int64_t bc = Private(bob_, carol_);  // alice is not in it
    ASSERT_GT(ab, 0);
    ASSERT_GT(group, 0);
    ASSERT_GT(bc, 0);
    mine_ = {ab, group};
    // 12 messages for alice (a multiple of 3 and 4), interleaved with 6 she must not see.
    for (int i = 0; i < 18; ++i) {
      int64_t conv;
      const Account* who;
      switch (i % 3) {
        case 0:
          conv = ab;
          who = i % 2 ? &alice_ : &bob_;
          break;
        case 1:
          conv = bc;
          who = i % 2 ? &bob_ : &carol_;
          break;
        default:
          conv = group;
          who = i % 2 ? &carol_ : &alice_;
          break;
      }
      Json m = SendOk(*who, conv, "s" + std::to_string(i));
      ASSERT_TRUE(m.is_object());
      if (conv != bc) expected_.push_back(m["id"].get<int64_t>());
    }
  }
  Account alice_, bob_, carol_;
  std::set<int64_t> mine_;
  std::vector<int64_t> expected_;  // alice's messages, ascending
};

TEST_F(MessagesSyncTest, SinceZeroReturnsEverythingOfTheCallersConversations) {
  auto r = Sync(alice_, "since=0");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.headers.at("content-type"), "application/json");
  for (const auto& m : r.json["messages"]) {
    ExpectMessageShape(m);
    EXPECT_TRUE(mine_.contains(m["conversation_id"].get<int64_t>())) << m.dump();
  }
  EXPECT_EQ(Ids(r.json["messages"]), expected_);
  EXPECT_EQ(r.json["next_since"], expected_.back());
  EXPECT_EQ(r.json["has_more"], false);
}

TEST_F(MessagesSyncTest, PagesWithNextSinceAndLimit) {
  for (int limit : {3, 4, 5, 1}) {
    std::vector<int64_t> seen;
    int64_t since = 0;
    bool more = true;
    int pages = 0;
    while (more && pages++ < 100) {
      auto r = Sync(alice_, "since=" + std::to_string(since) + "&limit=" + std::to_string(limit));
      ASSERT_EQ(r.status, 200) << r.body;
      auto ids = Ids(r.json["messages"]);
      ASSERT_FALSE(ids.empty());
      EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
      EXPECT_GT(ids.front(), since);
      more = r.json["has_more"].get<bool>();
      if (more) {
        EXPECT_EQ(ids.size(), static_cast<size_t>(limit));
      }
      EXPECT_LE(ids.size(), static_cast<size_t>(limit));
      EXPECT_EQ(r.json["next_since"], ids.back());
      since = r.json["next_since"].get<int64_t>();
      seen.insert(seen.end(), ids.begin(), ids.end());
    }
    EXPECT_EQ(seen, expected_) << "limit " << limit;
    EXPECT_EQ(pages, static_cast<int>((expected_.size() + limit - 1) / limit)) << limit;
  }
  // From the middle: the ones above `since` only.
  auto r = Sync(alice_, "since=" + std::to_string(expected_[5]) + "&limit=2");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Ids(r.json["messages"]), (std::vector<int64_t>{expected_[6], expected_[7]}));
  EXPECT_EQ(r.json["has_more"], true);
}

TEST_F(MessagesSyncTest, SinceBeyondTheLastIsEmpty) {
  for (int64_t since : {expected_.back(), expected_.back() + 1, expected_.back() + 100000}) {
    auto r = Sync(alice_, "since=" + std::to_string(since));
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_TRUE(r.json["messages"].is_array());
    EXPECT_TRUE(r.json["messages"].empty()) << r.body;
    EXPECT_EQ(r.json["next_since"], since);
    EXPECT_EQ(r.json["has_more"], false);
  }
}

TEST_F(MessagesSyncTest, BadParametersAre400) {
  for (const std::string q : {"since=abc", "since=-1", "since=1.5", "since=", "since=0&limit=abc",
                              "since=0&limit=0", "since=0&limit=-3"}) {
    ExpectError(Sync(alice_, q), 400, "invalid_request");
  }
  ExpectError(client_.Get("/api/sync?since=0"), 401, "unauthorized");
}

TEST_F(MessagesSyncTest, UserWithoutConversationsSyncsNothing) {
  // A user with no conversations syncs nothing; nothing of others leaks.
  const Account dave = SignUp(server_, client_, "dave");
  auto r = Sync(dave, "since=0");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(r.json["messages"].empty());
  EXPECT_EQ(r.json["next_since"], 0);
  EXPECT_EQ(r.json["has_more"], false);
}

// ---------------------------------------------------------------------------------------------
// Durability
// ---------------------------------------------------------------------------------------------

class MessagesDurabilityTest : public MessagesFixture {};

TEST_F(MessagesDurabilityTest, AcknowledgedMessagesSurviveSigterm) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const int64_t conv = Private(alice, bob);
  ASSERT_GT(conv, 0);
  std::vector<int64_t> ids;
  for (int i = 0; i < 200; ++i) {
    Json m = SendOk(i % 2 ? bob : alice, conv, "durable " + std::to_string(i));
    ASSERT_TRUE(m.is_object());
    ids.push_back(m["id"].get<int64_t>());
  }
  EXPECT_EQ(server_.Stop(), 0);

  TestServer restarted(ServerOptions{.dir = server_.dir()});
  HttpClient client(restarted.port());
  const Json all = AllMessages(client, alice, conv);
  ASSERT_EQ(all.size(), 200u);
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(all[i]["id"], ids[i]);
    EXPECT_EQ(all[i]["seq"], static_cast<int64_t>(i) + 1);
    EXPECT_EQ(all[i]["content"], "durable " + std::to_string(i));
  }
  // Numbering continues where it stopped.
  auto next = client.Post("/api/messages", SendBody(conv, "after restart"), alice.token);
  ASSERT_EQ(next.status, 201) << next.body;
  EXPECT_EQ(next.json["seq"], 201);
  EXPECT_GT(next.json["id"].get<int64_t>(), ids.back());
}

TEST_F(MessagesDurabilityTest, SigtermWhileSendingLosesNoAcknowledgedMessage) {
  constexpr int kThreads = 4;
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const int64_t conv = Private(alice, bob);
  ASSERT_GT(conv, 0);

  std::mutex mu;
  std::map<int64_t, std::pair<int64_t, std::string>> acked;  // id -> seq, content
  std::atomic<int> acked_count{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      HttpClient client(server_.port());
      const Account& me = t % 2 ? bob : alice;
      for (int i = 0; i < 100000; ++i) {
        const std::string content = "t" + std::to_string(t) + "-" + std::to_string(i);
        try {
          // The client_id makes the harness's one retry on a dropped connection idempotent.
          auto r = client.Post("/api/messages", SendBody(conv, content, content), me.token);
          if (r.status != 201 && r.status != 200) return;
          std::lock_guard lock(mu);
          acked[r.json["id"].get<int64_t>()] = {r.json["seq"].get<int64_t>(), content};
          ++acked_count;
        } catch (const std::exception&) {
          return;  // the server went away
        }
      }
    });
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (acked_count.load() < 300 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_GE(acked_count.load(), 300);
  EXPECT_EQ(server_.Stop(), 0);
  for (auto& th : threads) th.join();

  TestServer restarted(ServerOptions{.dir = server_.dir()});
  HttpClient client(restarted.port());
  const Json all = AllMessages(client, alice, conv);
  ASSERT_GE(all.size(), acked.size());
  std::map<int64_t, Json> stored;
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(all[i]["seq"], static_cast<int64_t>(i) + 1);  // no gaps
    stored[all[i]["id"].get<int64_t>()] = all[i];
  }
  for (const auto& [id, v] : acked) {
    auto it = stored.find(id);
    ASSERT_NE(it, stored.end()) << "acknowledged message " << id << " lost";
    EXPECT_EQ(it->second["seq"], v.first);
    EXPECT_EQ(it->second["content"], v.second);
  }
}

}  // namespace
}  // namespace mmchat::test
