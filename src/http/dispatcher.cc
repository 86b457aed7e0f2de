#include "http/dispatcher.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio/post.hpp>
#include <chrono>
#include <exception>
#include <memory>

#include "common/log_context.h"
#include "common/utf8.h"
#include "http/errors.h"
#include "http/json_io.h"

namespace mmchat::http {
namespace {

Response NotFound(const Request& req) {
  return ErrorResponse(Status::NotFound("no route for " + req.method + " " + req.path));
}

// The request's token (RequestToken), or nullopt when there is none.
std::optional<std::string_view> BearerToken(const Request& req, bool in_query = false) {
  const std::string_view token = RequestToken(req, in_query);
  if (token.empty()) return std::nullopt;
  return token;
}

Response MissingToken() { return ErrorResponse(Status::Unauthorized("missing bearer token")); }

// A handler threw: a bug, not a client error. Logs the detail and shows none of it.
Response Threw(const Route& route, const std::exception& e) {
  spdlog::error("handler {} {} threw: {}", route.method, route.pattern, LogSafe(e.what()));
  return ErrorResponse(Status::Internal("internal error"));
}

// API.md's error table has no 405: a route is a method and a path, so a known path with
// another method is a 404 too; the Allow header still tells which methods it takes.
Response MethodNotAllowed(const Request& req, const std::string& allowed) {
  Response res = NotFound(req);
  res.headers.emplace_back("Allow", allowed);
  return res;
}

}  // namespace

Dispatcher::Dispatcher(const Router* router, Authenticator authenticate,
                       boost::asio::any_io_executor workers, metrics::Registry* registry,
                       ClientLimiter* per_client,
                       std::optional<boost::asio::any_io_executor> database,
                       CachedAuthenticator authenticate_cached)
    : router_(router),
      authenticate_(std::move(authenticate)),
      authenticate_cached_(std::move(authenticate_cached)),
      workers_(std::move(workers)),
      database_(std::move(database)),
      registry_(registry),
      per_client_(per_client) {
  auto make = [&](const std::string& label) {
    auto s = std::make_unique<RouteStats>();
    s->label = label;
    s->latency = registry_->GetHistogram(
        "mmchat_http_request_duration_seconds", "HTTP request latency by route.",
        "route=\"" + metrics::EscapeLabel(label) + "\"", metrics::LatencyBuckets());
    return s;
  };
  for (const auto& r : router_->routes())
    route_stats_.push_back(make(r->method + " " + r->pattern));
  unmatched_stats_ = make("unmatched");
}

void Dispatcher::Record(RouteStats& stats, int status, double seconds) {
  stats.latency->Observe(seconds);
  if (status < 0 || status >= static_cast<int>(stats.by_status.size())) status = 0;
  metrics::Counter* c = stats.by_status[status].load(std::memory_order_acquire);
  if (c == nullptr) {
    c = registry_->GetCounter("mmchat_http_requests_total", "HTTP requests by route and status.",
                              "route=\"" + metrics::EscapeLabel(stats.label) + "\",status=\"" +
                                  std::to_string(status) + "\"");
    stats.by_status[status].store(c, std::memory_order_release);
  }
  c->Inc();
}

std::optional<Response> Dispatcher::Authenticate(const Route& route, Request& req) {
  if (!route.options.auth) return std::nullopt;
  auto token = BearerToken(req, route.options.query_token);
  if (!token) return MissingToken();
  auto user = authenticate_(*token);
  if (!user.ok()) return ErrorResponse(user.status());
  req.user_id = *user;
  return std::nullopt;
}

void Dispatcher::Run(const Route& route, Request& req, Respond respond) {
  const log::RequestScope scope(req.request_id);  // what the handler logs names the request
  if (auto refused = Authenticate(route, req)) return respond(std::move(*refused));
  // The handler gets a wrapper, so that a handler that throws before answering still gets
  // its 500 (and an answer is never sent twice).
  auto shared = std::make_shared<Respond>(std::move(respond));
  auto answered = std::make_shared<std::atomic<bool>>(false);
  auto once = [shared, answered](Response res) {
    if (!answered->exchange(true)) (*shared)(std::move(res));
  };
  try {
    route.handler(req, once);
  } catch (const std::exception& e) {
    once(Threw(route, e));
  }
}

bool Dispatcher::TryCached(const Route& route, Request& req, Respond& respond) {
  const log::RequestScope scope(req.request_id);
  std::optional<Response> res;
  try {
    if (route.options.auth) {
      auto token = BearerToken(req, route.options.query_token);
      if (!token) {
        respond(MissingToken());
        return true;
      }
      if (!authenticate_cached_) return false;
      auto user = authenticate_cached_(*token);
      if (!user) return false;
      if (!user->ok()) {
        respond(ErrorResponse(user->status()));
        return true;
      }
      req.user_id = **user;
    }
    res = route.cached(req);
  } catch (const std::exception& e) {
    res = Threw(route, e);
  }
  if (!res) return false;
  respond(std::move(*res));
  return true;
}

void Dispatcher::Dispatch(Request req, std::function<void(Response)> done) {
  const auto start = std::chrono::steady_clock::now();
  auto finish = [this, start, done = std::move(done)](RouteStats& stats, Response res) {
    const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
    Record(stats, res.status, took.count());
    res.route = stats.label;
    done(std::move(res));
  };

  const RouteMatch m = router_->Find(req.method, req.path, &req.params);
  if (m.route == nullptr) {
    Response res = m.path_known ? MethodNotAllowed(req, m.allowed) : NotFound(req);
    finish(*unmatched_stats_, std::move(res));
    return;
  }

  RouteStats& stats = *route_stats_[m.route->index];
  Respond respond = [finish = std::move(finish), &stats](Response res) mutable {
    finish(stats, std::move(res));
  };
  if (m.route->options.per_client_rate && per_client_ != nullptr) {
    // Checked before the worker pool: a flood must not queue password hashes.
    if (const int64_t wait_ms = per_client_->TryTake(req.client_address, SteadyMs())) {
      return respond(ErrorResponse(Status::RateLimited(
          "too many requests from this address; try again later", (wait_ms + 999) / 1000)));
    }
  }
  if (!m.route->options.blocking && (!database_ || m.route->options.no_database)) {
    Run(*m.route, req, std::move(respond));
    return;
  }
  if (!m.route->options.blocking && m.route->cached && TryCached(*m.route, req, respond)) return;
  boost::asio::post(
      m.route->options.blocking ? workers_ : *database_,
      [this, route = m.route, req = std::move(req), respond = std::move(respond)]() mutable {
        Run(*route, req, std::move(respond));
      });
}

const Route* Dispatcher::StreamedRoute(Request& req) const {
  const RouteMatch m = router_->Find(req.method, req.path, &req.params);
  return m.route != nullptr && m.route->open_sink ? m.route : nullptr;
}

void Dispatcher::OpenSink(const Route& route, Request req, Opened done) {
  const auto start = std::chrono::steady_clock::now();
  RunBody([this, &route, start, req = std::move(req), done = std::move(done)]() mutable {
    const log::RequestScope scope(req.request_id);
    auto fail = [&](Response res) {
      Finished(route, res.status, start);
      done(nullptr, std::move(res));
    };
    try {
      if (auto refused = Authenticate(route, req)) return fail(std::move(*refused));
      auto sink = route.open_sink(req);
      if (!sink.ok()) return fail(ErrorResponse(sink.status()));
      done(std::move(sink).value(), Response{});
    } catch (const std::exception& e) {
      fail(Threw(route, e));
    }
  });
}

void Dispatcher::Finished(const Route& route, int status,
                          std::chrono::steady_clock::time_point start) {
  const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
  Record(*route_stats_[route.index], status, took.count());
}

void Dispatcher::RunBody(std::function<void()> task) {
  boost::asio::post(database_ ? *database_ : workers_, std::move(task));
}

}  // namespace mmchat::http
