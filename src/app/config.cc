#include "app/config.h"

#include <algorithm>
#include <charconv>
#include <limits>
#include <thread>
#include <tuple>

#include "bus/redis/redis_url.h"
#include "common/strings.h"
#include "http/cors.h"

namespace mmchat::app {
namespace {

bool ValidKey(std::string_view k) {
  if (k.empty() || (k[0] >= '0' && k[0] <= '9')) return false;
  for (char c : k) {
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) {
      return false;
    }
  }
  return true;
}

Status Invalid(const char* var, const std::string& why, const std::string& value) {
  return Status::InvalidRequest(std::string(var) + ": " + why + " (got \"" + value + "\")");
}

Status ParseInt(const char* var, const std::string& value, int64_t min, int64_t max, int64_t* out) {
  int64_t v = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
  if (value.empty() || ec != std::errc() || end != value.data() + value.size() || v < min ||
      v > max) {
    return Invalid(var,
                   "must be an integer from " + std::to_string(min) + " to " + std::to_string(max),
                   value);
  }
  *out = v;
  return Status::Ok();
}

}  // namespace

const std::vector<ConfigVar>& ConfigVars() {
  static const std::vector<ConfigVar> kVars = {
      {"HTTP_ADDR", ":8080", "listen address, `host:port` (`:port` is every interface)"},
      {"ADMIN_SOCKET", "mmchat.sock",
       "Unix-domain socket (mode 0600) on which `mmchat user ...` tells the running server what "
       "it changed (a path, relative to the working directory; `-` for none)"},
      {"JWT_SECRET", "none",
       "signing key; when unset the server generates one, keeps it in the database and warns"},
      {"JWT_TTL_MIN", "1440", "token lifetime in minutes"},
      {"SQLITE_DSN", "file:chat.db", "SQLite database (a path or a `file:` URI)"},
      {"OTP_DIGITS", "6", "verification code length (4 to 10)"},
      {"OTP_TTL_SEC", "300", "verification code lifetime in seconds"},
      {"OTP_SENDER", "log", "`log` writes the code to the server log; `smtp` mails it"},
      {"SMTP_URL", "-",
       "e.g. `smtp://127.0.0.1:2525` (`smtps://` and `user:password@` for TLS/auth); required "
       "with `OTP_SENDER=smtp`"},
      {"SMTP_FROM", "mmchat@localhost", "sender address"},
      {"MAX_MESSAGE_LEN", "4000", "characters per message"},
      {"MAX_UPLOAD_BYTES", "26214400", "largest upload (25 MiB); over it `413`"},
      {"MAX_PENDING_UPLOAD_BYTES", "10 × MAX_UPLOAD_BYTES",
       "what one user's uploads that no message carries yet may add up to (`0`: no limit; else "
       "at least `MAX_UPLOAD_BYTES`); an upload that would pass it is `413`"},
      {"CORS_ALLOWED_ORIGINS", "-",
       "comma-separated origins (`https://app.example.com,http://localhost:5173`) whose pages "
       "may call the API from a browser; `*` allows any; unset, no CORS headers are sent"},
      {"UPLOAD_SWEEP_SEC", "60",
       "how often uploads no message carries for a day, and those of deleted messages, are "
       "removed (1 to 86400)"},
      {"DATABASE_URL", "-",
       "a PostgreSQL URI (`postgres://user:pass@host:5432/db` or `postgresql://…`); when set, "
       "PostgreSQL is the store and `SQLITE_DSN` is not used"},
      {"DATABASE_POOL_SIZE", "2 per core, at least 4",
       "PostgreSQL connections each process keeps at most"},
      {"DATABASE_WAIT_SEC", "30",
       "how long start-up waits for an unreachable PostgreSQL before it exits"},
      {"REDIS_URL", "-",
       "`redis://[:password@]host:port[/db]`; when set, the process is one node of a cluster: "
       "events travel through Redis to every node sharing the same PostgreSQL database "
       "(requires `DATABASE_URL`)"},
      {"CLUSTER_NODE_TTL_SEC", "15",
       "in a cluster, how long a node that stopped answering (crashed, cut off) still counts: "
       "after it, its users' connections count as closed"},
      {"HTTP_THREADS", "cores", "io threads serving connections"},
      {"WORKER_THREADS", "cores", "threads for password hashing and mail"},
      {"HTTP_READ_TIMEOUT_SEC", "30",
       "time a client has to send a whole request, and the keep-alive idle limit"},
      {"SQLITE_SYNCHRONOUS", "NORMAL", "`NORMAL` or `FULL` (SQLite `synchronous` in WAL mode)"},
      {"LOG_LEVEL", "info", "`debug`, `info`, `warn` or `error`"},
      {"LOG_FORMAT", "text",
       "`text`, or `json`: one JSON object per line (`ts`, `level`, `msg`, `request_id` and "
       "the line's fields) for log shippers"},
      {"ACCESS_LOG", "on",
       "`on`: a line per HTTP request at `info` (method, path, route, status, duration, "
       "request id); `off`: only answers of `500` and up, at `warn`"},
      {"WS_PING_INTERVAL_SEC", "30",
       "connections are checked this often: one silent this long is pinged, and dropped if still "
       "silent at the next check"},
      {"WS_TYPING_TIMEOUT_SEC", "10",
       "a typing state not refreshed this long ends (`typing_stop`)"},
      {"WS_MAX_QUEUE_BYTES", "1048576",
       "events waiting for one WebSocket connection; past it the connection is closed (1008)"},
      {"MSG_RATE_PER_SEC", "10",
       "messages one user may send per second, REST and WebSocket together, on average "
       "(`0`: no limit); over it `429 rate_limited`"},
      {"MSG_RATE_BURST", "30", "messages one user may send at once before the rate applies"},
      {"AUTH_RATE_PER_MIN", "60",
       "requests per minute from one IP address to signup, login and forgot, with bursts of as "
       "many (`0`: no limit); over it `429 rate_limited`"},
      {"MAX_CONNECTIONS", "0",
       "open connections, HTTP and WebSocket together (`0`: as many as the open-file limit "
       "allows); over it new ones get `503 unavailable`"},
      {"MAX_CONNS_PER_IP", "1000",
       "open connections from one IP address (`0`: no limit); over it new ones get `429`"},
      {"WS_MAX_CONNS_PER_USER", "20",
       "open WebSocket connections of one user (`0`: no limit); over it the upgrade gets `429`"},
      {"WS_TYPING_RATE_PER_SEC", "5",
       "typing changes (start or stop) relayed per user and second, in bursts of twice as many "
       "(`0`: no limit); over it the frame's answer is `rate_limited`"},
      {"HTTP_MAX_HEADER_BYTES", "16384",
       "size of a request's line and headers; over it `431` (a JSON `invalid_request`)"},
      {"HTTP_MAX_HEADERS", "100", "header fields per request; over it `431`"},
  };
  return kVars;
}

Result<std::map<std::string, std::string>> ParseDotEnv(std::string_view content) {
  std::map<std::string, std::string> out;
  int line_no = 0;
  while (!content.empty()) {
    ++line_no;
    const size_t nl = content.find('\n');
    std::string_view line = TrimBlanks(content.substr(0, nl));
    content.remove_prefix(nl == std::string_view::npos ? content.size() : nl + 1);
    if (line.empty() || line[0] == '#') continue;
    if (line.substr(0, 7) == "export ") line = TrimBlanks(line.substr(7));
    const size_t eq = line.find('=');
    const std::string where = ".env line " + std::to_string(line_no);
    if (eq == std::string_view::npos) return Status::InvalidRequest(where + ": expected KEY=VALUE");
    const std::string_view key = TrimBlanks(line.substr(0, eq));
    if (!ValidKey(key)) return Status::InvalidRequest(where + ": invalid variable name");
    const std::string_view raw_value = line.substr(eq + 1);
    std::string_view value = TrimBlanks(raw_value);
    if (!value.empty() && (value[0] == '"' || value[0] == '\'')) {
      const size_t close = value.find(value[0], 1);
      if (close == std::string_view::npos) {
        return Status::InvalidRequest(where + ": unterminated quote");
      }
      const std::string_view rest = TrimBlanks(value.substr(close + 1));
      if (!rest.empty() && rest[0] != '#') {
        return Status::InvalidRequest(where + ": text after the closing quote");
      }
      value = value.substr(1, close - 1);
    } else if (const size_t hash = raw_value.find(" #"); hash != std::string_view::npos) {
      value = TrimBlanks(raw_value.substr(0, hash));  // an inline comment ("KEY= # x" is empty)
    }
    out[std::string(key)] = std::string(value);
  }
  return out;
}

Status ParseListenAddress(std::string_view addr, std::string* host, uint16_t* port) {
  const Status bad = Invalid("HTTP_ADDR", "must be host:port or :port", std::string(addr));
  std::string_view h;
  std::string_view p;
  if (!addr.empty() && addr[0] == '[') {
    const size_t close = addr.find(']');
    if (close == std::string_view::npos || close + 1 >= addr.size() || addr[close + 1] != ':') {
      return bad;
    }
    h = addr.substr(1, close - 1);
    p = addr.substr(close + 2);
  } else {
    const size_t colon = addr.rfind(':');
    if (colon == std::string_view::npos) return bad;
    h = addr.substr(0, colon);
    p = addr.substr(colon + 1);
    if (h.find(':') != std::string_view::npos) return bad;  // bare IPv6 needs brackets
  }
  int64_t n = 0;
  if (!ParseInt("HTTP_ADDR", std::string(p), 0, 65535, &n).ok()) return bad;
  for (char c : h) {
    if (c == ' ' || c == '/' || c == '@') return bad;
  }
  *host = std::string(h);
  *port = static_cast<uint16_t>(n);
  return Status::Ok();
}

Result<Config> LoadConfig(const std::function<std::optional<std::string>(const char*)>& getenv,
                          const std::map<std::string, std::string>& dotenv) {
  auto get = [&](const char* name) -> std::optional<std::string> {
    if (auto v = getenv(name)) return v;
    auto it = dotenv.find(name);
    if (it != dotenv.end()) return it->second;
    return std::nullopt;
  };
  Config c;
  int64_t n = 0;
  auto int_var = [&](const char* name, int64_t min, int64_t max, auto* field) -> Status {
    auto v = get(name);
    if (!v) return Status::Ok();
    if (Status s = ParseInt(name, *v, min, max, &n); !s.ok()) return s;
    *field = static_cast<std::remove_pointer_t<decltype(field)>>(n);
    return Status::Ok();
  };
  auto one_of = [&](const char* name, std::initializer_list<const char*> allowed,
                    std::string* field) -> Status {
    auto v = get(name);
    if (!v) return Status::Ok();
    for (const char* a : allowed) {
      if (*v == a) {
        *field = *v;
        return Status::Ok();
      }
    }
    std::string list;
    for (const char* a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
    return Invalid(name, "must be one of " + list, *v);
  };

  if (auto v = get("HTTP_ADDR")) {
    if (Status s = ParseListenAddress(*v, &c.http_host, &c.http_port); !s.ok()) return s;
  }
  if (auto v = get("ADMIN_SOCKET")) {
    if (v->empty()) return Invalid("ADMIN_SOCKET", "must not be empty (`-` for none)", *v);
    if (v->size() > 107) return Invalid("ADMIN_SOCKET", "must be at most 107 bytes", *v);
    c.admin_socket = *v;
  }
  if (auto v = get("JWT_SECRET"); v && !v->empty()) {
    if (v->size() < 16) return Invalid("JWT_SECRET", "must be at least 16 characters", "…");
    c.jwt_secret = *v;
  }
  constexpr int64_t kMaxInt = std::numeric_limits<int32_t>::max();
  if (Status s = int_var("JWT_TTL_MIN", 1, 525600, &c.jwt_ttl_min); !s.ok()) return s;
  if (auto v = get("SQLITE_DSN")) {
    if (v->empty()) return Invalid("SQLITE_DSN", "must not be empty", *v);
    // Each pooled connection would get its own empty in-memory database.
    if (v->find(":memory:") != std::string::npos || v->find("mode=memory") != std::string::npos) {
      return Invalid("SQLITE_DSN", "in-memory databases are not supported; give a file", *v);
    }
    c.sqlite_dsn = *v;
  }
  if (Status s = int_var("OTP_DIGITS", 4, 10, &c.otp_digits); !s.ok()) return s;
  if (Status s = int_var("OTP_TTL_SEC", 1, 86400, &c.otp_ttl_sec); !s.ok()) return s;
  if (Status s = one_of("OTP_SENDER", {"log", "smtp"}, &c.otp_sender); !s.ok()) return s;
  if (auto v = get("SMTP_URL"); v && !v->empty()) {
    if (v->rfind("smtp://", 0) != 0 && v->rfind("smtps://", 0) != 0) {
      return Invalid("SMTP_URL", "must start with smtp:// or smtps://", *v);
    }
    c.smtp_url = *v;
  }
  if (c.otp_sender == "smtp" && c.smtp_url.empty()) {
    return Status::InvalidRequest("SMTP_URL: required when OTP_SENDER=smtp");
  }
  if (auto v = get("SMTP_FROM")) {
    if (v->find('@') == std::string::npos || v->find_first_of("<>\r\n ") != std::string::npos) {
      return Invalid("SMTP_FROM", "must be a plain email address", *v);
    }
    c.smtp_from = *v;
  }
  if (Status s = int_var("MAX_MESSAGE_LEN", 1, 65536, &c.max_message_len); !s.ok()) return s;
  if (Status s = int_var("MAX_UPLOAD_BYTES", 1, int64_t{1} << 40, &c.max_upload_bytes); !s.ok()) {
    return s;
  }
  c.max_pending_upload_bytes = 10 * c.max_upload_bytes;
  if (Status s =
          int_var("MAX_PENDING_UPLOAD_BYTES", 0, int64_t{1} << 50, &c.max_pending_upload_bytes);
      !s.ok()) {
    return s;
  }
  if (c.max_pending_upload_bytes != 0 && c.max_pending_upload_bytes < c.max_upload_bytes) {
    // Else an upload the contract allows (up to MAX_UPLOAD_BYTES) would be refused.
    return Invalid("MAX_PENDING_UPLOAD_BYTES", "must be 0 or at least MAX_UPLOAD_BYTES",
                   std::to_string(c.max_pending_upload_bytes));
  }
  if (Status s = int_var("UPLOAD_SWEEP_SEC", 1, 86400, &c.upload_sweep_sec); !s.ok()) return s;
  if (auto v = get("CORS_ALLOWED_ORIGINS")) {
    if (auto cors = http::CorsPolicy::Parse(*v); !cors.ok()) return cors.status();
    c.cors_allowed_origins = *v;
  }
  if (auto v = get("DATABASE_URL"); v && !v->empty()) {
    // The value is not echoed: it may hold a password.
    if (v->rfind("postgres://", 0) != 0 && v->rfind("postgresql://", 0) != 0) {
      return Invalid("DATABASE_URL", "must start with postgres:// or postgresql://", "…");
    }
    c.database_url = *v;
  }
  if (Status s = int_var("DATABASE_POOL_SIZE", 1, 1000, &c.database_pool_size); !s.ok()) return s;
  if (c.database_pool_size == 0) {
    // More requests reading at once than the cores can serve only adds switching, here and
    // in PostgreSQL: on 2 cores 4 gave a tenth more history pages than 16 (BENCHMARKS.md).
    c.database_pool_size = std::max<int64_t>(4, 2 * std::thread::hardware_concurrency());
  }
  if (Status s = int_var("DATABASE_WAIT_SEC", 0, 3600, &c.database_wait_sec); !s.ok()) return s;
  if (auto v = get("REDIS_URL"); v && !v->empty()) {
    // Checked here so that a wrong value stops start-up; the message never echoes it (it may
    // hold a password).
    if (auto url = bus::redis::ParseRedisUrl(*v); !url.ok()) return url.status();
    // Nodes share what they know through the database: each with its own SQLite file would
    // be several servers that merely pass events around.
    if (c.database_url.empty()) {
      return Status::InvalidRequest(
          "REDIS_URL: requires DATABASE_URL (the nodes of a cluster share one PostgreSQL "
          "database)");
    }
    c.redis_url = *v;
  }
  if (Status s = int_var("CLUSTER_NODE_TTL_SEC", 3, 3600, &c.cluster_node_ttl_sec); !s.ok()) {
    return s;
  }
  if (Status s = int_var("HTTP_THREADS", 1, 256, &c.http_threads); !s.ok()) return s;
  if (Status s = int_var("WORKER_THREADS", 1, 256, &c.worker_threads); !s.ok()) return s;
  if (Status s = int_var("HTTP_READ_TIMEOUT_SEC", 1, kMaxInt, &c.http_read_timeout_sec); !s.ok()) {
    return s;
  }
  if (Status s = one_of("SQLITE_SYNCHRONOUS", {"NORMAL", "FULL"}, &c.sqlite_synchronous); !s.ok()) {
    return s;
  }
  if (Status s = one_of("LOG_LEVEL", {"debug", "info", "warn", "error"}, &c.log_level); !s.ok()) {
    return s;
  }
  if (Status s = one_of("LOG_FORMAT", {"text", "json"}, &c.log_format); !s.ok()) return s;
  std::string access_log = c.access_log ? "on" : "off";
  if (Status s = one_of("ACCESS_LOG", {"on", "off"}, &access_log); !s.ok()) return s;
  c.access_log = access_log == "on";
  if (Status s = int_var("WS_PING_INTERVAL_SEC", 1, 86400, &c.ws_ping_interval_sec); !s.ok()) {
    return s;
  }
  if (Status s = int_var("WS_TYPING_TIMEOUT_SEC", 1, 3600, &c.ws_typing_timeout_sec); !s.ok()) {
    return s;
  }
  // At least one full frame (64 KiB) must fit; at most 1 GiB, so that a connection can count
  // its queue in 32 bits (each connection carries the count).
  if (Status s = int_var("WS_MAX_QUEUE_BYTES", 65536, int64_t{1} << 30, &c.ws_max_queue_bytes);
      !s.ok()) {
    return s;
  }
  constexpr int64_t kMillion = 1'000'000;
  for (auto [name, field, min, max] : {
           std::tuple{"MSG_RATE_PER_SEC", &c.msg_rate_per_sec, int64_t{0}, kMillion},
           std::tuple{"MSG_RATE_BURST", &c.msg_rate_burst, int64_t{1}, kMillion},
           std::tuple{"AUTH_RATE_PER_MIN", &c.auth_rate_per_min, int64_t{0}, kMillion},
           std::tuple{"MAX_CONNECTIONS", &c.max_connections, int64_t{0}, kMillion},
           std::tuple{"MAX_CONNS_PER_IP", &c.max_conns_per_ip, int64_t{0}, kMillion},
           std::tuple{"WS_MAX_CONNS_PER_USER", &c.ws_max_conns_per_user, int64_t{0}, kMillion},
           std::tuple{"WS_TYPING_RATE_PER_SEC", &c.ws_typing_rate_per_sec, int64_t{0}, kMillion},
           std::tuple{"HTTP_MAX_HEADER_BYTES", &c.http_max_header_bytes, int64_t{1024},
                      int64_t{1} << 20},
           std::tuple{"HTTP_MAX_HEADERS", &c.http_max_headers, int64_t{1}, int64_t{10000}},
       }) {
    if (Status s = int_var(name, min, max, field); !s.ok()) return s;
  }
  return c;
}

}  // namespace mmchat::app
