// Opens many client WebSocket connections on one io_context with a bounded number of
// handshakes in flight, from several loopback source addresses (127.0.0.x) so that one
// address's ephemeral ports are not the limit. Not thread-safe: run its io_context on one
// thread.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace mmchat::bench {

struct Target {
  std::string host = "127.0.0.1";
  uint16_t port = 8080;
  // More nodes of one cluster: WebSocket connection i goes to node i % (1 + size), the first
  // being `port`. REST set-up always goes to `port`.
  std::vector<uint16_t> more_ports;
  int source_addresses = 16;
  int in_flight = 256;  // handshakes at once
};

// The loopback address the i-th connection binds to: 127.0.0.(1 + i % source_addresses).
boost::asio::ip::address_v4 SourceAddress(const Target& target, int i);
// The port the i-th WebSocket connection goes to.
uint16_t PortOf(const Target& target, int i);

struct Client {
  explicit Client(boost::asio::io_context& ioc) : ws(ioc) {}
  boost::beast::websocket::stream<boost::asio::ip::tcp::socket> ws;
  boost::beast::flat_buffer buffer;
};

class WsPool {
 public:
  WsPool(boost::asio::io_context& ioc, Target target) : ioc_(ioc), target_(std::move(target)) {}

  // Opens `count` more connections, the i-th (counting from 0 over the pool's life) with
  // `token_of(i)`; calls `opened(i, client)` for each one that is up. Runs the io_context until
  // every attempt finished.
  void Open(int count, const std::function<std::string(int)>& token_of,
            const std::function<void(int, std::shared_ptr<Client>)>& opened);

  int open() const { return open_; }
  int failed() const { return failed_; }

 private:
  void StartOne();
  void Done(bool ok);

  boost::asio::io_context& ioc_;
  const Target target_;
  const std::function<std::string(int)>* token_of_ = nullptr;
  const std::function<void(int, std::shared_ptr<Client>)>* opened_ = nullptr;
  int target_count_ = 0, started_ = 0, done_ = 0, open_ = 0, failed_ = 0;
};

}  // namespace mmchat::bench
