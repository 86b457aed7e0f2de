// The HTTP server itself and API.md's "Operations" section, over real sockets: health and
// metrics, routing errors, the body limit, malformed HTTP, keep-alive, the read timeout and
// graceful shutdown.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstdio>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"

namespace mmchat::test {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = net::ip::tcp;
using namespace std::chrono_literals;

// The {"error":{"code","message"}} shape with any code.
void ExpectErrorShape(const HttpResult& r) {
  EXPECT_GE(r.status, 300) << r.body;
  ASSERT_TRUE(r.json.is_object()) << r.body;
  ASSERT_TRUE(r.json["error"].is_object()) << r.body;
  EXPECT_TRUE(r.json["error"]["code"].is_string()) << r.body;
  EXPECT_FALSE(r.ErrorCode().empty()) << r.body;
  EXPECT_TRUE(r.json["error"]["message"].is_string()) << r.body;
  ASSERT_TRUE(r.headers.contains("content-type")) << r.body;
  EXPECT_EQ(r.headers.at("content-type"), "application/json");
}

// Parses one HTTP response from raw bytes; nullopt when they do not hold a complete one.
std::optional<HttpResult> ParseResponse(const std::string& raw) {
  bhttp::response_parser<bhttp::string_body> parser;
  parser.eager(true);
  beast::error_code ec;
  size_t offset = 0;
  while (!parser.is_done() && offset < raw.size()) {
    const size_t n = parser.put(net::buffer(raw.data() + offset, raw.size() - offset), ec);
    if (ec == bhttp::error::need_more) break;
    if (ec) return std::nullopt;
    offset += n;
    if (n == 0) break;
  }
  if (!parser.is_done()) {
    parser.put_eof(ec);  // a body delimited by the close
    if (ec || !parser.is_done()) return std::nullopt;
  }
  return ToResult(parser.release());
}

// A raw TCP connection for requests the HttpClient cannot send. Every read has a deadline, so
// a server that never answers fails the test instead of hanging it.
class RawConn {
 public:
  explicit RawConn(uint16_t port) : socket_(ioc_) {
    socket_.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
  }

  // Errors are ignored: the server may close early (e.g. after a 413), which the reads show.
  void Send(const std::string& bytes) {
    beast::error_code ec;
    net::write(socket_, net::buffer(bytes), ec);
  }

  // Reads until the server closes the connection or `timeout` passes. True when it closed
  // (end of stream or reset); received() holds everything read so far either way.
  bool ReadUntilClose(std::chrono::milliseconds timeout = 15s) {
    return Read([](const std::string&) { return false; }, timeout);
  }

  // Reads until received() contains `needle`; false on close or after `timeout`.
  bool ReadUntil(const std::string& needle, std::chrono::milliseconds timeout = 15s) {
    if (received_.find(needle) != std::string::npos) return true;
    Read([&](const std::string& got) { return got.find(needle) != std::string::npos; }, timeout);
    return received_.find(needle) != std::string::npos;
  }

  const std::string& received() const { return received_; }
  bool closed() const { return closed_; }

 private:
  // Reads until `enough` says so (returns false) or the peer closes (returns true).
  bool Read(const std::function<bool(const std::string&)>& enough,
            std::chrono::milliseconds timeout) {
    if (closed_) return true;
    bool finished = false;
    std::function<void()> next = [&] {
      socket_.async_read_some(net::buffer(chunk_), [&](beast::error_code ec, size_t n) {
        received_.append(chunk_.data(), n);
        if (ec) {
          finished = true;
          closed_ = ec == net::error::eof || ec == net::error::connection_reset;
          return;
        }
        if (enough(received_)) {
          finished = true;
          return;
        }
        next();
      });
    };
    next();
    ioc_.restart();
    ioc_.run_for(timeout);
    if (!finished) {  // the deadline passed: cancel and collect the aborted read
      beast::error_code ignored;
      socket_.cancel(ignored);
      ioc_.restart();
      ioc_.run();
    }
    return closed_;
  }

  net::io_context ioc_;
  tcp::socket socket_;
  std::array<char, 4096> chunk_{};
  std::string received_;
  bool closed_ = false;
};

// The value of one series (e.g. `name{a="b"}`) in Prometheus text, or nullopt.
std::optional<double> Sample(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 &&
        line[series.size()] == ' ') {
      return std::stod(line.substr(series.size() + 1));
    }
  }
  return std::nullopt;
}

// Polls the log without reaping the process (safe while another thread waits for the exit).
bool LogShows(const TestServer& server, const std::string& needle,
              std::chrono::milliseconds timeout = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (server.Log().find(needle) != std::string::npos) return true;
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

// Waits until connecting to `port` is refused, i.e. the server closed its listening socket.
bool WaitUntilRefused(uint16_t port, std::chrono::milliseconds timeout = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const int rc = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    const int err = errno;
    close(fd);
    if (rc != 0 && err == ECONNREFUSED) return true;
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

// The harness finds the port in server.log, so a restart in the same directory needs a fresh one.
void SetLogAside(const TestServer& server) {
  std::filesystem::rename(server.dir() / "server.log", server.dir() / "server.before-restart.log");
}

// The server's database is sound after its stop; on SQLite its WAL was checkpointed too.
void ExpectCleanDatabase(const TestServer& server) {
  if (!OnPostgres()) {
    // The WAL first: opening the database to check it may checkpoint and remove it.
    ASSERT_TRUE(std::filesystem::exists(server.db_path()));
    const std::filesystem::path wal = server.db_path().string() + "-wal";
    std::error_code ec;
    if (std::filesystem::exists(wal, ec)) {
      EXPECT_EQ(std::filesystem::file_size(wal, ec), 0u) << "the WAL was not checkpointed";
    }
  }
  EXPECT_EQ(StoreIntegrityCheck(server.dir()), "ok");
}

// A JSON signup/initiate body of exactly `size` bytes, padded with an unknown field.
std::string PaddedSignup(const std::string& username, size_t size) {
  Json body = {{"username", username},
               {"email", username + "@example.com"},
               {"password", "correct horse"},
               {"pad", ""}};
  const size_t base = body.dump().size();
  if (size > base) body["pad"] = std::string(size - base, 'x');
  return body.dump();
}

class ServerTest : public ::testing::Test {
 protected:
  ServerTest() : client_(server_.port()) {}

  std::string Metrics(HttpClient& client) {
    auto r = client.Get("/metrics");
    EXPECT_EQ(r.status, 200) << r.body;
    return r.body;
  }

  TestServer server_;
  HttpClient client_;
};

// ---------------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------------

TEST_F(ServerTest, HealthzAndReadyzAreOk) {
  auto health = client_.Get("/healthz");
  ASSERT_EQ(health.status, 200) << health.body;
  EXPECT_EQ(health.json, (Json{{"status", "ok"}}));
  EXPECT_EQ(health.headers.at("content-type"), "application/json");

  auto ready = client_.Get("/readyz");
  EXPECT_EQ(ready.status, 200) << ready.body;
  EXPECT_EQ(ready.headers.at("content-type"), "application/json");
}

TEST_F(ServerTest, MetricsCountRequestsByRouteAndStatus) {
  const std::string healthz_200 =
      R"(mmchat_http_requests_total{route="GET /healthz",status="200"})";
  const std::string me_401 = R"(mmchat_http_requests_total{route="GET /api/me",status="401"})";
  const std::string before = Metrics(client_);
  const double healthz_before = Sample(before, healthz_200).value_or(0);
  const double me_before = Sample(before, me_401).value_or(0);

  for (int i = 0; i < 3; ++i) ASSERT_EQ(client_.Get("/healthz").status, 200);
  ASSERT_EQ(client_.Get("/api/me").status, 401);

  auto r = client_.Get("/metrics");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.headers.at("content-type").rfind("text/plain", 0), 0u) << r.headers["content-type"];
  const std::string& m = r.body;
  EXPECT_EQ(Sample(m, healthz_200), healthz_before + 3) << m;
  EXPECT_EQ(Sample(m, me_401), me_before + 1) << m;

  EXPECT_NE(m.find("# TYPE mmchat_http_requests_total counter\n"), std::string::npos) << m;
  EXPECT_NE(m.find("# TYPE mmchat_http_request_duration_seconds histogram\n"), std::string::npos)
      << m;
  EXPECT_NE(m.find("# TYPE mmchat_http_connections gauge\n"), std::string::npos) << m;

  // The latency histogram of that route counted the same requests, cumulatively.
  const std::string h = "mmchat_http_request_duration_seconds";
  const auto count = Sample(m, h + R"(_count{route="GET /healthz"})");
  const auto inf = Sample(m, h + R"(_bucket{route="GET /healthz",le="+Inf"})");
  const auto small = Sample(m, h + R"(_bucket{route="GET /healthz",le="0.001"})");
  const auto sum = Sample(m, h + R"(_sum{route="GET /healthz"})");
  ASSERT_TRUE(count && inf && small && sum) << m;
  EXPECT_EQ(*count, healthz_before + 3);
  EXPECT_EQ(*inf, *count);
  EXPECT_LE(*small, *inf);
  EXPECT_GE(*sum, 0);

  // This very connection is open while the metrics are rendered.
  const auto open = Sample(m, "mmchat_http_connections");
  ASSERT_TRUE(open.has_value()) << m;
  EXPECT_GE(*open, 1);

  // Every line is a comment or `series value` in the text exposition format.
  static const std::regex kLine(
      R"(^(# (HELP|TYPE) .*|[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? [-+]?([0-9.eE+-]+|Inf|NaN))$)");
  std::istringstream in(m);
  std::string line;
  int lines = 0;
  while (std::getline(in, line)) {
    ++lines;
    EXPECT_TRUE(std::regex_match(line, kLine)) << "'" << line << "'";
  }
  EXPECT_GT(lines, 10);
}

TEST_F(ServerTest, MetricsCountUnmatchedRoutesAndErrors) {
  const std::string unmatched = R"(mmchat_http_requests_total{route="unmatched",status="404"})";
  const double before = Sample(Metrics(client_), unmatched).value_or(0);
  ASSERT_EQ(client_.Get("/no/such/route").status, 404);
  ASSERT_EQ(client_.Get("/api/nothing").status, 404);
  EXPECT_EQ(Sample(Metrics(client_), unmatched), before + 2);
}

// ---------------------------------------------------------------------------------------------
// Routing errors
// ---------------------------------------------------------------------------------------------

TEST_F(ServerTest, UnknownRouteIs404NotFound) {
  for (const std::string target : {"/web", "/nope", "/api", "/api/nope", "/api/users/1/extra",
                                   "/api/users/1/last-seen/x", "/healthz/x", "/API/me"}) {
    SCOPED_TRACE(target);
    ExpectError(client_.Get(target), 404, "not_found");
  }
  ExpectError(client_.Request("POST", "/api/nope", "{}"), 404, "not_found");
}

TEST_F(ServerTest, WrongMethodIs404WithAllowHeader) {
  // API.md's error table has no 405: no route for this method is a 404 not_found, and the
  // Allow header still says which methods the path takes.
  auto del = client_.Request("DELETE", "/api/me");
  ExpectError(del, 404, "not_found");
  ASSERT_TRUE(del.headers.contains("allow")) << del.body;
  EXPECT_NE(del.headers["allow"].find("GET"), std::string::npos) << del.headers["allow"];
  EXPECT_NE(del.headers["allow"].find("PUT"), std::string::npos) << del.headers["allow"];
  EXPECT_EQ(del.headers["allow"].find("DELETE"), std::string::npos) << del.headers["allow"];

  auto post = client_.Request("POST", "/healthz", "{}");
  ExpectError(post, 404, "not_found");
  EXPECT_EQ(post.headers["allow"], "GET");

  auto get = client_.Get("/api/signup/initiate");
  ExpectError(get, 404, "not_found");
  EXPECT_EQ(get.headers["allow"], "POST");

  // The connection stays usable afterwards.
  EXPECT_EQ(client_.Get("/healthz").status, 200);
}

// ---------------------------------------------------------------------------------------------
// Body and header limits
// ---------------------------------------------------------------------------------------------

TEST_F(ServerTest, BodyOverTheLimitIs413) {
  ExpectError(client_.Request("POST", "/api/signup/initiate", std::string(70'000, 'x')), 413,
              "payload_too_large");
  ExpectError(client_.Request("POST", "/api/signup/initiate", PaddedSignup("toolarge", 65'537)),
              413, "payload_too_large");
  ExpectError(client_.Request("PUT", "/api/me", std::string(70'000, ' ')), 413,
              "payload_too_large");
  // The server keeps serving.
  EXPECT_EQ(client_.Get("/healthz").status, 200);
}

TEST_F(ServerTest, BodyOfExactlyTheLimitIsAccepted) {
  const std::string body = PaddedSignup("padded", 65'536);
  ASSERT_EQ(body.size(), 65'536u);
  auto r = client_.Request("POST", "/api/signup/initiate", body);
  EXPECT_EQ(r.status, 202) << r.body;
  EXPECT_TRUE(server_.LatestCode("padded@example.com").has_value());
}

TEST_F(ServerTest, ChunkedBodyOverTheLimitIs413) {
  RawConn conn(server_.port());
  std::string req =
      "POST /api/signup/initiate HTTP/1.1\r\nHost: 127.0.0.1\r\n"
      "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 7; ++i) req += "2710\r\n" + std::string(10'000, 'x') + "\r\n";  // 70,000
  req += "0\r\n\r\n";
  conn.Send(req);
  ASSERT_TRUE(conn.ReadUntilClose()) << conn.received();
  auto res = ParseResponse(conn.received());
  ASSERT_TRUE(res.has_value()) << conn.received();
  ExpectError(*res, 413, "payload_too_large");
}

TEST_F(ServerTest, ExpectContinueIsHonouredAndOversizedBodiesRefusedUpFront) {
  {
    const std::string body = R"({"username":"alice"})";  // no password: a quick 400
    RawConn conn(server_.port());
    conn.Send(
        "POST /api/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Expect: 100-continue\r\nContent-Length: " +
        std::to_string(body.size()) + "\r\n\r\n");
    ASSERT_TRUE(conn.ReadUntil("\r\n\r\n")) << conn.received();
    EXPECT_EQ(conn.received().rfind("HTTP/1.1 100", 0), 0u) << conn.received();
    conn.Send(body);
    ASSERT_TRUE(conn.ReadUntil("}}")) << conn.received();
    auto res = ParseResponse(conn.received().substr(conn.received().find("\r\n\r\n") + 4));
    ASSERT_TRUE(res.has_value()) << conn.received();
    ExpectError(*res, 400, "invalid_request");
  }
  {
    // The body is never sent: the 413 must come from the header alone.
    RawConn conn(server_.port());
    conn.Send(
        "POST /api/signup/initiate HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/json\r\nExpect: 100-continue\r\n"
        "Content-Length: 70000\r\n\r\n");
    ASSERT_TRUE(conn.ReadUntilClose()) << conn.received();
    auto res = ParseResponse(conn.received());
    ASSERT_TRUE(res.has_value()) << conn.received();
    ExpectError(*res, 413, "payload_too_large");
  }
}

TEST_F(ServerTest, OversizedHeadersGetAnErrorObject) {
  auto r = client_.Request("GET", "/healthz", "", "", {{"X-Pad", std::string(20'000, 'p')}});
  EXPECT_EQ(r.status, 431) << r.body;
  ExpectErrorShape(r);
  EXPECT_EQ(client_.Get("/healthz").status, 200);
}

// ---------------------------------------------------------------------------------------------
// Malformed HTTP
// ---------------------------------------------------------------------------------------------

TEST_F(ServerTest, MalformedHttpGets400ErrorObjectOrCloseNeverAHang) {
  const std::vector<std::string> garbage = {
      "GARBAGE\r\n\r\n",
      "GET\r\n\r\n",
      "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
      "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
      "GET /healthz HTTP/1.1\r\nBad Header Without Colon\r\n\r\n",
      "POST /api/login HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
      std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 15),  // a TLS hello
      std::string("GET /\0 HTTP/1.1\r\n\r\n", 19),
  };
  for (const auto& g : garbage) {
    SCOPED_TRACE(::testing::PrintToString(g));
    RawConn conn(server_.port());
    conn.Send(g);
    ASSERT_TRUE(conn.ReadUntilClose()) << "no close; received: " << conn.received();
    if (conn.received().empty()) continue;  // a plain close is allowed
    auto res = ParseResponse(conn.received());
    ASSERT_TRUE(res.has_value()) << conn.received();
    ExpectError(*res, 400, "invalid_request");
  }
  // The classic case is answered, not just dropped.
  RawConn conn(server_.port());
  conn.Send("GARBAGE\r\n\r\n");
  ASSERT_TRUE(conn.ReadUntilClose());
  auto res = ParseResponse(conn.received());
  ASSERT_TRUE(res.has_value()) << conn.received();
  ExpectError(*res, 400, "invalid_request");
  // And the server is fine.
  EXPECT_EQ(client_.Get("/healthz").status, 200);
}

// ---------------------------------------------------------------------------------------------
// Connections
// ---------------------------------------------------------------------------------------------

TEST_F(ServerTest, KeepAliveServesManyRequestsOnOneConnection) {
  const std::string accepted = "mmchat_http_connections_accepted_total";
  const auto first = Sample(Metrics(client_), accepted);
  ASSERT_TRUE(first.has_value());
  EXPECT_GE(*first, 1);

  std::vector<HttpResult> results;
  for (int i = 0; i < 5; ++i) results.push_back(client_.Get("/healthz"));
  results.push_back(client_.Get("/readyz"));
  results.push_back(client_.Get("/nope"));                                // 404
  results.push_back(client_.Get("/api/me"));                              // 401
  results.push_back(client_.Request("POST", "/api/login", "{bad json"));  // 400
  results.push_back(client_.Request("DELETE", "/healthz"));               // 404 + Allow
  for (const auto& r : results) {
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.headers.count("connection") ? r.headers.at("connection") : "", "close")
        << r.status << " " << r.body;
  }
  EXPECT_EQ(results[6].status, 404);
  EXPECT_EQ(results[7].status, 401);
  EXPECT_EQ(results[8].status, 400);
  EXPECT_EQ(results[9].status, 404);

  // Still the one connection: the server accepted no other.
  EXPECT_EQ(Sample(Metrics(client_), accepted), first);

  // A second client is a second connection, which shows the counter does count.
  HttpClient other(server_.port());
  EXPECT_EQ(Sample(Metrics(other), accepted), *first + 1);
}

TEST_F(ServerTest, Http10AndConnectionCloseEndTheConnectionAfterTheResponse) {
  for (const std::string req : {"GET /healthz HTTP/1.0\r\n\r\n",
                                "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"}) {
    SCOPED_TRACE(req);
    RawConn conn(server_.port());
    conn.Send(req);
    ASSERT_TRUE(conn.ReadUntilClose()) << conn.received();
    auto res = ParseResponse(conn.received());
    ASSERT_TRUE(res.has_value()) << conn.received();
    EXPECT_EQ(res->status, 200);
    EXPECT_EQ(res->json, (Json{{"status", "ok"}}));
  }
}

TEST_F(ServerTest, PipelinedRequestsAreAnsweredInOrder) {
  RawConn conn(server_.port());
  conn.Send(
      "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
      "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
      "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  ASSERT_TRUE(conn.ReadUntilClose()) << conn.received();
  const std::string& got = conn.received();
  const size_t a = got.find("HTTP/1.1 200");
  const size_t b = got.find("HTTP/1.1 404");
  const size_t c = got.find("HTTP/1.1 200", a + 1);
  ASSERT_NE(a, std::string::npos) << got;
  ASSERT_NE(b, std::string::npos) << got;
  ASSERT_NE(c, std::string::npos) << got;
  EXPECT_LT(a, b);
  EXPECT_LT(b, c);
}

class ServerReadTimeoutTest : public ::testing::Test {
 protected:
  TestServer server_{{.env = {{"HTTP_READ_TIMEOUT_SEC", "1"}}}};
};

TEST_F(ServerReadTimeoutTest, HalfAHeaderIsClosedAfterTheTimeout) {
  RawConn conn(server_.port());
  conn.Send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n");  // no blank line, ever
  ASSERT_TRUE(conn.ReadUntilClose(15s)) << "still open; received: " << conn.received();
  EXPECT_EQ(conn.received().find("HTTP/1.1 2"), std::string::npos) << conn.received();
  // Others are still served.
  HttpClient client(server_.port());
  EXPECT_EQ(client.Get("/healthz").status, 200);
}

TEST_F(ServerReadTimeoutTest, PartialBodyIsClosedAfterTheTimeout) {
  RawConn conn(server_.port());
  conn.Send(
      "POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
      "Content-Length: 100\r\n\r\n{\"username\":");
  ASSERT_TRUE(conn.ReadUntilClose(15s)) << "still open; received: " << conn.received();
  EXPECT_EQ(conn.received().find("HTTP/1.1 2"), std::string::npos) << conn.received();
}

TEST_F(ServerReadTimeoutTest, IdleKeepAliveConnectionIsClosedAfterTheTimeout) {
  RawConn conn(server_.port());
  conn.Send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(conn.ReadUntil("{\"status\":\"ok\"}")) << conn.received();
  ASSERT_TRUE(conn.ReadUntilClose(15s)) << "still open; received: " << conn.received();
  auto res = ParseResponse(conn.received());
  ASSERT_TRUE(res.has_value()) << conn.received();
  EXPECT_EQ(res->status, 200);
}

// ---------------------------------------------------------------------------------------------
// Graceful shutdown
// ---------------------------------------------------------------------------------------------

TEST(ServerShutdownTest, SigtermWhileIdleExitsZeroWithACleanDatabase) {
  TestServer server;
  HttpClient client(server.port());
  const Account alice = SignUp(server, client, "alice");  // something to write and keep
  ASSERT_EQ(
      client.Put("/api/me", {{"profile_picture", "https://example.com/a.png"}}, alice.token).status,
      200);

  EXPECT_EQ(server.Stop(SIGTERM), 0) << server.Log();
  const std::string log = server.Log();
  EXPECT_NE(log.find("stopped cleanly"), std::string::npos) << log;
  EXPECT_EQ(log.find("still open"), std::string::npos) << log;
  ExpectCleanDatabase(server);

  // Everything written is there after a restart on the same database.
  SetLogAside(server);
  TestServer again({.dir = server.dir()});
  HttpClient client2(again.port());
  auto login = client2.Post("/api/login", {{"username", "alice"}, {"password", alice.password}});
  ASSERT_EQ(login.status, 200) << login.body;
  EXPECT_EQ(login.json["user"]["profile_picture"], "https://example.com/a.png");
  EXPECT_EQ(again.Stop(SIGINT), 0) << again.Log();
  ExpectCleanDatabase(again);
}

TEST(ServerShutdownTest, OpenIdleConnectionsDoNotHoldUpTheShutdown) {
  TestServer server;  // the default read timeout (30 s) is longer than the shutdown grace
  HttpClient keep_alive(server.port());
  ASSERT_EQ(keep_alive.Get("/healthz").status, 200);  // now idle on a kept-alive connection
  RawConn half(server.port());
  half.Send("GET /healthz HTTP/1.1\r\nHost: x\r\n");  // mid-request
  RawConn silent(server.port());                      // never sends anything

  EXPECT_EQ(server.Stop(SIGTERM), 0) << server.Log();
  const std::string log = server.Log();
  EXPECT_NE(log.find("stopped cleanly"), std::string::npos) << log;
  EXPECT_EQ(log.find("still open"), std::string::npos) << log;
  EXPECT_TRUE(half.ReadUntilClose(5s));
  EXPECT_TRUE(silent.ReadUntilClose(5s));
}

// A one-connection SMTP server that holds the end of the message until Release(): while it
// waits, the mmchat request that sends the mail is surely inside its handler.
class GatedSmtp {
 public:
  GatedSmtp() {
    listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        listen(listen_fd_, 4) != 0) {
      throw std::runtime_error("GatedSmtp: cannot listen");
    }
    socklen_t len = sizeof addr;
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    released_future_ = released_.get_future();
    got_message_future_ = got_message_.get_future();
    thread_ = std::thread([this] { Run(); });
  }
  ~GatedSmtp() {
    Release();
    thread_.join();
    close(listen_fd_);
  }

  uint16_t port() const { return port_; }
  // True once a whole message arrived (and is being held).
  bool WaitForMessage(std::chrono::milliseconds timeout) {
    return got_message_future_.wait_for(timeout) == std::future_status::ready;
  }
  void Release() {
    std::call_once(release_once_, [this] { released_.set_value(); });
  }
  std::string message() {
    std::lock_guard lock(mu_);
    return message_;
  }

 private:
  static constexpr int kStepMs = 30'000;  // every wait is bounded: the thread always ends

  bool WaitReadable(int fd) {
    pollfd p{fd, POLLIN, 0};
    return poll(&p, 1, kStepMs) == 1;
  }
  static void Say(int fd, const std::string& s) {
    (void)!send(fd, s.data(), s.size(), MSG_NOSIGNAL);
  }

  void Run() {
    if (!WaitReadable(listen_fd_)) return;
    const int fd = accept(listen_fd_, nullptr, nullptr);
    if (fd < 0) return;
    Say(fd, "220 gated ESMTP\r\n");
    std::string buf;
    bool in_data = false;
    bool done = false;
    while (!done) {
      if (in_data) {
        const size_t end = buf.find("\r\n.\r\n");
        if (end == std::string::npos) {
          if (!ReadMore(fd, buf)) break;
          continue;
        }
        {
          std::lock_guard lock(mu_);
          message_ = buf.substr(0, end + 2);
        }
        buf.erase(0, end + 5);
        in_data = false;
        got_message_.set_value();
        released_future_.wait_for(std::chrono::milliseconds(kStepMs));
        Say(fd, "250 queued\r\n");
        continue;
      }
      const size_t eol = buf.find("\r\n");
      if (eol == std::string::npos) {
        if (!ReadMore(fd, buf)) break;
        continue;
      }
      std::string cmd = buf.substr(0, std::min<size_t>(4, eol));
      for (char& c : cmd) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      buf.erase(0, eol + 2);
      if (cmd == "DATA") {
        Say(fd, "354 end with <CRLF>.<CRLF>\r\n");
        in_data = true;
      } else if (cmd == "QUIT") {
        Say(fd, "221 bye\r\n");
        done = true;
      } else {
        Say(fd, "250 ok\r\n");  // EHLO, HELO, MAIL, RCPT, RSET, NOOP
      }
    }
    close(fd);
  }

  bool ReadMore(int fd, std::string& buf) {
    if (!WaitReadable(fd)) return false;
    char chunk[4096];
    const ssize_t n = recv(fd, chunk, sizeof chunk, 0);
    if (n <= 0) return false;
    buf.append(chunk, static_cast<size_t>(n));
    return true;
  }

  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
  std::promise<void> got_message_;
  std::future<void> got_message_future_;
  std::promise<void> released_;
  std::shared_future<void> released_future_;
  std::once_flag release_once_;
  std::mutex mu_;
  std::string message_;
};

TEST(ServerShutdownTest, SigtermDuringARequestStillAnswersItThenExitsZero) {
  GatedSmtp smtp;
  TestServer server({.env = {{"OTP_SENDER", "smtp"},
                             {"SMTP_URL", "smtp://127.0.0.1:" + std::to_string(smtp.port())}}});
  const uint16_t port = server.port();

  std::future<HttpResult> pending;
  std::future<int> stopper;
  // Whatever happens below, let the held request go before the futures are waited for.
  struct ReleaseOnExit {
    GatedSmtp& smtp;
    ~ReleaseOnExit() { smtp.Release(); }
  } release_on_exit{smtp};

  // signup/initiate hashes the password on the worker pool, then mails the code: when the mail
  // arrives, the request was read and is inside its handler.
  pending = std::async(std::launch::async, [port] {
    HttpClient client(port);
    return client.Post("/api/signup/initiate", {{"username", "inflight"},
                                                {"email", "inflight@example.com"},
                                                {"password", "correct horse"}});
  });
  ASSERT_TRUE(smtp.WaitForMessage(30s)) << server.Log();

  stopper = std::async(std::launch::async, [&server] { return server.Stop(SIGTERM); });
  ASSERT_TRUE(LogShows(server, "shutting down")) << server.Log();
  ASSERT_TRUE(WaitUntilRefused(port)) << "the server still accepts connections";
  // The request is still held, and the process is still there waiting for it.
  ASSERT_EQ(pending.wait_for(0s), std::future_status::timeout);
  ASSERT_EQ(stopper.wait_for(0s), std::future_status::timeout);

  smtp.Release();
  ASSERT_EQ(pending.wait_for(30s), std::future_status::ready);
  const HttpResult r = pending.get();
  EXPECT_EQ(r.status, 202) << r.body;
  EXPECT_EQ(r.json["expires_in_sec"], 300) << r.body;
  EXPECT_EQ(r.headers.count("connection") ? r.headers.at("connection") : "", "close");

  ASSERT_EQ(stopper.wait_for(30s), std::future_status::ready);
  EXPECT_EQ(stopper.get(), 0) << server.Log();
  const std::string log = server.Log();
  EXPECT_NE(log.find("stopped cleanly"), std::string::npos) << log;
  EXPECT_EQ(log.find("still open"), std::string::npos) << log;
  ExpectCleanDatabase(server);

  // The pending signup was committed: the mailed code verifies it after a restart.
  const std::string mail = smtp.message();
  const size_t body_start = mail.find("\r\n\r\n");
  ASSERT_NE(body_start, std::string::npos) << mail;
  std::smatch code;
  const std::string body = mail.substr(body_start + 4);
  ASSERT_TRUE(std::regex_search(body, code, std::regex(R"((^|\D)(\d{6})(\D|$))"))) << mail;
  SetLogAside(server);
  TestServer again({.dir = server.dir()});
  HttpClient client(again.port());
  auto verify = client.Post("/api/signup/verify",
                            {{"email", "inflight@example.com"}, {"otp", code[2].str()}});
  EXPECT_EQ(verify.status, 201) << verify.body;
  EXPECT_EQ(again.Stop(SIGTERM), 0);
}

}  // namespace
}  // namespace mmchat::test
