// Observability (README "Configuration", docs/metrics.md, docs/API.md "Request ids"): the
// X-Request-Id of every answer, the access log and LOG_FORMAT=json, and the metrics operators
// tune by (the message writer, WebSocket queues and closes, the PostgreSQL pool).
#include <gtest/gtest.h>

#include <regex>
#include <sstream>

#include "harness.h"
#include "ws_client.h"

namespace mmchat::test {
namespace {

using namespace std::chrono_literals;

bool IsGeneratedId(const std::string& id) {
  static const std::regex kHex("^[0-9a-f]{32}$");
  return std::regex_match(id, kHex);
}

std::string RequestId(const HttpResult& r) {
  auto it = r.headers.find("x-request-id");
  return it == r.headers.end() ? "" : it->second;
}

// The lines of `log` that hold `needle`.
std::vector<std::string> LinesWith(const std::string& log, const std::string& needle) {
  std::vector<std::string> out;
  std::istringstream in(log);
  for (std::string line; std::getline(in, line);) {
    if (line.find(needle) != std::string::npos) out.push_back(line);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// X-Request-Id
// ---------------------------------------------------------------------------------------------

TEST(RequestIdTest, SaneIdsAreEchoedOthersReplaced) {
  TestServer server;
  HttpClient client(server.port());
  auto kept = client.Request("GET", "/healthz", "", "", {{"X-Request-Id", "req-7f3a_9:Z/+="}});
  ASSERT_EQ(kept.status, 200);
  EXPECT_EQ(RequestId(kept), "req-7f3a_9:Z/+=");

  const std::string longest(128, 'a');
  EXPECT_EQ(RequestId(client.Request("GET", "/healthz", "", "", {{"X-Request-Id", longest}})),
            longest);

  // None, too long, a space, a tab, beyond ASCII: a new id instead.
  std::set<std::string> made;
  for (const std::string& bad : {std::string(), std::string(129, 'a'), std::string("two words"),
                                 std::string("tab\there"), std::string("caf\xc3\xa9")}) {
    std::map<std::string, std::string> headers;
    if (!bad.empty()) headers["X-Request-Id"] = bad;
    auto r = client.Request("GET", "/healthz", "", "", headers);
    ASSERT_EQ(r.status, 200) << bad;
    EXPECT_TRUE(IsGeneratedId(RequestId(r))) << bad << " -> " << RequestId(r);
    made.insert(RequestId(r));
  }
  EXPECT_EQ(made.size(), 5u);  // each its own

  // A control character is not even a valid header value: the malformed request's answer has
  // an id of its own.
  HttpClient raw(server.port());
  auto control = raw.Request("GET", "/healthz", "", "", {{"X-Request-Id", "bell\x07"}});
  EXPECT_NE(RequestId(control), "bell\x07");
  EXPECT_TRUE(IsGeneratedId(RequestId(control))) << control.status << " " << RequestId(control);
}

TEST(RequestIdTest, EveryKindOfAnswerCarriesIt) {
  TestServer server;
  HttpClient client(server.port());
  const std::map<std::string, std::string> id = {{"X-Request-Id", "mine-1"}};

  auto not_found = client.Request("GET", "/no/such/route", "", "", id);
  ExpectError(not_found, 404, "not_found");
  EXPECT_EQ(RequestId(not_found), "mine-1");

  auto unauthorized = client.Request("GET", "/api/me", "", "", id);
  ExpectError(unauthorized, 401, "unauthorized");
  EXPECT_EQ(RequestId(unauthorized), "mine-1");

  auto invalid = client.Request("POST", "/api/signup/initiate", "{not json", "", id);
  ExpectError(invalid, 400, "invalid_request");
  EXPECT_EQ(RequestId(invalid), "mine-1");

  HttpClient big_client(server.port());
  auto big = big_client.Request("POST", "/api/signup/initiate", std::string(70 * 1024, 'x'), "",
                                {{"X-Request-Id", "mine-413"}});
  ExpectError(big, 413, "payload_too_large");
  EXPECT_EQ(RequestId(big), "mine-413");

  HttpClient many_client(server.port());
  std::map<std::string, std::string> many = {{"X-Request-Id", "mine-431"}};
  for (int i = 0; i < 120; ++i) many["X-Filler-" + std::to_string(i)] = "x";
  auto too_many = many_client.Request("GET", "/healthz", "", "", many);
  EXPECT_EQ(too_many.status, 431);
  EXPECT_EQ(RequestId(too_many), "mine-431");

  // The WebSocket upgrade: the refusal and the 101.
  WsOptions bad_token;
  bad_token.headers = {{"X-Request-Id", "ws-refused"}};
  WsClient refused(server.port(), "not-a-token", bad_token);
  ASSERT_FALSE(refused.connected());
  EXPECT_EQ(refused.refusal().status, 401);
  EXPECT_EQ(RequestId(refused.refusal()), "ws-refused");

  Account alice = SignUp(server, client, "alice");
  WsOptions with_id;
  with_id.headers = {{"X-Request-Id", "ws-upgrade-1"}};
  WsClient ws(server.port(), alice.token, with_id);
  ASSERT_TRUE(ws.connected());
  EXPECT_EQ(ws.handshake().status, 101);
  EXPECT_EQ(RequestId(ws.handshake()), "ws-upgrade-1");

  // The access log names each request by its id.
  // (Access lines reach the log within a second: they are buffered.)
  ASSERT_TRUE(server.WaitForLog("request_id=ws-upgrade-1"));
  for (const char* want : {"mine-1", "mine-413", "ws-refused", "ws-upgrade-1"}) {
    EXPECT_FALSE(LinesWith(server.Log(), std::string("request_id=") + want).empty()) << want;
  }
  const auto upgrade = LinesWith(server.Log(), "request_id=ws-upgrade-1");
  ASSERT_EQ(upgrade.size(), 1u);
  EXPECT_NE(upgrade[0].find(" info request "), std::string::npos) << upgrade[0];
  EXPECT_NE(upgrade[0].find(" status=101 "), std::string::npos) << upgrade[0];
  EXPECT_NE(upgrade[0].find(" path=/api/ws "), std::string::npos) << upgrade[0];
  EXPECT_EQ(upgrade[0].find("token"), std::string::npos) << upgrade[0];  // no query in logs
}

TEST(RequestIdTest, CorsPreflightCarriesIt) {
  ServerOptions options;
  options.env = {{"CORS_ALLOWED_ORIGINS", "https://app.example.com"}};
  TestServer server(options);
  HttpClient client(server.port());
  auto preflight = client.Request("OPTIONS", "/api/me", "", "",
                                  {{"Origin", "https://app.example.com"},
                                   {"Access-Control-Request-Method", "GET"},
                                   {"X-Request-Id", "preflight-1"}});
  EXPECT_EQ(preflight.status, 204);
  EXPECT_EQ(RequestId(preflight), "preflight-1");
}

TEST(AccessLogTest, OneLinePerRequestWithItsFields) {
  TestServer server;
  HttpClient client(server.port());
  ASSERT_EQ(
      client.Request("GET", "/api/users/12345", "", "", {{"X-Request-Id", "fields-1"}}).status,
      401);
  ASSERT_TRUE(server.WaitForLog("request_id=fields-1"));
  const auto lines = LinesWith(server.Log(), "request_id=fields-1");
  ASSERT_EQ(lines.size(), 1u);
  static const std::regex kLine(
      R"(^\S+Z info request request_id=fields-1 method=GET path=/api/users/12345 )"
      R"(route="GET /api/users/:id" status=401 duration_ms=[0-9.e-]+ client=127\.0\.0\.1$)");
  EXPECT_TRUE(std::regex_match(lines[0], kLine)) << lines[0];
}

TEST(AccessLogTest, OffLogsNoOrdinaryAnswers) {
  ServerOptions options;
  options.env = {{"ACCESS_LOG", "off"}};
  TestServer server(options);
  HttpClient client(server.port());
  auto r = client.Request("GET", "/healthz", "", "", {{"X-Request-Id", "quiet-1"}});
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(RequestId(r), "quiet-1");  // the header is there all the same
  ExpectError(client.Request("GET", "/nope", "", "", {{"X-Request-Id", "quiet-2"}}), 404,
              "not_found");
  ASSERT_EQ(server.Stop(), 0);  // every line is out
  EXPECT_TRUE(LinesWith(server.Log(), "quiet-").empty()) << server.Log();
}

// ---------------------------------------------------------------------------------------------
// LOG_FORMAT=json
// ---------------------------------------------------------------------------------------------

TEST(JsonLogTest, EveryLineIsAnObjectAndRequestsCarryTheirIds) {
  ServerOptions options;
  options.env = {{"LOG_FORMAT", "json"}};
  TestServer server(options);
  HttpClient client(server.port());
  // A signup logs its code (the log sender), with text a client chose in it.
  Account alice = SignUp(server, client, "alice");
  ASSERT_EQ(
      client.Request("GET", "/api/me", "", alice.token, {{"X-Request-Id", "json-me-1"}}).status,
      200);
  ExpectError(client.Request("GET", "/nope\"\\", "", "", {{"X-Request-Id", "json-404"}}), 404,
              "not_found");
  ASSERT_EQ(server.Stop(), 0);  // every line is out

  int lines = 0;
  std::map<std::string, Json> by_id;
  std::istringstream in(server.Log());
  for (std::string line; std::getline(in, line);) {
    ++lines;
    Json j = Json::parse(line, nullptr, /*allow_exceptions=*/false);
    ASSERT_TRUE(j.is_object()) << "not a JSON object: " << line;
    ASSERT_TRUE(j["ts"].is_string()) << line;
    EXPECT_TRUE(std::regex_match(j["ts"].get<std::string>(),
                                 std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)")))
        << line;
    ASSERT_TRUE(j["level"].is_string()) << line;
    EXPECT_TRUE(std::set<std::string>({"debug", "info", "warn", "error", "critical"})
                    .count(j["level"].get<std::string>()))
        << line;
    ASSERT_TRUE(j["msg"].is_string()) << line;
    if (j.contains("request_id")) by_id[j["request_id"].get<std::string>()] = j;
  }
  EXPECT_GT(lines, 5);
  EXPECT_NE(server.Log().find(R"("msg":"mmchat listening on http://)"), std::string::npos);

  ASSERT_TRUE(by_id.count("json-me-1")) << server.Log();
  const Json& me = by_id["json-me-1"];
  EXPECT_EQ(me["msg"], "request");
  EXPECT_EQ(me["level"], "info");
  EXPECT_EQ(me["method"], "GET");
  EXPECT_EQ(me["path"], "/api/me");
  EXPECT_EQ(me["route"], "GET /api/me");
  EXPECT_EQ(me["status"], 200);
  EXPECT_TRUE(me["duration_ms"].is_number()) << me;
  EXPECT_GE(me["duration_ms"].get<double>(), 0);
  EXPECT_EQ(me["client"], "127.0.0.1");

  ASSERT_TRUE(by_id.count("json-404")) << server.Log();
  EXPECT_EQ(by_id["json-404"]["path"], "/nope\"\\");  // escaped, and read back whole
  EXPECT_EQ(by_id["json-404"]["status"], 404);
}

// ---------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------

// The value of a series `name` (with its labels, if any), or nullopt.
std::optional<double> Series(const std::string& metrics, const std::string& name) {
  std::istringstream in(metrics);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
  }
  return std::nullopt;
}

TEST(ObservabilityMetricsTest, WriterWebSocketAndPoolFamiliesHavePlausibleValues) {
  TestServer server;
  HttpClient client(server.port());
  Account alice = SignUp(server, client, "alice");
  Account bob = SignUp(server, client, "bob");
  auto dm = client.Post("/api/conversations/private", {{"user_id", bob.id}}, alice.token);
  ASSERT_EQ(dm.status, 201) << dm.body;
  const int64_t conversation = dm.json["id"];

  WsClient bob_ws(server.ws_port(), bob.token);
  ASSERT_TRUE(bob_ws.connected());
  for (int i = 0; i < 5; ++i) {
    auto sent = client.Post(
        "/api/messages", {{"conversation_id", conversation}, {"content", "m" + std::to_string(i)}},
        alice.token);
    ASSERT_EQ(sent.status, 201) << sent.body;
  }
  for (int i = 0; i < 5; ++i) ASSERT_FALSE(bob_ws.NextOfType("message").is_null()) << i;

  auto metrics = [&](uint16_t port) {
    HttpClient c(port);
    auto r = c.Get("/metrics");
    EXPECT_EQ(r.status, 200);
    return r.body;
  };
  const std::string m = metrics(server.port());
  for (const char* family :
       {"# TYPE mmchat_writer_batch_size histogram", "# TYPE mmchat_writer_queue_depth gauge",
        "# TYPE mmchat_writer_commit_duration_seconds histogram",
        "# TYPE mmchat_writer_failed_batches_total counter"}) {
    EXPECT_NE(m.find(std::string(family) + "\n"), std::string::npos) << family << "\n" << m;
  }
  // Five sends (and the signups' nothing): at least one batch, at most five, of one to five.
  const auto batches = Series(m, "mmchat_writer_batch_size_count");
  const auto writes = Series(m, "mmchat_writer_batch_size_sum");
  ASSERT_TRUE(batches && writes) << m;
  EXPECT_GE(*batches, 1);
  EXPECT_LE(*batches, 5);
  EXPECT_EQ(*writes, 5);
  EXPECT_EQ(Series(m, R"(mmchat_writer_batch_size_bucket{le="+Inf"})"), batches);
  const auto commits = Series(m, "mmchat_writer_commit_duration_seconds_count");
  const auto commit_time = Series(m, "mmchat_writer_commit_duration_seconds_sum");
  ASSERT_TRUE(commits && commit_time) << m;
  EXPECT_EQ(*commits, *batches);
  EXPECT_GT(*commit_time, 0);
  EXPECT_LT(*commit_time, 10);
  EXPECT_EQ(Series(m, "mmchat_writer_queue_depth"), 0);  // every send was answered
  EXPECT_EQ(Series(m, "mmchat_writer_failed_batches_total"), 0);

  // The WebSocket families are on the node holding the connection.
  std::string w = metrics(server.ws_port());
  for (const char* family :
       {"# TYPE mmchat_ws_queued_bytes gauge", "# TYPE mmchat_ws_policy_closes_total counter",
        "# TYPE mmchat_ws_slow_closes_total counter"}) {
    EXPECT_NE(w.find(std::string(family) + "\n"), std::string::npos) << family << "\n" << w;
  }
  // Everything queued was written: nothing waits.
  EXPECT_TRUE(Eventually([&] {
    w = metrics(server.ws_port());
    return Series(w, "mmchat_ws_queued_bytes") == 0;
  })) << w;
  EXPECT_EQ(Series(w, "mmchat_ws_policy_closes_total"), 0);

  // A password reset ends the connections of the old token with 1008.
  ASSERT_EQ(client.Post("/api/forgot/initiate", {{"email", bob.email}}).status, 202);
  ASSERT_TRUE(server.WaitForLog("otp: to=" + bob.email + " subject=\"Your MmChat password reset"));
  auto reset = client.Post("/api/forgot/reset", {{"email", bob.email},
                                                 {"otp", *server.LatestCode(bob.email)},
                                                 {"new_password", "fresh pw 1"}});
  ASSERT_EQ(reset.status, 200) << reset.body;
  EXPECT_EQ(bob_ws.WaitClosed(5s), 1008);
  EXPECT_TRUE(Eventually([&] {
    w = metrics(server.ws_port());
    return Series(w, "mmchat_ws_policy_closes_total") == 1;
  })) << w;
  EXPECT_EQ(Series(w, "mmchat_ws_slow_closes_total"), 0);  // not for falling behind
  EXPECT_EQ(Series(w, "mmchat_ws_queued_bytes"), 0);

  // The PostgreSQL pool's waits; SQLite has no pool to wait for.
  if (OnPostgres()) {
    EXPECT_NE(m.find("# TYPE mmchat_db_pool_waits_total counter\n"), std::string::npos) << m;
    EXPECT_NE(m.find("# TYPE mmchat_db_pool_wait_seconds histogram\n"), std::string::npos) << m;
    const auto waits = Series(m, "mmchat_db_pool_waits_total");
    ASSERT_TRUE(waits.has_value()) << m;
    EXPECT_EQ(Series(m, "mmchat_db_pool_wait_seconds_count"), waits);
    EXPECT_TRUE(Series(m, "mmchat_db_pool_wait_timeouts_total").has_value()) << m;
  } else {
    EXPECT_EQ(m.find("mmchat_db_pool_"), std::string::npos) << m;
  }
}

}  // namespace
}  // namespace mmchat::test
