// The abuse limits (README, "Configuration"), each set low on a real server: the per-user
// message rate over REST and WebSocket, the per-address rate of the unauthenticated routes,
// connections per address, per user and in all, header size and count, and the request-read
// deadline that ends a slowloris client. Every refusal is API.md's error object; 429s carry
// Retry-After.
#include <gtest/gtest.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"
#include "ws_client.h"

namespace mmchat::test {
namespace {

using namespace std::chrono_literals;
namespace net = boost::asio;
using tcp = net::ip::tcp;

// A bare TCP connection, for what a well-behaved client would not do.
class RawConnection {
 public:
  explicit RawConnection(uint16_t port) : socket_(ioc_) {
    socket_.connect({net::ip::make_address("127.0.0.1"), port});
  }
  void Write(const std::string& bytes) { net::write(socket_, net::buffer(bytes)); }
  // Everything until the server closes the connection (or `timeout` passes).
  std::string ReadToClose(std::chrono::milliseconds timeout = 10s) {
    std::string out;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    socket_.non_blocking(true);
    char buf[4096];
    while (std::chrono::steady_clock::now() < deadline) {
      boost::system::error_code ec;
      const size_t n = socket_.read_some(net::buffer(buf), ec);
      if (ec == net::error::would_block) {
        std::this_thread::sleep_for(10ms);
        continue;
      }
      if (ec) {
        closed_ = true;
        break;
      }
      out.append(buf, n);
    }
    return out;
  }
  bool closed() const { return closed_; }

 private:
  net::io_context ioc_;
  tcp::socket socket_;
  bool closed_ = false;
};

// The status code and the error code of a raw HTTP response ("" when it has none).
std::pair<int, std::string> StatusAndCode(const std::string& response) {
  if (response.size() < 12) return {0, ""};
  const int status = std::atoi(response.substr(9, 3).c_str());
  const size_t body = response.find("\r\n\r\n");
  Json j = Json::parse(body == std::string::npos ? "" : response.substr(body + 4), nullptr, false);
  std::string code;
  if (j.is_object() && j.contains("error")) code = j["error"].value("code", "");
  return {status, code};
}

bool HasRetryAfter(const std::string& response) {
  return response.find("Retry-After: ") != std::string::npos;
}

class AbuseLimitTest : public ::testing::Test {
 protected:
  void Start(std::map<std::string, std::string> env) {
    server_ = std::make_unique<TestServer>(ServerOptions{.env = std::move(env)});
    ASSERT_TRUE(server_->running()) << server_->Log();
    client_ = std::make_unique<HttpClient>(server_->port());
  }
  int64_t Group(const Account& creator, const std::vector<int64_t>& members) {
    auto r = client_->Post("/api/conversations/group", {{"name", "team"}, {"member_ids", members}},
                           creator.token);
    EXPECT_EQ(r.status, 201) << r.body;
    return r.json.is_object() ? r.json.value("id", int64_t{0}) : 0;
  }
  HttpResult Send(const Account& a, int64_t conversation, const std::string& content) {
    return client_->Post("/api/messages", {{"conversation_id", conversation}, {"content", content}},
                         a.token);
  }
  // A new connection's answer once it is refused with `status`, or the last answer seen. The
  // held connections count only once accepted, so this waits rather than assume the order.
  std::string AwaitRefusal(int status) {
    std::string answer;
    Eventually([&] {
      RawConnection extra(server_->port());
      extra.Write("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
      answer = extra.ReadToClose();
      return StatusAndCode(answer).first == status;
    });
    return answer;
  }
  size_t Stored(const Account& reader, int64_t conversation) {
    auto r = client_->Get(
        "/api/conversations/" + std::to_string(conversation) + "/messages?limit=100", reader.token);
    EXPECT_EQ(r.status, 200) << r.body;
    return r.json.is_object() ? r.json["messages"].size() : 0;
  }

  std::unique_ptr<TestServer> server_;
  std::unique_ptr<HttpClient> client_;
};

// With a rate of 1 per second after a burst of 3, a fast sender gets its burst, then 429s.
// How many more pass depends on how long the sends took, so that is bounded, not fixed.
TEST_F(AbuseLimitTest, MessagesPastTheSendersBurstAreRefusedOverRestAndWebSocket) {
  Start({{"MSG_RATE_PER_SEC", "1"}, {"MSG_RATE_BURST", "3"}});
  const Account alice = SignUp(*server_, *client_, "alice");
  const Account bob = SignUp(*server_, *client_, "bob");
  const int64_t group = Group(alice, {bob.id});

  const auto start = std::chrono::steady_clock::now();
  int accepted = 0;
  int refused = 0;
  for (int i = 0; i < 10; ++i) {
    HttpResult r = Send(alice, group, "rest " + std::to_string(i));
    if (i < 3) {
      EXPECT_EQ(r.status, 201) << "within the burst: " << r.body;
    }
    if (r.status == 201) {
      ++accepted;
      continue;
    }
    ++refused;
    ExpectError(r, 429, "rate_limited");
    ASSERT_TRUE(r.headers.contains("retry-after")) << r.body;
    EXPECT_GE(std::stoi(r.headers["retry-after"]), 1);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_GT(refused, 0);
  EXPECT_LE(accepted, 3 + static_cast<int>(seconds) + 1) << seconds << " s";

  // Over WebSocket the ack carries the same error; bob has a bucket of his own.
  WsClient ws(server_->ws_port(), bob.token);
  ASSERT_TRUE(ws.connected());
  int ws_accepted = 0;
  int ws_refused = 0;
  for (int i = 0; i < 10; ++i) {
    ws.Send({{"type", "message"},
             {"ref", "m" + std::to_string(i)},
             {"conversation_id", group},
             {"content", "ws " + std::to_string(i)}});
  }
  // Refusals are answered at once, acceptances after their commit: acks come in any order.
  std::set<std::string> refs;
  for (int i = 0; i < 10; ++i) {
    Json ack = ws.NextOfType("ack");
    ASSERT_TRUE(ack.is_object()) << "only " << i << " acks";
    EXPECT_TRUE(refs.insert(ack["data"].value("ref", "")).second) << ack.dump();
    if (ack["data"]["ok"] == true) {
      ++ws_accepted;
      continue;
    }
    ++ws_refused;
    EXPECT_EQ(ack["data"]["error"]["code"], "rate_limited") << ack.dump();
    EXPECT_GE(ack["data"]["error"].value("retry_after", 0), 1) << ack.dump();
  }
  EXPECT_GE(ws_accepted, 3);
  EXPECT_GT(ws_refused, 0);
  // Refused messages were not stored; accepted ones were.
  EXPECT_EQ(Stored(alice, group), static_cast<size_t>(accepted + ws_accepted));
}

// Each typing change goes to every other member: past WS_TYPING_RATE_PER_SEC (1 here, 2 at
// once) a change is refused and not relayed.
TEST_F(AbuseLimitTest, TypingChangesPastTheRateAreRefusedAndNotRelayed) {
  Start({{"WS_TYPING_RATE_PER_SEC", "1"}});
  const Account alice = SignUp(*server_, *client_, "alice");
  const Account bob = SignUp(*server_, *client_, "bob");
  const int64_t group = Group(alice, {bob.id});
  WsClient a(server_->ws_port(), alice.token);
  WsClient b(server_->ws_port(), bob.token);
  ASSERT_TRUE(a.connected() && b.connected());
  int accepted = 0;
  int refused = 0;
  int changes = 0;  // accepted starts while not typing and stops while typing
  bool typing = false;
  for (int i = 0; i < 10; ++i) {
    const std::string ref = "t" + std::to_string(i);
    const bool start = i % 2 == 0;
    a.Send({{"type", start ? "typing_start" : "typing_stop"},
            {"ref", ref},
            {"conversation_id", group}});
    Json ack = a.NextWhere([&](Json& f) { return f["type"] == "ack" && f["data"]["ref"] == ref; });
    ASSERT_TRUE(ack.is_object()) << "no ack for " << ref;
    if (ack["data"]["ok"] == true) {
      ++accepted;
      if (start != typing) ++changes;  // a stop while not typing is accepted quietly
      typing = start;
      continue;
    }
    ++refused;
    EXPECT_EQ(ack["data"]["error"]["code"], "rate_limited") << ack.dump();
    EXPECT_GE(ack["data"]["error"].value("retry_after", 0), 1) << ack.dump();
  }
  EXPECT_GE(changes, 2);
  EXPECT_GT(refused, 0);
  // bob saw exactly the accepted changes: a ping's pong marks the end of what was relayed.
  b.Send({{"type", "ping"}});
  int relayed = 0;
  for (;;) {
    Json f = b.Next();
    ASSERT_TRUE(f.is_object()) << "no pong";
    if (f["type"] == "pong") break;
    if (f["type"] == "typing_start" || f["type"] == "typing_stop") ++relayed;
  }
  EXPECT_EQ(relayed, changes);
}

TEST_F(AbuseLimitTest, UnauthenticatedRoutesAreRatedPerAddress) {
  Start({{"AUTH_RATE_PER_MIN", "3"}});
  const Json login = {{"username", "nobody"}, {"password", "wrong password"}};
  for (int i = 0; i < 3; ++i) {
    HttpResult r = client_->Post("/api/login", login);
    EXPECT_EQ(r.status, 401) << "attempt " << i << ": " << r.body;
  }
  // The fourth, and any of the other routes of the group, from the same address.
  HttpResult r = client_->Post("/api/login", login);
  ExpectError(r, 429, "rate_limited");
  ASSERT_TRUE(r.headers.contains("retry-after"));
  EXPECT_GE(std::stoi(r.headers["retry-after"]), 1);
  ExpectError(client_->Post("/api/signup/initiate",
                            {{"username", "x"}, {"email", "x@example.com"}, {"password", "p"}}),
              429, "rate_limited");
  ExpectError(client_->Post("/api/forgot/initiate", {{"email", "x@example.com"}}), 429,
              "rate_limited");
  // Routes outside the group are not counted.
  EXPECT_EQ(client_->Get("/healthz").status, 200);
  EXPECT_EQ(client_->Get("/api/me", "not-a-token").status, 401);
}

TEST_F(AbuseLimitTest, ConnectionsPastThePerAddressLimitGet429UntilOneCloses) {
  Start({{"MAX_CONNS_PER_IP", "4"}});
  std::vector<std::unique_ptr<RawConnection>> held;
  for (int i = 0; i < 4; ++i) held.push_back(std::make_unique<RawConnection>(server_->port()));
  // The fifth is answered and closed.
  const std::string refusal = AwaitRefusal(429);
  ASSERT_EQ(StatusAndCode(refusal).first, 429) << refusal;
  EXPECT_EQ(StatusAndCode(refusal).second, "rate_limited") << refusal;
  EXPECT_TRUE(HasRetryAfter(refusal)) << refusal;

  held.pop_back();  // one leaves: there is room again
  ASSERT_TRUE(Eventually([&] {
    RawConnection again(server_->port());
    again.Write("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    return StatusAndCode(again.ReadToClose()).first == 200;
  }));
  auto metrics = HttpClient(server_->port());
  held.clear();
  EXPECT_TRUE(Eventually([&] {
    auto m = metrics.Get("/metrics");
    return MetricValue(m.body, "mmchat_connections_refused_per_address_total").value_or(0) >= 1;
  }));
}

TEST_F(AbuseLimitTest, ConnectionsPastMaxConnectionsGet503) {
  Start({{"MAX_CONNECTIONS", "3"}});
  std::vector<std::unique_ptr<RawConnection>> held;
  for (int i = 0; i < 3; ++i) held.push_back(std::make_unique<RawConnection>(server_->port()));
  const std::string refusal = AwaitRefusal(503);
  ASSERT_EQ(StatusAndCode(refusal).first, 503) << refusal;
  EXPECT_EQ(StatusAndCode(refusal).second, "unavailable") << refusal;
  EXPECT_TRUE(HasRetryAfter(refusal)) << refusal;
  held.clear();
  EXPECT_TRUE(
      Eventually([&] { return HttpClient(server_->port()).Get("/healthz").status == 200; }));
}

TEST_F(AbuseLimitTest, WebSocketConnectionsPastThePerUserLimitAreRefused) {
  Start({{"WS_MAX_CONNS_PER_USER", "2"}});
  const Account alice = SignUp(*server_, *client_, "alice");
  const Account bob = SignUp(*server_, *client_, "bob");
  WsClient first(server_->ws_port(), alice.token);
  WsClient second(server_->ws_port(), alice.token);
  ASSERT_TRUE(first.connected());
  ASSERT_TRUE(second.connected());
  WsClient third(server_->ws_port(), alice.token);
  EXPECT_FALSE(third.connected());
  ExpectError(third.refusal(), 429, "rate_limited");
  EXPECT_TRUE(third.refusal().headers.contains("retry-after"));
  // Another user is not affected, and a closed connection frees its place.
  WsClient other(server_->ws_port(), bob.token);
  EXPECT_TRUE(other.connected());
  first.Close();
  EXPECT_TRUE(Eventually([&] { return WsClient(server_->ws_port(), alice.token).connected(); }));
}

TEST_F(AbuseLimitTest, TooManyOrTooLargeHeadersGet431) {
  Start({{"HTTP_MAX_HEADERS", "10"}, {"HTTP_MAX_HEADER_BYTES", "2048"}});
  std::map<std::string, std::string> nine;
  for (int i = 0; i < 7; ++i) nine["X-Extra-" + std::to_string(i)] = "1";
  EXPECT_EQ(client_->Request("GET", "/healthz", "", "", nine).status, 200);  // 10 with Host etc.

  std::map<std::string, std::string> many;
  for (int i = 0; i < 20; ++i) many["X-Extra-" + std::to_string(i)] = "1";
  ExpectError(client_->Request("GET", "/healthz", "", "", many), 431, "invalid_request");
  ExpectError(client_->Request("GET", "/healthz", "", "", {{"X-Big", std::string(3000, 'a')}}), 431,
              "invalid_request");
  EXPECT_EQ(client_->Get("/healthz").status, 200);
}

// A client that sends its headers a byte at a time never finishes within the read deadline:
// it is cut off, instead of holding its connection for as long as it keeps dribbling.
TEST_F(AbuseLimitTest, SlowlorisIsCutOffAtTheReadDeadline) {
  Start({{"HTTP_READ_TIMEOUT_SEC", "1"}});
  RawConnection slow(server_->port());
  slow.Write("GET /healthz HTTP/1.1\r\n");
  const auto start = std::chrono::steady_clock::now();
  bool cut_off = false;
  for (int i = 0; i < 100 && !cut_off; ++i) {  // up to 20 s of dribbling
    try {
      slow.Write("X");
    } catch (const boost::system::system_error&) {
      cut_off = true;  // the server closed it: a write fails (EPIPE or reset)
      break;
    }
    slow.ReadToClose(200ms);
    cut_off = slow.closed();
  }
  EXPECT_TRUE(cut_off)
      << "still open after "
      << std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() << " s";
  EXPECT_EQ(client_->Get("/healthz").status, 200);
}

}  // namespace
}  // namespace mmchat::test
