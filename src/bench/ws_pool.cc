#include "bench/ws_pool.h"

namespace mmchat::bench {

namespace beast = boost::beast;
namespace net = boost::asio;
using tcp = net::ip::tcp;

net::ip::address_v4 SourceAddress(const Target& target, int i) {
  return net::ip::make_address_v4("127.0.0." + std::to_string(1 + i % target.source_addresses));
}

uint16_t PortOf(const Target& target, int i) {
  const auto k = static_cast<size_t>(i) % (1 + target.more_ports.size());
  return k == 0 ? target.port : target.more_ports[k - 1];
}

void WsPool::Open(int count, const std::function<std::string(int)>& token_of,
                  const std::function<void(int, std::shared_ptr<Client>)>& opened) {
  token_of_ = &token_of;
  opened_ = &opened;
  target_count_ = started_ + count;
  // An io_context that ran out of work (every earlier connection failed) stays stopped, and
  // run_one would then return at once forever.
  if (ioc_.stopped()) ioc_.restart();
  while (started_ < target_count_ && started_ - done_ < target_.in_flight) StartOne();
  while (done_ < target_count_) ioc_.run_one();
}

void WsPool::StartOne() {
  const int i = started_++;
  auto c = std::make_shared<Client>(ioc_);
  auto& sock = beast::get_lowest_layer(c->ws);
  beast::error_code ec;
  sock.open(tcp::v4(), ec);
  if (!ec) sock.bind(tcp::endpoint(SourceAddress(target_, i), 0), ec);
  if (!ec) sock.set_option(tcp::no_delay(true), ec);
  if (ec) return Done(false);
  const tcp::endpoint server(net::ip::make_address(target_.host), PortOf(target_, i));
  sock.async_connect(server, [this, c, i](beast::error_code ec2) {
    if (ec2) return Done(false);
    c->ws.async_handshake(target_.host, "/api/ws?token=" + (*token_of_)(i),
                          [this, c, i](beast::error_code ec3) {
                            if (ec3) return Done(false);
                            (*opened_)(i, c);
                            Done(true);
                          });
  });
}

void WsPool::Done(bool ok) {
  ++done_;
  ok ? ++open_ : ++failed_;
  if (started_ < target_count_) StartOne();
}

}  // namespace mmchat::bench
