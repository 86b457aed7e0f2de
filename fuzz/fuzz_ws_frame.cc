// WebSocket client frames through the real path: the HTTP server and the hub run in-process
// on a loopback port over the real services (fuzz_app.h), and a Beast client connected as
// alice sends each input as one frame (the first byte picks text or binary). A ping with a
// ref follows, and the frames are read up to its ack, so that each input has been handled
// before the next. Every frame the server sends must be a JSON object with a string type. A
// connection the server closes (a frame over 64 KiB, invalid UTF-8) is opened again.
#include <sys/socket.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "fuzz_app.h"
#include "http/dispatcher.h"
#include "http/server.h"
#include "ws/hub.h"

namespace {

namespace net = boost::asio;
namespace websocket = boost::beast::websocket;
using tcp = net::ip::tcp;
using Json = nlohmann::json;

[[noreturn]] void Fail(const std::string& what) {
  fprintf(stderr, "%s\n", what.c_str());
  abort();
}

// The server side: what Serve() runs, without signals and shutdown.
struct InProcessServer {
  InProcessServer() {
    auto& s = *app.services;
    auto authenticate = [](std::string_view token) {
      return mmchat::fuzz::App().Authenticate(token);
    };
    hub.emplace(ioc,
                mmchat::ws::HubDeps{.messages = s.messages.get(),
                                    .conversations = s.conversations.get(),
                                    .presence = s.presence.get(),
                                    .store = s.store.get(),
                                    .bus = s.bus.get(),
                                    .authenticate = authenticate,
                                    .workers = app.workers.get_executor(),
                                    .registry = &s.registry},
                mmchat::ws::HubOptions{});
    if (!hub->Start().ok()) Fail("hub start failed");
    dispatcher.emplace(&router, authenticate, app.workers.get_executor(), &s.registry);
    mmchat::http::ServerOptions options;
    options.host = "127.0.0.1";
    options.port = 0;
    server.emplace(ioc, &*dispatcher, &s.registry, options);
    server->SetUpgradeHandler(&*hub);
    if (!server->Listen().ok()) Fail("listen failed");
    server->Start();
    for (int i = 0; i < 2; ++i) threads.emplace_back([this] { ioc.run(); });
  }

  mmchat::fuzz::FuzzApp& app = mmchat::fuzz::App();
  net::io_context ioc{2};
  net::executor_work_guard<net::io_context::executor_type> work = net::make_work_guard(ioc);
  mmchat::http::Router router;  // no REST routes: only the upgrade is used
  std::optional<mmchat::ws::Hub> hub;
  std::optional<mmchat::http::Dispatcher> dispatcher;
  std::optional<mmchat::http::Server> server;
  std::vector<std::thread> threads;
};

class Client {
 public:
  explicit Client(uint16_t port) : port_(port) {}

  // Sends one frame, then reads everything up to the ack of a ping sent after it.
  void Exchange(const std::string& payload, bool text) {
    if (!ws_ || !ws_->is_open()) Connect();
    boost::beast::error_code ec;
    ws_->text(text);
    ws_->write(net::buffer(payload), ec);
    if (ec) return ws_.reset();
    const std::string ref = "sync-" + std::to_string(++syncs_);
    ws_->text(true);
    ws_->write(net::buffer(Json{{"type", "ping"}, {"ref", ref}}.dump()), ec);
    if (ec) return ws_.reset();
    for (;;) {
      boost::beast::flat_buffer buf;
      ws_->read(buf, ec);
      if (ec == net::error::would_block || ec == net::error::try_again) {
        Fail("no answer to a ping within 20 s");
      }
      if (ec) return ws_.reset();  // the server closed it (e.g. 1009, 1007): allowed
      const auto frame = Json::parse(boost::beast::buffers_to_string(buf.data()), nullptr, false);
      if (!frame.is_object() || !frame.contains("type") || !frame["type"].is_string()) {
        Fail("server frame is not a typed JSON object: " +
             boost::beast::buffers_to_string(buf.data()).substr(0, 300));
      }
      if (frame["type"] == "ack" && frame["data"].value("ref", "") == ref) return;
    }
  }

 private:
  void Connect() {
    for (int attempt = 1;; ++attempt) {
      boost::beast::error_code ec;
      ws_ = std::make_unique<websocket::stream<tcp::socket>>(ioc_);
      ws_->next_layer().connect({net::ip::make_address("127.0.0.1"), port_}, ec);
      if (!ec) {
        // Sync reads have no deadline of their own: a receive timeout turns a hang into an
        // error.
        timeval tv{20, 0};
        setsockopt(ws_->next_layer().native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ws_->handshake("127.0.0.1", "/api/ws?token=alice", ec);
      }
      if (!ec) return;
      // libFuzzer's timer signal can interrupt a blocking call of this client (EINTR): that
      // says nothing of the server, so connect again. Anything else is a failure.
      if (ec != net::error::interrupted || attempt == 10) {
        Fail("cannot open the WebSocket: " + ec.message());
      }
    }
  }

  net::io_context ioc_;
  uint16_t port_;
  std::unique_ptr<websocket::stream<tcp::socket>> ws_;
  uint64_t syncs_ = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static InProcessServer* server = new InProcessServer();  // for the whole run
  static Client* client = new Client(server->server->port());
  if (size == 0) return 0;
  client->Exchange(std::string(reinterpret_cast<const char*>(data) + 1, size - 1),
                   data[0] % 2 == 0);
  return 0;
}
