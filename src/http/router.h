// Maps (method, path) to a handler. Patterns are literal segments and ":name" parameters,
// e.g. "/api/users/:id/last-seen". Routes are added at start-up; Find is then read-only and
// safe from any thread.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "http/message.h"

namespace mmchat::http {

using Handler = std::function<Response(Request&)>;
using Respond = std::function<void(Response)>;
// Answers later through `respond` (exactly once, from any thread). The Request is valid only
// during the call: copy what is needed.
using AsyncHandler = std::function<void(Request&, Respond respond)>;
// Answers from memory alone (caches), or nullopt when the answer needs the database.
using CachedHandler = std::function<std::optional<Response>(Request&)>;
// For a route whose body is streamed (an upload): called once the headers are in, before any
// of the body is read; the sink takes the body, or the error is the answer.
using SinkOpener = std::function<Result<std::shared_ptr<BodySink>>(Request&)>;

struct RouteOptions {
  bool auth = false;      // needs a valid bearer token; sets Request::user_id
  bool blocking = false;  // slow (password hashing, SMTP): run on the worker pool
  // Needs nothing from the database: runs inline on the io thread even where requests go to
  // the database threads (PostgreSQL), so that liveness and metrics answer during an outage.
  bool no_database = false;
  // Counts against the client address's rate (AUTH_RATE_PER_MIN): for the unauthenticated
  // routes that cost a password hash or a mail.
  bool per_client_rate = false;
  // The token may also come as `?token=` (downloads linked from a page, as for the WebSocket).
  bool query_token = false;
  // For a streamed body (Router::AddUpload): its largest size; over it, 413.
  uint64_t max_body = 0;
};

struct Route {
  std::string method;
  std::string pattern;  // also the metrics label
  std::vector<std::string> segments;
  AsyncHandler handler;
  RouteOptions options;
  // When set and requests go to database threads, tried first on the io thread: an answer
  // from memory skips the hop to a database thread. Must not touch the database.
  CachedHandler cached;
  // Set: the body is streamed into the sink it opens (AddUpload) instead of read whole.
  SinkOpener open_sink;
  size_t index = 0;  // position in Router::routes(), for per-route tables
};

struct RouteMatch {
  const Route* route = nullptr;  // null when nothing matched
  bool path_known = false;       // some route has this path, with another method
  std::string allowed;           // the methods that path accepts, for the Allow header
};

class Router {
 public:
  void Add(std::string method, std::string pattern, Handler handler, RouteOptions options = {},
           CachedHandler cached = {});
  void AddAsync(std::string method, std::string pattern, AsyncHandler handler,
                RouteOptions options = {});
  // A route whose body is streamed into a sink (options.max_body bytes at most), never held
  // whole in memory.
  void AddUpload(std::string method, std::string pattern, SinkOpener open_sink,
                 RouteOptions options);
  // On a match, fills `params` with the path parameters.
  RouteMatch Find(const std::string& method, const std::string& path,
                  std::map<std::string, std::string>* params) const;
  const std::vector<std::unique_ptr<Route>>& routes() const { return routes_; }

 private:
  std::vector<std::unique_ptr<Route>> routes_;
};

}  // namespace mmchat::http
