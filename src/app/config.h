// Server configuration: API.md's environment variables plus a few of our own, read from the
// environment and a .env file (the real environment wins). Parsing is pure and
// unit-tested; an invalid value is an error naming the variable.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace mmchat::app {

struct Config {
  // API.md
  std::string http_host;  // empty: all interfaces
  uint16_t http_port = 8080;
  std::optional<std::string> jwt_secret;
  int64_t jwt_ttl_min = 1440;
  std::string sqlite_dsn = "file:chat.db";
  int otp_digits = 6;
  int64_t otp_ttl_sec = 300;
  std::string otp_sender = "log";  // log | smtp
  std::string smtp_url;
  std::string smtp_from = "mmchat@localhost";
  int64_t max_message_len = 4000;
  int64_t max_upload_bytes = 26214400;  // 25 MiB
  // What one user's uploads that no message carries may add up to (0: no limit); unset, ten
  // times max_upload_bytes: room for a message's ten largest attachments.
  int64_t max_pending_upload_bytes = 10 * 26214400;
  std::string cors_allowed_origins;  // empty: no CORS (http::CorsPolicy::Parse reads it)
  int64_t upload_sweep_sec = 60;     // how often orphaned and deleted uploads are removed
  std::string database_url;          // empty: SQLite (sqlite_dsn); else a PostgreSQL URI
  std::string redis_url;             // empty: one process; else a node of a cluster (the Redis bus)
  int64_t cluster_node_ttl_sec = 15;  // a silent node's connections count this long
  // MmChat's own
  std::string admin_socket = "mmchat.sock";  // `mmchat user ...` tells the server here; "-": none
  int64_t database_pool_size = 0;  // PostgreSQL connections per process (LoadConfig sets it)
  int64_t database_wait_sec = 30;  // how long start-up waits for an unreachable database
  int http_threads = 0;            // 0: one per core
  int worker_threads = 0;          // 0: one per core
  int64_t http_read_timeout_sec = 30;
  std::string sqlite_synchronous = "NORMAL";  // NORMAL | FULL
  std::string log_level = "info";
  std::string log_format = "text";  // text | json (app/logging.h)
  bool access_log = true;           // ACCESS_LOG: a line per HTTP request
  int64_t ws_ping_interval_sec = 30;
  int64_t ws_typing_timeout_sec = 10;
  int64_t ws_max_queue_bytes = 1 << 20;
  // Abuse limits (0: off where allowed).
  int64_t msg_rate_per_sec = 10;  // per sender, REST and WebSocket together
  int64_t msg_rate_burst = 30;
  int64_t auth_rate_per_min = 60;  // per client address, on signup, login and forgot
  int64_t max_connections = 0;     // 0: as many as the open-file limit allows
  int64_t max_conns_per_ip = 1000;
  int64_t ws_max_conns_per_user = 20;
  int64_t ws_typing_rate_per_sec = 5;
  int64_t http_max_header_bytes = 16384;
  int64_t http_max_headers = 100;
};

struct ConfigVar {
  const char* name;
  const char* default_text;
  const char* meaning;
};

// Every variable the server reads, in the order of README's table.
const std::vector<ConfigVar>& ConfigVars();

// KEY=VALUE lines; blank lines and '#' comments are skipped; "export " is allowed; values may
// be single- or double-quoted. A malformed line is an error naming its line number.
Result<std::map<std::string, std::string>> ParseDotEnv(std::string_view content);

// Builds the configuration. `getenv` answers for the real environment; `dotenv` holds the .env
// values, used where the environment has none.
Result<Config> LoadConfig(const std::function<std::optional<std::string>(const char*)>& getenv,
                          const std::map<std::string, std::string>& dotenv);

// "host:port", ":port", "[v6]:port" into host and port.
Status ParseListenAddress(std::string_view addr, std::string* host, uint16_t* port);

}  // namespace mmchat::app
