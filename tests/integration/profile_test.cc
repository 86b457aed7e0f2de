// API.md "Users and profile" over real HTTP: /api/me, /api/users/:id, /api/users?search=,
// /api/users/:id/last-seen, with every status and error code of those rows.
#include <gtest/gtest.h>

#include <algorithm>
#include <regex>
#include <string>
#include <vector>

#include "harness.h"

namespace mmchat::test {
namespace {

const std::regex kRfc3339Millis(R"(^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$)");

std::vector<std::string> Usernames(const HttpResult& r) {
  std::vector<std::string> out;
  if (!r.json.is_object() || !r.json["users"].is_array()) return out;
  for (const auto& u : r.json["users"]) out.push_back(u.value("username", "?"));
  return out;
}

class ProfileTest : public ::testing::Test {
 protected:
  ProfileTest() : client_(server_.port()) {}

  HttpResult Me(const std::string& token) { return client_.Get("/api/me", token); }
  HttpResult PutMe(const std::string& token, const Json& body) {
    return client_.Put("/api/me", body, token);
  }
  HttpResult PutMeRaw(const std::string& token, const std::string& body) {
    return client_.Request("PUT", "/api/me", body, token);
  }
  HttpResult User(const std::string& token, int64_t id) {
    return client_.Get("/api/users/" + std::to_string(id), token);
  }

  TestServer server_;
  HttpClient client_;
};

// ---------------------------------------------------------------------------------------------
// GET /api/me and authentication
// ---------------------------------------------------------------------------------------------

TEST_F(ProfileTest, MeReturnsTheCallerWithEmail) {
  const Account alice = SignUp(server_, client_, "alice");
  auto r = Me(alice.token);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.headers.at("content-type"), "application/json");
  ExpectUserShape(r.json, /*with_email=*/true);
  EXPECT_EQ(r.json["id"], alice.id);
  EXPECT_EQ(r.json["username"], "alice");
  EXPECT_EQ(r.json["email"], "alice@example.com");
  EXPECT_TRUE(r.json["profile_picture"].is_null());
  EXPECT_EQ(r.json["online"], false);
  EXPECT_TRUE(r.json["last_seen"].is_null());
}

TEST_F(ProfileTest, MeWithoutOrWithABadTokenIs401) {
  const Account alice = SignUp(server_, client_, "alice");
  ExpectError(client_.Get("/api/me"), 401, "unauthorized");
  ExpectError(Me("garbage"), 401, "unauthorized");
  ExpectError(Me("a.b.c"), 401, "unauthorized");
  ExpectError(client_.Request("GET", "/api/me", "", "", {{"Authorization", "Bearer "}}), 401,
              "unauthorized");
  ExpectError(client_.Request("GET", "/api/me", "", "", {{"Authorization", "Bearer"}}), 401,
              "unauthorized");
  // The right token under another scheme, or with the scheme misspelled.
  ExpectError(client_.Request("GET", "/api/me", "", "", {{"Authorization", alice.token}}), 401,
              "unauthorized");
  ExpectError(
      client_.Request("GET", "/api/me", "", "", {{"Authorization", "Basic " + alice.token}}), 401,
      "unauthorized");
  // A flipped character in the middle of the signature (the last one may carry only padding
  // bits).
  std::string tampered = alice.token;
  const size_t sig = tampered.rfind('.');
  ASSERT_NE(sig, std::string::npos);
  tampered[sig + 5] = tampered[sig + 5] == 'A' ? 'B' : 'A';
  ExpectError(Me(tampered), 401, "unauthorized");
  // A flipped character in the payload.
  std::string payload_tampered = alice.token;
  const size_t dot = payload_tampered.find('.');
  ASSERT_NE(dot, std::string::npos);
  payload_tampered[dot + 2] = payload_tampered[dot + 2] == 'A' ? 'B' : 'A';
  ExpectError(Me(payload_tampered), 401, "unauthorized");
  // The genuine token still works on the same connection.
  EXPECT_EQ(Me(alice.token).status, 200);
}

TEST_F(ProfileTest, TokenSignedWithAnotherSecretIs401) {
  // User 1 exists on both servers, so only the signature tells the tokens apart.
  const Account here = SignUp(server_, client_, "alice");
  TestServer other({.env = {{"JWT_SECRET", "a-completely-different-secret-9876543210"}}});
  HttpClient other_client(other.port());
  const Account there = SignUp(other, other_client, "alice");
  ASSERT_EQ(here.id, there.id);
  ASSERT_EQ(other_client.Get("/api/me", there.token).status, 200);  // valid where it was made

  ExpectError(Me(there.token), 401, "unauthorized");
  ExpectError(other_client.Get("/api/me", here.token), 401, "unauthorized");
}

TEST_F(ProfileTest, EveryProfileRouteNeedsAToken) {
  const Account alice = SignUp(server_, client_, "alice");
  const std::string id = std::to_string(alice.id);
  ExpectError(client_.Put("/api/me", Json::object()), 401, "unauthorized");
  ExpectError(client_.Get("/api/users/" + id), 401, "unauthorized");
  ExpectError(client_.Get("/api/users?search=ali"), 401, "unauthorized");
  ExpectError(client_.Get("/api/users/" + id + "/last-seen"), 401, "unauthorized");
  ExpectError(client_.Get("/api/users/" + id + "/last-seen", "garbage"), 401, "unauthorized");
}

// ---------------------------------------------------------------------------------------------
// PUT /api/me
// ---------------------------------------------------------------------------------------------

TEST_F(ProfileTest, ChangingTheUsernameIsReturnedAndVisibleToOthers) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  // Read first, so that both views are in the server's user cache: the change must end them.
  EXPECT_EQ(User(bob.token, alice.id).json["username"], "alice");
  EXPECT_EQ(Me(alice.token).json["username"], "alice");

  auto r = PutMe(alice.token, {{"username", "alice_2"}});
  ASSERT_EQ(r.status, 200) << r.body;
  ExpectUserShape(r.json, /*with_email=*/true);
  EXPECT_EQ(r.json["id"], alice.id);
  EXPECT_EQ(r.json["username"], "alice_2");
  EXPECT_EQ(r.json["email"], "alice@example.com");

  auto seen = User(bob.token, alice.id);
  ASSERT_EQ(seen.status, 200) << seen.body;
  EXPECT_EQ(seen.json["username"], "alice_2");
  EXPECT_EQ(Me(alice.token).json["username"], "alice_2");

  // The old name is free again, and the new one is found by search.
  EXPECT_EQ(Usernames(client_.Get("/api/users?search=alice_", bob.token)),
            std::vector<std::string>{"alice_2"});
  auto taken_back = PutMe(bob.token, {{"username", "alice"}});
  EXPECT_EQ(taken_back.status, 200) << taken_back.body;
}

TEST_F(ProfileTest, ChangingTheCaseOfOnesOwnUsernameIsAllowed) {
  const Account alice = SignUp(server_, client_, "alice");
  auto r = PutMe(alice.token, {{"username", "Alice"}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json["username"], "Alice");
  EXPECT_EQ(Me(alice.token).json["username"], "Alice");
}

TEST_F(ProfileTest, TakenUsernameIs409CaseInsensitive) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  ExpectError(PutMe(bob.token, {{"username", "alice"}}), 409, "conflict");
  ExpectError(PutMe(bob.token, {{"username", "ALICE"}}), 409, "conflict");
  ExpectError(PutMe(bob.token, {{"username", "aLiCe"}}), 409, "conflict");
  // Nothing changed for either of them.
  EXPECT_EQ(Me(bob.token).json["username"], "bob");
  EXPECT_EQ(Me(alice.token).json["username"], "alice");
}

TEST_F(ProfileTest, InvalidUsernameIs400AndChangesNothing) {
  const Account alice = SignUp(server_, client_, "alice");
  const std::vector<std::string> bad_names = {"",          "ab",         std::string(33, 'a'),
                                              "has space", "semi;colon", "\xc3\xa5lice" /* ålice */,
                                              "a/b",       "al@ce"};
  for (const std::string& bad : bad_names) {
    SCOPED_TRACE(bad);
    auto r = PutMe(alice.token, {{"username", bad}});
    ExpectError(r, 400, "invalid_request");
    EXPECT_NE(r.json["error"]["message"].get<std::string>().find("username"), std::string::npos)
        << r.body;
  }
  EXPECT_EQ(Me(alice.token).json["username"], "alice");
  // The limits themselves are fine.
  EXPECT_EQ(PutMe(alice.token, {{"username", std::string(32, 'z')}}).status, 200);
  EXPECT_EQ(PutMe(alice.token, {{"username", "a.b"}}).status, 200);
  EXPECT_EQ(PutMe(alice.token, {{"username", "A-Z_0.9"}}).status, 200);
}

TEST_F(ProfileTest, ProfilePictureIsSetAndClearedWithNull) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const std::string url = "https://example.com/pics/a.png?size=64";

  auto set = PutMe(alice.token, {{"profile_picture", url}});
  ASSERT_EQ(set.status, 200) << set.body;
  EXPECT_EQ(set.json["profile_picture"], url);
  EXPECT_EQ(set.json["username"], "alice");  // untouched
  EXPECT_EQ(Me(alice.token).json["profile_picture"], url);
  EXPECT_EQ(User(bob.token, alice.id).json["profile_picture"], url);

  auto http = PutMe(alice.token, {{"profile_picture", "http://example.com/b.png"}});
  ASSERT_EQ(http.status, 200) << http.body;
  EXPECT_EQ(http.json["profile_picture"], "http://example.com/b.png");

  // Changing only the username keeps the picture.
  auto renamed = PutMe(alice.token, {{"username", "alice2"}});
  ASSERT_EQ(renamed.status, 200) << renamed.body;
  EXPECT_EQ(renamed.json["profile_picture"], "http://example.com/b.png");

  auto cleared = PutMe(alice.token, {{"profile_picture", nullptr}});
  ASSERT_EQ(cleared.status, 200) << cleared.body;
  EXPECT_TRUE(cleared.json.contains("profile_picture"));
  EXPECT_TRUE(cleared.json["profile_picture"].is_null()) << cleared.body;
  EXPECT_TRUE(Me(alice.token).json["profile_picture"].is_null());
  EXPECT_TRUE(User(bob.token, alice.id).json["profile_picture"].is_null());
  EXPECT_EQ(Me(alice.token).json["username"], "alice2");
}

TEST_F(ProfileTest, ProfilePictureMustBeAnHttpUrl) {
  const Account alice = SignUp(server_, client_, "alice");
  ASSERT_EQ(PutMe(alice.token, {{"profile_picture", "https://example.com/ok.png"}}).status, 200);
  for (const std::string bad :
       {"ftp://example.com/a.png", "not a url", "", "example.com/a.png", "https://",
        "javascript:alert(1)", "file:///etc/passwd", "https://exa mple.com/a.png"}) {
    SCOPED_TRACE(bad);
    auto r = PutMe(alice.token, {{"profile_picture", bad}});
    ExpectError(r, 400, "invalid_request");
    EXPECT_NE(r.json["error"]["message"].get<std::string>().find("profile_picture"),
              std::string::npos)
        << r.body;
  }
  EXPECT_EQ(Me(alice.token).json["profile_picture"], "https://example.com/ok.png");
}

TEST_F(ProfileTest, ProfilePictureOf2048CharactersIsTheLimit) {
  const Account alice = SignUp(server_, client_, "alice");
  const std::string base = "https://example.com/";
  const std::string at_limit = base + std::string(2048 - base.size(), 'a');
  const std::string over = at_limit + "a";
  ASSERT_EQ(at_limit.size(), 2048u);

  auto ok = PutMe(alice.token, {{"profile_picture", at_limit}});
  ASSERT_EQ(ok.status, 200) << ok.body.substr(0, 200);
  EXPECT_EQ(ok.json["profile_picture"], at_limit);

  ExpectError(PutMe(alice.token, {{"profile_picture", over}}), 400, "invalid_request");
  EXPECT_EQ(Me(alice.token).json["profile_picture"], at_limit);
}

TEST_F(ProfileTest, WrongTypesAndBadJsonAre400) {
  const Account alice = SignUp(server_, client_, "alice");
  ExpectError(PutMe(alice.token, {{"username", 42}}), 400, "invalid_request");
  ExpectError(PutMe(alice.token, {{"username", true}}), 400, "invalid_request");
  ExpectError(PutMe(alice.token, {{"username", Json::array({"alice2"})}}), 400, "invalid_request");
  ExpectError(PutMe(alice.token, {{"profile_picture", 42}}), 400, "invalid_request");
  ExpectError(PutMe(alice.token, {{"profile_picture", Json::object()}}), 400, "invalid_request");
  ExpectError(PutMe(alice.token, {{"profile_picture", false}}), 400, "invalid_request");
  ExpectError(PutMeRaw(alice.token, "{\"username\": "), 400, "invalid_request");
  ExpectError(PutMeRaw(alice.token, "not json"), 400, "invalid_request");
  ExpectError(PutMeRaw(alice.token, "[]"), 400, "invalid_request");
  ExpectError(PutMeRaw(alice.token, "\"alice2\""), 400, "invalid_request");
  ExpectError(PutMeRaw(alice.token, ""), 400, "invalid_request");
  // Invalid UTF-8 inside a string.
  ExpectError(PutMeRaw(alice.token, "{\"username\": \"ali\xff\xfe\"}"), 400, "invalid_request");
  // A valid field next to a wrong one: the request is refused as a whole.
  ExpectError(PutMe(alice.token, {{"username", "alice2"}, {"profile_picture", 1}}), 400,
              "invalid_request");
  auto me = Me(alice.token);
  EXPECT_EQ(me.json["username"], "alice");
  EXPECT_TRUE(me.json["profile_picture"].is_null());
}

TEST_F(ProfileTest, EmptyObjectChangesNothingAndUnknownFieldsAreIgnored) {
  const Account alice = SignUp(server_, client_, "alice");
  ASSERT_EQ(PutMe(alice.token, {{"profile_picture", "https://example.com/a.png"}}).status, 200);
  const Json before = Me(alice.token).json;

  auto r = PutMe(alice.token, Json::object());
  ASSERT_EQ(r.status, 200) << r.body;
  ExpectUserShape(r.json, /*with_email=*/true);
  EXPECT_EQ(r.json, before);

  auto unknown = PutMe(alice.token, {{"email", "mallory@example.com"}, {"id", 99}, {"x", 1}});
  ASSERT_EQ(unknown.status, 200) << unknown.body;
  EXPECT_EQ(unknown.json, before);
  EXPECT_EQ(Me(alice.token).json, before);
}

// ---------------------------------------------------------------------------------------------
// GET /api/users/:id
// ---------------------------------------------------------------------------------------------

TEST_F(ProfileTest, UserByIdHasNoEmail) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");

  auto r = User(bob.token, alice.id);
  ASSERT_EQ(r.status, 200) << r.body;
  ExpectUserShape(r.json, /*with_email=*/false);
  EXPECT_EQ(r.json["id"], alice.id);
  EXPECT_EQ(r.json["username"], "alice");
  EXPECT_EQ(r.json["created_at"], Me(alice.token).json["created_at"]);
  EXPECT_EQ(r.body.find("alice@example.com"), std::string::npos) << r.body;

  // API.md: email appears only in /api/me, also when one looks oneself up by id.
  auto self = User(alice.token, alice.id);
  ASSERT_EQ(self.status, 200) << self.body;
  ExpectUserShape(self.json, /*with_email=*/false);
}

TEST_F(ProfileTest, UnknownOrNonNumericUserIdIs404) {
  const Account alice = SignUp(server_, client_, "alice");
  ExpectError(User(alice.token, alice.id + 1000), 404, "not_found");
  for (const std::string id : {"abc", "0", "-1", "1x", "1.5", "99999999999999999999999", "%20"}) {
    SCOPED_TRACE(id);
    ExpectError(client_.Get("/api/users/" + id, alice.token), 404, "not_found");
  }
}

// ---------------------------------------------------------------------------------------------
// GET /api/users?search=
// ---------------------------------------------------------------------------------------------

class ProfileSearchTest : public ProfileTest {
 protected:
  void SetUp() override {
    me_ = SignUp(server_, client_, "alice");
    SignUp(server_, client_, "alicia");
    // The log sender logs lower-cased emails, so mixed-case names are set after signup.
    Rename(SignUp(server_, client_, "alina"), "ALINA");
    Rename(SignUp(server_, client_, "albert"), "Albert");
    SignUp(server_, client_, "bob");
    // A pending signup (never verified) is not a user.
    ASSERT_EQ(client_
                  .Post("/api/signup/initiate", {{"username", "alfred"},
                                                 {"email", "alfred@example.com"},
                                                 {"password", "correct horse"}})
                  .status,
              202);
  }
  void Rename(const Account& a, const std::string& name) {
    ASSERT_EQ(PutMe(a.token, {{"username", name}}).status, 200);
  }
  HttpResult Search(const std::string& query) {
    return client_.Get("/api/users?" + query, me_.token);
  }

  Account me_;
};

TEST_F(ProfileSearchTest, PrefixMatchIsCaseInsensitiveAndOrdered) {
  const std::vector<std::string> ali = {"alice", "alicia", "ALINA"};
  for (const std::string q : {"ali", "ALI", "aLi", "AL%49"}) {
    SCOPED_TRACE(q);
    auto r = Search("search=" + q);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(Usernames(r), ali);
    for (const auto& u : r.json["users"]) ExpectUserShape(u, /*with_email=*/false);
  }
  EXPECT_EQ(Usernames(Search("search=al")),
            (std::vector<std::string>{"Albert", "alice", "alicia", "ALINA"}));
  EXPECT_EQ(Usernames(Search("search=alice")), std::vector<std::string>{"alice"});
  EXPECT_EQ(Usernames(Search("search=B")), std::vector<std::string>{"bob"});
}

TEST_F(ProfileSearchTest, IsAPrefixMatchNotASubstringOrPattern) {
  for (const std::string q : {"lice", "ob", "a_", "a%25", "%25", "a.", "zzz", "alicex"}) {
    SCOPED_TRACE(q);
    auto r = Search("search=" + q);
    ASSERT_EQ(r.status, 200) << r.body;
    ASSERT_TRUE(r.json["users"].is_array()) << r.body;
    EXPECT_TRUE(r.json["users"].empty()) << r.body;
  }
}

TEST_F(ProfileSearchTest, LimitIsRespectedAndCapped) {
  // More matching users than the cap (100) and the default (20), so that both show; made in one
  // go by `mmchat user add --count` (signing up 120 would take minutes of Argon2id).
  constexpr int kCap = 100, kDefault = 20, kUsers = 120;
  auto env = StoreEnv(server_.dir());  // the running server's database, either store
  env["JWT_SECRET"] = "integration-test-secret-0123456789";
  const RunResult added = RunBinary({"user", "add", "--count", std::to_string(kUsers), "--prefix",
                                     "cap", "--password", "correct horse"},
                                    env, server_.dir());
  ASSERT_EQ(added.exit_code, 0) << added.output;
  std::vector<std::string> names;  // cap_1 ... cap_120, in the server's (alphabetical) order
  for (int i = 1; i <= kUsers; ++i) names.push_back("cap_" + std::to_string(i));
  std::sort(names.begin(), names.end());
  auto first = [&](int n) { return std::vector<std::string>(names.begin(), names.begin() + n); };
  for (const std::string limit : {"101", "1000", "99999"}) {
    SCOPED_TRACE(limit);
    auto capped = Search("search=cap&limit=" + limit);
    ASSERT_EQ(capped.status, 200) << capped.body.substr(0, 300);
    EXPECT_EQ(Usernames(capped), first(kCap));
  }
  EXPECT_EQ(Usernames(Search("search=cap&limit=100")), first(kCap));
  EXPECT_EQ(Usernames(Search("search=cap&limit=99")), first(99));
  EXPECT_EQ(Usernames(Search("search=cap")), first(kDefault));

  auto two = Search("search=al&limit=2");
  ASSERT_EQ(two.status, 200) << two.body;
  EXPECT_EQ(Usernames(two), (std::vector<std::string>{"Albert", "alice"}));

  auto one = Search("limit=1&search=ali");
  ASSERT_EQ(one.status, 200) << one.body;
  EXPECT_EQ(Usernames(one), std::vector<std::string>{"alice"});

  auto big = Search("search=al&limit=1000");
  ASSERT_EQ(big.status, 200) << big.body;
  EXPECT_EQ(Usernames(big), (std::vector<std::string>{"Albert", "alice", "alicia", "ALINA"}));
}

TEST_F(ProfileSearchTest, BadQueriesAre400) {
  ExpectError(client_.Get("/api/users", me_.token), 400, "invalid_request");
  ExpectError(Search("limit=5"), 400, "invalid_request");
  ExpectError(Search("search=al&limit=abc"), 400, "invalid_request");
  ExpectError(Search("search=al&limit=-1"), 400, "invalid_request");
  ExpectError(Search("search=al&limit=2x"), 400, "invalid_request");
  ExpectError(Search("search=al&limit="), 400, "invalid_request");
}

TEST_F(ProfileSearchTest, ResultsCarryNoEmail) {
  auto r = Search("search=a");
  ASSERT_EQ(r.status, 200) << r.body;
  ASSERT_EQ(r.json["users"].size(), 4u) << r.body;
  for (const auto& u : r.json["users"]) EXPECT_FALSE(u.contains("email")) << u.dump();
  EXPECT_EQ(r.body.find("@example.com"), std::string::npos) << r.body;
}

// ---------------------------------------------------------------------------------------------
// GET /api/users/:id/last-seen
// ---------------------------------------------------------------------------------------------

TEST_F(ProfileTest, LastSeenOfAUserThatNeverConnected) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  auto r = client_.Get("/api/users/" + std::to_string(alice.id) + "/last-seen", bob.token);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.headers.at("content-type"), "application/json");
  EXPECT_EQ(r.json, (Json{{"user_id", alice.id}, {"online", false}, {"last_seen", nullptr}}));
}

TEST_F(ProfileTest, LastSeenOfAnUnknownUserIs404) {
  const Account alice = SignUp(server_, client_, "alice");
  ExpectError(
      client_.Get("/api/users/" + std::to_string(alice.id + 1000) + "/last-seen", alice.token), 404,
      "not_found");
  ExpectError(client_.Get("/api/users/abc/last-seen", alice.token), 404, "not_found");
  ExpectError(client_.Get("/api/users/0/last-seen", alice.token), 404, "not_found");
}

// ---------------------------------------------------------------------------------------------
// Timestamps
// ---------------------------------------------------------------------------------------------

TEST_F(ProfileTest, CreatedAtIsRfc3339UtcWithMilliseconds) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  std::vector<std::string> seen;
  seen.push_back(Me(alice.token).json.value("created_at", ""));
  seen.push_back(User(alice.token, bob.id).json.value("created_at", ""));
  seen.push_back(PutMe(alice.token, Json::object()).json.value("created_at", ""));
  const HttpResult search = client_.Get("/api/users?search=b", alice.token);
  for (const auto& u : search.json["users"]) {
    seen.push_back(u.value("created_at", ""));
  }
  ASSERT_EQ(seen.size(), 4u);
  for (const auto& t : seen) {
    EXPECT_TRUE(std::regex_match(t, kRfc3339Millis)) << "'" << t << "'";
  }
  // Created now, not at the epoch: the year is this century's.
  EXPECT_EQ(seen[0].substr(0, 2), "20");
  EXPECT_LE(seen[0], seen[1]);  // alice signed up before bob
}

}  // namespace
}  // namespace mmchat::test
