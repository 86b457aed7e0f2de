// Measurement helpers of mmchat-bench: latency percentiles, process CPU time and memory from
// /proc, the open-file limit, and the tokens file that `mmchat user add --tokens` writes.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace mmchat::bench {

// Nearest-rank percentiles of a sample (sorted in place). Empty samples give zeros.
struct Percentiles {
  double p50 = 0, p90 = 0, p99 = 0, max = 0;
  size_t count = 0;
};
Percentiles ComputePercentiles(std::vector<double>& sample);
// {"p50", "p90", "p99", "max"}, as every JSON line of the tool gives them.
nlohmann::json PercentilesJson(const Percentiles& p);

// Resident set size in KiB, or -1.
int64_t RssKib(pid_t pid);
// User plus system CPU seconds the process has used so far, or -1.
double CpuSeconds(pid_t pid);
// Raises the soft open-file limit to the hard one; returns the new soft limit.
uint64_t RaiseFileLimit();

struct Account {
  int64_t id = 0;
  std::string username;
  std::string token;
};
// `id username token` lines; malformed lines are skipped.
std::vector<Account> LoadAccounts(const std::string& path);

}  // namespace mmchat::bench
