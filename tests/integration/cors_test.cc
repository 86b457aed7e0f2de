// API.md, Configuration: CORS_ALLOWED_ORIGINS over real HTTP. Preflights from a listed origin
// are answered 204 with what is allowed, from any other 403; every answer to a listed
// origin's request carries Access-Control-Allow-Origin (errors, uploads and downloads too),
// and nothing changes for a server that lists none. (The browser side, a page on a second
// origin, is in the web client's browser tests.)
#include <gtest/gtest.h>

#include <string>

#include "harness.h"

namespace mmchat::test {
namespace {

constexpr const char* kApp = "http://localhost:5173";

class CorsTest : public ::testing::Test {
 protected:
  CorsTest()
      : server_(ServerOptions{
            .env = {{"CORS_ALLOWED_ORIGINS", std::string(kApp) + ",https://app.example.com"}}}),
        client_(server_.port()) {}

  HttpResult Preflight(const std::string& target, const std::string& origin,
                       const std::string& method) {
    return client_.Request("OPTIONS", target, "", "",
                           {{"Origin", origin},
                            {"Access-Control-Request-Method", method},
                            {"Access-Control-Request-Headers", "authorization,content-type"}});
  }

  TestServer server_;
  HttpClient client_;
};

TEST_F(CorsTest, APreflightFromAListedOriginIsAnswered204WithWhatIsAllowed) {
  for (const auto& [target, method] :
       {std::pair{"/api/messages", "POST"}, std::pair{"/api/me", "PUT"},
        std::pair{"/api/messages/1", "DELETE"}, std::pair{"/api/uploads", "POST"}}) {
    SCOPED_TRACE(target);
    auto r = Preflight(target, kApp, method);
    EXPECT_EQ(r.status, 204) << r.body;
    EXPECT_TRUE(r.body.empty());
    EXPECT_EQ(r.headers.count("content-length"), 0u) << "RFC 9110: none on a 204";
    EXPECT_EQ(r.headers["access-control-allow-origin"], kApp);
    EXPECT_EQ(r.headers["vary"], "Origin");
    EXPECT_NE(r.headers["access-control-allow-methods"].find(method), std::string::npos);
    const std::string allowed = r.headers["access-control-allow-headers"];
    EXPECT_NE(allowed.find("Authorization"), std::string::npos) << allowed;
    EXPECT_NE(allowed.find("Content-Type"), std::string::npos) << allowed;
    EXPECT_FALSE(r.headers["access-control-max-age"].empty());
  }
  // The connection goes on serving after a preflight.
  EXPECT_EQ(client_.Get("/healthz").status, 200);
}

TEST_F(CorsTest, APreflightFromAnOriginNotListedIsRefused) {
  for (const char* origin : {"http://localhost:5174", "https://evil.example", "null"}) {
    SCOPED_TRACE(origin);
    auto r = Preflight("/api/messages", origin, "POST");
    EXPECT_EQ(r.status, 403);
    EXPECT_EQ(r.ErrorCode(), "forbidden");
    EXPECT_EQ(r.headers.count("access-control-allow-origin"), 0u);
    EXPECT_EQ(r.headers.count("access-control-allow-methods"), 0u);
  }
}

TEST_F(CorsTest, AnswersToAListedOriginCarryTheHeadersErrorsIncluded) {
  HttpClient client(server_.port());
  const Account alice = SignUp(server_, client, "alice");
  const std::map<std::string, std::string> from_app = {{"Origin", "https://app.example.com"}};
  auto me = client.Request("GET", "/api/me", "", alice.token, from_app);
  EXPECT_EQ(me.status, 200);
  EXPECT_EQ(me.headers["access-control-allow-origin"], "https://app.example.com");
  EXPECT_EQ(me.headers["vary"], "Origin");
  EXPECT_NE(me.headers["access-control-expose-headers"].find("Location"), std::string::npos);
  // An error is readable by the page too: otherwise it sees only a network failure.
  auto unauthorized = client.Request("GET", "/api/me", "", "", from_app);
  EXPECT_EQ(unauthorized.status, 401);
  EXPECT_EQ(unauthorized.headers["access-control-allow-origin"], "https://app.example.com");
  auto missing = client.Request("GET", "/api/nowhere", "", alice.token, from_app);
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.headers["access-control-allow-origin"], "https://app.example.com");
  // A streamed upload's answer and a download's.
  auto up = client.Request("POST", "/api/uploads", "hello", alice.token,
                           {{"Origin", kApp}, {"Content-Type", "text/plain"}});
  ASSERT_EQ(up.status, 201) << up.body;
  EXPECT_EQ(up.headers["access-control-allow-origin"], kApp);
  auto down = client.Request("GET", up.headers["location"], "", alice.token, {{"Origin", kApp}});
  EXPECT_EQ(down.status, 200);
  EXPECT_EQ(down.body, "hello");
  EXPECT_EQ(down.headers["access-control-allow-origin"], kApp);
  // Another origin's request is served (CORS is enforced by the browser), without the
  // header that would let its page read the answer.
  auto other =
      client.Request("GET", "/api/me", "", alice.token, {{"Origin", "https://evil.example"}});
  EXPECT_EQ(other.status, 200);
  EXPECT_EQ(other.headers.count("access-control-allow-origin"), 0u);
  EXPECT_EQ(other.headers["vary"], "Origin");
  // And a request with no Origin (curl, a native app) is as it always was.
  auto plain = client.Request("GET", "/api/me", "", alice.token);
  EXPECT_EQ(plain.headers.count("access-control-allow-origin"), 0u);
}

TEST(CorsOffTest, WithNoOriginsListedThereAreNoCorsHeadersAndNoPreflights) {
  TestServer server;
  HttpClient client(server.port());
  auto r = client.Request("OPTIONS", "/api/messages", "", "",
                          {{"Origin", kApp}, {"Access-Control-Request-Method", "POST"}});
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.headers.count("access-control-allow-origin"), 0u);
  auto h = client.Request("GET", "/healthz", "", "", {{"Origin", kApp}});
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.headers.count("access-control-allow-origin"), 0u);
  EXPECT_EQ(h.headers.count("vary"), 0u);
}

}  // namespace
}  // namespace mmchat::test
