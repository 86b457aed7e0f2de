// Runs a parsed request through the router: authentication for protected routes, the
// handler (on the worker pool when the route is blocking; on the database threads, when
// there are, otherwise), the error object for failures,
// and per-route request metrics. Thread-safe once built.
#pragma once

#include <array>
#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "common/rate_limiter.h"
#include "common/status.h"
#include "http/message.h"
#include "http/router.h"
#include "metrics/registry.h"

namespace mmchat::http {

// Turns a bearer token into a user id, or kUnauthorized.
using Authenticator = std::function<Result<int64_t>(std::string_view token)>;
// The same from memory alone, or nullopt when the answer needs the database.
using CachedAuthenticator = std::function<std::optional<Result<int64_t>>(std::string_view token)>;
// Requests per client address, for routes with RouteOptions::per_client_rate.
using ClientLimiter = RateLimiter<std::string>;

class Dispatcher {
 public:
  // `per_client` may be null (no per-address limit). `database`, when given, is where the
  // routes that are not blocking run instead of inline on the io thread: with a database
  // across the network, their round trips must not hold an io thread. There, a route with a
  // cached handler is first tried inline, authenticated by `authenticate_cached`.
  Dispatcher(const Router* router, Authenticator authenticate, boost::asio::any_io_executor workers,
             metrics::Registry* registry, ClientLimiter* per_client = nullptr,
             std::optional<boost::asio::any_io_executor> database = std::nullopt,
             CachedAuthenticator authenticate_cached = {});

  // Calls `done` exactly once with the response, on this thread or on a worker thread.
  void Dispatch(Request req, std::function<void(Response)> done);

  // The route of a request whose body is streamed (Router::AddUpload), with its path
  // parameters filled in; null for every other request.
  const Route* StreamedRoute(Request& req) const;
  // Authenticates a streamed request and opens its sink, off the io threads; calls `done`
  // once with the sink, or with no sink and the error to answer.
  using Opened = std::function<void(std::shared_ptr<BodySink>, Response)>;
  void OpenSink(const Route& route, Request req, Opened done);
  // The route's name in metrics and logs ("POST /api/uploads").
  std::string_view Label(const Route& route) const { return route_stats_[route.index]->label; }
  // Counts a streamed request's answer in the route's metrics.
  void Finished(const Route& route, int status, std::chrono::steady_clock::time_point start);
  // Blocking work of a streamed body (BodySink, BodySource): on the database threads when
  // there are, otherwise on the workers.
  void RunBody(std::function<void()> task);

 private:
  // Metrics of one route: counters by status are created on first use and then read
  // lock-free through the atomic slots.
  struct RouteStats {
    std::string label;
    metrics::Histogram* latency = nullptr;
    std::array<std::atomic<metrics::Counter*>, 600> by_status{};
  };

  void Run(const Route& route, Request& req, Respond respond);
  // Sets req.user_id from the bearer token (also `?token=` where the route allows); the
  // error answer otherwise.
  std::optional<Response> Authenticate(const Route& route, Request& req);
  // Answers from memory when the route and the authentication can; false when the request
  // needs the database (nothing was answered).
  bool TryCached(const Route& route, Request& req, Respond& respond);
  void Record(RouteStats& stats, int status, double seconds);

  const Router* router_;
  Authenticator authenticate_;
  CachedAuthenticator authenticate_cached_;
  boost::asio::any_io_executor workers_;
  std::optional<boost::asio::any_io_executor> database_;
  metrics::Registry* registry_;
  ClientLimiter* per_client_;
  std::vector<std::unique_ptr<RouteStats>> route_stats_;  // parallel to router_->routes()
  std::unique_ptr<RouteStats> unmatched_stats_;
};

}  // namespace mmchat::http
