// The scenarios of mmchat-bench. Each prints a readable table and one JSON line, and returns
// the process exit code (0 when nothing failed or was lost).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "bench/message_load.h"
#include "bench/stats.h"
#include "bench/ws_pool.h"

namespace mmchat::bench {

struct IdleOptions {
  Target target;
  std::vector<int> steps{1000, 10000};  // connection counts to measure at, ascending
  pid_t server_pid = 0;
  double settle_sec = 3;
  double hold_sec = 0;  // then hold the connections this long, measuring the server's CPU
};
int RunIdle(const IdleOptions& options, const std::vector<Account>& accounts);

// `fanout`, `direct` and `persist` share the messaging engine and its options (LoadOptions).
struct FanoutOptions {
  LoadOptions load;
  int groups = 1;
  int members = 10;  // per group, the senders included
  int senders = 1;   // per group
};
int RunFanout(const FanoutOptions& options, const std::vector<Account>& accounts);

struct DirectOptions {
  LoadOptions load;
  int pairs = 100;  // private conversations; both users of each pair send
};
int RunDirect(const DirectOptions& options, const std::vector<Account>& accounts);

struct PersistOptions {
  LoadOptions load{.window = 4};  // a few in flight per sender, so that commits can batch
  int senders = 64;               // each in a group of its own
  std::string label;              // e.g. the server's SQLITE_SYNCHRONOUS, echoed in the output
};
int RunPersist(const PersistOptions& options, const std::vector<Account>& accounts);

struct HttpOptions {
  Target target;
  int connections = 64;        // keep-alive, one request in flight on each
  std::string kind = "small";  // small: GET /api/me; history: a 50-message page;
                               // conversations: GET /api/conversations
  int conversations = 200;     // the conversations kind: how many the user is in
  double duration_sec = 5;
  int threads = 1;       // the tool's io threads
  pid_t server_pid = 0;  // for its CPU use; 0: not reported
};
int RunHttp(const HttpOptions& options, const std::vector<Account>& accounts);

struct ReactionsOptions {
  Target target;
  int members = 100;     // in the group, all on WebSocket
  int connections = 64;  // keep-alive HTTP connections toggling reactions, one call in flight each
  double duration_sec = 5;
  double drain_sec = 10;  // how long to wait for the last deliveries
  pid_t server_pid = 0;   // for its CPU use; 0: not reported
};
int RunReactions(const ReactionsOptions& options, const std::vector<Account>& accounts);

struct SearchOptions {
  LoadOptions load{.window = 4, .duration_sec = 3600};  // loading: as persist, up to --messages
  int64_t messages = 1'000'000;                         // to load first (0: search what is there)
  int conversations = 64;    // loading senders, each in a group of its own
  int visible_every = 4;     // the searcher is in one group of this many
  int vocabulary = 10'000;   // made-up words, used by Zipf's law
  int connections = 8;       // the searcher's keep-alive connections, one call each
  double duration_sec = 10;  // searching time
};
int RunSearch(const SearchOptions& options, const std::vector<Account>& accounts);

struct UploadsOptions {
  Target target;
  int64_t size = 25 * 1024 * 1024;  // bytes of each file
  int rounds = 5;                   // uploads and downloads one at a time
  int concurrent = 20;              // uploads at once (0: none)
  pid_t server_pid = 0;             // for its RSS; 0: not reported
};
int RunUploads(const UploadsOptions& options, const std::vector<Account>& accounts);

}  // namespace mmchat::bench
