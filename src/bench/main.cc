// mmchat-bench: load tool for sizing an MmChat deployment. This first scenario, `idle`, holds
// many authenticated WebSocket connections and reports the connect rate and the server's
// resident memory per connection (read from /proc/<pid>/status).
//
// Client side: one io_context on one thread, no thread per connection; connections come from
// several loopback source addresses (127.0.0.x) so that ephemeral ports are not the limit.
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace beast = boost::beast;
namespace websocket = boost::beast::websocket;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;

int64_t RssKib(int pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
  }
  return -1;
}

// Raises the soft open-file limit to the hard one; returns the new soft limit.
rlim_t RaiseFileLimit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return 0;
  lim.rlim_cur = lim.rlim_max;
  setrlimit(RLIMIT_NOFILE, &lim);
  getrlimit(RLIMIT_NOFILE, &lim);
  return lim.rlim_cur;
}

struct Settings {
  std::string host = "127.0.0.1";
  uint16_t port = 8080;
  std::vector<std::string> tokens;  // from `mmchat user add --tokens`, used round-robin
  std::vector<int> steps{1000, 10000};
  int source_addresses = 16;
  int in_flight = 256;
  int server_pid = 0;
  double settle_sec = 3;
};

// Holds idle WebSocket connections; opens them with at most `in_flight` handshakes at once.
class IdlePool {
 public:
  IdlePool(net::io_context& ioc, const Settings& s) : ioc_(ioc), s_(s) {}

  // Opens connections until `target` are open (or failed); runs the io_context meanwhile.
  void GrowTo(int target) {
    target_ = target;
    while (started_ < target_ && started_ - done_ < s_.in_flight) StartOne();
    while (done_ < target_) ioc_.run_one();
  }
  int open() const { return open_; }
  int failed() const { return failed_; }

 private:
  struct Conn {
    explicit Conn(net::io_context& ioc) : ws(ioc) {}
    websocket::stream<tcp::socket> ws;
    beast::flat_buffer buffer;
  };

  void StartOne() {
    const int i = started_++;
    auto c = std::make_shared<Conn>(ioc_);
    auto& sock = beast::get_lowest_layer(c->ws);
    beast::error_code ec;
    sock.open(tcp::v4(), ec);
    // Spread over 127.0.0.1..127.0.0.N so that one source address's ports are not the cap.
    const auto source =
        net::ip::make_address_v4("127.0.0." + std::to_string(1 + i % s_.source_addresses));
    if (!ec) sock.bind(tcp::endpoint(source, 0), ec);
    if (ec) return Done(false);
    const tcp::endpoint server(net::ip::make_address(s_.host), s_.port);
    sock.async_connect(server, [this, c, i](beast::error_code ec2) {
      if (ec2) return Done(false);
      const std::string& token = s_.tokens[static_cast<size_t>(i) % s_.tokens.size()];
      c->ws.async_handshake(s_.host, "/api/ws?token=" + token, [this, c](beast::error_code ec3) {
        if (ec3) return Done(false);
        conns_.push_back(c);
        Read(c);  // keeps answering the server's pings
        Done(true);
      });
    });
  }

  void Read(const std::shared_ptr<Conn>& c) {
    c->ws.async_read(c->buffer, [this, c](beast::error_code ec, size_t) {
      if (ec) return;
      c->buffer.clear();
      Read(c);
    });
  }

  void Done(bool ok) {
    ++done_;
    ok ? ++open_ : ++failed_;
    if (started_ < target_) StartOne();
  }

  net::io_context& ioc_;
  const Settings& s_;
  std::vector<std::shared_ptr<Conn>> conns_;
  int target_ = 0, started_ = 0, done_ = 0, open_ = 0, failed_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mmchat-bench: load scenarios for sizing an MmChat server"};
  app.require_subcommand(1);
  Settings s;
  auto* idle = app.add_subcommand(
      "idle", "hold authenticated idle WebSocket connections; report connect rate and server RSS");
  idle->add_option("--host", s.host, "server address")->capture_default_str();
  idle->add_option("--port", s.port, "server port")->capture_default_str();
  std::string tokens_path;
  idle->add_option("--tokens", tokens_path,
                   "`id username token` lines, as `mmchat user add --tokens` writes them")
      ->required()
      ->check(CLI::ExistingFile);
  idle->add_option("--steps", s.steps, "connection counts to measure at, ascending")
      ->delimiter(',')
      ->capture_default_str();
  idle->add_option("--server-pid", s.server_pid, "the server's process id (for its RSS)")
      ->required();
  idle->add_option("--source-addresses", s.source_addresses, "127.0.0.x addresses to connect from")
      ->capture_default_str();
  idle->add_option("--in-flight", s.in_flight, "handshakes at once")->capture_default_str();
  idle->add_option("--settle-sec", s.settle_sec, "wait before reading RSS at each step")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  std::ifstream tokens_file(tokens_path);
  std::string id, name, token;
  while (tokens_file >> id >> name >> token) s.tokens.push_back(token);
  if (s.tokens.empty()) {
    std::fprintf(stderr, "no tokens in %s\n", tokens_path.c_str());
    return 2;
  }
  const rlim_t files = RaiseFileLimit();
  std::printf("open-file limit %llu\n", static_cast<unsigned long long>(files));
  net::io_context ioc(1);
  IdlePool pool(ioc, s);
  nlohmann::json steps = nlohmann::json::array();
  std::printf("%12s %8s %14s %14s %12s\n", "connections", "failed", "connects/s", "server RSS KiB",
              "KiB/conn");
  int64_t first_rss = -1;
  int first_open = 0;
  for (int step : s.steps) {
    const int before = pool.open() + pool.failed();
    const auto start = Clock::now();
    pool.GrowTo(step);
    const double took = std::chrono::duration<double>(Clock::now() - start).count();
    ioc.run_for(std::chrono::milliseconds(static_cast<int64_t>(s.settle_sec * 1000)));
    const int64_t rss = RssKib(s.server_pid);
    const double rate = (step - before) / (took > 0 ? took : 1);
    double per_conn = 0;
    if (first_rss < 0) {
      first_rss = rss;
      first_open = pool.open();
    } else if (pool.open() > first_open) {
      per_conn = static_cast<double>(rss - first_rss) / (pool.open() - first_open);
    }
    std::printf("%12d %8d %14.0f %14lld %12.2f\n", pool.open(), pool.failed(), rate,
                static_cast<long long>(rss), per_conn);
    steps.push_back({{"connections", pool.open()},
                     {"failed", pool.failed()},
                     {"connects_per_sec", rate},
                     {"server_rss_kib", rss},
                     {"kib_per_connection_since_first_step", per_conn}});
  }
  std::cout << nlohmann::json{{"scenario", "idle"}, {"steps", steps}}.dump() << std::endl;
  return pool.failed() == 0 ? 0 : 1;
}
