// The scenarios of mmchat-bench. Each prints a readable table and one JSON line, and returns
// the process exit code (0 when nothing failed or was lost).
#pragma once

#include <sys/types.h>

#include <vector>

#include "bench/stats.h"
#include "bench/ws_pool.h"

namespace mmchat::bench {

struct IdleOptions {
  Target target;
  std::vector<int> steps{1000, 10000};  // connection counts to measure at, ascending
  pid_t server_pid = 0;
  double settle_sec = 3;
};
int RunIdle(const IdleOptions& options, const std::vector<Account>& accounts);

struct FanoutOptions {
  Target target;
  int groups = 1;
  int members = 10;  // per group, the senders included
  int senders = 1;   // per group
  double rate = 0;   // messages per second over all senders; 0: as fast as acks allow
  int window = 1;    // messages a sender may have unacknowledged
  double duration_sec = 5;
  double drain_sec = 5;  // how long to wait for the last deliveries
  int message_bytes = 100;
  pid_t server_pid = 0;  // for its CPU use; 0: not reported
};
int RunFanout(const FanoutOptions& options, const std::vector<Account>& accounts);

}  // namespace mmchat::bench
