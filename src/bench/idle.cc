// `idle`: holds authenticated WebSocket connections and reports the connect rate and the
// server's resident memory per connection between the first and each later step.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "bench/scenarios.h"

namespace mmchat::bench {

namespace beast = boost::beast;
using Clock = std::chrono::steady_clock;

namespace {

// Keeps reading, so that the server's pings are answered.
void ReadForever(const std::shared_ptr<Client>& c) {
  c->ws.async_read(c->buffer, [c](beast::error_code ec, size_t) {
    if (ec) return;
    c->buffer.clear();
    ReadForever(c);
  });
}

}  // namespace

int RunIdle(const IdleOptions& o, const std::vector<Account>& accounts) {
  boost::asio::io_context ioc(1);
  WsPool pool(ioc, o.target);
  std::vector<std::shared_ptr<Client>> held;
  const std::function<std::string(int)> token_of = [&](int i) {
    return accounts[static_cast<size_t>(i) % accounts.size()].token;
  };
  const std::function<void(int, std::shared_ptr<Client>)> opened = [&](int,
                                                                       std::shared_ptr<Client> c) {
    ReadForever(c);
    held.push_back(std::move(c));
  };

  nlohmann::json steps = nlohmann::json::array();
  std::printf("%12s %8s %14s %14s %12s %14s\n", "connections", "failed", "connects/s",
              "server RSS KiB", "KiB/conn", "held server %");
  int64_t first_rss = -1;
  int first_open = 0;
  for (int step : o.steps) {
    const int before = pool.open() + pool.failed();
    if (step <= before) continue;
    const auto start = Clock::now();
    pool.Open(step - before, token_of, opened);
    const double took = std::chrono::duration<double>(Clock::now() - start).count();
    ioc.run_for(std::chrono::milliseconds(static_cast<int64_t>(o.settle_sec * 1000)));
    const int64_t rss = RssKib(o.server_pid);
    const double rate = (step - before) / (took > 0 ? took : 1);
    double per_conn = 0;
    if (first_rss < 0) {
      first_rss = rss;
      first_open = pool.open();
    } else if (pool.open() > first_open) {
      per_conn = static_cast<double>(rss - first_rss) / (pool.open() - first_open);
    }
    // Idle connections should cost next to no CPU: pings of the silent ones, nothing else.
    double held_cpu = -1;
    if (o.hold_sec > 0) {
      const double cpu0 = CpuSeconds(o.server_pid);
      ioc.run_for(std::chrono::milliseconds(static_cast<int64_t>(o.hold_sec * 1000)));
      held_cpu = (CpuSeconds(o.server_pid) - cpu0) / o.hold_sec * 100;
    }
    std::printf("%12d %8d %14.0f %14lld %12.2f %14.2f\n", pool.open(), pool.failed(), rate,
                static_cast<long long>(rss), per_conn, held_cpu);
    steps.push_back({{"connections", pool.open()},
                     {"failed", pool.failed()},
                     {"connects_per_sec", rate},
                     {"server_rss_kib", rss},
                     {"kib_per_connection_since_first_step", per_conn},
                     {"held_server_cpu_percent", held_cpu}});
  }
  std::cout << nlohmann::json{{"scenario", "idle"}, {"steps", steps}}.dump() << std::endl;
  return pool.failed() == 0 ? 0 : 1;
}

}  // namespace mmchat::bench
