// One keep-alive HTTP/1.1 connection's closed loop for the load scenarios (`http`,
// `reactions`, `search`): request, answer, next request, until the stop time, keeping each answer's
// latency.
#pragma once

#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench/ws_pool.h"

namespace mmchat::bench {

namespace http_loop {
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;

constexpr size_t kReadChunk = 64 * 1024;                    // bytes read from the socket at a time
constexpr auto kRequestTimeout = std::chrono::seconds(10);  // a stuck server ends the run

// One connection's closed loop: request, answer, next request, until the stop time. Its
// handlers run one after another on its own strand (the stream's timeout timer needs one when
// several threads run the io_context), so its counters need no lock; they are read after the
// io threads have stopped.
class HttpLoop : public std::enable_shared_from_this<HttpLoop> {
 public:
  // `toggle`: PUT and DELETE by turns (the reactions scenario: each call changes something);
  // else GET.
  HttpLoop(net::io_context& ioc, const Target& t, const std::string& path, const std::string& token,
           const Clock::time_point& stop_at, bool toggle = false)
      : stream_(net::make_strand(ioc)), stop_at_(stop_at), toggle_(toggle) {
    req_.method(toggle ? bhttp::verb::put : bhttp::verb::get);
    req_.target(path);
    req_.version(11);
    req_.set(bhttp::field::host, t.host);
    req_.set(bhttp::field::authorization, "Bearer " + token);
    // Beast reads at most the buffer's free capacity at a time (512 bytes at least): without
    // room, a 180 KiB answer took hundreds of reads and the tool's CPU rivalled the server's.
    buffer_.reserve(kReadChunk);
  }

  // Connects from `source`; calls `done(ok)` once, when connected or failed.
  void Connect(const tcp::endpoint& server, const net::ip::address_v4& source,
               std::function<void(bool)> done) {
    beast::error_code ec;
    stream_.socket().open(tcp::v4(), ec);
    if (!ec) stream_.socket().bind(tcp::endpoint(source, 0), ec);
    if (!ec) stream_.socket().set_option(tcp::no_delay(true), ec);
    if (ec) return done(false);
    stream_.expires_after(kRequestTimeout);
    stream_.async_connect(server, [done = std::move(done)](beast::error_code e) { done(!e); });
  }

  // Each request's target from `next` instead of the fixed path (the search scenario's queries).
  void VaryPath(std::function<std::string()> next) { next_path_ = std::move(next); }

  void Start() {
    net::post(stream_.get_executor(), [self = shared_from_this()] { self->Next(); });
  }

  std::vector<double> latency_ms;
  int64_t non_2xx = 0, errors = 0, body_bytes = 0;

 private:
  void Next() {
    if (Clock::now() >= stop_at_) return Close();
    if (toggle_ && !latency_ms.empty()) {
      req_.method(req_.method() == bhttp::verb::put ? bhttp::verb::delete_ : bhttp::verb::put);
    }
    if (next_path_) req_.target(next_path_());
    sent_at_ = Clock::now();
    stream_.expires_after(kRequestTimeout);
    bhttp::async_write(stream_, req_, [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec) return self->Fail();
      self->res_ = {};
      bhttp::async_read(self->stream_, self->buffer_, self->res_,
                        [self](beast::error_code ec2, size_t) { self->OnResponse(ec2); });
    });
  }

  void OnResponse(beast::error_code ec) {
    if (ec) return Fail();
    latency_ms.push_back(
        std::chrono::duration<double, std::milli>(Clock::now() - sent_at_).count());
    if (res_.result_int() / 100 != 2) ++non_2xx;
    body_bytes += static_cast<int64_t>(res_.body().size());
    if (!res_.keep_alive()) return Fail();  // the server gave up on keep-alive
    Next();
  }

  // A broken connection is counted and not replaced: the run is then not a clean measurement.
  void Fail() {
    ++errors;
    Close();
  }

  void Close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.close();
  }

  beast::tcp_stream stream_;
  bhttp::request<bhttp::empty_body> req_;
  beast::flat_buffer buffer_;
  bhttp::response<bhttp::string_body> res_;
  Clock::time_point sent_at_;
  const Clock::time_point& stop_at_;
  const bool toggle_;
  std::function<std::string()> next_path_;
};

// Connects every loop from its own source address, running `ioc` on this thread until each
// has connected or failed; throws when one failed.
inline void ConnectAll(net::io_context& ioc, const Target& t,
                       const std::vector<std::shared_ptr<HttpLoop>>& loops) {
  const tcp::endpoint server(net::ip::make_address(t.host), t.port);
  size_t connected = 0, attempts = 0;
  for (size_t i = 0; i < loops.size(); ++i) {
    loops[i]->Connect(server, SourceAddress(t, static_cast<int>(i)), [&](bool ok) {
      connected += ok;
      ++attempts;
    });
  }
  while (attempts < loops.size()) ioc.run_one();
  ioc.restart();
  if (connected < loops.size()) {
    throw std::runtime_error(std::to_string(loops.size() - connected) + " of " +
                             std::to_string(loops.size()) + " HTTP connections failed");
  }
}

// What the loops saw, together (read after the io threads have stopped).
struct LoopTotals {
  std::vector<double> latency_ms;
  int64_t non_2xx = 0, errors = 0, body_bytes = 0;
};

inline LoopTotals Totals(const std::vector<std::shared_ptr<HttpLoop>>& loops) {
  LoopTotals t;
  for (const auto& l : loops) {
    t.latency_ms.insert(t.latency_ms.end(), l->latency_ms.begin(), l->latency_ms.end());
    t.non_2xx += l->non_2xx;
    t.errors += l->errors;
    t.body_bytes += l->body_bytes;
  }
  return t;
}

}  // namespace http_loop

using http_loop::ConnectAll;
using http_loop::HttpLoop;
using http_loop::LoopTotals;
using http_loop::Totals;

}  // namespace mmchat::bench
