#include "ws_client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>

namespace mmchat::test {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace websocket = boost::beast::websocket;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

// A frame's type for the API record's key, found without parsing: what follows `"type":"`
// (server frames begin with it), or "" when nothing does.
std::string_view TypeOf(std::string_view text) {
  constexpr std::string_view kType = "\"type\":\"";
  const size_t at = text.find(kType);
  if (at == std::string_view::npos) return "";
  const std::string_view rest = text.substr(at + kType.size(), 40);
  return rest.substr(0, rest.find('"'));
}

// A frame for the API record (harness.h, RecordApi): every frame received ("ws_in"; one that
// is not JSON as its text, a failure for the check), and the JSON objects sent ("ws_out").
// Frames sent that are not JSON objects are the tests' garbage: not recorded.
void RecordFrame(const char* kind, const std::string& text) {
  RecordApi(std::string(kind) + " " + std::string(TypeOf(text)), [&]() -> Json {
    Json frame = Json::parse(text, nullptr, false);
    const bool in = std::string_view(kind) == "ws_in";
    if (frame.is_discarded() || (!in && !frame.is_object())) {
      return in ? Json{{"kind", kind}, {"text", text}} : Json();
    }
    return {{"kind", kind}, {"frame", std::move(frame)}};
  });
}

}  // namespace

struct WsClient::Impl : std::enable_shared_from_this<Impl> {
  net::io_context ioc;
  websocket::stream<tcp::socket> ws{ioc};
  beast::flat_buffer buffer;
  std::thread thread;
  bool connected = false;
  HttpResult refusal;
  HttpResult handshake;

  mutable std::mutex mu;
  std::condition_variable cv;
  std::deque<std::string> frames;  // guarded by mu
  bool ended = false;              // guarded by mu
  int close_code = 0;              // guarded by mu
  int pings = 0;                   // guarded by mu
  bool reading = false;            // on the io thread
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work;
  std::promise<void> run_returned;  // set by the io thread when run() returns
  std::future<void> stopped;

  void Read() {
    reading = true;
    ws.async_read(buffer, [self = shared_from_this()](beast::error_code ec, size_t) {
      std::string text;
      if (!ec) {
        text = beast::buffers_to_string(self->buffer.data());
        RecordFrame("ws_in", text);
      }
      std::lock_guard lock(self->mu);
      if (ec) {
        self->ended = true;
        self->close_code = self->ws.reason().code;
        self->cv.notify_all();
        return;
      }
      self->frames.push_back(std::move(text));
      self->buffer.consume(self->buffer.size());
      self->cv.notify_all();
      self->Read();
    });
  }

  // Runs `fn` on the io thread and waits for it.
  template <class Fn>
  void OnIo(Fn fn) {
    std::promise<void> done;
    net::post(ioc, [&] {
      fn();
      done.set_value();
    });
    done.get_future().wait();
  }

  void Write(const std::string& data, bool text) {
    std::promise<void> done;
    net::post(ioc, [&] {
      ws.text(text);
      ws.async_write(net::buffer(data), [&](beast::error_code, size_t) { done.set_value(); });
    });
    done.get_future().wait();
  }
};

WsClient::WsClient(uint16_t port, const std::string& token, WsOptions options)
    : impl_(std::make_shared<Impl>()) {
  auto& ws = impl_->ws;
  auto& sock = beast::get_lowest_layer(ws);
  sock.open(tcp::v4());
  if (options.receive_buffer > 0) {
    sock.set_option(net::socket_base::receive_buffer_size(options.receive_buffer));
  }
  sock.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
  std::string target = options.target;
  if (target.empty()) target = options.token_in_header ? "/api/ws" : "/api/ws?token=" + token;
  if (options.token_in_header || !options.headers.empty()) {
    ws.set_option(websocket::stream_base::decorator(
        [token, in_header = options.token_in_header,
         headers = options.headers](websocket::request_type& req) {
          if (in_header) req.set(bhttp::field::authorization, "Bearer " + token);
          for (const auto& [name, value] : headers) req.set(name, value);
        }));
  }
  websocket::response_type res;
  beast::error_code ec;
  // The asynchronous handshake keeps the response when the server refuses (the synchronous one
  // does not).
  ws.async_handshake(res, "127.0.0.1:" + std::to_string(port), target,
                     [&ec](beast::error_code e) { ec = e; });
  impl_->ioc.run();
  impl_->ioc.restart();
  bhttp::response<bhttp::string_body> plain(res.result(), res.version());
  for (const auto& field : res) plain.set(field.name_string(), field.value());
  plain.body() = res.body();
  HttpResult answer = ToResult(plain);
  // The 101 too; not a default response left by a connection that failed.
  if (!ec || ec == websocket::error::upgrade_declined) RecordHttp("GET", target, answer);
  impl_->handshake = answer;
  if (ec) {
    impl_->refusal = std::move(answer);
    return;
  }
  impl_->connected = true;
  ws.control_callback([impl = impl_.get()](websocket::frame_type kind, beast::string_view) {
    if (kind != websocket::frame_type::ping) return;
    std::lock_guard lock(impl->mu);
    ++impl->pings;
  });
  if (options.read) impl_->Read();
  impl_->work.emplace(impl_->ioc.get_executor());
  impl_->stopped = impl_->run_returned.get_future();
  impl_->thread = std::thread([impl = impl_.get()] {
    impl->ioc.run();
    impl->run_returned.set_value();
  });
}

WsClient::~WsClient() {
  if (!impl_->connected) return;
  // Closing the socket ends the pending read; with no work left the io thread returns.
  net::post(impl_->ioc, [impl = impl_.get()] {
    beast::error_code ignored;
    beast::get_lowest_layer(impl->ws).close(ignored);
    impl->work.reset();
  });
  // A Beast operation that stays suspended (a close waiting for a lock that is never freed)
  // keeps run() going forever: after a while the loop is stopped, and said so, rather than
  // hanging the test binary until ctest's timeout.
  if (impl_->stopped.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
    std::fprintf(stderr, "WsClient: the io loop had work left 10 s after its socket closed\n");
    impl_->ioc.stop();
  }
  impl_->thread.join();
}

bool WsClient::connected() const { return impl_->connected; }
const HttpResult& WsClient::refusal() const { return impl_->refusal; }
const HttpResult& WsClient::handshake() const { return impl_->handshake; }

void WsClient::Send(const Json& frame) { SendText(frame.dump()); }
void WsClient::SendText(const std::string& text) {
  RecordFrame("ws_out", text);
  impl_->Write(text, true);
}
void WsClient::SendBinary(const std::string& data) { impl_->Write(data, false); }

Json WsClient::Next(std::chrono::milliseconds timeout) {
  std::unique_lock lock(impl_->mu);
  if (!impl_->cv.wait_for(lock, timeout, [&] { return !impl_->frames.empty() || impl_->ended; })) {
    return nullptr;
  }
  if (impl_->frames.empty()) return nullptr;
  std::string text = std::move(impl_->frames.front());
  impl_->frames.pop_front();
  return Json::parse(text, nullptr, false);
}

Json WsClient::NextWhere(const std::function<bool(Json&)>& want,
                         std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return nullptr;
    Json f = Next(left);
    if (f.is_null() || want(f)) return f;
  }
}

Json WsClient::NextOfType(const std::string& type, std::chrono::milliseconds timeout) {
  return NextWhere([&](Json& f) { return f.value("type", "") == type; }, timeout);
}

size_t WsClient::Pending() const {
  std::lock_guard lock(impl_->mu);
  return impl_->frames.size();
}

int WsClient::WaitClosed(std::chrono::milliseconds timeout) {
  std::unique_lock lock(impl_->mu);
  if (!impl_->cv.wait_for(lock, timeout, [&] { return impl_->ended; })) return -1;
  return impl_->close_code;
}

void WsClient::StartReading() {
  impl_->OnIo([impl = impl_.get()] {
    if (!impl->reading) impl->Read();
  });
}

int WsClient::PingsReceived() const {
  std::lock_guard lock(impl_->mu);
  return impl_->pings;
}

void WsClient::Close() {
  // Shared: when the server never answers, the handler runs after this returns (at the
  // latest when the destructor closes the socket).
  auto done = std::make_shared<std::promise<void>>();
  auto answered = done->get_future();
  net::post(impl_->ioc, [impl = impl_.get(), done] {
    impl->ws.async_close(websocket::close_code::normal,
                         [done](beast::error_code) { done->set_value(); });
  });
  if (answered.wait_for(std::chrono::seconds(5)) != std::future_status::ready) {
    // Some tests close on a server that does not answer; this says which did, for a test that
    // fails because the server never heard of the close.
    std::fprintf(stderr, "WsClient::Close: no closing handshake within 5 s\n");
  }
}

}  // namespace mmchat::test
