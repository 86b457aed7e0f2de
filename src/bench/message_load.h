// The engine behind the messaging scenarios (`fanout`, `direct`, `persist`): users on
// WebSocket, each in one conversation, some of them posting messages at a target rate or as
// fast as their acks come back. It counts acks and deliveries and their latencies, waits for
// the last ones after sending stops, and reads the CPU both sides used. The scenarios only set
// up the conversations and report. Runs on the calling thread; not thread-safe.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench/stats.h"
#include "bench/ws_pool.h"

namespace mmchat::bench {

// What every messaging scenario takes from the command line.
struct LoadOptions {
  Target target;
  double rate = 0;  // messages per second over all senders; 0: as fast as acks allow
  int window = 1;   // messages a sender may have unacknowledged
  double duration_sec = 5;
  double drain_sec = 5;  // how long to wait for the last acks and deliveries
  int message_bytes = 100;
  pid_t server_pid = 0;  // for its CPU use; 0: not reported
  // Words after each message's marker instead of padding (the search scenario's corpus).
  std::function<std::string()> text;
  int64_t max_messages = 0;  // sending stops after this many (0: at the end of the duration)
};

// One connected user of the load: its account, the conversation it is in, whether it posts.
struct Seat {
  size_t account = 0;  // index into the accounts
  int64_t conversation_id = 0;
  bool sender = false;
};

struct LoadResult {
  double send_sec = 0;   // time spent sending
  double total_sec = 0;  // sending and draining: the divisor of every rate
  int64_t sent = 0, acked = 0, failed = 0, unacked = 0;
  int64_t delivered = 0, lost = 0;  // lost: acked messages some recipient never got
  int64_t closed = 0;               // connections that ended during the run
  Percentiles delivery_ms;          // send to delivery at another member
  Percentiles ack_ms;               // send to ack (the ack follows the commit)
  // Per message, send to its first delivery: the part of delivery_ms that is not the fan-out
  // spreading over the members.
  Percentiles first_delivery_ms;
  double messages_per_sec = 0;  // acked
  double deliveries_per_sec = 0;
  double server_cpu_percent = -1;  // of one core; -1 when no server pid was given
  double tool_cpu_percent = 0;
};

// Connects every seat (throws when one fails), sends for the duration and drains.
// `recipients` is how many other seats receive each message (members per conversation - 1).
LoadResult RunLoad(const LoadOptions& options, const std::vector<Account>& accounts,
                   const std::vector<Seat>& seats, int recipients);

// The fields every messaging scenario's JSON line has.
nlohmann::json LoadJson(const LoadOptions& options, const LoadResult& result);

// One HTTP request with a JSON body, for setting up (creating conversations, filling them).
// Throws on a non-2xx answer.
nlohmann::json PostJson(const Target& target, const std::string& path, const nlohmann::json& body,
                        const std::string& token);
// One GET, for checking the set-up; throws on a non-2xx answer.
nlohmann::json GetJson(const Target& target, const std::string& path, const std::string& token);

}  // namespace mmchat::bench
