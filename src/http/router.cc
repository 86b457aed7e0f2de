#include "http/router.h"

#include "http/errors.h"

namespace mmchat::http {
namespace {

std::vector<std::string> SplitPath(const std::string& path) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < path.size()) {
    if (path[start] == '/') {
      ++start;
      continue;
    }
    const size_t slash = path.find('/', start);
    const size_t end = slash == std::string::npos ? path.size() : slash;
    out.push_back(path.substr(start, end - start));
    start = end;
  }
  return out;
}

bool Matches(const Route& r, const std::vector<std::string>& segs,
             std::map<std::string, std::string>* params) {
  if (r.segments.size() != segs.size()) return false;
  for (size_t i = 0; i < segs.size(); ++i) {
    const std::string& p = r.segments[i];
    if (!p.empty() && p[0] == ':') {
      if (params) (*params)[p.substr(1)] = segs[i];
    } else if (p != segs[i]) {
      return false;
    }
  }
  return true;
}

}  // namespace

void Router::Add(std::string method, std::string pattern, Handler handler, RouteOptions options,
                 CachedHandler cached) {
  AddAsync(
      std::move(method), std::move(pattern),
      [handler = std::move(handler)](Request& req, Respond respond) { respond(handler(req)); },
      options);
  routes_.back()->cached = std::move(cached);
}

void Router::AddAsync(std::string method, std::string pattern, AsyncHandler handler,
                      RouteOptions options) {
  auto r = std::make_unique<Route>();
  r->method = std::move(method);
  r->segments = SplitPath(pattern);
  r->pattern = std::move(pattern);
  r->handler = std::move(handler);
  r->options = options;
  r->index = routes_.size();
  routes_.push_back(std::move(r));
}

void Router::AddUpload(std::string method, std::string pattern, SinkOpener open_sink,
                       RouteOptions options) {
  // Reached only without a socket (the fuzzers, tests of the dispatcher): the body is already
  // whole, and goes into the sink as one piece. The server streams it instead.
  AddAsync(
      std::move(method), std::move(pattern),
      [open_sink](Request& req, Respond respond) {
        auto sink = open_sink(req);
        if (!sink.ok()) return respond(ErrorResponse(sink.status()));
        if (Status s = (*sink)->Write(req.body); !s.ok()) {
          (*sink)->Abort();
          return respond(ErrorResponse(s));
        }
        respond((*sink)->Finish());
      },
      options);
  routes_.back()->open_sink = std::move(open_sink);
}

RouteMatch Router::Find(const std::string& method, const std::string& path,
                        std::map<std::string, std::string>* params) const {
  RouteMatch m;
  const std::vector<std::string> segs = SplitPath(path);
  for (const auto& r : routes_) {
    if (!Matches(*r, segs, nullptr)) continue;
    if (r->method == method) {
      Matches(*r, segs, params);
      m.route = r.get();
      return m;
    }
    m.path_known = true;
    if (!m.allowed.empty()) m.allowed += ", ";
    m.allowed += r->method;
  }
  return m;
}

}  // namespace mmchat::http
