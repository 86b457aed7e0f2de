// `reactions`: a group of --members users, all on WebSocket, and --connections keep-alive HTTP
// connections adding and removing reactions as fast as their answers come back (each call
// toggles the caller's own emoji on one of a few messages, so every call is a change). Every
// change is committed through the group-commit writer and fanned out to every member as
// `message_updated`. Reports committed reactions/s, message_updated deliveries/s, the calls'
// latency, and the deliveries missing after a drain (each change must reach every member).
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string_view>

#include "bench/http_loop.h"
#include "bench/message_load.h"
#include "bench/scenarios.h"

namespace mmchat::bench {

namespace beast = boost::beast;
namespace net = boost::asio;
using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;

namespace {

// Distinct emoji per message (API.md allows 20): the connections toggling on one message.
constexpr int kPerMessage = 16;

// Counts the message_updated frames a member's connection reads.
void CountUpdates(const std::shared_ptr<Client>& c, int64_t& updates, int64_t& frames) {
  c->ws.async_read(c->buffer, [c, &updates, &frames](beast::error_code ec, size_t) {
    if (ec) return;
    ++frames;
    const auto data = c->buffer.cdata();
    const std::string_view text(static_cast<const char*>(data.data()), data.size());
    if (text.find("\"type\":\"message_updated\"") != std::string_view::npos) ++updates;
    c->buffer.clear();
    CountUpdates(c, updates, frames);
  });
}

}  // namespace

int RunReactions(const ReactionsOptions& o, const std::vector<Account>& accounts) {
  if (o.members < 2 || o.connections < 1 || accounts.size() < static_cast<size_t>(o.members)) {
    std::fprintf(stderr, "reactions needs --members (at least 2) accounts and a connection\n");
    return 2;
  }
  // Set-up: the group, and the messages the connections react to.
  Json ids = Json::array();
  for (int k = 1; k < o.members; ++k) ids.push_back(accounts[static_cast<size_t>(k)].id);
  const Json conv = PostJson(o.target, "/api/conversations/group",
                             {{"name", "bench reactions"}, {"member_ids", ids}}, accounts[0].token);
  const int64_t conversation = conv["id"].get<int64_t>();
  std::vector<int64_t> targets;
  for (int k = 0; k < (o.connections + kPerMessage - 1) / kPerMessage; ++k) {
    targets.push_back(PostJson(o.target, "/api/messages",
                               {{"conversation_id", conversation}, {"content", "react to me"}},
                               accounts[0].token)["id"]
                          .get<int64_t>());
  }

  net::io_context ioc(1);  // first: the connections must go before it
  int64_t updates = 0, frames = 0;
  std::vector<std::shared_ptr<Client>> members;
  WsPool pool(ioc, o.target);
  pool.Open(
      o.members, [&](int i) { return accounts[static_cast<size_t>(i)].token; },
      [&](int, std::shared_ptr<Client> c) {
        members.push_back(c);
        CountUpdates(c, updates, frames);
      });
  if (pool.failed() > 0) {
    throw std::runtime_error(std::to_string(pool.failed()) + " WebSocket connections failed");
  }
  // Presence and set-up events pass first: until no frame came for half a second.
  for (int quiet = 0; quiet < 30'000; quiet += 500) {
    const int64_t before = frames;
    ioc.run_for(std::chrono::milliseconds(500));
    if (frames == before) break;
  }

  Clock::time_point stop_at = Clock::time_point::max();
  std::vector<std::shared_ptr<HttpLoop>> loops;
  for (int i = 0; i < o.connections; ++i) {
    const std::string path = "/api/messages/" + std::to_string(targets[i / kPerMessage]) +
                             "/reactions/r" + std::to_string(i % kPerMessage);
    const Account& who = accounts[static_cast<size_t>(i % o.members)];
    loops.push_back(
        std::make_shared<HttpLoop>(ioc, o.target, path, who.token, stop_at, /*toggle=*/true));
  }
  ConnectAll(ioc, o.target, loops);

  const int64_t updates_before = updates;
  const double server_cpu0 = o.server_pid ? CpuSeconds(o.server_pid) : 0;
  const double tool_cpu0 = CpuSeconds(getpid());
  const auto start = Clock::now();
  stop_at = start + std::chrono::duration_cast<Clock::duration>(
                        std::chrono::duration<double>(o.duration_sec));
  for (auto& l : loops) l->Start();
  // The calls in flight at the stop time are answered within their timeout.
  ioc.run_until(stop_at + std::chrono::seconds(1));
  const double send_sec = std::chrono::duration<double>(Clock::now() - start).count();
  LoopTotals t = Totals(loops);
  const int64_t non_2xx = t.non_2xx, errors = t.errors;
  const Percentiles p = ComputePercentiles(t.latency_ms);
  const int64_t changes = static_cast<int64_t>(p.count) - non_2xx;
  const int64_t expected = changes * o.members;
  // Drain: every change reaches every member.
  const auto drain_until = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                              std::chrono::duration<double>(o.drain_sec));
  while (updates - updates_before < expected && Clock::now() < drain_until) {
    ioc.run_for(std::chrono::milliseconds(20));
  }
  const double total_sec = std::chrono::duration<double>(Clock::now() - start).count();
  const double tool_cpu = CpuSeconds(getpid()) - tool_cpu0;
  const double server_cpu = o.server_pid ? CpuSeconds(o.server_pid) - server_cpu0 : -1;
  const int64_t delivered = updates - updates_before;
  const int64_t lost = std::max<int64_t>(0, expected - delivered);

  // Committed reactions per second of calling; deliveries over calling and draining, so that
  // queued work is not counted as speed.
  const double reactions_per_sec = static_cast<double>(changes) / send_sec;
  const double deliveries_per_sec = static_cast<double>(delivered) / total_sec;
  const double server_percent = server_cpu < 0 ? -1 : 100 * server_cpu / total_sec;
  const double tool_percent = 100 * tool_cpu / total_sec;
  std::printf("%12s %12s %8s %8s %8s %8s %8s %9s %9s\n", "reactions/s", "deliveries/s", "p50 ms",
              "p99 ms", "non-2xx", "errors", "lost", "server %", "tool %");
  std::printf("%12.0f %12.0f %8.2f %8.2f %8lld %8lld %8lld %9.0f %9.0f\n", reactions_per_sec,
              deliveries_per_sec, p.p50, p.p99, static_cast<long long>(non_2xx),
              static_cast<long long>(errors), static_cast<long long>(lost), server_percent,
              tool_percent);
  std::cout << Json{{"scenario", "reactions"},
                    {"members", o.members},
                    {"connections", o.connections},
                    {"messages", targets.size()},
                    {"send_seconds", send_sec},
                    {"seconds", total_sec},
                    {"reactions", changes},
                    {"reactions_per_sec", reactions_per_sec},
                    {"deliveries", delivered},
                    {"deliveries_per_sec", deliveries_per_sec},
                    {"latency_ms", PercentilesJson(p)},
                    {"non_2xx", non_2xx},
                    {"errors", errors},
                    {"lost", lost},
                    {"server_cpu_percent", server_percent},
                    {"tool_cpu_percent", tool_percent}}
                   .dump()
            << std::endl;
  return changes > 0 && non_2xx == 0 && errors == 0 && lost == 0 ? 0 : 1;
}

}  // namespace mmchat::bench
