// HTTP requests as a client sends them: the bytes are parsed by Beast with the server's
// limits, turned into a Request the way a session does, and dispatched through every route
// to the real services (fuzz_app.h). Besides crashes, leaks and hangs, it fails on an answer
// that breaks API.md's rules: a 500, an error without the error object, or a download whose
// streamed body fails or is not as long as announced.
#include <boost/asio/buffer.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <future>
#include <nlohmann/json.hpp>

#include "fuzz_app.h"
#include "http/dispatcher.h"
#include "http/server.h"

namespace {

namespace bhttp = boost::beast::http;
using mmchat::http::Response;

struct Target {
  Target() : dispatcher(&router, MakeAuthenticator(), app.workers.get_executor(), &registry) {}
  static mmchat::http::Authenticator MakeAuthenticator() {
    return [](std::string_view token) { return mmchat::fuzz::App().Authenticate(token); };
  }
  mmchat::fuzz::FuzzApp& app = mmchat::fuzz::App();
  mmchat::domain::UserService users{app.services->store.get(), &nobody_online,
                                    app.services->user_cache.get(), app.services->bus.get()};
  mmchat::http::Router router = [this] {
    mmchat::http::Router r;
    app.services->AddRoutes(r, &users);
    return r;
  }();
  mmchat::metrics::Registry registry;
  mmchat::http::Dispatcher dispatcher;

  struct : mmchat::domain::PresenceView {
    bool IsOnline(int64_t) const override { return false; }
  } nobody_online;
};

void Check(bool ok, const char* what, const Response& res) {
  if (ok) return;
  fprintf(stderr, "%s: status %d, body %.500s\n", what, res.status, res.body.c_str());
  abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Target* t = new Target();  // kept for the whole run, as the server keeps its state
  mmchat::http::ServerOptions limits;
  bhttp::request_parser<bhttp::string_body> parser;
  parser.body_limit(limits.body_limit);
  parser.header_limit(static_cast<uint32_t>(limits.header_limit));
  parser.eager(true);
  boost::beast::error_code ec;
  boost::asio::const_buffer rest(data, size);
  while (rest.size() > 0 && !parser.is_done()) {
    const size_t used = parser.put(rest, ec);
    if (ec || used == 0) break;
    rest += used;
  }
  if (!parser.is_done()) return 0;  // the session answers 400 or waits for more: no dispatch

  mmchat::http::Request req = mmchat::http::ToRequest(parser.get());
  std::promise<Response> answered;
  t->dispatcher.Dispatch(std::move(req), [&](Response res) { answered.set_value(std::move(res)); });
  auto future = answered.get_future();
  if (future.wait_for(std::chrono::seconds(20)) != std::future_status::ready) {
    fprintf(stderr, "no answer within 20 s\n");
    abort();
  }
  const Response res = future.get();
  Check(res.status >= 200 && res.status <= 599, "status out of range", res);
  Check(res.status != 500, "internal error", res);
  if (res.stream) {
    // A download: its body is read the way the session writes it, piece by piece, and must be
    // exactly as long as announced (Content-Length).
    uint64_t total = 0;
    for (;;) {
      auto piece = res.stream->Next();
      Check(piece.ok(), "a download's body failed", res);
      if (piece->empty()) break;
      total += piece->size();
      Check(total <= res.stream_length, "a download's body is longer than announced", res);
    }
    Check(total == res.stream_length, "a download's body is shorter than announced", res);
  }
  if (res.status >= 400) {
    const auto body = nlohmann::json::parse(res.body, nullptr, false);
    Check(body.is_object() && body.contains("error") && body["error"].is_object() &&
              body["error"].value("code", nlohmann::json()).is_string() &&
              body["error"].value("message", nlohmann::json()).is_string(),
          "error without the error object", res);
  }
  return 0;
}
