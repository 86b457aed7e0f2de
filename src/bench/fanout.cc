// `fanout` and `direct`, the two delivery scenarios on the messaging engine (message_load.h).
// `fanout`: G group conversations of S members, K senders per group. `direct`: P private
// conversations, both users of each pair sending; fan-out to one. Both report messages/s,
// deliveries/s, send-to-delivery latency percentiles, messages lost after a drain, and the CPU
// both sides used.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "bench/message_load.h"
#include "bench/scenarios.h"

namespace mmchat::bench {

using Json = nlohmann::json;

namespace {

// Prints the table and the JSON line (the scenario's own fields plus the shared ones).
int Report(const LoadOptions& o, const LoadResult& r, Json fields) {
  const Percentiles& p = r.delivery_ms;
  std::printf("%10s %12s %8s %8s %8s %8s %8s %9s %9s\n", "msgs/s", "deliveries/s", "p50 ms",
              "p90 ms", "p99 ms", "max ms", "lost", "server %", "tool %");
  std::printf("%10.0f %12.0f %8.2f %8.2f %8.2f %8.2f %8lld %9.0f %9.0f\n", r.messages_per_sec,
              r.deliveries_per_sec, p.p50, p.p90, p.p99, p.max, static_cast<long long>(r.lost),
              r.server_cpu_percent, r.tool_cpu_percent);
  fields.update(LoadJson(o, r));
  fields.update(Json{{"deliveries", r.delivered},
                     {"deliveries_per_sec", r.deliveries_per_sec},
                     {"latency_ms", PercentilesJson(p)},
                     {"first_delivery_ms", PercentilesJson(r.first_delivery_ms)},
                     {"ack_latency_ms", PercentilesJson(r.ack_ms)},
                     {"lost", r.lost}});
  std::cout << fields.dump() << std::endl;
  return r.lost == 0 && r.failed == 0 && r.unacked == 0 && r.closed == 0 ? 0 : 1;
}

}  // namespace

int RunFanout(const FanoutOptions& o, const std::vector<Account>& accounts) {
  const size_t need = static_cast<size_t>(o.groups) * static_cast<size_t>(o.members);
  if (accounts.size() < need || o.senders < 1 || o.senders > o.members || o.members < 2) {
    std::fprintf(stderr, "fanout needs groups*members (%zu) accounts and 1 <= senders <= members\n",
                 need);
    return 2;
  }
  // Set-up: the groups, created by their first member over HTTP.
  std::vector<Seat> seats(need);
  for (int g = 0; g < o.groups; ++g) {
    const size_t first = static_cast<size_t>(g) * static_cast<size_t>(o.members);
    Json ids = Json::array();
    for (int k = 1; k < o.members; ++k) ids.push_back(accounts[first + k].id);
    const Json conv = PostJson(o.load.target, "/api/conversations/group",
                               {{"name", "bench " + std::to_string(g)}, {"member_ids", ids}},
                               accounts[first].token);
    for (int k = 0; k < o.members; ++k) {
      seats[first + k] = {first + k, conv["id"].get<int64_t>(), k < o.senders};
    }
  }
  const LoadResult r = RunLoad(o.load, accounts, seats, o.members - 1);
  return Report(o.load, r,
                {{"scenario", "fanout"},
                 {"groups", o.groups},
                 {"members", o.members},
                 {"senders", o.senders}});
}

int RunDirect(const DirectOptions& o, const std::vector<Account>& accounts) {
  const size_t need = 2 * static_cast<size_t>(o.pairs);
  if (o.pairs < 1 || accounts.size() < need) {
    std::fprintf(stderr, "direct needs 2*pairs (%zu) accounts and at least one pair\n", need);
    return 2;
  }
  // Set-up: one private conversation per pair (the existing one when it was made before).
  std::vector<Seat> seats(need);
  for (size_t first = 0; first < need; first += 2) {
    const Json conv = PostJson(o.load.target, "/api/conversations/private",
                               {{"user_id", accounts[first + 1].id}}, accounts[first].token);
    const int64_t id = conv["id"].get<int64_t>();
    seats[first] = {first, id, true};
    seats[first + 1] = {first + 1, id, true};
  }
  const LoadResult r = RunLoad(o.load, accounts, seats, 1);
  return Report(o.load, r, {{"scenario", "direct"}, {"pairs", o.pairs}, {"senders", need}});
}

}  // namespace mmchat::bench
