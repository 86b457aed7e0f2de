// Authorization sweep (issue 6, item 4), against the real binary over real sockets.
//
// Part 1, access: every REST route and WebSocket client frame that takes a conversation, user or
// message id, tried by users who must not have access to it. The cast (AuthzScenario):
//
//   alice  admin of the group G ("kept secret: the title") and in the private conversation P
//          with bob
//   bob    a plain member of G, and alice's peer in P
//   carol  the removed member: was in G (sent and read there), then alice removed her
//   dave   the stranger: never a member of anything
//   erin   the member of a different conversation: the group H with frank
//
// API.md: a conversation that does not exist is 404 not_found; one the caller is not a
// participant of is 403 forbidden ("removed users see nothing of it"); admin-only changes by a
// plain member are 403. Each refusal must be the bare error object (nothing of the conversation
// in it), must change nothing (checked on the database itself: conversations, participants with
// their roles and read markers, messages), and no later event of the conversation may reach the
// outsider over WebSocket.
//
// Proving that no event arrived, without sleeping: a connection writes its frames in the order
// they were queued, and the server fans an event out to the connections' queues before it
// answers the request that caused it. So after the action under test, a "marker" that a control
// participant IS sent proves the event went out, and a ping from the outsider proves, by its
// pong, that anything queued for the outsider before the ping has arrived.
//
// Uploads (API.md "Attachments") are the one kind of object an outsider is not told about at
// all: a download by anyone but the uploader and the current participants of the conversation
// whose message carries it is 404 not_found, exactly as for an upload that does not exist, in
// every way of asking (token in the header or the query, Range, If-None-Match). And a message
// may carry only its sender's own free uploads: naming another's is 400 invalid_request and
// attaches nothing, over REST and over WebSocket.
//
// Part 2, tokens: no token, alg none, other algorithms with the right secret, a wrong
// signature, expiry, revocation by a password reset, a deleted user, over-long and garbage
// tokens, on a REST route and on the WebSocket upgrade: all 401 unauthorized with the error
// object, never a 500 or a crash. Tokens are crafted here with the server's JWT_SECRET (set by
// this file) and libsodium's HMAC; a crafted token with the right claims is accepted, so each
// refusal is down to the one thing that case gets wrong.
#include <gtest/gtest.h>
#include <sodium.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "harness.h"
#include "ws_client.h"

namespace mmchat::test {
namespace {

using namespace std::chrono_literals;

constexpr char kSecret[] = "authz-sweep-secret-0123456789abcdef";
constexpr int64_t kUnknownId = 999'999'999;
constexpr char kTitle[] = "kept secret: the title";
// Texts that only participants of G or P may ever see.
// The bytes and filename of alice's upload (AuthzScenario::upload_), and those of bob's in P.
constexpr char kUploadBytes[] = "secret upload bytes: the plan, page 1 of 1";
constexpr char kUploadName[] = "secret-plan.pdf";
constexpr char kPUploadBytes[] = "secret upload bytes of P";
const std::vector<std::string> kSecrets = {kTitle,      "secret g1",  "secret g2", "secret g3",
                                           "secret g4", "secret p1",  "secret p2", kUploadBytes,
                                           kUploadName, kPUploadBytes};
// An upload id of the right shape that exists nowhere.
constexpr char kUnknownUpload[] = "NoSuchUploadAnywhere000000";

ServerOptions Options() {
  ServerOptions o;
  o.env["JWT_SECRET"] = kSecret;  // the tokens of part 2 are signed with it
  return o;
}

std::string Type(const Json& frame) {
  return frame.is_object() ? frame.value("type", std::string()) : std::string();
}

// Replaces every "{name}" in `text` by its value.
std::string Fill(std::string text, const std::map<std::string, std::string>& vars) {
  for (const auto& [name, value] : vars) {
    const std::string key = "{" + name + "}";
    for (size_t at = text.find(key); at != std::string::npos; at = text.find(key, at)) {
      text.replace(at, key.size(), value);
      at += value.size();
    }
  }
  return text;
}

// A refusal that shows nothing: the status and code, and a body that is exactly
// {"error": {"code", "message"}} with none of the secret texts in it.
void ExpectBareError(const HttpResult& r, int status, const std::string& code,
                     const std::vector<std::string>& secrets = kSecrets) {
  for (const auto& s : secrets) EXPECT_EQ(r.body.find(s), std::string::npos) << s;
  ASSERT_TRUE(r.json.is_object() && r.json.contains("error") && r.json["error"].is_object())
      << r.status << " " << r.body;
  ExpectError(r, status, code);
  EXPECT_EQ(r.json.size(), 1u) << r.body;
  EXPECT_EQ(r.json["error"].size(), 2u) << r.body;  // code and message only
}

// ---------------------------------------------------------------------------------------------
// The database, read directly
// ---------------------------------------------------------------------------------------------

// The rows of `sql` on the server's database (either store), each row's columns joined by '|'.
std::vector<std::string> QueryDb(const std::filesystem::path& dir, const std::string& sql) {
  std::vector<std::string> rows;
  for (const auto& columns : QueryStore(dir, sql)) {
    std::string row;
    for (size_t i = 0; i < columns.size(); ++i) row += (i ? "|" : "") + columns[i];
    rows.push_back(std::move(row));
  }
  return rows;
}

// Everything an outsider's write could change: conversations (with names), participants (with
// roles and read markers), messages, and uploads (with the message that carries each).
// Delivered markers and activity times are left out: the server moves those by itself.
std::vector<std::string> WritableState(const std::filesystem::path& dir) {
  std::vector<std::string> out;
  for (const char* sql :
       {"SELECT 'conversation', id, type, name, created_by FROM conversations ORDER BY id",
        "SELECT 'participant', conversation_id, user_id, role, joined_at, read_marker, read_at "
        "FROM participants ORDER BY conversation_id, user_id",
        "SELECT 'message', id, conversation_id, seq, sender_id, content, client_id, change_id, "
        "reactions, deleted_at, reply_to FROM messages ORDER BY id",
        "SELECT 'upload', id, uploader, filename, content_type, size, complete, message_id, "
        "removed FROM uploads ORDER BY id"}) {
    for (auto& row : QueryDb(dir, sql)) out.push_back(std::move(row));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// A WebSocket connection that keeps every frame it saw
// ---------------------------------------------------------------------------------------------

// Waiting for one answer must not throw other frames away: a leaked event could be among them.
// Every frame that is not the awaited one goes to `seen`, for the leak checks.
class Watched {
 public:
  Watched(uint16_t port, const Account& who) : who_(who), ws_(port, who.token) {
    EXPECT_TRUE(ws_.connected()) << who.username << ": " << ws_.refusal().body;
    // The server reads frames only after registering the connection: the pong proves that every
    // later event reaches it.
    if (ws_.connected()) Barrier();
  }

  const Account& who() const { return who_; }
  WsClient& ws() { return ws_; }
  std::vector<Json>& seen() { return seen_; }

  // The next frame for which `want` holds; the others go to `seen`. Null after the timeout.
  template <class Pred>
  Json Await(Pred want) {
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return nullptr;
      Json f = ws_.Next(left);
      if (f.is_null() || want(f)) return f;
      seen_.push_back(std::move(f));
    }
  }
  // The ack of the frame that carried `ref`.
  Json AwaitAck(const std::string& ref) {
    return Await([&](const Json& f) {
      return Type(f) == "ack" && f["data"].value("ref", std::string()) == ref;
    });
  }
  // Sends a ping and waits for its pong: every frame queued for this connection before the
  // ping is then in `seen`.
  void Barrier() {
    ws_.Send({{"type", "ping"}});
    if (Await([](const Json& f) { return Type(f) == "pong"; }).is_null()) {
      ADD_FAILURE() << "no pong for " << who_.username;
    }
  }

 private:
  Account who_;
  WsClient ws_;
  std::vector<Json> seen_;
};

// The conversation a server frame is about (0 when none): data.conversation_id, or data.id of
// a `conversation` event.
int64_t ConversationOf(const Json& frame) {
  if (!frame.is_object() || !frame["data"].is_object()) return 0;
  const Json& d = frame["data"];
  if (Type(frame) == "conversation") return d.value("id", int64_t{0});
  return d.value("conversation_id", int64_t{0});
}

// None of `frames` is about one of `conversations`, tells of `users`' presence, or holds a
// secret text.
void ExpectNothingAbout(const std::vector<Json>& frames, const std::set<int64_t>& conversations,
                        const std::set<int64_t>& users) {
  for (const auto& f : frames) {
    EXPECT_FALSE(conversations.contains(ConversationOf(f))) << "leaked: " << f.dump();
    if (Type(f) == "presence") {
      EXPECT_FALSE(users.contains(f["data"].value("user_id", int64_t{0})))
          << "leaked: " << f.dump();
    }
    const std::string text = f.dump();
    for (const auto& s : kSecrets) EXPECT_EQ(text.find(s), std::string::npos) << text;
  }
}

// The next frame that is neither presence nor a (timer-driven) delivery receipt.
Json NextEvent(Watched& w) {
  return w.Await(
      [](const Json& f) { return Type(f) != "presence" && Type(f) != "delivery_receipt"; });
}

// ---------------------------------------------------------------------------------------------
// The scenario
// ---------------------------------------------------------------------------------------------

class AuthzScenario : public ::testing::Test {
 protected:
  AuthzScenario() : server_(Options()), client_(server_.port()) {
    alice_ = SignUp(server_, client_, "authz_alice");
    bob_ = SignUp(server_, client_, "authz_bob");
    carol_ = SignUp(server_, client_, "authz_carol");
    dave_ = SignUp(server_, client_, "authz_dave");
    erin_ = SignUp(server_, client_, "authz_erin");
    frank_ = SignUp(server_, client_, "authz_frank");

    // H first, so that its message ids are below G's: a read marker of H moved to a message
    // of G would show.
    h_ = CreateGroup(erin_, "erin and frank", {frank_.id});
    h1_ = Send(erin_, h_, "h1");
    h2_ = Send(frank_, h_, "h2");

    g_ = CreateGroup(alice_, kTitle, {bob_.id, carol_.id});
    p_ = Expect2xx(client_.Post("/api/conversations/private", {{"user_id", bob_.id}}, alice_.token))
             .value("id", int64_t{0});
    g1_ = Send(alice_, g_, "secret g1");
    p1_ = Send(alice_, p_, "secret p1");
    // Carol takes part before her removal: a message with a client_id (which also moves her
    // read marker).
    g2_ = Send(carol_, g_, "secret g2", kCarolsClientId);
    Expect2xx(client_.Post("/api/messages/read", {{"conversation_id", g_}, {"message_id", g2_}},
                           bob_.token));
    Expect2xx(client_.Request("DELETE", ParticipantPath(g_, carol_.id), "", alice_.token));
    g3_ = Send(alice_, g_, "secret g3");
    // alice's upload, which the scenario attaches to nothing: {upload} in the case tables.
    upload_ = Upload(alice_, kUploadBytes, kUploadName);
  }

  static constexpr char kCarolsClientId[] = "carol-before-removal";

  static std::string ConversationPath(int64_t id) {
    return "/api/conversations/" + std::to_string(id);
  }
  static std::string ParticipantPath(int64_t id, int64_t user) {
    return ConversationPath(id) + "/participants/" + std::to_string(user);
  }

  static Json Expect2xx(const HttpResult& r) {
    EXPECT_TRUE(r.status >= 200 && r.status < 300) << r.status << " " << r.body;
    return r.json;
  }
  int64_t CreateGroup(const Account& creator, const std::string& name,
                      const std::vector<int64_t>& members) {
    return Expect2xx(client_.Post("/api/conversations/group",
                                  {{"name", name}, {"member_ids", members}}, creator.token))
        .value("id", int64_t{0});
  }
  int64_t Send(const Account& a, int64_t conversation, const std::string& content,
               const std::string& client_id = "") {
    Json body = {{"conversation_id", conversation}, {"content", content}};
    if (!client_id.empty()) body["client_id"] = client_id;
    return Expect2xx(client_.Post("/api/messages", body, a.token)).value("id", int64_t{0});
  }

  // The placeholders of the case tables, for `caller` acting on conversation `conv` whose
  // message is `msg`.
  std::map<std::string, std::string> Vars(const Account& caller, int64_t conv, int64_t msg) const {
    return {
        {"conv", std::to_string(conv)},         {"msg", std::to_string(msg)},
        {"self", std::to_string(caller.id)},    {"admin", std::to_string(alice_.id)},
        {"member", std::to_string(bob_.id)},    {"removed", std::to_string(carol_.id)},
        {"stranger", std::to_string(dave_.id)}, {"unknown", std::to_string(kUnknownId)},
        {"client_id", kCarolsClientId},         {"upload", upload_},
    };
  }

  // ---- Uploads ----

  // POST /api/uploads of `bytes` by `who`, with `filename` when not empty: the upload's id.
  std::string Upload(const Account& who, const std::string& bytes,
                     const std::string& filename = "") {
    const std::string target =
        filename.empty() ? "/api/uploads" : "/api/uploads?filename=" + PercentEncode(filename);
    auto r =
        client_.Request("POST", target, bytes, who.token, {{"Content-Type", "application/pdf"}});
    EXPECT_EQ(r.status, 201) << r.body;
    return r.json.is_object() ? r.json.value("id", std::string()) : std::string();
  }
  // Whether upload `id` exists and is attached to no message.
  bool Free(const std::string& id) {
    return QueryStoreOne(server_.dir(), "SELECT count(*) FROM uploads WHERE id = '" + id +
                                            "' AND message_id IS NULL") == "1";
  }
  // POST /api/messages by `who` in `conversation` with `attachments`.
  HttpResult SendWith(const Account& who, int64_t conversation, const Json& attachments,
                      const std::string& content = "") {
    return client_.Post(
        "/api/messages",
        {{"conversation_id", conversation}, {"content", content}, {"attachments", attachments}},
        who.token);
  }

  // Every way of asking for an upload: the token in the header or in the query, each plain,
  // with a range, with a range past the end, and with the ETag (or *) in If-None-Match. Each
  // answers differently when the caller may download (`allowed`: 200, 206, 416, 304), so a
  // refusal that is not a 404 in any of them would tell that the upload exists.
  struct DownloadWay {
    std::string name;
    int allowed;
    HttpResult result;
  };
  std::vector<DownloadWay> DownloadEveryWay(const Account& who, const std::string& id) {
    struct Way {
      std::string name;
      std::map<std::string, std::string> headers;
      int allowed;
    };
    const std::vector<Way> ways = {
        {"plain", {}, 200},
        {"Range bytes=0-5", {{"Range", "bytes=0-5"}}, 206},
        {"Range past the end", {{"Range", "bytes=999999-"}}, 416},
        {"If-None-Match with the ETag", {{"If-None-Match", "\"" + id + "\""}}, 304},
        {"If-None-Match: *", {{"If-None-Match", "*"}}, 304},
    };
    const std::string path = "/api/uploads/" + id;
    std::vector<DownloadWay> out;
    for (const Way& w : ways) {
      out.push_back({w.name + ", token in the header", w.allowed,
                     client_.Request("GET", path, "", who.token, w.headers)});
      out.push_back(
          {w.name + ", token in the query", w.allowed,
           client_.Request("GET", path + "?token=" + PercentEncode(who.token), "", "", w.headers)});
    }
    return out;
  }
  // `who` downloads upload `id`, whose bytes are `bytes`, every way.
  void ExpectDownloads(const Account& who, const std::string& id, const std::string& bytes) {
    for (const DownloadWay& w : DownloadEveryWay(who, id)) {
      SCOPED_TRACE(who.username + " downloads, " + w.name);
      const HttpResult& r = w.result;
      EXPECT_EQ(r.status, w.allowed) << r.body;
      if (w.allowed == 200) {
        EXPECT_EQ(r.body, bytes);
      } else if (w.allowed == 206) {
        EXPECT_EQ(r.body, bytes.substr(0, 6));
      }
      if (w.allowed != 416) {
        EXPECT_TRUE(r.headers.contains("etag") && r.headers.at("etag") == "\"" + id + "\"");
      }
    }
  }
  // `who` is told nothing of upload `id`: every way of asking is answered as for an upload
  // that does not exist, 404 not_found with the same body and the same headers, and nothing of
  // the upload (bytes, name, ETag, size) in them.
  void ExpectNoSuchUpload(const Account& who, const std::string& id) {
    const auto unknown = DownloadEveryWay(who, kUnknownUpload);
    const auto ways = DownloadEveryWay(who, id);
    ASSERT_EQ(ways.size(), unknown.size());
    for (size_t i = 0; i < ways.size(); ++i) {
      SCOPED_TRACE(who.username + " downloads, " + ways[i].name);
      const HttpResult& r = ways[i].result;
      ExpectBareError(r, 404, "not_found");
      EXPECT_EQ(r.body, unknown[i].result.body);
      EXPECT_EQ(r.body.find(id), std::string::npos) << r.body;
      std::set<std::string> names, unknown_names;
      for (const auto& [name, value] : r.headers) {
        names.insert(name);
        EXPECT_EQ(value.find(id), std::string::npos) << name << ": " << value;
      }
      for (const auto& [name, value] : unknown[i].result.headers) unknown_names.insert(name);
      EXPECT_EQ(names, unknown_names);
      for (const char* h : {"etag", "content-range", "content-disposition", "accept-ranges"}) {
        EXPECT_FALSE(r.headers.contains(h)) << h;
      }
    }
  }

  // The outsiders, each with the conversations it must not reach (with one message of each).
  struct Target {
    std::string what;
    int64_t conversation;
    int64_t message;
  };
  std::vector<Account> Outsiders() const { return {carol_, dave_, erin_}; }
  std::vector<Target> Targets() const {
    return {{"group G", g_, g1_}, {"group G, after the removal", g_, g3_}, {"private P", p_, p1_}};
  }

  // alice's view of G and P is what it was before: name, participants and roles, messages.
  void ExpectAliceSeesTheUsualGAndP() {
    auto g = client_.Get(ConversationPath(g_), alice_.token);
    ASSERT_EQ(g.status, 200) << g.body;
    EXPECT_EQ(g.json["name"], kTitle);
    std::map<int64_t, std::string> roles;
    for (const auto& p : g.json["participants"]) roles[p["user_id"]] = p["role"];
    EXPECT_EQ(roles, (std::map<int64_t, std::string>{{alice_.id, "admin"}, {bob_.id, "member"}}));
    auto msgs = client_.Get(ConversationPath(g_) + "/messages", alice_.token);
    ASSERT_EQ(msgs.status, 200) << msgs.body;
    std::vector<int64_t> ids;
    for (const auto& m : msgs.json["messages"]) ids.push_back(m["id"]);
    EXPECT_EQ(ids, (std::vector<int64_t>{g1_, g2_, g3_}));
    auto p = client_.Get(ConversationPath(p_) + "/messages", bob_.token);
    ASSERT_EQ(p.status, 200) << p.body;
    ASSERT_EQ(p.json["messages"].size(), 1u) << p.body;
    EXPECT_EQ(p.json["messages"][0]["id"], p1_);
  }

  // The server is alive and serving, and logged no error.
  void ExpectServerHealthy() {
    EXPECT_EQ(client_.Get("/healthz").status, 200);
    EXPECT_EQ(client_.Get("/api/me", alice_.token).status, 200);
    WsClient ws(server_.ws_port(), alice_.token);
    EXPECT_TRUE(ws.connected()) << ws.refusal().body;
    for (const char* level : {"Z error ", "Z critical "}) {
      EXPECT_EQ(server_.Log().find(level), std::string::npos) << server_.Log();
    }
  }

  TestServer server_;
  HttpClient client_;
  Account alice_, bob_, carol_, dave_, erin_, frank_;
  int64_t g_ = 0, p_ = 0, h_ = 0;
  int64_t g1_ = 0, g2_ = 0, g3_ = 0, p1_ = 0, h1_ = 0, h2_ = 0;
  std::string upload_;  // alice's, attached to nothing
};

// Every REST route that takes a conversation id, with the user and message ids it also takes.
// Placeholders (AuthzScenario::Vars): {conv} the conversation, {msg} one of its messages, {self}
// the caller, {admin} alice, {member} bob, {removed} carol, {stranger} dave, {unknown} an id
// that exists nowhere, {client_id} the client_id carol used in G before her removal, {upload}
// an upload of alice's that is attached to nothing.
struct RestCase {
  const char* method;
  const char* path;
  const char* body;  // "" for none
};
const std::vector<RestCase> kConversationRoutes = {
    {"GET", "/api/conversations/{conv}", ""},
    {"PUT", "/api/conversations/{conv}", R"({"name": "renamed by an outsider"})"},
    {"POST", "/api/conversations/{conv}/participants", R"({"user_id": {self}})"},
    {"POST", "/api/conversations/{conv}/participants", R"({"user_id": {self}, "role": "admin"})"},
    {"POST", "/api/conversations/{conv}/participants", R"({"user_id": {unknown}})"},
    {"PUT", "/api/conversations/{conv}/participants/{self}", R"({"role": "admin"})"},
    {"PUT", "/api/conversations/{conv}/participants/{admin}", R"({"role": "member"})"},
    {"PUT", "/api/conversations/{conv}/participants/{unknown}", R"({"role": "admin"})"},
    {"DELETE", "/api/conversations/{conv}/participants/{member}", ""},
    {"DELETE", "/api/conversations/{conv}/participants/{self}", ""},
    {"DELETE", "/api/conversations/{conv}/participants/{unknown}", ""},
    {"GET", "/api/conversations/{conv}/messages", ""},
    {"GET", "/api/conversations/{conv}/messages?after=0&limit=100", ""},
    {"GET", "/api/conversations/{conv}/messages?before={msg}", ""},
    {"GET", "/api/conversations/{conv}/messages?after={unknown}", ""},
    {"POST", "/api/messages", R"({"conversation_id": {conv}, "content": "outsider was here"})"},
    {"POST", "/api/messages",
     R"({"conversation_id": {conv}, "content": "outsider was here", "client_id": "{client_id}"})"},
    {"POST", "/api/messages",
     R"({"conversation_id": {conv}, "content": "outsider was here", "reply_to": {msg}})"},
    {"POST", "/api/messages",
     R"({"conversation_id": {conv}, "content": "", "attachments": ["{upload}"]})"},
    {"POST", "/api/messages/read", R"({"conversation_id": {conv}, "message_id": {msg}})"},
    {"POST", "/api/messages/read", R"({"conversation_id": {conv}, "message_id": {unknown}})"},
    {"GET", "/api/search?q=outsider&conversation_id={conv}", ""},
    {"GET", "/api/search?q=a&conversation_id={conv}&before={msg}&limit=100", ""},
};

// Every REST route that takes a message id (placeholders as above): edits, deletions,
// reactions, and a reply to it.
const std::vector<RestCase> kMessageRoutes = {
    {"PATCH", "/api/messages/{msg}", R"({"content": "edited by an outsider"})"},
    {"DELETE", "/api/messages/{msg}", ""},
    {"PUT", "/api/messages/{msg}/reactions/%F0%9F%91%8D", ""},
    {"DELETE", "/api/messages/{msg}/reactions/%F0%9F%91%8D", ""},
};

// Every WebSocket client frame that takes a conversation id (placeholders as above). Each is
// sent with a ref (answered by an ack) and without one (answered by an error frame).
const std::vector<const char*> kConversationFrames = {
    R"({"type": "message", "conversation_id": {conv}, "content": "outsider was here"})",
    R"({"type": "message", "conversation_id": {conv}, "content": "outsider was here",
        "client_id": "{client_id}"})",
    R"({"type": "message", "conversation_id": {conv}, "content": "outsider was here",
        "reply_to": {msg}})",
    R"({"type": "message", "conversation_id": {conv}, "content": "",
        "attachments": ["{upload}"]})",
    R"({"type": "read", "conversation_id": {conv}, "message_id": {msg}})",
    R"({"type": "read", "conversation_id": {conv}, "message_id": {unknown}})",
    R"({"type": "typing_start", "conversation_id": {conv}})",
    R"({"type": "typing_stop", "conversation_id": {conv}})",
};

using AuthzRestTest = AuthzScenario;
using AuthzWsTest = AuthzScenario;

// ---------------------------------------------------------------------------------------------
// REST
// ---------------------------------------------------------------------------------------------

TEST_F(AuthzRestTest, EveryConversationRouteRefusesEveryOutsiderWith403AndChangesNothing) {
  const auto before = WritableState(server_.dir());
  for (const Account& who : Outsiders()) {
    for (const Target& t : Targets()) {
      const auto vars = Vars(who, t.conversation, t.message);
      for (const RestCase& c : kConversationRoutes) {
        const std::string path = Fill(c.path, vars), body = Fill(c.body, vars);
        SCOPED_TRACE(who.username + " on " + t.what + ": " + c.method + " " + path + " " + body);
        ExpectBareError(client_.Request(c.method, path, body, who.token), 403, "forbidden");
      }
    }
  }
  EXPECT_EQ(WritableState(server_.dir()), before);
  ExpectAliceSeesTheUsualGAndP();
  ExpectServerHealthy();
}

TEST_F(AuthzRestTest, EveryConversationRouteAnswers404ForAConversationThatDoesNotExist) {
  const auto before = WritableState(server_.dir());
  // The same for outsiders and for participants of other conversations: 404 says nothing more.
  for (const Account& who : {dave_, bob_}) {
    const auto vars = Vars(who, kUnknownId, g1_);
    for (const RestCase& c : kConversationRoutes) {
      const std::string path = Fill(c.path, vars), body = Fill(c.body, vars);
      SCOPED_TRACE(who.username + ": " + c.method + " " + path + " " + body);
      ExpectBareError(client_.Request(c.method, path, body, who.token), 404, "not_found");
    }
  }
  EXPECT_EQ(WritableState(server_.dir()), before);
}

TEST_F(AuthzRestTest, EveryMessageRouteRefusesEveryOutsiderWith403AndChangesNothing) {
  const auto before = WritableState(server_.dir());
  for (const Account& who : Outsiders()) {
    for (const Target& t : Targets()) {
      const auto vars = Vars(who, t.conversation, t.message);
      for (const RestCase& c : kMessageRoutes) {
        const std::string path = Fill(c.path, vars), body = Fill(c.body, vars);
        SCOPED_TRACE(who.username + " on " + t.what + ": " + c.method + " " + path + " " + body);
        ExpectBareError(client_.Request(c.method, path, body, who.token), 403, "forbidden");
      }
    }
    // carol's own message, sent before her removal, is no longer hers to change.
    const auto own = Vars(who, g_, g2_);
    for (const RestCase& c : kMessageRoutes) {
      const std::string path = Fill(c.path, own), body = Fill(c.body, own);
      SCOPED_TRACE(who.username + " on g2: " + c.method + " " + path);
      ExpectBareError(client_.Request(c.method, path, body, who.token), 403, "forbidden");
    }
  }
  EXPECT_EQ(WritableState(server_.dir()), before);
  ExpectAliceSeesTheUsualGAndP();
  ExpectServerHealthy();
}

TEST_F(AuthzRestTest, EveryMessageRouteAnswers404ForAMessageThatDoesNotExist) {
  const auto before = WritableState(server_.dir());
  for (const Account& who : {dave_, bob_, alice_}) {
    auto vars = Vars(who, g_, kUnknownId);
    for (const RestCase& c : kMessageRoutes) {
      const std::string path = Fill(c.path, vars), body = Fill(c.body, vars);
      SCOPED_TRACE(who.username + ": " + c.method + " " + path);
      ExpectBareError(client_.Request(c.method, path, body, who.token), 404, "not_found");
    }
  }
  EXPECT_EQ(WritableState(server_.dir()), before);
}

TEST_F(AuthzRestTest, OnlyTheSenderEditsAndOnlyTheSenderOrAnAdminDeletes) {
  Watched alice(server_.ws_port(), alice_);
  Watched bob(server_.ws_port(), bob_);
  const auto before = WritableState(server_.dir());
  // bob, a plain member, on alice's message in G and in P (where no one is an admin).
  for (int64_t msg : {g1_, p1_}) {
    const auto vars = Vars(bob_, 0, msg);
    for (const RestCase& c : {kMessageRoutes[0], kMessageRoutes[1]}) {
      const std::string path = Fill(c.path, vars), body = Fill(c.body, vars);
      SCOPED_TRACE(std::string(c.method) + " " + path);
      ExpectBareError(client_.Request(c.method, path, body, bob_.token), 403, "forbidden", {});
    }
  }
  // alice, G's admin, may not edit what bob wrote, nor delete his message in P.
  const int64_t bobs_g = Send(bob_, g_, "bob in G");
  const int64_t bobs_p = Send(bob_, p_, "bob in P");
  const auto after_sends = WritableState(server_.dir());
  ExpectBareError(client_.Request("PATCH", "/api/messages/" + std::to_string(bobs_g),
                                  R"({"content":"admin's words"})", alice_.token),
                  403, "forbidden", {});
  ExpectBareError(
      client_.Request("DELETE", "/api/messages/" + std::to_string(bobs_p), "", alice_.token), 403,
      "forbidden", {});
  EXPECT_EQ(WritableState(server_.dir()), after_sends);
  EXPECT_NE(after_sends, before);
  // No message_updated went out: the first non-message event either of them gets is the marker.
  const int64_t marker = Send(alice_, g_, "marker");
  for (Watched* w : {&alice, &bob}) {
    SCOPED_TRACE(w->who().username);
    Json f = w->Await([&](const Json& x) {
      return Type(x) == "message_updated" || (Type(x) == "message" && x["data"]["id"] == marker);
    });
    EXPECT_EQ(Type(f), "message") << f.dump();
  }
  // But the admin deletes bob's message in the group.
  EXPECT_EQ(
      client_.Request("DELETE", "/api/messages/" + std::to_string(bobs_g), "", alice_.token).status,
      204);
}

TEST_F(AuthzRestTest, AdminOnlyChangesRefuseAPlainMemberWith403AndChangeNothing) {
  // {stranger} dave, {removed} carol: people bob might try to bring in or keep out.
  const std::vector<RestCase> admin_only = {
      {"PUT", "/api/conversations/{conv}", R"({"name": "renamed by a member"})"},
      {"POST", "/api/conversations/{conv}/participants", R"({"user_id": {stranger}})"},
      {"POST", "/api/conversations/{conv}/participants",
       R"({"user_id": {stranger}, "role": "admin"})"},
      {"POST", "/api/conversations/{conv}/participants", R"({"user_id": {removed}})"},
      {"PUT", "/api/conversations/{conv}/participants/{self}", R"({"role": "admin"})"},
      {"PUT", "/api/conversations/{conv}/participants/{admin}", R"({"role": "member"})"},
      {"PUT", "/api/conversations/{conv}/participants/{unknown}", R"({"role": "admin"})"},
      {"DELETE", "/api/conversations/{conv}/participants/{admin}", ""},
      {"DELETE", "/api/conversations/{conv}/participants/{removed}", ""},
      {"DELETE", "/api/conversations/{conv}/participants/{unknown}", ""},
  };
  Watched alice(server_.ws_port(), alice_);
  Watched bob(server_.ws_port(), bob_);
  const auto before = WritableState(server_.dir());
  const auto vars = Vars(bob_, g_, g1_);
  for (const RestCase& c : admin_only) {
    const std::string path = Fill(c.path, vars), body = Fill(c.body, vars);
    SCOPED_TRACE(std::string(c.method) + " " + path + " " + body);
    // The member may see the conversation, so only the bare error object is asserted.
    ExpectBareError(client_.Request(c.method, path, body, bob_.token), 403, "forbidden", {});
  }
  EXPECT_EQ(WritableState(server_.dir()), before);
  ExpectAliceSeesTheUsualGAndP();

  // No `conversation` event went out: the first event either of them gets is the marker.
  const int64_t marker = Send(alice_, g_, "marker");
  for (Watched* w : {&alice, &bob}) {
    SCOPED_TRACE(w->who().username);
    Json f = NextEvent(*w);
    EXPECT_EQ(Type(f), "message") << f.dump();
    EXPECT_EQ(f["data"].value("id", int64_t{0}), marker) << f.dump();
  }
  // Leaving is the one change a member may make alone.
  EXPECT_EQ(client_.Request("DELETE", ParticipantPath(g_, bob_.id), "", bob_.token).status, 204);
}

TEST_F(AuthzRestTest, ReadingAMessageOfAnotherConversationIs404AndMovesNoMarker) {
  struct Case {
    const Account* who;
    int64_t conversation;  // one the caller is in
    int64_t message;       // of another conversation
  };
  // erin's marker in H is at h1, below g3: a marker moved to g3 would show. Bob is in G and P:
  // being in both conversations does not make a message of one a message of the other.
  const std::vector<Case> cases = {
      {&erin_, h_, g3_}, {&erin_, h_, p1_}, {&bob_, p_, g3_}, {&bob_, g_, p1_}, {&bob_, g_, h2_}};
  const auto before = WritableState(server_.dir());
  for (const Case& c : cases) {
    SCOPED_TRACE(c.who->username + " reads message " + std::to_string(c.message) + " in " +
                 std::to_string(c.conversation));
    ExpectBareError(client_.Post("/api/messages/read",
                                 {{"conversation_id", c.conversation}, {"message_id", c.message}},
                                 c.who->token),
                    404, "not_found");
  }
  EXPECT_EQ(WritableState(server_.dir()), before);
  auto h = client_.Get(ConversationPath(h_), erin_.token);
  ASSERT_EQ(h.status, 200) << h.body;
  EXPECT_EQ(h.json["last_read_message_id"], h1_);
  // For contrast: a message of H moves erin's marker.
  EXPECT_EQ(
      client_
          .Post("/api/messages/read", {{"conversation_id", h_}, {"message_id", h2_}}, erin_.token)
          .status,
      200);
  EXPECT_EQ(client_.Get(ConversationPath(h_), erin_.token).json["last_read_message_id"], h2_);
}

TEST_F(AuthzRestTest, OpenRoutesShowOutsidersNothingOfTheConversations) {
  for (const Account& who : Outsiders()) {
    SCOPED_TRACE(who.username);
    const std::set<int64_t> own = who.id == erin_.id ? std::set<int64_t>{h_} : std::set<int64_t>{};

    // The list and sync hold only the caller's own conversations.
    auto list = client_.Get("/api/conversations", who.token);
    ASSERT_EQ(list.status, 200) << list.body;
    std::set<int64_t> listed;
    for (const auto& c : list.json["conversations"]) listed.insert(c["id"].get<int64_t>());
    EXPECT_EQ(listed, own);
    auto sync = client_.Get("/api/sync?since=0&limit=500", who.token);
    ASSERT_EQ(sync.status, 200) << sync.body;
    std::set<int64_t> synced;
    for (const auto& m : sync.json["messages"]) synced.insert(m["conversation_id"].get<int64_t>());
    EXPECT_EQ(synced, own);
    for (const auto* body : {&list.body, &sync.body}) {
      for (const auto& s : kSecrets) EXPECT_EQ(body->find(s), std::string::npos) << s;
    }

    // Users are public, but only in their public form: no email, nothing of conversations.
    for (const Account* other : {&alice_, &bob_}) {
      auto user = client_.Get("/api/users/" + std::to_string(other->id), who.token);
      ASSERT_EQ(user.status, 200) << user.body;
      EXPECT_FALSE(user.json.contains("email")) << user.body;
      EXPECT_EQ(user.body.find(other->email), std::string::npos) << user.body;
      auto seen = client_.Get("/api/users/" + std::to_string(other->id) + "/last-seen", who.token);
      ASSERT_EQ(seen.status, 200) << seen.body;
      std::set<std::string> keys;
      for (const auto& [k, v] : seen.json.items()) keys.insert(k);
      EXPECT_EQ(keys, (std::set<std::string>{"user_id", "online", "last_seen"})) << seen.body;
    }
    auto search = client_.Get("/api/users?search=authz_&limit=100", who.token);
    ASSERT_EQ(search.status, 200) << search.body;
    EXPECT_EQ(search.json["users"].size(), 6u) << search.body;
    EXPECT_EQ(search.body.find("@example.com"), std::string::npos) << search.body;
    ExpectBareError(client_.Get("/api/users/" + std::to_string(kUnknownId), who.token), 404,
                    "not_found");

    // A private conversation with bob is the outsider's own, never alice's P.
    auto mine = client_.Post("/api/conversations/private", {{"user_id", bob_.id}}, who.token);
    ASSERT_EQ(mine.status, 201) << mine.body;
    EXPECT_NE(mine.json["id"], p_);
    EXPECT_TRUE(mine.json["last_message"].is_null()) << mine.body;
    std::set<int64_t> people;
    for (const auto& p : mine.json["participants"]) people.insert(p["user_id"].get<int64_t>());
    EXPECT_EQ(people, (std::set<int64_t>{who.id, bob_.id}));
  }
}

// ---- Uploads ----

TEST_F(AuthzRestTest, AnUploadIsDownloadedOnlyByItsUploaderAndTheParticipantsOfItsMessage) {
  // gina is a member of G when the upload's message is sent, and is removed after it (carol,
  // the removed member of the scenario, was removed before it).
  const Account gina = SignUp(server_, client_, "authz_gina");
  Expect2xx(
      client_.Post(ConversationPath(g_) + "/participants", {{"user_id", gina.id}}, alice_.token));

  // Attached to nothing yet: the uploader's alone. bob, in both of alice's conversations, is
  // told nothing of it.
  ExpectDownloads(alice_, upload_, kUploadBytes);
  for (const Account& who : {bob_, gina, carol_, dave_, erin_}) ExpectNoSuchUpload(who, upload_);

  // Carried by a message of G: G's participants download it, nobody else.
  auto sent = SendWith(alice_, g_, Json::array({upload_}), "secret g4");
  ASSERT_EQ(sent.status, 201) << sent.body;
  ASSERT_EQ(sent.json["attachments"].size(), 1u) << sent.body;
  EXPECT_EQ(sent.json["attachments"][0]["id"], upload_);
  for (const Account& who : {alice_, bob_, gina}) ExpectDownloads(who, upload_, kUploadBytes);
  for (const Account& who : {carol_, dave_, erin_}) ExpectNoSuchUpload(who, upload_);

  // gina, removed after the message was sent, no longer may; the others still do.
  Expect2xx(client_.Request("DELETE", ParticipantPath(g_, gina.id), "", alice_.token));
  ExpectNoSuchUpload(gina, upload_);
  for (const Account& who : {alice_, bob_}) ExpectDownloads(who, upload_, kUploadBytes);

  // The same in the private conversation P, with bob the uploader.
  const std::string in_p = Upload(bob_, kPUploadBytes);
  ExpectNoSuchUpload(alice_, in_p);
  ASSERT_EQ(SendWith(bob_, p_, Json::array({in_p})).status, 201);
  for (const Account& who : {alice_, bob_}) ExpectDownloads(who, in_p, kPUploadBytes);
  for (const Account& who : {carol_, dave_, erin_, gina}) ExpectNoSuchUpload(who, in_p);

  // The refusals changed nothing.
  const auto before = WritableState(server_.dir());
  for (const Account& who : {carol_, dave_, erin_, gina}) ExpectNoSuchUpload(who, upload_);
  EXPECT_EQ(WritableState(server_.dir()), before);
  ExpectServerHealthy();
}

TEST_F(AuthzRestTest, AMessageNamingAnotherUsersUploadIs400AndAttachesNothing) {
  Watched alice(server_.ws_port(), alice_);
  const std::string bobs = Upload(bob_, "bob's own bytes");
  const std::string erins = Upload(erin_, "erin's own bytes");
  struct Case {
    const Account* who;
    int64_t conversation;  // one the caller is in
    Json attachments;
    std::string content;
  };
  const std::vector<Case> cases = {
      {&bob_, g_, Json::array({upload_}), ""},
      {&bob_, g_, Json::array({upload_}), "with text"},
      {&bob_, g_, Json::array({bobs, upload_}), ""},  // beside one of his own, either side
      {&bob_, g_, Json::array({upload_, bobs}), ""},
      {&bob_, p_, Json::array({upload_}), "in P"},
      {&erin_, h_, Json::array({upload_}), ""},  // in a conversation of her own
      {&erin_, h_, Json::array({erins, bobs}), ""},
  };
  const auto before = WritableState(server_.dir());
  for (const Case& c : cases) {
    SCOPED_TRACE(c.who->username + " in " + std::to_string(c.conversation) + " with " +
                 c.attachments.dump());
    ExpectBareError(SendWith(*c.who, c.conversation, c.attachments, c.content), 400,
                    "invalid_request");
  }
  // With a client_id: the refused message is not kept as one to answer a retry with.
  ExpectBareError(client_.Post("/api/messages",
                               {{"conversation_id", g_},
                                {"content", "retried"},
                                {"client_id", "bob-with-alices-upload"},
                                {"attachments", Json::array({upload_})}},
                               bob_.token),
                  400, "invalid_request");
  EXPECT_EQ(WritableState(server_.dir()), before);
  for (const std::string& id : {upload_, bobs, erins}) EXPECT_TRUE(Free(id)) << id;
  ExpectNoSuchUpload(bob_, upload_);

  // No message went out: alice's first event is the marker.
  const int64_t marker = Send(bob_, g_, "marker");
  Json f = NextEvent(alice);
  EXPECT_EQ(Type(f), "message") << f.dump();
  EXPECT_EQ(f["data"].value("id", int64_t{0}), marker) << f.dump();

  // The uploads are still free: their owners attach them (bob with the client_id he tried:
  // a new message, 201).
  auto mine = SendWith(alice_, g_, Json::array({upload_}));
  ASSERT_EQ(mine.status, 201) << mine.body;
  ASSERT_EQ(mine.json["attachments"].size(), 1u) << mine.body;
  EXPECT_EQ(mine.json["attachments"][0]["id"], upload_);
  auto his = client_.Post("/api/messages",
                          {{"conversation_id", g_},
                           {"content", "retried"},
                           {"client_id", "bob-with-alices-upload"},
                           {"attachments", Json::array({bobs})}},
                          bob_.token);
  ASSERT_EQ(his.status, 201) << his.body;
  ASSERT_EQ(his.json["attachments"].size(), 1u) << his.body;
  EXPECT_EQ(his.json["attachments"][0]["id"], bobs);
  EXPECT_FALSE(Free(upload_));
  EXPECT_FALSE(Free(bobs));
  // Attached, alice's upload is nobody's to attach again, not even hers.
  ExpectBareError(SendWith(bob_, g_, Json::array({upload_})), 400, "invalid_request");
  ExpectBareError(SendWith(alice_, p_, Json::array({upload_})), 400, "invalid_request");
  ExpectDownloads(bob_, upload_, kUploadBytes);
}

// ---------------------------------------------------------------------------------------------
// WebSocket
// ---------------------------------------------------------------------------------------------

TEST_F(AuthzWsTest, EveryConversationFrameRefusesEveryOutsiderWithForbiddenAndRelaysNothing) {
  Watched alice(server_.ws_port(), alice_);
  Watched bob(server_.ws_port(), bob_);
  std::vector<std::unique_ptr<Watched>> outsiders;
  for (const Account& who : Outsiders()) {
    outsiders.push_back(std::make_unique<Watched>(server_.ws_port(), who));
  }
  const auto before = WritableState(server_.dir());
  int n = 0;
  for (auto& w : outsiders) {
    for (const Target& t : Targets()) {
      const auto vars = Vars(w->who(), t.conversation, t.message);
      for (const char* tmpl : kConversationFrames) {
        Json frame = Json::parse(Fill(tmpl, vars));
        SCOPED_TRACE(w->who().username + " on " + t.what + ": " + frame.dump());

        const std::string ref = "r" + std::to_string(++n);
        frame["ref"] = ref;
        w->ws().Send(frame);
        Json ack = w->AwaitAck(ref);
        ASSERT_TRUE(ack.is_object()) << "no ack";
        EXPECT_EQ(ack["data"]["ok"], false) << ack.dump();
        EXPECT_EQ(ack["data"]["error"]["code"], "forbidden") << ack.dump();
        EXPECT_EQ(ack["data"].size(), 3u) << ack.dump();  // ref, ok, error: no result
        ExpectNothingAbout({ack}, {}, {});

        frame.erase("ref");
        w->ws().Send(frame);
        Json error = w->Await([](const Json& f) { return Type(f) == "error"; });
        ASSERT_TRUE(error.is_object()) << "no error frame";
        EXPECT_EQ(error["data"]["code"], "forbidden") << error.dump();
        ExpectNothingAbout({error}, {}, {});
      }
    }
  }
  EXPECT_EQ(WritableState(server_.dir()), before);

  // Nothing was relayed to the participants: no typing, message or read receipt from an
  // outsider. Their first events are the markers.
  const int64_t marker_g = Send(bob_, g_, "marker in G");
  const int64_t marker_p = Send(bob_, p_, "marker in P");
  for (Watched* w : {&alice, &bob}) {
    SCOPED_TRACE(w->who().username);
    for (int64_t marker : {marker_g, marker_p}) {
      Json f = NextEvent(*w);
      EXPECT_EQ(Type(f), "message") << f.dump();
      EXPECT_EQ(f["data"].value("id", int64_t{0}), marker) << f.dump();
    }
  }
  // And the outsiders got nothing of G or P meanwhile, the markers included.
  for (auto& w : outsiders) {
    SCOPED_TRACE(w->who().username);
    w->Barrier();
    ExpectNothingAbout(w->seen(), {g_, p_}, {alice_.id, bob_.id});
  }
  ExpectServerHealthy();
}

TEST_F(AuthzWsTest, EveryConversationFrameAnswersNotFoundForAConversationThatDoesNotExist) {
  const auto before = WritableState(server_.dir());
  for (const Account& who : {dave_, bob_}) {
    Watched w(server_.ws_port(), who);
    const auto vars = Vars(who, kUnknownId, g1_);
    int n = 0;
    for (const char* tmpl : kConversationFrames) {
      Json frame = Json::parse(Fill(tmpl, vars));
      SCOPED_TRACE(who.username + ": " + frame.dump());
      frame["ref"] = "r" + std::to_string(++n);
      w.ws().Send(frame);
      Json ack = w.AwaitAck(frame["ref"]);
      ASSERT_TRUE(ack.is_object()) << "no ack";
      EXPECT_EQ(ack["data"]["ok"], false) << ack.dump();
      EXPECT_EQ(ack["data"]["error"]["code"], "not_found") << ack.dump();
    }
  }
  EXPECT_EQ(WritableState(server_.dir()), before);
}

TEST_F(AuthzWsTest, ReadFrameWithAMessageOfAnotherConversationIsNotFoundAndMovesNoMarker) {
  Watched erin(server_.ws_port(), erin_);
  Watched frank(server_.ws_port(), frank_);
  const auto before = WritableState(server_.dir());
  int n = 0;
  for (int64_t message : {g3_, p1_}) {
    const std::string ref = "r" + std::to_string(++n);
    erin.ws().Send(
        {{"type", "read"}, {"ref", ref}, {"conversation_id", h_}, {"message_id", message}});
    Json ack = erin.AwaitAck(ref);
    ASSERT_TRUE(ack.is_object()) << "no ack";
    EXPECT_EQ(ack["data"]["error"]["code"], "not_found") << ack.dump();
  }
  EXPECT_EQ(WritableState(server_.dir()), before);
  // No read receipt reached frank: his first event is the marker.
  const int64_t marker = Send(erin_, h_, "marker");
  Json f = NextEvent(frank);
  EXPECT_EQ(f["data"].value("id", int64_t{0}), marker) << f.dump();
}

TEST_F(AuthzWsTest, MessageFrameNamingAnotherUsersUploadIsInvalidRequestAndAttachesNothing) {
  Watched alice(server_.ws_port(), alice_);
  Watched bob(server_.ws_port(), bob_);
  const std::string bobs = Upload(bob_, "bob's own bytes");
  const auto message = [](int64_t conversation, const Json& attachments,
                          const std::string& content = "") {
    return Json{{"type", "message"},
                {"conversation_id", conversation},
                {"content", content},
                {"attachments", attachments}};
  };
  std::vector<Json> frames = {
      message(g_, Json::array({upload_})),               // alice's alone
      message(g_, Json::array({upload_}), "with text"),  // with text
      message(g_, Json::array({bobs, upload_})),         // beside one of his own, either side
      message(g_, Json::array({upload_, bobs})),
      message(p_, Json::array({upload_}), "in P"),  // in the private conversation
  };
  frames.push_back(message(g_, Json::array({upload_}), "retried"));
  frames.back()["client_id"] = "bob-ws-with-alices-upload";
  const auto before = WritableState(server_.dir());
  int n = 0;
  for (Json frame : frames) {
    SCOPED_TRACE(frame.dump());
    const std::string ref = "r" + std::to_string(++n);
    frame["ref"] = ref;
    bob.ws().Send(frame);
    Json ack = bob.AwaitAck(ref);
    ASSERT_TRUE(ack.is_object()) << "no ack";
    EXPECT_EQ(ack["data"]["ok"], false) << ack.dump();
    EXPECT_EQ(ack["data"]["error"]["code"], "invalid_request") << ack.dump();
    EXPECT_EQ(ack["data"].size(), 3u) << ack.dump();  // ref, ok, error: no result
    ExpectNothingAbout({ack}, {}, {});

    frame.erase("ref");
    bob.ws().Send(frame);
    Json error = bob.Await([](const Json& f) { return Type(f) == "error"; });
    ASSERT_TRUE(error.is_object()) << "no error frame";
    EXPECT_EQ(error["data"]["code"], "invalid_request") << error.dump();
    ExpectNothingAbout({error}, {}, {});
  }
  EXPECT_EQ(WritableState(server_.dir()), before);
  EXPECT_TRUE(Free(upload_));
  EXPECT_TRUE(Free(bobs));

  // No message went out, to alice nor to bob: the first event of each is the marker.
  const int64_t marker = Send(bob_, g_, "marker");
  for (Watched* w : {&alice, &bob}) {
    SCOPED_TRACE(w->who().username);
    Json f = NextEvent(*w);
    EXPECT_EQ(Type(f), "message") << f.dump();
    EXPECT_EQ(f["data"].value("id", int64_t{0}), marker) << f.dump();
  }

  // The uploads are still free: their owners attach them over the WebSocket (bob with the
  // client_id he tried: a new message).
  Json mine = message(g_, Json::array({upload_}));
  mine["ref"] = "alice-attaches";
  alice.ws().Send(mine);
  Json ack = alice.AwaitAck("alice-attaches");
  ASSERT_TRUE(ack.is_object()) << "no ack";
  ASSERT_EQ(ack["data"]["ok"], true) << ack.dump();
  ASSERT_EQ(ack["data"]["result"]["attachments"].size(), 1u) << ack.dump();
  EXPECT_EQ(ack["data"]["result"]["attachments"][0]["id"], upload_);
  Json his = message(g_, Json::array({bobs}), "retried");
  his["client_id"] = "bob-ws-with-alices-upload";
  his["ref"] = "bob-attaches";
  bob.ws().Send(his);
  ack = bob.AwaitAck("bob-attaches");
  ASSERT_TRUE(ack.is_object()) << "no ack";
  ASSERT_EQ(ack["data"]["ok"], true) << ack.dump();
  EXPECT_GT(ack["data"]["result"].value("id", int64_t{0}), marker) << ack.dump();
  ASSERT_EQ(ack["data"]["result"]["attachments"].size(), 1u) << ack.dump();
  EXPECT_EQ(ack["data"]["result"]["attachments"][0]["id"], bobs);
  EXPECT_FALSE(Free(upload_));
  EXPECT_FALSE(Free(bobs));
}

TEST_F(AuthzWsTest, NoEventOfTheConversationsReachesAnOutsider) {
  // gina is removed while connected: she is told, and then gets nothing more.
  const Account gina = SignUp(server_, client_, "authz_gina");
  Expect2xx(
      client_.Post(ConversationPath(g_) + "/participants", {{"user_id", gina.id}}, alice_.token));
  Watched alice(server_.ws_port(), alice_);
  std::vector<std::unique_ptr<Watched>> outsiders;
  for (const Account& who : {carol_, dave_, erin_, gina}) {
    outsiders.push_back(std::make_unique<Watched>(server_.ws_port(), who));
  }
  Watched& gina_ws = *outsiders.back();
  Expect2xx(client_.Request("DELETE", ParticipantPath(g_, gina.id), "", alice_.token));
  Json removed = gina_ws.Await([](const Json& f) { return Type(f) == "conversation_removed"; });
  EXPECT_EQ(removed["data"]["conversation_id"], g_) << removed.dump();
  gina_ws.seen().clear();  // what came while she was a member was hers to see
  ASSERT_EQ(Type(NextEvent(alice)), "conversation");  // gina's removal

  // Every kind of event of G and P, each seen by a participant.
  auto expect_event = [](Watched& w, const std::string& type) {
    Json f = NextEvent(w);
    EXPECT_EQ(Type(f), type) << f.dump();
    return f;
  };
  Watched bob(server_.ws_port(), bob_);  // presence: bob comes online
  Json presence = alice.Await([&](const Json& f) {
    return Type(f) == "presence" && f["data"].value("user_id", int64_t{0}) == bob_.id;
  });
  EXPECT_TRUE(presence.is_object()) << "alice saw no presence of bob";
  const int64_t m1 = Send(alice_, g_, "secret g4");
  const int64_t m2 = Send(alice_, p_, "secret p2");
  EXPECT_EQ(expect_event(bob, "message")["data"]["id"], m1);
  EXPECT_EQ(expect_event(bob, "message")["data"]["id"], m2);
  Expect2xx(client_.Post("/api/messages/read", {{"conversation_id", g_}, {"message_id", m1}},
                         bob_.token));
  expect_event(alice, "message");
  expect_event(alice, "message");
  expect_event(alice, "read_receipt");
  bob.ws().Send({{"type", "typing_start"}, {"conversation_id", g_}});
  expect_event(alice, "typing_start");
  bob.ws().Send({{"type", "typing_stop"}, {"conversation_id", g_}});
  expect_event(alice, "typing_stop");
  Expect2xx(client_.Put(ConversationPath(g_), {{"name", "secret g3, renamed"}}, alice_.token));
  expect_event(alice, "conversation");
  expect_event(bob, "conversation");
  // A delivery receipt for m1 goes to alice once bob's delivery is announced (on a timer, so
  // it may already be among the frames the waits above passed over).
  auto receipt_in_g = [&](const Json& f) {
    return Type(f) == "delivery_receipt" && f["data"].value("conversation_id", int64_t{0}) == g_;
  };
  const bool delivered = std::any_of(alice.seen().begin(), alice.seen().end(), receipt_in_g) ||
                         alice.Await(receipt_in_g).is_object();
  EXPECT_TRUE(delivered) << "alice saw no delivery receipt";

  for (auto& w : outsiders) {
    SCOPED_TRACE(w->who().username);
    w->Barrier();
    ExpectNothingAbout(w->seen(), {g_, p_}, {alice_.id, bob_.id});
  }
}

// ---------------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------------

std::string Base64Url(std::string_view bytes) {
  std::string out(sodium_base64_ENCODED_LEN(bytes.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING),
                  '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(bytes.data()),
                    bytes.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  out.resize(out.find('\0'));
  return out;
}

enum class Signature { kHs256, kHs512, kNone };

// header.payload.signature, the signature made with `secret` over the first two parts.
std::string Jwt(const std::string& header, const std::string& payload,
                Signature sig = Signature::kHs256, const std::string& secret = kSecret) {
  const std::string input = Base64Url(header) + "." + Base64Url(payload);
  const auto* key = reinterpret_cast<const unsigned char*>(secret.data());
  const auto* in = reinterpret_cast<const unsigned char*>(input.data());
  std::string mac;
  if (sig == Signature::kHs256) {
    unsigned char out[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key, secret.size());
    crypto_auth_hmacsha256_update(&st, in, input.size());
    crypto_auth_hmacsha256_final(&st, out);
    mac.assign(reinterpret_cast<char*>(out), sizeof out);
  } else if (sig == Signature::kHs512) {
    unsigned char out[crypto_auth_hmacsha512_BYTES];
    crypto_auth_hmacsha512_state st;
    crypto_auth_hmacsha512_init(&st, key, secret.size());
    crypto_auth_hmacsha512_update(&st, in, input.size());
    crypto_auth_hmacsha512_final(&st, out);
    mac.assign(reinterpret_cast<char*>(out), sizeof out);
  }
  return input + "." + Base64Url(mac);
}

const std::string kHs256Header = R"({"alg":"HS256","typ":"JWT"})";

int64_t NowSec() { return static_cast<int64_t>(std::time(nullptr)); }

// The claims the server issues, for `user_id`; `extra` adds or overrides (null removes).
std::string Claims(int64_t user_id, const Json& extra = Json::object()) {
  Json c = {{"sub", std::to_string(user_id)},
            {"iat", NowSec()},
            {"exp", NowSec() + 3600},
            {"jti", "0123456789abcdef0123456789abcdef"},
            {"ver", 0}};
  for (const auto& [k, v] : extra.items()) {
    if (v.is_null()) {
      c.erase(k);
    } else {
      c[k] = v;
    }
  }
  return c.dump();
}

// Whether `s` can travel in an HTTP header value as it is.
bool HeaderSafe(std::string_view s) {
  for (unsigned char ch : s) {
    if (ch < 0x21 || ch == 0x7f) return false;
  }
  return true;
}

class AuthzTokenTest : public ::testing::Test {
 protected:
  AuthzTokenTest() : server_(Options()), client_(server_.port()) {
    if (sodium_init() < 0) throw std::runtime_error("sodium_init failed");
    user_ = SignUp(server_, client_, "authz_tess");
  }

  // `token` is refused on a REST route and on the WebSocket upgrade (in the query, and in the
  // Authorization header when it fits in one), with the bare 401 error object.
  void ExpectRefused(const std::string& token) {
    if (HeaderSafe(token)) {
      auto me = client_.Get("/api/me", token);
      ExpectBareError(me, 401, "unauthorized", {user_.username, user_.email});
      WsClient header(server_.ws_port(), token, {.token_in_header = true});
      EXPECT_FALSE(header.connected());
      ExpectBareError(header.refusal(), 401, "unauthorized", {user_.username});
    }
    WsClient query(server_.ws_port(), "", {.target = "/api/ws?token=" + PercentEncode(token)});
    EXPECT_FALSE(query.connected());
    ExpectBareError(query.refusal(), 401, "unauthorized", {user_.username});
  }
  void ExpectAccepted(const std::string& token) {
    auto me = client_.Get("/api/me", token);
    EXPECT_EQ(me.status, 200) << me.body;
    EXPECT_EQ(me.json["id"], user_.id);
    WsClient ws(server_.ws_port(), token);
    EXPECT_TRUE(ws.connected()) << ws.refusal().body;
  }

  void ExpectServerHealthy() {
    EXPECT_EQ(client_.Get("/healthz").status, 200);
    ExpectAccepted(user_.token);
    for (const char* level : {"Z error ", "Z critical "}) {
      EXPECT_EQ(server_.Log().find(level), std::string::npos) << server_.Log();
    }
  }

  TestServer server_;
  HttpClient client_;
  Account user_;
};

TEST_F(AuthzTokenTest, ACraftedTokenWithTheRightClaimsIsAccepted) {
  // The control for every refusal below: the crafting is right, so each refused token is
  // refused for the one thing it gets wrong.
  ExpectAccepted(Jwt(kHs256Header, Claims(user_.id)));
  ExpectAccepted(Jwt(R"({"alg":"HS256"})", Claims(user_.id)));
  // The largest exp is far in the future, not an overflow into the past.
  ExpectAccepted(Jwt(kHs256Header, Claims(user_.id, {{"exp", INT64_MAX}})));
}

TEST_F(AuthzTokenTest, BadTokensAre401OnRestAndOnTheWebSocketUpgrade) {
  const std::string good = Jwt(kHs256Header, Claims(user_.id));
  const std::string header_payload = good.substr(0, good.rfind('.'));
  const std::string signature = good.substr(good.rfind('.') + 1);
  std::string flipped = good;
  flipped.back() = flipped.back() == 'A' ? 'B' : 'A';
  // The payload of another user under this token's signature.
  const std::string swapped =
      Base64Url(kHs256Header) + "." + Base64Url(Claims(user_.id + 1)) + "." + signature;
  std::mt19937 rng(42);
  std::string random_bytes(200, '\0'), random_printable(200, '\0');
  for (char& c : random_bytes) c = static_cast<char>(rng() % 256);
  for (char& c : random_printable) c = static_cast<char>(0x21 + rng() % 94);

  struct Case {
    std::string name;
    std::string token;
  };
  const std::vector<Case> cases = {
      // Algorithms: only HS256 is accepted.
      {"alg none, no signature",
       Jwt(R"({"alg":"none","typ":"JWT"})", Claims(user_.id), Signature::kNone)},
      {"alg none with an HS256 signature", Jwt(R"({"alg":"none"})", Claims(user_.id))},
      {"alg None", Jwt(R"({"alg":"None"})", Claims(user_.id), Signature::kNone)},
      {"alg NONE", Jwt(R"({"alg":"NONE"})", Claims(user_.id), Signature::kNone)},
      {"HS512 with the right secret",
       Jwt(R"({"alg":"HS512","typ":"JWT"})", Claims(user_.id), Signature::kHs512)},
      {"HS512 header, HS256 signature", Jwt(R"({"alg":"HS512"})", Claims(user_.id))},
      {"RS256 header, HS256 signature with the secret",
       Jwt(R"({"alg":"RS256"})", Claims(user_.id))},
      {"ES256 header, HS256 signature with the secret",
       Jwt(R"({"alg":"ES256"})", Claims(user_.id))},
      {"no alg", Jwt(R"({"typ":"JWT"})", Claims(user_.id))},
      // Signatures.
      {"wrong secret", Jwt(kHs256Header, Claims(user_.id), Signature::kHs256, "not the secret")},
      {"one signature character changed", flipped},
      {"empty signature", header_payload + "."},
      {"no signature part", header_payload},
      {"another user's payload under this signature", swapped},
      // Claims, correctly signed.
      {"expired", Jwt(kHs256Header, Claims(user_.id, {{"exp", NowSec() - 60}}))},
      {"expired long ago", Jwt(kHs256Header, Claims(user_.id, {{"iat", 1}, {"exp", 2}}))},
      {"no exp", Jwt(kHs256Header, Claims(user_.id, {{"exp", nullptr}}))},
      {"exp as a string", Jwt(kHs256Header, Claims(user_.id, {{"exp", "99999999999"}}))},
      {"no ver", Jwt(kHs256Header, Claims(user_.id, {{"ver", nullptr}}))},
      {"a future ver", Jwt(kHs256Header, Claims(user_.id, {{"ver", 1}}))},
      {"ver as a string", Jwt(kHs256Header, Claims(user_.id, {{"ver", "0"}}))},
      {"ver as a fraction", Jwt(kHs256Header, Claims(user_.id, {{"ver", 0.5}}))},
      {"ver as false", Jwt(kHs256Header, Claims(user_.id, {{"ver", false}}))},
      {"ver null", Jwt(kHs256Header, R"({"sub":")" + std::to_string(user_.id) + R"(","exp":)" +
                                         std::to_string(NowSec() + 60) + R"(,"ver":null})")},
      {"no sub", Jwt(kHs256Header, Claims(user_.id, {{"sub", nullptr}}))},
      {"sub as a number", Jwt(kHs256Header, Claims(user_.id, {{"sub", user_.id}}))},
      {"sub not a number", Jwt(kHs256Header, Claims(user_.id, {{"sub", "tess"}}))},
      {"sub empty", Jwt(kHs256Header, Claims(user_.id, {{"sub", ""}}))},
      {"sub with a suffix",
       Jwt(kHs256Header, Claims(user_.id, {{"sub", std::to_string(user_.id) + "x"}}))},
      {"sub with a sign",
       Jwt(kHs256Header, Claims(user_.id, {{"sub", "+" + std::to_string(user_.id)}}))},
      {"sub with a space",
       Jwt(kHs256Header, Claims(user_.id, {{"sub", " " + std::to_string(user_.id)}}))},
      {"sub 0", Jwt(kHs256Header, Claims(user_.id, {{"sub", "0"}}))},
      {"sub negative", Jwt(kHs256Header, Claims(user_.id, {{"sub", "-1"}}))},
      {"sub past int64", Jwt(kHs256Header, Claims(user_.id, {{"sub", "99999999999999999999999"}}))},
      {"sub a huge JSON number", Jwt(kHs256Header, Claims(user_.id, {{"sub", 1e300}}))},
      {"sub of no user", Jwt(kHs256Header, Claims(kUnknownId))},
      {"sub an array", Jwt(kHs256Header, Claims(user_.id, {{"sub", {user_.id}}}))},
      // Not a JWT.
      {"one word", "garbage"},
      {"two parts", "abc.def"},
      {"four parts", good + ".abc"},
      {"only dots", ".."},
      {"bad base64", "!!!!.@@@@.####"},
      {"header not JSON",
       Base64Url("not json") + "." + Base64Url(Claims(user_.id)) + "." + signature},
      {"payload not JSON, signed", Jwt(kHs256Header, "not json")},
      {"payload a JSON array, signed", Jwt(kHs256Header, "[1,2,3]")},
      {"payload a JSON string, signed", Jwt(kHs256Header, R"("sub")")},
      {"header a JSON array, signed", Jwt("[]", Claims(user_.id))},
      {"empty header and payload, signed", Jwt("", "")},
      {"random printable bytes", random_printable},
      {"random bytes", random_bytes},
      {"a NUL inside a good token", good.substr(0, 10) + std::string(1, '\0') + good.substr(10)},
      {"over-long: 5 KiB of letters", std::string(5 * 1024, 'a')},
      {"over-long: a signed token of 8 KiB",
       Jwt(kHs256Header, Claims(user_.id, {{"jti", std::string(6 * 1024, 'j')}}))},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name + ": " + c.token.substr(0, 200));
    ExpectRefused(c.token);
  }
  ExpectServerHealthy();
}

TEST_F(AuthzTokenTest, EveryProtectedRouteRefusesBadTokens) {
  // Every route registered with auth (src/http/handlers/*.cc), with ids that exist.
  const Account other = SignUp(server_, client_, "authz_otto");
  auto g = client_.Post("/api/conversations/group", {{"name", kTitle}, {"member_ids", {other.id}}},
                        user_.token);
  ASSERT_EQ(g.status, 201) << g.body;
  const int64_t conv = g.json["id"];
  auto m = client_.Post("/api/messages", {{"conversation_id", conv}, {"content", "secret g1"}},
                        user_.token);
  ASSERT_EQ(m.status, 201) << m.body;
  const std::string upload_bytes = "secret upload bytes";
  auto u = client_.Request("POST", "/api/uploads?filename=plan.pdf", upload_bytes, user_.token,
                           {{"Content-Type", "application/pdf"}});
  ASSERT_EQ(u.status, 201) << u.body;
  const std::string upload = u.json["id"];
  const std::map<std::string, std::string> vars = {
      {"conv", std::to_string(conv)},
      {"msg", std::to_string(m.json["id"].get<int64_t>())},
      {"user", std::to_string(other.id)},
      {"upload", upload}};
  const std::vector<std::string> secrets = {kTitle, "secret g1", user_.email, upload_bytes};
  const std::vector<RestCase> routes = {
      {"GET", "/api/me", ""},
      {"PUT", "/api/me", R"({"username": "hijacked"})"},
      {"GET", "/api/users/{user}", ""},
      {"GET", "/api/users?search=authz", ""},
      {"GET", "/api/users/{user}/last-seen", ""},
      {"POST", "/api/conversations/private", R"({"user_id": {user}})"},
      {"POST", "/api/conversations/group", R"({"name": "x", "member_ids": [{user}]})"},
      {"GET", "/api/conversations", ""},
      {"GET", "/api/conversations/{conv}", ""},
      {"PUT", "/api/conversations/{conv}", R"({"name": "x"})"},
      {"POST", "/api/conversations/{conv}/participants", R"({"user_id": {user}})"},
      {"PUT", "/api/conversations/{conv}/participants/{user}", R"({"role": "admin"})"},
      {"DELETE", "/api/conversations/{conv}/participants/{user}", ""},
      {"POST", "/api/messages", R"({"conversation_id": {conv}, "content": "x"})"},
      {"GET", "/api/conversations/{conv}/messages", ""},
      {"POST", "/api/messages/read", R"({"conversation_id": {conv}, "message_id": {msg}})"},
      {"GET", "/api/sync", ""},
      {"PATCH", "/api/messages/{msg}", R"({"content": "x"})"},
      {"DELETE", "/api/messages/{msg}", ""},
      {"PUT", "/api/messages/{msg}/reactions/%F0%9F%91%8D", ""},
      {"DELETE", "/api/messages/{msg}/reactions/%F0%9F%91%8D", ""},
      {"GET", "/api/search?q=secret", ""},
      {"POST", "/api/uploads?filename=x.txt", "uploaded by nobody"},
      {"GET", "/api/uploads/{upload}", ""},
  };
  // The one route that also takes the token from the query (API.md: downloads, as for the
  // WebSocket).
  const auto takes_query_token = [](const RestCase& r) {
    return std::string(r.path).starts_with("/api/uploads/");
  };
  const std::vector<std::pair<std::string, std::map<std::string, std::string>>> bad = {
      {"no Authorization header", {}},
      {"Bearer and nothing", {{"Authorization", "Bearer"}}},
      {"Bearer and a space", {{"Authorization", "Bearer "}}},
      {"another scheme", {{"Authorization", "Basic " + Base64Url("authz_tess:correct horse")}}},
      {"a good token without the scheme", {{"Authorization", user_.token}}},
      {"alg none",
       {{"Authorization",
         "Bearer " + Jwt(R"({"alg":"none"})", Claims(user_.id), Signature::kNone)}}},
      {"expired",
       {{"Authorization",
         "Bearer " + Jwt(kHs256Header, Claims(user_.id, {{"exp", NowSec() - 1}}))}}},
  };
  const auto before = WritableState(server_.dir());
  for (const auto& [name, headers] : bad) {
    for (const RestCase& r : routes) {
      const std::string path = Fill(r.path, vars);
      SCOPED_TRACE(name + ": " + r.method + " " + path);
      ExpectBareError(client_.Request(r.method, path, Fill(r.body, vars), "", headers), 401,
                      "unauthorized", secrets);
    }
  }
  // A good token in the query counts only for the WebSocket upgrade and downloads.
  for (const RestCase& r : routes) {
    if (takes_query_token(r)) continue;
    std::string path = Fill(r.path, vars);
    path += (path.find('?') == std::string::npos ? "?token=" : "&token=") + user_.token;
    SCOPED_TRACE(std::string("token in the query: ") + r.method + " " + path);
    ExpectBareError(client_.Request(r.method, path, Fill(r.body, vars)), 401, "unauthorized",
                    secrets);
  }
  // A download with a bad token in the query (and none in the header) is 401 as well.
  const std::string download = "/api/uploads/" + upload;
  const std::vector<std::pair<std::string, std::string>> bad_queries = {
      {"an empty token", "?token="},
      {"a token parameter without a value", "?token"},
      {"a bad percent-encoding", "?token=%zz%"},
      {"garbage", "?token=garbage"},
      {"the scheme too", "?token=" + PercentEncode("Bearer " + user_.token)},
      {"alg none",
       "?token=" + PercentEncode(Jwt(R"({"alg":"none"})", Claims(user_.id), Signature::kNone))},
      {"expired",
       "?token=" + PercentEncode(Jwt(kHs256Header, Claims(user_.id, {{"exp", NowSec() - 1}})))},
      {"wrong secret", "?token=" + PercentEncode(Jwt(kHs256Header, Claims(user_.id),
                                                     Signature::kHs256, "not the secret"))},
      {"one signature character changed",
       "?token=" + user_.token.substr(0, user_.token.size() - 1) +
           (user_.token.back() == 'A' ? "B" : "A")},
      {"sub of no user", "?token=" + PercentEncode(Jwt(kHs256Header, Claims(kUnknownId)))},
      {"under another name", "?access_token=" + user_.token},
  };
  for (const auto& [name, query] : bad_queries) {
    SCOPED_TRACE("download, token in the query: " + name);
    for (const auto& headers : std::vector<std::map<std::string, std::string>>{
             {}, {{"Range", "bytes=0-3"}}, {{"If-None-Match", "\"" + upload + "\""}}}) {
      ExpectBareError(client_.Request("GET", download + query, "", "", headers), 401,
                      "unauthorized", secrets);
    }
  }
  // The control: the good token in the query downloads.
  auto good = client_.Get(download + "?token=" + PercentEncode(user_.token));
  EXPECT_EQ(good.status, 200) << good.body;
  EXPECT_EQ(good.body, upload_bytes);
  EXPECT_EQ(WritableState(server_.dir()), before);
  ExpectServerHealthy();
}

TEST_F(AuthzTokenTest, WebSocketUpgradeWithoutAUsableTokenIs401) {
  const std::vector<std::pair<std::string, WsOptions>> cases = {
      {"no token at all", {.target = "/api/ws"}},
      {"an empty token parameter", {.target = "/api/ws?token="}},
      {"a token parameter without a value", {.target = "/api/ws?token"}},
      {"a bad percent-encoding", {.target = "/api/ws?token=%zz%"}},
      // The query wins over the header: an empty one is not rescued by a good header.
      {"an empty query token beside a good header",
       {.token_in_header = true, .target = "/api/ws?token="}},
  };
  for (const auto& [name, options] : cases) {
    SCOPED_TRACE(name);
    WsClient ws(server_.ws_port(), user_.token, options);
    EXPECT_FALSE(ws.connected());
    ExpectBareError(ws.refusal(), 401, "unauthorized", {user_.username});
  }
  ExpectServerHealthy();
}

TEST_F(AuthzTokenTest, TokenIssuedBeforeAPasswordResetIs401) {
  const std::string crafted = Jwt(kHs256Header, Claims(user_.id));  // ver 0, like user_.token
  ExpectAccepted(crafted);
  WsClient open_before(server_.ws_port(), user_.token);  // authenticated once, at the upgrade
  ASSERT_TRUE(open_before.connected());
  ASSERT_EQ(client_.Post("/api/forgot/initiate", {{"email", user_.email}}).status, 202);
  // The reset mail is sent in the background, after the 202: wait for it, or LatestCode returns
  // the older signup code.
  ASSERT_TRUE(
      server_.WaitForLog("otp: to=" + user_.email + " subject=\"Your MmChat password reset"));
  const auto code = server_.LatestCode(user_.email);
  ASSERT_TRUE(code);
  auto reset = client_.Post(
      "/api/forgot/reset",
      {{"email", user_.email}, {"otp", *code}, {"new_password", "a brand new password"}});
  ASSERT_EQ(reset.status, 200) << reset.body;

  ExpectRefused(user_.token);
  ExpectRefused(crafted);
  // The connection the old token opened is ended too: it would otherwise keep sending.
  EXPECT_EQ(open_before.WaitClosed(), 1008);
  // A fresh login works, with the next version.
  auto login = client_.Post("/api/login",
                            {{"username", user_.username}, {"password", "a brand new password"}});
  ASSERT_EQ(login.status, 200) << login.body;
  user_.token = login.json["token"];
  ExpectAccepted(user_.token);
  ExpectAccepted(Jwt(kHs256Header, Claims(user_.id, {{"ver", 1}})));
  ExpectServerHealthy();
}

TEST_F(AuthzTokenTest, TokenOfADeletedUserIs401) {
  const Account zoe = SignUp(server_, client_, "authz_zoe");
  ASSERT_EQ(client_.Get("/api/me", zoe.token).status, 200);
  ASSERT_EQ(
      QueryDb(server_.dir(), "SELECT count(*) FROM users WHERE id = " + std::to_string(zoe.id)),
      std::vector<std::string>{"1"});
  QueryDb(server_.dir(), "DELETE FROM users WHERE id = " + std::to_string(zoe.id));
  ASSERT_EQ(
      QueryDb(server_.dir(), "SELECT count(*) FROM users WHERE id = " + std::to_string(zoe.id)),
      std::vector<std::string>{"0"});

  // A token check trusts a user's token version for up to 5 s (docs/API.md, decision 3): the
  // row deleted behind the server's back is noticed within that.
  EXPECT_TRUE(Eventually([&] { return client_.Get("/api/conversations", zoe.token).status == 401; },
                         std::chrono::seconds(15)));
  ExpectBareError(client_.Get("/api/me", zoe.token), 401, "unauthorized", {zoe.email});
  ExpectBareError(client_.Get("/api/conversations", zoe.token), 401, "unauthorized");
  WsClient query(server_.ws_port(), zoe.token);
  EXPECT_FALSE(query.connected());
  ExpectBareError(query.refusal(), 401, "unauthorized");
  WsClient header(server_.ws_port(), zoe.token, {.token_in_header = true});
  EXPECT_FALSE(header.connected());
  ExpectBareError(header.refusal(), 401, "unauthorized");
  ExpectServerHealthy();
}

TEST_F(AuthzTokenTest, TokenOf64KiBIsRefusedAndTheServerCarriesOn) {
  // docs/API.md: request headers over 16 KiB are 431 (with the invalid_request error object);
  // the token is never looked at. (Beast's client cannot put 64 KiB in one header field: 63.)
  const std::string huge_header(63 * 1024, 'a');
  ExpectBareError(client_.Get("/api/me", huge_header), 431, "invalid_request");
  WsClient header(server_.ws_port(), huge_header, {.token_in_header = true});
  EXPECT_FALSE(header.connected());
  ExpectBareError(header.refusal(), 431, "invalid_request");
  const std::string huge(64 * 1024, 'a');
  WsClient query(server_.ws_port(), huge);
  EXPECT_FALSE(query.connected());
  ExpectBareError(query.refusal(), 431, "invalid_request");
  ExpectServerHealthy();
}

}  // namespace
}  // namespace mmchat::test
