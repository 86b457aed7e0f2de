// http/ building blocks: query parsing, routing (incl. 405 detection), the error body and the
// JSON field helpers.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/thread_pool.hpp>
#include <future>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>

#include "http/cors.h"
#include "http/dispatcher.h"
#include "http/errors.h"
#include "http/json_io.h"
#include "http/message.h"
#include "http/ranges.h"
#include "http/router.h"

namespace mmchat::http {
namespace {

using ::testing::HasSubstr;
using Map = std::map<std::string, std::string>;

// ---------------------------------------------------------------------------------------------
// ParseQuery
// ---------------------------------------------------------------------------------------------

// The value of header `name` in `headers`, or "" when absent.
std::string HeaderOf(const std::vector<std::pair<std::string, std::string>>& headers,
                     const std::string& name) {
  for (const auto& [k, v] : headers) {
    if (k == name) return v;
  }
  return "";
}

TEST(CorsPolicyTest, ListedOriginsOnlyAndAnyWithAStar) {
  auto cors = CorsPolicy::Parse(" http://localhost:5173 , HTTPS://App.Example.com,http://[::1]:80");
  ASSERT_TRUE(cors.ok()) << cors.status().message();
  EXPECT_TRUE(cors->enabled());
  EXPECT_TRUE(cors->Allows("http://localhost:5173"));
  EXPECT_TRUE(cors->Allows("https://app.example.com"));  // compared in lower case
  EXPECT_TRUE(cors->Allows("http://[::1]:80"));
  for (const char* other :
       {"", "null", "http://localhost:5174", "https://localhost:5173", "http://localhost",
        "https://app.example.com.evil.test", "https://evil.test/https://app.example.com"}) {
    EXPECT_FALSE(cors->Allows(other)) << other;
  }
  auto any = CorsPolicy::Parse("*");
  ASSERT_TRUE(any.ok());
  EXPECT_TRUE(any->Allows("https://whatever.test"));
  EXPECT_FALSE(any->Allows(""));  // no Origin: not a cross-origin request
  auto off = CorsPolicy::Parse("  ");
  ASSERT_TRUE(off.ok());
  EXPECT_FALSE(off->enabled());
  EXPECT_FALSE(off->Allows("https://app.example.com"));
}

TEST(CorsPolicyTest, AnEntryThatIsNotAnOriginIsRefusedByName) {
  for (const char* bad :
       {"https://app.example.com/", "https://app.example.com/path", "app.example.com",
        "ftp://app.example.com", "http://", "http://a.test,,http://b.test", "http://a.test:port",
        "https://user@app.example.com", "*.example.com"}) {
    auto r = CorsPolicy::Parse(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidRequest) << bad;
    EXPECT_NE(r.status().message().find("CORS_ALLOWED_ORIGINS"), std::string::npos);
  }
}

TEST(CorsPolicyTest, PreflightsAndAnswersCarryTheRightHeaders) {
  auto cors = CorsPolicy::Parse("https://app.example.com");
  ASSERT_TRUE(cors.ok());
  auto ok = cors->Preflight("OPTIONS", "https://app.example.com", "POST");
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ(ok->status, 204);
  EXPECT_TRUE(ok->body.empty());
  EXPECT_NE(HeaderOf(ok->headers, "Access-Control-Allow-Methods").find("PATCH"), std::string::npos);
  EXPECT_NE(HeaderOf(ok->headers, "Access-Control-Allow-Headers").find("Authorization"),
            std::string::npos);
  auto refused = cors->Preflight("OPTIONS", "https://evil.test", "POST");
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->status, 403);
  EXPECT_EQ(HeaderOf(refused->headers, "Access-Control-Allow-Methods"), "");
  // Not preflights: no Origin, no requested method, or another method.
  EXPECT_FALSE(cors->Preflight("OPTIONS", "", "POST").has_value());
  EXPECT_FALSE(cors->Preflight("OPTIONS", "https://app.example.com", "").has_value());
  EXPECT_FALSE(cors->Preflight("GET", "https://app.example.com", "POST").has_value());

  std::vector<std::pair<std::string, std::string>> headers;
  cors->AddHeaders("https://app.example.com", headers);
  EXPECT_EQ(HeaderOf(headers, "Access-Control-Allow-Origin"), "https://app.example.com");
  EXPECT_EQ(HeaderOf(headers, "Vary"), "Origin");
  EXPECT_NE(HeaderOf(headers, "Access-Control-Expose-Headers").find("Location"), std::string::npos);
  headers.clear();
  cors->AddHeaders("https://evil.test", headers);
  EXPECT_EQ(HeaderOf(headers, "Access-Control-Allow-Origin"), "");
  EXPECT_EQ(HeaderOf(headers, "Vary"), "Origin");
  headers.clear();
  CorsPolicy().AddHeaders("https://app.example.com", headers);  // off
  EXPECT_TRUE(headers.empty());
}

TEST(ParseQueryTest, SplitsPairs) {
  EXPECT_EQ(ParseQuery("a=1&b=two"), (Map{{"a", "1"}, {"b", "two"}}));
  EXPECT_EQ(ParseQuery(""), Map{});
}

TEST(ParseQueryTest, PercentDecodingAndPlus) {
  EXPECT_EQ(ParseQuery("search=ali+ce&x=a%20b%2Bc%26d%3De"),
            (Map{{"search", "ali ce"}, {"x", "a b+c&d=e"}}));
  EXPECT_EQ(ParseQuery("k%65y=v"), (Map{{"key", "v"}}));                      // keys are decoded
  EXPECT_EQ(ParseQuery("u=%C3%A9%c3%a9"), (Map{{"u", "\xC3\xA9\xC3\xA9"}}));  // either case
  EXPECT_EQ(ParseQuery("z=%00"), (Map{{"z", std::string(1, '\0')}}));
  EXPECT_EQ(ParseQuery("e=%41"), (Map{{"e", "A"}}));  // an escape at the very end
}

TEST(ParseQueryTest, MalformedEscapesKeptLiterally) {
  EXPECT_EQ(ParseQuery("a=%zz&b=%4&c=%&d=100%"),
            (Map{{"a", "%zz"}, {"b", "%4"}, {"c", "%"}, {"d", "100%"}}));
}

TEST(ParseQueryTest, RepeatedKeysKeepTheFirst) {
  EXPECT_EQ(ParseQuery("a=1&a=2&a=3"), (Map{{"a", "1"}}));
}

TEST(ParseQueryTest, MissingEqualsAndEmptyParts) {
  EXPECT_EQ(ParseQuery("flag&x=1"), (Map{{"flag", ""}, {"x", "1"}}));
  EXPECT_EQ(ParseQuery("x="), (Map{{"x", ""}}));
  EXPECT_EQ(ParseQuery("&&x=1&&"), (Map{{"x", "1"}}));
  EXPECT_EQ(ParseQuery("=v"), (Map{{"", "v"}}));
  EXPECT_EQ(ParseQuery("a=b=c"), (Map{{"a", "b=c"}}));
}

// ---------------------------------------------------------------------------------------------
// Router
// ---------------------------------------------------------------------------------------------

Handler Named(const std::string& name) {
  return [name](Request&) {
    Response r;
    r.body = name;
    return r;
  };
}

class RouterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    router_.Add("GET", "/api/me", Named("get-me"), {.auth = true});
    router_.Add("PUT", "/api/me", Named("put-me"), {.auth = true});
    router_.Add("GET", "/api/users", Named("search"));
    router_.Add("GET", "/api/users/:id", Named("user"));
    router_.Add("GET", "/api/users/:id/last-seen", Named("last-seen"));
    router_.Add("PUT", "/api/conversations/:id/participants/:userId", Named("role"));
    router_.Add("POST", "/api/signup/initiate", Named("signup"), {.blocking = true});
  }

  std::string Call(const RouteMatch& m) {
    Request req;
    std::string body;
    if (m.route) m.route->handler(req, [&body](Response r) { body = r.body; });
    return body;
  }

  Router router_;
};

TEST_F(RouterTest, LiteralMatch) {
  std::map<std::string, std::string> params;
  RouteMatch m = router_.Find("GET", "/api/me", &params);
  ASSERT_NE(m.route, nullptr);
  EXPECT_EQ(Call(m), "get-me");
  EXPECT_EQ(m.route->pattern, "/api/me");
  EXPECT_TRUE(m.route->options.auth);
  EXPECT_TRUE(params.empty());

  m = router_.Find("PUT", "/api/me", &params);
  EXPECT_EQ(Call(m), "put-me");
  m = router_.Find("POST", "/api/signup/initiate", &params);
  ASSERT_NE(m.route, nullptr);
  EXPECT_TRUE(m.route->options.blocking);
  EXPECT_FALSE(m.route->options.auth);
}

TEST_F(RouterTest, ParamsAreCaptured) {
  std::map<std::string, std::string> params;
  RouteMatch m = router_.Find("GET", "/api/users/42", &params);
  ASSERT_NE(m.route, nullptr);
  EXPECT_EQ(Call(m), "user");
  EXPECT_EQ(params, (Map{{"id", "42"}}));

  params.clear();
  m = router_.Find("GET", "/api/users/7/last-seen", &params);
  EXPECT_EQ(Call(m), "last-seen");
  EXPECT_EQ(params, (Map{{"id", "7"}}));

  params.clear();
  m = router_.Find("PUT", "/api/conversations/3/participants/9", &params);
  EXPECT_EQ(Call(m), "role");
  EXPECT_EQ(params, (Map{{"id", "3"}, {"userId", "9"}}));
  EXPECT_EQ(m.route->pattern, "/api/conversations/:id/participants/:userId");
}

TEST_F(RouterTest, ParamsAreNotFilledWithoutAMatch) {
  std::map<std::string, std::string> params;
  RouteMatch m = router_.Find("DELETE", "/api/users/42", &params);
  EXPECT_EQ(m.route, nullptr);
  EXPECT_TRUE(params.empty());
}

TEST_F(RouterTest, TrailingSlashIsIgnored) {
  std::map<std::string, std::string> params;
  EXPECT_EQ(Call(router_.Find("GET", "/api/me/", &params)), "get-me");
  EXPECT_EQ(Call(router_.Find("GET", "/api/users/42/", &params)), "user");
  EXPECT_EQ(params.at("id"), "42");
}

TEST_F(RouterTest, WrongMethodOnAKnownPathIs405) {
  RouteMatch m = router_.Find("DELETE", "/api/me", nullptr);
  EXPECT_EQ(m.route, nullptr);
  EXPECT_TRUE(m.path_known);
  EXPECT_EQ(m.allowed, "GET, PUT");

  m = router_.Find("POST", "/api/users/5", nullptr);
  EXPECT_EQ(m.route, nullptr);
  EXPECT_TRUE(m.path_known);
  EXPECT_EQ(m.allowed, "GET");
}

TEST_F(RouterTest, UnknownPathIs404) {
  for (const char* path : {"/api/nope", "/api", "/", "", "/api/me/extra", "/api/users/1/x",
                           "/API/ME", "/api/signup"}) {
    SCOPED_TRACE(path);
    RouteMatch m = router_.Find("GET", path, nullptr);
    EXPECT_EQ(m.route, nullptr);
    EXPECT_FALSE(m.path_known);
    EXPECT_TRUE(m.allowed.empty());
  }
}

TEST_F(RouterTest, MethodIsCaseSensitive) {
  RouteMatch m = router_.Find("get", "/api/me", nullptr);
  EXPECT_EQ(m.route, nullptr);
  EXPECT_TRUE(m.path_known);
}

// ---------------------------------------------------------------------------------------------
// ErrorResponse
// ---------------------------------------------------------------------------------------------

TEST(ErrorResponseTest, StatusAndCodeForEveryStatusCode) {
  struct Case {
    Status status;
    int http;
    const char* code;
  };
  const Case cases[] = {
      {Status::InvalidRequest("username is required"), 400, "invalid_request"},
      {Status::OtpInvalid("m"), 400, "otp_invalid"},
      {Status::OtpExpired("m"), 400, "otp_expired"},
      {Status::Unauthorized("m"), 401, "unauthorized"},
      {Status::InvalidCredentials("m"), 401, "invalid_credentials"},
      {Status::Forbidden("m"), 403, "forbidden"},
      {Status::NotFound("m"), 404, "not_found"},
      {Status::Conflict("username already taken"), 409, "conflict"},
      {Status::PayloadTooLarge("m"), 413, "payload_too_large"},
      {Status::RateLimited("m", 12), 429, "rate_limited"},
      {Status::Internal("m"), 500, "internal"},
      {Status::Unavailable("m"), 503, "unavailable"},
      {Status(StatusCode::kDeliveryFailed, "could not send"), 503, "unavailable"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.code);
    Response r = ErrorResponse(c.status);
    EXPECT_EQ(r.status, c.http);
    EXPECT_EQ(r.content_type, "application/json");
    Json body = Json::parse(r.body, nullptr, false);
    ASSERT_FALSE(body.is_discarded()) << r.body;
    ASSERT_TRUE(body.is_object());
    EXPECT_EQ(body.size(), 1u);
    ASSERT_TRUE(body["error"].is_object());
    EXPECT_EQ(body["error"].size(), 2u);
    EXPECT_EQ(body["error"]["code"], c.code);
    EXPECT_EQ(body["error"]["message"], c.status.message());
  }
}

TEST(ErrorResponseTest, RetryAfterOnlyWhenRateLimited) {
  Response limited = ErrorResponse(Status::RateLimited("slow down", 17));
  ASSERT_EQ(limited.headers.size(), 1u);
  EXPECT_EQ(limited.headers[0].first, "Retry-After");
  EXPECT_EQ(limited.headers[0].second, "17");

  // Never less than a second.
  Response zero = ErrorResponse(Status::RateLimited("slow down", 0));
  ASSERT_EQ(zero.headers.size(), 1u);
  EXPECT_EQ(zero.headers[0].second, "1");

  EXPECT_TRUE(ErrorResponse(Status::Conflict("x")).headers.empty());
  EXPECT_TRUE(ErrorResponse(Status::Internal("x")).headers.empty());
}

TEST(ErrorResponseTest, InvalidUtf8InMessageStillGivesValidJson) {
  Response r = ErrorResponse(Status::InvalidRequest("bad value \xFF\xFE"));
  Json body = Json::parse(r.body, nullptr, false);
  ASSERT_FALSE(body.is_discarded()) << r.body;
  EXPECT_EQ(body["error"]["code"], "invalid_request");
}

// ---------------------------------------------------------------------------------------------
// JSON helpers
// ---------------------------------------------------------------------------------------------

TEST(ParseObjectTest, AcceptsObjects) {
  auto j = ParseObject(R"({"a": "x", "n": 5, "unknown": [1, 2]})");
  ASSERT_TRUE(j.ok()) << j.status().message();
  EXPECT_EQ((*j)["a"], "x");
  EXPECT_TRUE(ParseObject("{}").ok());
  auto utf8 = ParseObject("{\"name\": \"caf\xC3\xA9 \\u00e9 \\ud83d\\ude00\"}");
  ASSERT_TRUE(utf8.ok());
  EXPECT_EQ((*utf8)["name"], "caf\xC3\xA9 \xC3\xA9 \xF0\x9F\x98\x80");
}

TEST(ParseObjectTest, RejectsInvalidJson) {
  for (const char* body : {"", " ", "{", "{\"a\":}", "{'a': 1}", "{\"a\": 1,}", "{\"a\" 1}",
                           "{\"a\": 1} trailing", "nul", "{\"a\": \"unterminated}"}) {
    SCOPED_TRACE(body);
    auto j = ParseObject(body);
    ASSERT_FALSE(j.ok());
    EXPECT_EQ(j.status().code(), StatusCode::kInvalidRequest);
  }
}

TEST(ParseObjectTest, RejectsInvalidUtf8InsideStrings) {
  for (const std::string& body :
       {std::string("{\"a\": \"\xFF\"}"), std::string("{\"a\": \"\xC3\"}"),
        std::string("{\"a\": \"\xC0\x80\"}"), std::string("{\"a\": \"\xED\xA0\x80\"}"),
        std::string("{\"\xFE\": 1}"), std::string("{\"a\": \"\\ud800\"}"),
        std::string("{\"a\": \"\\udc00x\"}")}) {
    SCOPED_TRACE(body);
    auto j = ParseObject(body);
    ASSERT_FALSE(j.ok());
    EXPECT_EQ(j.status().code(), StatusCode::kInvalidRequest);
  }
}

TEST(ParseObjectTest, RejectsNonObjects) {
  for (const char* body : {"[]", "[{\"a\":1}]", "\"text\"", "42", "null", "true"}) {
    SCOPED_TRACE(body);
    auto j = ParseObject(body);
    ASSERT_FALSE(j.ok());
    EXPECT_EQ(j.status().code(), StatusCode::kInvalidRequest);
  }
}

TEST(RequiredStringTest, PresentMissingAndWrongType) {
  const Json obj = Json::parse(
      R"({"s": "v", "empty": "", "n": 1, "nul": null, "arr": ["x"], "obj": {}, "b": true})");
  auto s = RequiredString(obj, "s");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(*s, "v");
  auto empty = RequiredString(obj, "empty");
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(*empty, "");

  for (const char* field : {"missing", "nul"}) {
    auto r = RequiredString(obj, field);
    ASSERT_FALSE(r.ok()) << field;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidRequest);
    EXPECT_THAT(r.status().message(), HasSubstr(field));
  }
  for (const char* field : {"n", "arr", "obj", "b"}) {
    auto r = RequiredString(obj, field);
    ASSERT_FALSE(r.ok()) << field;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidRequest);
    EXPECT_THAT(r.status().message(), HasSubstr(field));
  }
}

TEST(OptionalStringTest, AbsentPresentAndWrongType) {
  const Json obj = Json::parse(R"({"s": "v", "n": 1, "nul": null})");
  auto absent = OptionalString(obj, "missing");
  ASSERT_TRUE(absent.ok());
  EXPECT_FALSE(absent->has_value());
  auto s = OptionalString(obj, "s");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(*s, std::optional<std::string>("v"));
  for (const char* field : {"n", "nul"}) {
    auto r = OptionalString(obj, field);
    ASSERT_FALSE(r.ok()) << field;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidRequest);
    EXPECT_THAT(r.status().message(), HasSubstr(field));
  }
}

TEST(QueryIntTest, PositiveIntegersOnly) {
  Request req;
  req.query = {{"limit", "20"}, {"big", "9223372036854775807"},
               {"zero", "0"},   {"neg", "-1"},
               {"word", "ten"}, {"mixed", "10x"},
               {"empty", ""},   {"plus", "+5"},
               {"space", " 5"}, {"huge", "9223372036854775808"},
               {"frac", "1.5"}};
  auto limit = QueryInt(req, "limit");
  ASSERT_TRUE(limit.ok());
  EXPECT_EQ(*limit, std::optional<int64_t>(20));
  auto big = QueryInt(req, "big");
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(*big, std::optional<int64_t>(9223372036854775807));
  auto absent = QueryInt(req, "before");
  ASSERT_TRUE(absent.ok());
  EXPECT_FALSE(absent->has_value());
  for (const char* name :
       {"zero", "neg", "word", "mixed", "empty", "plus", "space", "huge", "frac"}) {
    auto r = QueryInt(req, name);
    ASSERT_FALSE(r.ok()) << name;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidRequest);
    EXPECT_THAT(r.status().message(), HasSubstr(name));
  }
}

TEST(PathIdTest, PositiveIdOrNotFound) {
  Request req;
  req.params = {{"id", "42"},
                {"zero", "0"},
                {"neg", "-3"},
                {"word", "abc"},
                {"mixed", "4a"},
                {"empty", ""},
                {"huge", "99999999999999999999"}};
  auto id = PathId(req, "id");
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(*id, 42);
  for (const char* name : {"zero", "neg", "word", "mixed", "empty", "huge", "missing"}) {
    auto r = PathId(req, name);
    ASSERT_FALSE(r.ok()) << name;
    EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  }
}

TEST(JsonResponseTest, SerializesBody) {
  Response r = JsonResponse(201, Json{{"id", 7}});
  EXPECT_EQ(r.status, 201);
  EXPECT_EQ(r.content_type, "application/json");
  EXPECT_EQ(Json::parse(r.body), (Json{{"id", 7}}));
}

// ---------------------------------------------------------------------------------------------
// Dispatcher
// ---------------------------------------------------------------------------------------------

TEST(DispatcherTest, AHandlerThatThrowsIsAnswered500Once) {
  Router router;
  router.Add("GET", "/boom", [](Request&) -> Response { throw std::runtime_error("secret"); });
  router.AddAsync("GET", "/late", [](Request&, Respond respond) {
    respond(JsonResponse(200, {{"ok", true}}));
    throw std::runtime_error("after answering");
  });
  boost::asio::thread_pool pool(1);
  metrics::Registry registry;
  Dispatcher d(
      &router, [](std::string_view) -> Result<int64_t> { return int64_t{1}; }, pool.get_executor(),
      &registry);
  std::vector<Response> got;
  Request req;
  req.method = "GET";
  req.path = "/boom";
  d.Dispatch(req, [&](Response r) { got.push_back(std::move(r)); });
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].status, 500);
  EXPECT_EQ(Json::parse(got[0].body)["error"]["code"], "internal");
  EXPECT_EQ(got[0].body.find("secret"), std::string::npos);  // no internal details
  got.clear();
  req.path = "/late";
  d.Dispatch(req, [&](Response r) { got.push_back(std::move(r)); });
  ASSERT_EQ(got.size(), 1u);  // the 200 only, no second answer
  EXPECT_EQ(got[0].status, 200);
  pool.join();
}

TEST(DispatcherTest, ACachedAnswerSkipsTheDatabaseThreadsAndAMissGoesThere) {
  Router router;
  std::atomic<int> full_runs{0};
  bool in_memory = true;
  router.Add(
      "GET", "/me",
      [&](Request& req) -> Response {
        ++full_runs;
        return JsonResponse(200, {{"from", "database"}, {"user", req.user_id}});
      },
      RouteOptions{.auth = true},
      [&](Request& req) -> std::optional<Response> {
        if (!in_memory) return std::nullopt;
        return JsonResponse(200, {{"from", "memory"}, {"user", req.user_id}});
      });
  boost::asio::thread_pool workers(1);
  boost::asio::thread_pool database(1);
  metrics::Registry registry;
  bool cached_auth_known = true;
  Dispatcher d(
      &router, [](std::string_view) -> Result<int64_t> { return int64_t{7}; },
      workers.get_executor(), &registry, nullptr, database.get_executor(),
      [&](std::string_view token) -> std::optional<Result<int64_t>> {
        if (token == "bad") return Result<int64_t>(Status::Unauthorized("token revoked"));
        if (!cached_auth_known) return std::nullopt;
        return Result<int64_t>(int64_t{7});
      });
  auto call = [&](const std::string& authorization) {
    Request req;
    req.method = "GET";
    req.path = "/me";
    req.authorization = authorization;
    std::promise<std::pair<Response, std::thread::id>> got;
    d.Dispatch(req, [&](Response r) { got.set_value({std::move(r), std::this_thread::get_id()}); });
    return got.get_future().get();
  };
  const auto here = std::this_thread::get_id();

  auto [hit, hit_thread] = call("Bearer good");
  EXPECT_EQ(Json::parse(hit.body)["from"], "memory");
  EXPECT_EQ(Json::parse(hit.body)["user"], 7);
  EXPECT_EQ(hit_thread, here);  // answered inline
  auto [refused, refused_thread] = call("Bearer bad");
  EXPECT_EQ(refused.status, 401);
  EXPECT_EQ(refused_thread, here);
  EXPECT_EQ(call("").first.status, 401);

  in_memory = false;  // the handler needs the database
  auto [miss, miss_thread] = call("Bearer good");
  EXPECT_EQ(Json::parse(miss.body)["from"], "database");
  EXPECT_NE(miss_thread, here);
  in_memory = true;
  cached_auth_known = false;  // the token's user is not kept: authenticated on a database thread
  auto [unknown, unknown_thread] = call("Bearer good");
  EXPECT_EQ(Json::parse(unknown.body)["from"], "database");
  EXPECT_NE(unknown_thread, here);
  EXPECT_EQ(full_runs.load(), 2);
  database.join();
  workers.join();
}

}  // namespace
}  // namespace mmchat::http

namespace mmchat::http {
namespace {

TEST(ParseRangeTest, SingleRangesWithinTheBody) {
  using Kind = ByteRange::Kind;
  auto part = [](std::string_view h, int64_t size) {
    const ByteRange r = ParseRange(h, size);
    return r.kind == Kind::kPart ? std::to_string(r.first) + "-" + std::to_string(r.last)
                                 : std::string(r.kind == Kind::kWhole ? "whole" : "416");
  };
  EXPECT_EQ(part("bytes=0-0", 10), "0-0");
  EXPECT_EQ(part("bytes=2-5", 10), "2-5");
  EXPECT_EQ(part("bytes=2-", 10), "2-9");
  EXPECT_EQ(part("bytes=2-99", 10), "2-9");  // the end is clamped
  EXPECT_EQ(part("bytes=-3", 10), "7-9");    // the last three
  EXPECT_EQ(part("bytes=-30", 10), "0-9");   // more than there is: all
  EXPECT_EQ(part("Bytes = 1 - 2", 10), "1-2");
  EXPECT_EQ(part("bytes=10-", 10), "416");  // starts past the end
  EXPECT_EQ(part("bytes=10-20", 10), "416");
  EXPECT_EQ(part("bytes=-0", 10), "416");  // asks for nothing
  EXPECT_EQ(part("bytes=0-", 0), "416");   // an empty body has no byte
  EXPECT_EQ(part("bytes=-1", 0), "416");
  // Ignored, as RFC 9110 allows: the whole body.
  for (std::string_view h :
       {"", "bytes=0-1,3-4", "items=0-1", "bytes=", "bytes=-", "bytes=a-b", "bytes=5-2",
        "bytes=1-2x", "bytes=99999999999999999999-", "bytes=--1", "0-1"}) {
    EXPECT_EQ(part(h, 10), "whole") << h;
  }
}

TEST(IfNoneMatchTest, WeakComparisonOfAListOrStar) {
  EXPECT_TRUE(IfNoneMatchHolds("\"abc\"", "\"abc\""));
  EXPECT_TRUE(IfNoneMatchHolds("W/\"abc\"", "\"abc\""));
  EXPECT_TRUE(IfNoneMatchHolds("\"x\", \"abc\"", "\"abc\""));
  EXPECT_TRUE(IfNoneMatchHolds(" * ", "\"abc\""));
  EXPECT_FALSE(IfNoneMatchHolds("", "\"abc\""));
  EXPECT_FALSE(IfNoneMatchHolds("abc", "\"abc\""));  // unquoted is another tag
  EXPECT_FALSE(IfNoneMatchHolds("\"abcd\"", "\"abc\""));
}

TEST(ContentDispositionTest, InlineOrAttachmentWithAPlainAndAnExactFilename) {
  EXPECT_EQ(ContentDisposition(true, std::nullopt), "inline");
  EXPECT_EQ(ContentDisposition(false, std::nullopt), "attachment");
  EXPECT_EQ(ContentDisposition(false, "plan.pdf"),
            "attachment; filename=\"plan.pdf\"; filename*=UTF-8''plan.pdf");
  // Quotes and backslashes cannot break out of the quoted name; non-ASCII is one '_' each.
  EXPECT_EQ(ContentDisposition(false, "a\"b\\c ü✓.txt"),
            "attachment; filename=\"a_b_c __.txt\"; "
            "filename*=UTF-8''a%22b%5Cc%20%C3%BC%E2%9C%93.txt");
  EXPECT_EQ(ContentDisposition(true, "x;y=z"),
            "inline; filename=\"x;y=z\"; filename*=UTF-8''x%3By%3Dz");
}

}  // namespace
}  // namespace mmchat::http

// ---------------------------------------------------------------------------------------------
// Streamed uploads through the real server: a sink that fails while the next piece is being
// read ends the upload once, with no two sink calls at the same time, and the server goes on.
// ---------------------------------------------------------------------------------------------

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include "http/server.h"

namespace mmchat::http {
namespace {

class FailingSink final : public BodySink {
 public:
  Status Write(std::string_view) override {
    Enter();
    // Slow enough that the server reads the next piece meanwhile.
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    const int n = ++writes;
    Leave();
    return n >= 2 ? Status::Unavailable("the store went away") : Status::Ok();
  }
  Response Finish() override {
    ++finishes;
    return Response{};
  }
  void Abort() override {
    Enter();
    ++aborts;
    Leave();
  }

  std::atomic<int> writes{0}, finishes{0}, aborts{0}, overlaps{0};

 private:
  void Enter() {
    if (busy_.exchange(true)) ++overlaps;
  }
  void Leave() { busy_ = false; }
  std::atomic<bool> busy_{false};
};

// Connects to 127.0.0.1:port; the descriptor.
int ConnectLoopback(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

TEST(ServerUploadTest, ASinkFailureWhileTheNextPieceIsReadEndsTheUploadOnce) {
  auto sink = std::make_shared<FailingSink>();
  Router router;
  router.AddUpload("POST", "/up",
                   [sink](Request&) -> Result<std::shared_ptr<BodySink>> {
                     return std::shared_ptr<BodySink>(sink);
                   },
                   {.max_body = 64 << 20});
  router.Add("GET", "/ping", [](Request&) { return JsonResponse(200, {{"ok", true}}); });
  metrics::Registry registry;
  boost::asio::thread_pool workers(2);
  Dispatcher dispatcher(
      &router, [](std::string_view) { return Result<int64_t>(1); }, workers.get_executor(),
      &registry);
  boost::asio::io_context ioc;
  auto guard = boost::asio::make_work_guard(ioc);
  ServerOptions options;
  options.host = "127.0.0.1";
  options.port = 0;
  Server server(ioc, &dispatcher, &registry, options);
  ASSERT_TRUE(server.Listen().ok());
  server.Start();
  std::thread io([&] { ioc.run(); });

  const int fd = ConnectLoopback(server.port());
  ASSERT_GE(fd, 0);
  const size_t body = 16 << 20;
  const std::string head =
      "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(body) + "\r\n\r\n";
  ASSERT_EQ(::send(fd, head.data(), head.size(), MSG_NOSIGNAL), static_cast<ssize_t>(head.size()));
  std::thread sender([&] {
    const std::string block(64 * 1024, 'x');
    for (size_t sent = 0; sent < body; sent += block.size()) {
      if (::send(fd, block.data(), block.size(), MSG_NOSIGNAL) <= 0) return;  // closed on us
    }
  });
  std::string answer;
  char buf[4096];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;)
    answer.append(buf, static_cast<size_t>(n));
  sender.join();
  ::close(fd);
  EXPECT_EQ(answer.rfind("HTTP/1.1 503", 0), 0u) << answer;
  EXPECT_NE(answer.find("the store went away"), std::string::npos) << answer;

  for (int i = 0; i < 200 && sink->aborts == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(sink->writes, 2);  // none after the failure
  EXPECT_EQ(sink->aborts, 1);
  EXPECT_EQ(sink->finishes, 0);
  EXPECT_EQ(sink->overlaps, 0);

  // The server goes on.
  const int again = ConnectLoopback(server.port());
  ASSERT_GE(again, 0);
  const std::string ping = "GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  ::send(again, ping.data(), ping.size(), MSG_NOSIGNAL);
  std::string pong;
  for (ssize_t n; (n = ::recv(again, buf, sizeof buf, 0)) > 0;)
    pong.append(buf, static_cast<size_t>(n));
  ::close(again);
  EXPECT_EQ(pong.rfind("HTTP/1.1 200", 0), 0u) << pong;

  server.Stop();
  EXPECT_TRUE(server.WaitForConnections(std::chrono::seconds(5)));
  guard.reset();
  ioc.stop();
  io.join();
  workers.join();
}

}  // namespace
}  // namespace mmchat::http
