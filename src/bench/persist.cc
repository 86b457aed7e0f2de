// `persist`: commit throughput. Each of S senders posts over WebSocket into a group of its own,
// so the only fan-out is the echo to its own connection and no receipts go out; the server
// acks a message after its commit, so acks/s are committed messages/s. Runs on the messaging
// engine (message_load.h) and reports committed messages/s, send-to-ack latency percentiles,
// errors, and the CPU both sides used. The SQLite synchronous mode is a server setting the tool
// cannot see; `--label` names it in the output.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "bench/message_load.h"
#include "bench/scenarios.h"

namespace mmchat::bench {

using Json = nlohmann::json;

int RunPersist(const PersistOptions& o, const std::vector<Account>& accounts) {
  const size_t need = static_cast<size_t>(o.senders);
  if (o.senders < 1 || accounts.size() < need) {
    std::fprintf(stderr, "persist needs --senders (%zu) accounts and at least one sender\n", need);
    return 2;
  }
  std::vector<Seat> seats(need);
  for (size_t i = 0; i < need; ++i) {
    const Json conv = PostJson(o.load.target, "/api/conversations/group",
                               {{"name", "persist " + std::to_string(i)}}, accounts[i].token);
    seats[i] = {i, conv["id"].get<int64_t>(), true};
  }
  const LoadResult r = RunLoad(o.load, accounts, seats, 0);

  const Percentiles& p = r.ack_ms;
  const int64_t errors = r.failed + r.unacked + r.closed;
  std::printf("%-12s %12s %8s %8s %8s %8s %8s %9s %9s\n", "label", "committed/s", "p50 ms",
              "p90 ms", "p99 ms", "max ms", "errors", "server %", "tool %");
  std::printf("%-12s %12.0f %8.2f %8.2f %8.2f %8.2f %8lld %9.0f %9.0f\n",
              o.label.empty() ? "-" : o.label.c_str(), r.messages_per_sec, p.p50, p.p90, p.p99,
              p.max, static_cast<long long>(errors), r.server_cpu_percent, r.tool_cpu_percent);
  Json out = {{"scenario", "persist"},
              {"label", o.label},
              {"senders", o.senders},
              {"ack_latency_ms", PercentilesJson(p)},
              {"errors", errors}};
  out.update(LoadJson(o.load, r));
  std::cout << out.dump() << std::endl;
  return errors == 0 && r.acked > 0 ? 0 : 1;
}

}  // namespace mmchat::bench
