// Hostile content (issue 6, item 7): message content (REST and WebSocket), usernames (signup and
// profile update) and group names (create and rename) carrying SQL metacharacters, NUL, invalid
// UTF-8, overlong forms, 4-byte emoji, bidi overrides, zero-width and control characters and
// whitespace up to and past every size limit are either stored and returned byte-exact or
// refused with API.md's 400 (413 past the body limit); never a 500. Afterwards the server still
// answers and its database, SQLite or PostgreSQL, passes the store's integrity check
// (StoreIntegrityCheck).
//
// The log half: hostile paths, headers, usernames, emails, JSON and WebSocket frames never put a
// raw control byte, invalid UTF-8 or a line of their own into the server's log (the harness
// sends the server's stdout and stderr to server.log).
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "harness.h"
#include "ws_client.h"

namespace mmchat::test {
namespace {

using namespace std::string_literals;

// What API.md prescribes for a payload in a field.
enum class Outcome {
  kStored,   // 2xx, and every read returns the same bytes
  kInvalid,  // 400 invalid_request
  kTooLarge  // 413 payload_too_large: the request body is over 64 KiB
};

struct Payload {
  std::string name;
  std::string json;     // the bytes put between the quotes of a JSON string in the request
  std::string decoded;  // the string those bytes stand for, when they are valid JSON
  Outcome content;      // message content: 1 to MAX_MESSAGE_LEN (4000) code points
  Outcome username;     // username: 3 to 32 of A-Z a-z 0-9 _ . -
  Outcome group;        // group name: 1 to 100 code points
};

std::string Repeat(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

// The table. Rules from API.md: text fields are UTF-8 and lengths count code points; invalid
// JSON or invalid UTF-8 is 400 invalid_request; a body over 65,536 bytes is 413. API.md trims
// nothing and forbids no code point in content or names, so any valid string of the right
// length is kept as it is, except U+0000, which no store keeps (docs/API.md, decision 10).
std::vector<Payload> Payloads() {
  constexpr auto S = Outcome::kStored;
  constexpr auto I = Outcome::kInvalid;
  constexpr auto T = Outcome::kTooLarge;
  // Valid JSON as it stands: the request carries exactly the stored bytes.
  auto same = [](std::string name, const std::string& s, Outcome c, Outcome u, Outcome g) {
    return Payload{std::move(name), s, s, c, u, g};
  };
  // Not valid JSON, or not valid UTF-8: refused in every field.
  auto bad = [](std::string name, const std::string& json) {
    return Payload{std::move(name), json, "", I, I, I};
  };
  const std::string nul(1, '\0');
  const std::string del(1, '\x7F');
  const std::string rlo = "\xE2\x80\xAE";        // U+202E RIGHT-TO-LEFT OVERRIDE
  const std::string zwsp = "\xE2\x80\x8B";       // U+200B ZERO WIDTH SPACE
  const std::string zwnj = "\xE2\x80\x8C";       // U+200C ZERO WIDTH NON-JOINER
  const std::string zwj = "\xE2\x80\x8D";        // U+200D ZERO WIDTH JOINER
  const std::string wj = "\xE2\x81\xA0";         // U+2060 WORD JOINER
  const std::string bom = "\xEF\xBB\xBF";        // U+FEFF ZERO WIDTH NO-BREAK SPACE
  const std::string emoji = "\xF0\x9F\x98\x80";  // U+1F600: 1 code point, 4 bytes
  // man ZWJ woman ZWJ girl ZWJ boy: one glyph, 7 code points, 25 bytes.
  const std::string family = "\xF0\x9F\x91\xA8" + zwj + "\xF0\x9F\x91\xA9" + zwj +
                             "\xF0\x9F\x91\xA7" + zwj + "\xF0\x9F\x91\xA6";
  return {
      // SQL and LIKE metacharacters: bound as parameters, so plain text. Not in the username
      // charset, except for the ones that are: those make legal usernames.
      same("sql_drop_table", "'; DROP TABLE messages; --", S, I, S),
      {"sql_or_true", R"(\" OR 1=1 --)", R"(" OR 1=1 --)", S, I, S},
      {"like_wildcards_backslash", R"(%_\\)", R"(%_\)", S, I, S},
      same("sql_comment_legal_username", "--_.", S, S, S),
      same("like_wildcard_legal_username", "___", S, S, S),
      same("username_at_32", Repeat("_", 32), S, S, S),
      same("username_over_32", Repeat("_", 33), S, I, S),
      // NUL as the JSON escape is valid JSON, but no store keeps it (PostgreSQL's text cannot:
      // docs/API.md, decision 10); raw, it is invalid JSON.
      {"nul_escaped", R"(a\u0000b)", "a" + nul + "b", I, I, I},
      {"nul_only", R"(\u0000)", nul, I, I, I},
      bad("nul_raw", "a" + nul + "b"),
      // Invalid UTF-8 (API.md: 400 invalid_request; over WebSocket the text frame breaks the
      // protocol: 1007).
      bad("lone_ff", "\xFF"),
      bad("lone_continuation", "a\x80z"),
      bad("truncated_3_byte", "ab\xE2\x82"),
      bad("truncated_4_byte_at_end", "\xF0\x9F\x98"),
      bad("cesu_lone_surrogate", "\xED\xA0\x80"),
      bad("cesu_surrogate_pair", "\xED\xA0\xBD\xED\xB8\x80"),
      bad("overlong_slash_2_bytes", "\xC0\xAF"),
      bad("overlong_slash_3_bytes", "\xE0\x80\xAF"),
      bad("overlong_nul", "\xC0\x80"),
      bad("above_u10ffff", "\xF4\x90\x80\x80"),
      // JSON escapes that name no character.
      bad("escaped_lone_high_surrogate", R"(\ud800)"),
      bad("escaped_lone_low_surrogate", R"(x\udc00)"),
      bad("escaped_reversed_pair", R"(\ude00\ud83d)"),
      // 4-byte characters and other Unicode that is valid but tricky to display.
      same("emoji_raw", emoji, S, I, S),
      {"emoji_escaped_pair", R"(\ud83d\ude00)", emoji, S, I, S},
      same("family_zwj_sequence", family, S, I, S),
      same("rtl_override", "abc" + rlo + "fed", S, I, S),
      same("zero_width", "a" + zwsp + "b" + zwnj + "c" + zwj + "d" + wj + "e" + bom, S, I, S),
      same("line_separators", "\xE2\x80\xA8\xE2\x80\xA9", S, I, S),
      same("noncharacters", "\xEF\xBF\xBE\xEF\xBF\xBF", S, I, S),
      // Control characters: JSON requires C0 controls escaped; escaped they are content.
      {"ansi_escaped", R"(\u001b[31mred\u001b[0m)", "\x1B[31mred\x1B[0m", S, I, S},
      bad("ansi_raw", "\x1B[31mred"),
      {"crlf_escaped", R"(one\r\ntwo\nthree\rfour)", "one\r\ntwo\nthree\rfour", S, I, S},
      bad("crlf_raw", "one\r\ntwo"),
      same("del_raw", "a" + del + "b", S, I, S),  // DEL needs no escape in JSON
      {"json_breaker", R"(\"}],\"x\":{\")", R"("}],"x":{")", S, I, S},
      same("html", "<script>alert(1)</script>", S, I, S),
      // Whitespace counts and is not trimmed; lengths at and past each limit.
      {"whitespace_only", R"( \t\n )", " \t\n ", S, I, S},
      same("long_line_100", Repeat("x", 100), S, I, S),
      same("long_line_101", Repeat("x", 101), S, I, I),
      {"whitespace_4000", Repeat(R"( \t\r\n)", 1000), Repeat(" \t\r\n", 1000), S, I, I},
      {"whitespace_4001", Repeat(R"( \t\r\n)", 1000) + " ", Repeat(" \t\r\n", 1000) + " ", I, I, I},
      same("whitespace_60000", std::string(60'000, ' '), I, I, I),  // body under 64 KiB
      same("whitespace_64kib", std::string(65'536, ' '), T, T, T),  // body over 64 KiB
  };
}

// `s` with everything but printable ASCII as \xNN, cut at `max` bytes: for failure messages.
std::string Shown(std::string_view s, size_t max = 160) {
  std::string out;
  static constexpr char kHex[] = "0123456789abcdef";
  for (size_t i = 0; i < s.size() && i < max; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7F && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xF];
    }
  }
  if (s.size() > max) out += "...(" + std::to_string(s.size()) + " bytes)";
  return out;
}

// The string in `j`, or a marker that cannot equal any payload.
std::string Str(const Json& j) {
  return j.is_string() ? j.get<std::string>() : "<not a string: " + j.dump() + ">";
}

// Whether `s` is valid UTF-8, by nlohmann's strict serializer (not the server's validator).
bool IsUtf8(const std::string& s) {
  try {
    (void)Json(s).dump();
    return true;
  } catch (const Json::type_error&) {
    return false;
  }
}

void ExpectRefused(const HttpResult& r, Outcome outcome) {
  ASSERT_NE(outcome, Outcome::kStored);
  if (outcome == Outcome::kTooLarge) {
    ExpectError(r, 413, "payload_too_large");
  } else {
    ExpectError(r, 400, "invalid_request");
  }
}

// The first column of every row of `sql` on the server's database (either store), as bytes.
std::vector<std::string> DbColumn(const TestServer& server, const std::string& sql) {
  std::vector<std::string> out;
  for (const auto& row : QueryStore(server.dir(), sql)) out.push_back(row.at(0));
  return out;
}

// Builds a JSON object from raw members, e.g. Body({R"("a":1)", R"("b":")" + x + "\""}).
std::string Body(const std::vector<std::string>& members) {
  std::string out = "{";
  for (size_t i = 0; i < members.size(); ++i) out += (i ? "," : "") + members[i];
  return out + "}";
}
std::string Member(const std::string& key, const Payload& p) {
  return "\"" + key + "\":\"" + p.json + "\"";
}

ServerOptions HostileOptions() {
  ServerOptions o;
  // Many sends and signups from one address in a few seconds: no abuse limits in the way.
  o.env = {{"MSG_RATE_PER_SEC", "0"}, {"AUTH_RATE_PER_MIN", "0"}, {"WS_MAX_CONNS_PER_USER", "0"}};
  return o;
}

class HostileFixture : public ::testing::Test {
 protected:
  HostileFixture() : server_(HostileOptions()), client_(server_.port()) {}

  int64_t Group(const Account& creator, const std::vector<int64_t>& members) {
    auto r = client_.Post("/api/conversations/group",
                          {{"name", "hostile"}, {"member_ids", members}}, creator.token);
    EXPECT_EQ(r.status, 201) << r.body;
    return r.json.value("id", int64_t{0});
  }

  // After everything: the server answers, stops cleanly, and the database is sound.
  void ExpectServerSound() {
    EXPECT_EQ(client_.Get("/healthz").status, 200);
    EXPECT_EQ(server_.Stop(SIGTERM), 0);
    EXPECT_EQ(StoreIntegrityCheck(server_.dir()), "ok");
  }

  TestServer server_;
  HttpClient client_;
};

// ---------------------------------------------------------------------------------------------
// Message content
// ---------------------------------------------------------------------------------------------

class HostileMessagesTest : public HostileFixture {
 protected:
  void SetUp() override {
    alice_ = SignUp(server_, client_, "alice");
    bob_ = SignUp(server_, client_, "bob");
    conv_ = Group(alice_, {bob_.id});
    ASSERT_GT(conv_, 0);
  }

  // The newest message of the conversation as a participant lists it.
  Json Newest() {
    auto r = client_.Get("/api/conversations/" + std::to_string(conv_) + "/messages?limit=1",
                         bob_.token);
    EXPECT_EQ(r.status, 200) << r.body;
    if (r.status != 200 || r.json["messages"].empty()) return nullptr;
    return r.json["messages"][0];
  }

  // Every message's content, by history and straight from the database, equals `stored`.
  void ExpectHistoryIs(const std::vector<std::string>& stored) {
    auto r = client_.Get("/api/conversations/" + std::to_string(conv_) + "/messages?limit=100",
                         alice_.token);
    ASSERT_EQ(r.status, 200) << r.body;
    ASSERT_FALSE(r.json["has_more"].get<bool>());
    std::vector<std::string> listed;
    for (const auto& m : r.json["messages"]) listed.push_back(Str(m["content"]));
    EXPECT_EQ(listed, stored);
    ExpectServerSound();
    EXPECT_EQ(DbColumn(server_, "SELECT content FROM messages ORDER BY id"), stored);
    if (OnPostgres()) {
      // Text of a UTF-8 database: PostgreSQL itself refuses anything but valid UTF-8 in it.
      EXPECT_EQ(DbColumn(server_,
                         "SELECT data_type FROM information_schema.columns "
                         "WHERE table_name = 'messages' AND column_name = 'content'"),
                std::vector<std::string>{"text"});
      EXPECT_EQ(DbColumn(server_,
                         "SELECT pg_encoding_to_char(encoding) FROM pg_database "
                         "WHERE datname = current_database()"),
                std::vector<std::string>{"UTF8"});
    } else {
      // SQLite keeps any value in any column: every content is stored as text, none as a blob.
      EXPECT_EQ(DbColumn(server_, "SELECT count(*) FROM messages WHERE typeof(content) != 'text'"),
                std::vector<std::string>{"0"});
    }
  }

  Account alice_, bob_;
  int64_t conv_ = 0;
};

TEST_F(HostileMessagesTest, RestContentIsStoredByteExactOrRefused) {
  WsClient bob_ws(server_.ws_port(), bob_.token);
  ASSERT_TRUE(bob_ws.connected());
  std::vector<std::string> stored;
  for (const Payload& p : Payloads()) {
    SCOPED_TRACE(p.name);
    auto r = client_.Request(
        "POST", "/api/messages",
        Body({"\"conversation_id\":" + std::to_string(conv_), Member("content", p)}), alice_.token);
    if (p.content != Outcome::kStored) {
      ExpectRefused(r, p.content);
      continue;
    }
    ASSERT_EQ(r.status, 201) << Shown(r.body);
    EXPECT_EQ(Str(r.json["content"]), p.decoded);
    // Read back by another participant: the history and the pushed event.
    Json newest = Newest();
    EXPECT_EQ(newest["id"], r.json["id"]);
    EXPECT_EQ(Str(newest["content"]), p.decoded);
    Json event = bob_ws.NextOfType("message");
    ASSERT_TRUE(event.is_object()) << "no message event";
    EXPECT_EQ(event["data"]["id"], r.json["id"]);
    EXPECT_EQ(Str(event["data"]["content"]), p.decoded);
    stored.push_back(p.decoded);
  }
  ExpectHistoryIs(stored);
}

TEST_F(HostileMessagesTest, WebSocketContentIsStoredByteExactOrRefused) {
  auto alice_ws = std::make_unique<WsClient>(server_.ws_port(), alice_.token);
  WsClient bob_ws(server_.ws_port(), bob_.token);
  ASSERT_TRUE(alice_ws->connected() && bob_ws.connected());
  std::vector<std::string> stored;
  int n = 0;
  for (const Payload& p : Payloads()) {
    SCOPED_TRACE(p.name);
    const std::string ref = "r" + std::to_string(++n);
    const std::string frame =
        Body({R"("type":"message")", R"("ref":")" + ref + "\"",
              "\"conversation_id\":" + std::to_string(conv_), Member("content", p)});
    alice_ws->SendText(frame);
    if (!IsUtf8(frame) || p.content == Outcome::kTooLarge) {
      // API.md: a text frame that is not UTF-8 closes with 1007, one over 64 KiB with 1009.
      EXPECT_EQ(alice_ws->WaitClosed(), IsUtf8(frame) ? 1009 : 1007);
      alice_ws = std::make_unique<WsClient>(server_.ws_port(), alice_.token);
      ASSERT_TRUE(alice_ws->connected());
      continue;
    }
    Json answer = alice_ws->NextWhere([&](Json& f) {
      return f["type"] == "error" || (f["type"] == "ack" && f["data"]["ref"] == ref);
    });
    ASSERT_TRUE(answer.is_object()) << "no answer";
    if (p.content != Outcome::kStored) {
      // A frame that is not JSON has no readable ref: an `error`; else an `ack` with ok false.
      const bool json_ok = !Json::parse(frame, nullptr, false).is_discarded();
      EXPECT_EQ(answer["type"], json_ok ? "ack" : "error") << answer.dump();
      const Json& error = json_ok ? answer["data"]["error"] : answer["data"];
      EXPECT_EQ(error["code"], "invalid_request") << answer.dump();
      continue;
    }
    ASSERT_EQ(answer["type"], "ack") << answer.dump();
    ASSERT_EQ(answer["data"]["ok"], true) << answer.dump();
    const Json& message = answer["data"]["result"];
    EXPECT_EQ(Str(message["content"]), p.decoded);
    Json event = bob_ws.NextOfType("message");
    ASSERT_TRUE(event.is_object()) << "no message event";
    EXPECT_EQ(event["data"]["id"], message["id"]);
    EXPECT_EQ(Str(event["data"]["content"]), p.decoded);
    EXPECT_EQ(Str(Newest()["content"]), p.decoded);
    stored.push_back(p.decoded);
  }
  ExpectHistoryIs(stored);
}

// ---------------------------------------------------------------------------------------------
// Usernames (and emails and passwords, which share the signup)
// ---------------------------------------------------------------------------------------------

class HostileAccountsTest : public HostileFixture {};

TEST_F(HostileAccountsTest, UsernamesAreStoredByteExactOrRefused) {
  const Account alice = SignUp(server_, client_, "alice");
  int n = 0;
  for (const Payload& p : Payloads()) {
    SCOPED_TRACE(p.name);
    // Profile update: alice takes the name, shows it, and gives it back.
    auto put = client_.Request("PUT", "/api/me", Body({Member("username", p)}), alice.token);
    if (p.username == Outcome::kStored) {
      ASSERT_EQ(put.status, 200) << Shown(put.body);
      EXPECT_EQ(Str(put.json["username"]), p.decoded);
      auto shown = client_.Get("/api/users/" + std::to_string(alice.id), alice.token);
      EXPECT_EQ(Str(shown.json["username"]), p.decoded);
      ASSERT_EQ(client_.Put("/api/me", {{"username", "alice"}}, alice.token).status, 200);
    } else {
      ExpectRefused(put, p.username);
      EXPECT_EQ(Str(client_.Get("/api/me", alice.token).json["username"]), "alice");
    }

    // Signup with the name; a refused one sends no code.
    const std::string email = "hostile" + std::to_string(++n) + "@example.com";
    auto init = client_.Request("POST", "/api/signup/initiate",
                                Body({Member("username", p), R"("email":")" + email + "\"",
                                      R"("password":"correct horse")"}));
    if (p.username != Outcome::kStored) {
      ExpectRefused(init, p.username);
      EXPECT_FALSE(server_.LatestCode(email).has_value());
      continue;
    }
    ASSERT_EQ(init.status, 202) << Shown(init.body);
    const auto code = server_.LatestCode(email);
    ASSERT_TRUE(code.has_value());
    auto verify = client_.Post("/api/signup/verify", {{"email", email}, {"otp", *code}});
    ASSERT_EQ(verify.status, 201) << Shown(verify.body);
    EXPECT_EQ(Str(verify.json["user"]["username"]), p.decoded);
    const int64_t id = verify.json["user"]["id"].get<int64_t>();
    const std::string token = verify.json["token"].get<std::string>();
    EXPECT_EQ(Str(client_.Get("/api/users/" + std::to_string(id), token).json["username"]),
              p.decoded);
    auto login =
        client_.Post("/api/login", {{"username", p.decoded}, {"password", "correct horse"}});
    EXPECT_EQ(login.status, 200) << Shown(login.body);
    EXPECT_EQ(login.json["user"]["id"], id);
  }

  // Search treats SQL and LIKE metacharacters as text: "_" finds only names starting with it.
  auto names = [&](const std::string& query) {
    auto r = client_.Get("/api/users?limit=100&search=" + query, alice.token);
    EXPECT_EQ(r.status, 200) << r.body;
    std::vector<std::string> out;
    for (const auto& u : r.json["users"]) out.push_back(Str(u["username"]));
    return out;
  };
  EXPECT_EQ(names("_"), (std::vector<std::string>{"___", Repeat("_", 32)}));
  EXPECT_EQ(names("-"), std::vector<std::string>{"--_."});
  EXPECT_TRUE(names("%25").empty());                  // "%"
  EXPECT_TRUE(names("'%20OR%201%3D1%20--").empty());  // "' OR 1=1 --"
  EXPECT_TRUE(names("%27%3B%20DROP%20TABLE%20users").empty());
  EXPECT_EQ(names("a"), std::vector<std::string>{"alice"});  // the users table is still there
  ExpectServerSound();
}

TEST_F(HostileAccountsTest, EmailsAreKeptExactOrRefused) {
  // Decisions: a dot-atom local part allows ' % _ + and more; emails are stored in lower case.
  auto init = client_.Post("/api/signup/initiate", {{"username", "obrien"},
                                                    {"email", "O'Brien%_+X@Example.com"},
                                                    {"password", "correct horse"}});
  ASSERT_EQ(init.status, 202) << init.body;
  const std::string email = "o'brien%_+x@example.com";
  const auto code = server_.LatestCode(email);
  ASSERT_TRUE(code.has_value());
  auto verify = client_.Post("/api/signup/verify", {{"email", email}, {"otp", *code}});
  ASSERT_EQ(verify.status, 201) << verify.body;
  auto me = client_.Get("/api/me", verify.json["token"].get<std::string>());
  EXPECT_EQ(Str(me.json["email"]), email);
  auto login = client_.Post("/api/login", {{"email", email}, {"password", "correct horse"}});
  EXPECT_EQ(login.status, 200) << login.body;

  // Everything else hostile is no valid address: 400, and no code is sent anywhere.
  const std::vector<std::string> bad = {
      R"(a\u0000@example.com)",
      R"(a@example.com\r\nBcc: victim@example.com)",  // header injection into the mail
      R"(\u001b[31m@example.com)",
      R"(abc\u202e@example.com)",
      "\xFF@example.com",
      "a\xC0\xAF@example.com",
      "x'; DROP TABLE users; --@example.com",
      R"(\"quoted\"@example.com)",
      Repeat("a", 60'000) + "@example.com",
  };
  for (const std::string& e : bad) {
    SCOPED_TRACE(Shown(e, 60));
    auto r = client_.Request("POST", "/api/signup/initiate",
                             Body({R"("username":"mallory")", "\"email\":\"" + e + "\"",
                                   R"("password":"correct horse")"}));
    ExpectError(r, 400, "invalid_request");
    ExpectError(client_.Request("POST", "/api/forgot/initiate", Body({"\"email\":\"" + e + "\""})),
                400, "invalid_request");
  }
  EXPECT_EQ(server_.Log().find("victim"), std::string::npos);
  ExpectServerSound();
}

TEST_F(HostileAccountsTest, PasswordWithNulIsHashedWhole) {
  // A password is 8 to 128 code points of anything; a NUL must not end it early (C strings).
  auto init = client_.Request("POST", "/api/signup/initiate",
                              Body({R"("username":"nul")", R"("email":"nul@example.com")",
                                    R"("password":"pass\u0000word-1")"}));
  ASSERT_EQ(init.status, 202) << init.body;
  const auto code = server_.LatestCode("nul@example.com");
  ASSERT_TRUE(code.has_value());
  ASSERT_EQ(
      client_.Post("/api/signup/verify", {{"email", "nul@example.com"}, {"otp", *code}}).status,
      201);
  auto login = [&](const std::string& password_json) {
    return client_.Request("POST", "/api/login",
                           Body({R"("username":"nul")", R"("password":")" + password_json + "\""}));
  };
  ExpectError(login(R"(pass\u0000word-2)"), 401, "invalid_credentials");
  ExpectError(login(R"(pass\u0000)"), 401, "invalid_credentials");
  ExpectError(login("pass"), 401, "invalid_credentials");
  EXPECT_EQ(login(R"(pass\u0000word-1)").status, 200);
  ExpectServerSound();
}

// ---------------------------------------------------------------------------------------------
// Group names
// ---------------------------------------------------------------------------------------------

class HostileGroupsTest : public HostileFixture {};

TEST_F(HostileGroupsTest, NamesAreStoredByteExactOrRefusedOnCreateAndRename) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  WsClient bob_ws(server_.ws_port(), bob.token);
  ASSERT_TRUE(bob_ws.connected());
  // The next `conversation` event bob gets must be about `id` and carry `name`.
  auto expect_event = [&](int64_t id, const std::string& name) {
    Json event = bob_ws.NextOfType("conversation");
    ASSERT_TRUE(event.is_object()) << "no conversation event";
    EXPECT_EQ(event["data"]["id"], id);
    EXPECT_EQ(Str(event["data"]["name"]), name);
  };
  auto name_of = [&](int64_t id) {
    auto r = client_.Get("/api/conversations/" + std::to_string(id), bob.token);
    EXPECT_EQ(r.status, 200) << r.body;
    return Str(r.json["name"]);
  };
  const int64_t renamed = Group(alice, {bob.id});
  ASSERT_GT(renamed, 0);
  expect_event(renamed, "hostile");
  const std::string members = "\"member_ids\":[" + std::to_string(bob.id) + "]";
  int n = 0;
  for (const Payload& p : Payloads()) {
    SCOPED_TRACE(p.name);
    auto created = client_.Request("POST", "/api/conversations/group",
                                   Body({Member("name", p), members}), alice.token);
    if (p.group == Outcome::kStored) {
      ASSERT_EQ(created.status, 201) << Shown(created.body);
      const int64_t id = created.json["id"].get<int64_t>();
      EXPECT_EQ(Str(created.json["name"]), p.decoded);
      EXPECT_EQ(name_of(id), p.decoded);
      expect_event(id, p.decoded);
    } else {
      ExpectRefused(created, p.group);
    }

    // Rename from a known name, so that a refusal visibly leaves it.
    const std::string before = "before " + std::to_string(++n);
    ASSERT_EQ(
        client_
            .Put("/api/conversations/" + std::to_string(renamed), {{"name", before}}, alice.token)
            .status,
        200);
    expect_event(renamed, before);
    auto rename = client_.Request("PUT", "/api/conversations/" + std::to_string(renamed),
                                  Body({Member("name", p)}), alice.token);
    if (p.group == Outcome::kStored) {
      ASSERT_EQ(rename.status, 200) << Shown(rename.body);
      EXPECT_EQ(Str(rename.json["name"]), p.decoded);
      EXPECT_EQ(name_of(renamed), p.decoded);
      expect_event(renamed, p.decoded);
    } else {
      ExpectRefused(rename, p.group);
      EXPECT_EQ(name_of(renamed), before);
    }
  }
  ExpectServerSound();
}

// ---------------------------------------------------------------------------------------------
// The log
// ---------------------------------------------------------------------------------------------

// Sends `bytes` on a new connection, half-closes it, and returns the status code of the answer
// (0 when there was none).
int RawRequest(uint16_t port, const std::string& bytes) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  const timeval timeout{10, 0};  // a server that neither answers nor closes fails the test
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string got;
  if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0 &&
      send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size())) {
    shutdown(fd, SHUT_WR);
    char buf[4096];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof buf, 0)) > 0) got.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  static const std::regex kStatusLine(R"(^HTTP/1\.1 (\d{3}) )");
  std::smatch m;
  return std::regex_search(got, m, kStatusLine) ? std::stoi(m[1]) : 0;
}

// The log holds only spdlog lines: no control byte but the line ends, valid UTF-8 without C1
// controls or bidi overrides, and every line starts with a timestamp and a level (an injected
// line would not).
void ExpectCleanLog(const std::string& log) {
  ASSERT_FALSE(log.empty());
  for (size_t i = 0; i < log.size(); ++i) {
    const auto c = static_cast<unsigned char>(log[i]);
    if ((c < 0x20 && c != '\n') || c == 0x7F) {
      ADD_FAILURE() << "raw control byte at " << i << ": "
                    << Shown(log.substr(i < 60 ? 0 : i - 60, 120));
      return;
    }
  }
  EXPECT_TRUE(IsUtf8(log)) << "invalid UTF-8 in the log";
  for (const std::string& display : {std::string("\xC2\x80"), std::string("\xC2\x9B"),
                                     std::string("\xE2\x80\xAE"), std::string("\xE2\x81\xA6")}) {
    EXPECT_EQ(log.find(display), std::string::npos) << Shown(display);
  }
  static const std::regex kLine(
      R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (trace|debug|info|warning|error|critical) .*)");
  std::istringstream in(log);
  std::string line;
  while (std::getline(in, line)) {
    EXPECT_TRUE(std::regex_match(line, kLine)) << "not a log line: " << Shown(line);
  }
}

// Hostile texts as JSON string contents (escaped, or raw bytes where the raw form is the point).
const std::vector<std::string>& HostileJsonStrings() {
  static const std::vector<std::string> k = {
      R"(x\nFAKE LOG LINE)",
      R"(x\r\nFAKE LOG LINE)",
      R"(\u001b[31mred\u001b[2J\u001b]0;title\u0007)",
      R"(nul\u0000FAKE)",
      R"(abc\u202efed)",
      R"(csi\u009b2J)",
      R"(x@example.com\r\nFAKE LOG LINE: y@example.com)",
      "\xFF\xFE\nFAKE LOG LINE",  // invalid UTF-8 and a raw newline: invalid JSON
      "\x1B[31mraw",
      std::string("raw\0nul", 7),
      "\xC0\xAF\xE0\x80\xAF\xED\xA0\x80",
  };
  return k;
}

// The same as raw bytes, for paths and query strings (percent-encoded there).
const std::vector<std::string>& HostileTexts() {
  static const std::vector<std::string> k = {
      "x\nFAKE LOG LINE",          // a line of its own
      "x\r\nFAKE LOG LINE",        // the same with CR
      "\x1B[31mred\x1B[2J",        // ANSI colour, clear screen
      "nul\0FAKE"s,                // NUL
      "abc\xE2\x80\xAE"s + "fed",  // U+202E RIGHT-TO-LEFT OVERRIDE
      "csi\xC2\x9B"s + "2J",       // U+009B, CSI in 8-bit terminals
      "\xFF\xFE\nFAKE LOG LINE",   // invalid UTF-8
      "\xC0\xAF\xED\xA0\x80",      // overlong '/', CESU-8 surrogate
  };
  return k;
}

class HostileLogTest : public HostileFixture {};

TEST_F(HostileLogTest, ClientTextNeverReachesTheLogRaw) {
  const Account alice = SignUp(server_, client_, "alice");
  const int64_t conv = Group(alice, {});
  int n = 0;
  for (const std::string& s : HostileJsonStrings()) {
    SCOPED_TRACE(Shown(s));
    const std::string q = "\"" + s + "\"";
    const std::string email = R"("email":"log)" + std::to_string(++n) + R"(@example.com")";
    const std::vector<std::pair<std::string, std::string>> posts = {
        {"/api/signup/initiate",
         Body({"\"username\":" + q, email, R"("password":"correct horse")"})},
        {"/api/signup/initiate",
         Body({R"("username":"someone")", "\"email\":" + q, R"("password":"correct horse")"})},
        // A hostile password is a valid one (8+ characters): a code goes out, to a clean address.
        {"/api/signup/initiate", Body({R"("username":"pw)" + std::to_string(n) + "\"", email,
                                       "\"password\":\"" + s + "12345678\""})},
        {"/api/signup/verify", Body({"\"email\":" + q, "\"otp\":" + q})},
        {"/api/login", Body({"\"username\":" + q, "\"password\":" + q})},
        {"/api/login", Body({"\"email\":" + q, "\"password\":" + q})},
        {"/api/forgot/initiate", Body({"\"email\":" + q})},
        {"/api/forgot/reset", Body({"\"email\":" + q, "\"otp\":" + q, "\"new_password\":" + q})},
        {"/api/conversations/group", Body({"\"name\":" + q})},
        {"/api/messages",
         Body({"\"conversation_id\":" + std::to_string(conv), "\"content\":" + q})},
        {"/api/messages", Body({"\"conversation_id\":" + std::to_string(conv), "\"content\":" + q,
                                "\"client_id\":" + q})},
        {"/api/messages", "{\"content\":\"" + s},  // cut-off JSON
    };
    for (const auto& [path, body] : posts) {
      auto r = client_.Request("POST", path, body, alice.token);
      EXPECT_GE(r.status, 200) << path;
      EXPECT_LT(r.status, 500) << path << " " << Shown(r.body);
    }
    auto put = client_.Request("PUT", "/api/me", Body({"\"username\":" + q}), alice.token);
    EXPECT_LT(put.status, 500);
    put = client_.Request("PUT", "/api/me", Body({"\"profile_picture\":" + q}), alice.token);
    EXPECT_LT(put.status, 500);
  }
  for (const std::string& s : HostileTexts()) {
    SCOPED_TRACE(Shown(s));
    // 200, or 400 for invalid UTF-8 in the search.
    const int search = client_.Get("/api/users?search=" + PercentEncode(s), alice.token).status;
    EXPECT_TRUE(search == 200 || search == 400) << search;
    EXPECT_EQ(client_.Get("/api/" + PercentEncode(s), alice.token).status, 404);
    EXPECT_EQ(client_.Get("/api/users?search=a&limit=" + PercentEncode(s), alice.token).status,
              400);
  }

  // Raw bytes in the request line and headers: a 400 where they break HTTP, else the route's
  // own answer (Beast takes bytes over 0x7F in a path and in header values).
  const std::string host = "Host: 127.0.0.1\r\n";
  const std::vector<std::pair<std::string, int>> raw = {
      {"GET /api/\r\nFAKE LOG LINE HTTP/1.1\r\n" + host + "\r\n", 400},
      {"GET /api/\x1B[31mred HTTP/1.1\r\n" + host + "\r\n", 400},
      {"GET /api/\xFF\xFE HTTP/1.1\r\n" + host + "\r\n", 404},
      {"GET /api/%0AFAKE%20LOG%20LINE%1B%5B31m HTTP/1.1\r\n" + host + "\r\n", 404},
      {"GET /api/me HTTP/1.1\r\n" + host + "Authorization: Bearer \xFF\xFE\r\n\r\n", 401},
      {"GET /api/me HTTP/1.1\r\n" + host + "Authorization: Bearer \x1B[31m\r\n\r\n", 400},
      {"GET /api/me HTTP/1.1\r\n" + host + "X-Evil: a\rFAKE LOG LINE\r\n\r\n", 400},
      {"GET /api/me HTTP/1.1\r\n" + host + "X-\x1B[31m: a\r\n\r\n", 400},
      {"GE\0T /api/me HTTP/1.1\r\n"s + host + "\r\n", 400},
      {"\x16\x03\x01\x00\xA5\x01\x00\x00\xA1\x03\x03\r\n\r\n"s, 400},  // a TLS ClientHello
  };
  for (const auto& [request, status] : raw) {
    SCOPED_TRACE(Shown(request));
    EXPECT_EQ(RawRequest(server_.port(), request), status);
  }

  // WebSocket: hostile types, refs and content; invalid UTF-8 (1007); a hostile token.
  {
    auto ws = std::make_unique<WsClient>(server_.ws_port(), alice.token);
    ASSERT_TRUE(ws->connected());
    ws->SendText(R"({"type":"\u001b[31m\nFAKE LOG LINE","ref":"\r\nFAKE LOG LINE"})");
    Json ack = ws->NextOfType("ack");
    EXPECT_EQ(Str(ack["data"]["ref"]), "\r\nFAKE LOG LINE");  // echoed exactly, JSON-escaped
    EXPECT_EQ(ack["data"]["error"]["code"], "invalid_request");
    ws->SendText(R"({"type":"message","conversation_id":999999,"content":"\u001b]0;x\u0007"})");
    EXPECT_EQ(ws->NextOfType("error")["data"]["code"], "not_found");
    ws->SendBinary("\x1B[2J\nFAKE LOG LINE");
    EXPECT_EQ(ws->NextOfType("error")["data"]["code"], "invalid_request");
    ws->SendText("\xFF\xFE\nFAKE LOG LINE");
    EXPECT_EQ(ws->WaitClosed(), 1007);
    WsClient bad_token(server_.ws_port(), "",
                       {.target = "/api/ws?token=%0AFAKE%20LOG%20LINE%1B%5B31m%00%FF"});
    EXPECT_FALSE(bad_token.connected());
    ExpectError(bad_token.refusal(), 401, "unauthorized");
  }

  // The one client text the log does carry: an address, in the code's line, verbatim since
  // a valid address is printable ASCII.
  auto init = client_.Post("/api/signup/initiate", {{"username", "obrien"},
                                                    {"email", "O'Brien%_+X@Example.com"},
                                                    {"password", "correct horse"}});
  EXPECT_EQ(init.status, 202) << init.body;
  EXPECT_TRUE(server_.WaitForLog("otp: to=o'brien%_+x@example.com "));
  ExpectServerSound();
  ExpectCleanLog(server_.Log());
}

TEST(HostileSmtpLogTest, FailedDeliveryLineIsClean) {
  // Nothing listens on the SMTP port: the signup fails with 503 and the sender logs why.
  ServerOptions options = HostileOptions();
  options.env["OTP_SENDER"] = "smtp";
  options.env["SMTP_URL"] = "smtp://127.0.0.1:" + std::to_string(FreePort());
  TestServer server(options);
  HttpClient client(server.port());
  auto r = client.Post("/api/signup/initiate", {{"username", "obrien"},
                                                {"email", "O'Brien%_+X@Example.com"},
                                                {"password", "correct horse"}});
  ExpectError(r, 503, "unavailable");
  EXPECT_TRUE(server.WaitForLog("smtp: sending to o'brien%_+x@example.com failed"));
  for (const std::string& s : HostileJsonStrings()) {
    auto bad = client.Request("POST", "/api/signup/initiate",
                              Body({R"("username":"mallory")", "\"email\":\"" + s + "\"",
                                    R"("password":"correct horse")"}));
    ExpectError(bad, 400, "invalid_request");
  }
  EXPECT_EQ(server.Stop(SIGTERM), 0);
  ExpectCleanLog(server.Log());
}

}  // namespace
}  // namespace mmchat::test
