// A TCP socket whose writes are gathered and sent together, used as the next layer of a Beast
// WebSocket stream. Every write (a frame Beast encodes, its pongs and close frames, the
// handshake answer) is appended to a buffer and reported done at once; the buffer goes to the
// kernel in one socket write after the current handler returns, and writes made while that one
// is in flight gather for the next. So a connection's queued frames cost one system call per
// batch instead of one each, and bytes from Beast's own writes can never interleave with ours.
//
// Beast still does all the WebSocket framing; this layer only moves bytes. A failed socket
// write closes the socket, so the pending read ends and the connection finishes.
//
// Threading: used only on the socket's executor, which is the connection's strand.
// Lifetime: pending socket writes keep the owner (the Owner set with set_owner) alive.
// Memory: the buffers exist only while bytes wait or are in flight, so an idle connection keeps
// none, and
// the members are few: every connection carries this object.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <boost/beast/websocket/teardown.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace mmchat::ws {

class BufferedSocket {
 public:
  // The object that holds this socket.
  class Owner {
   public:
    virtual ~Owner() = default;
    // Keeps the owner (and so this socket) alive while a socket write is pending.
    virtual std::shared_ptr<void> KeepAlive() = 0;
    // Called on the strand after each socket write completes successfully.
    virtual void OnFlushed() = 0;
  };

  using next_layer_type = boost::asio::ip::tcp::socket;
  using executor_type = next_layer_type::executor_type;

  explicit BufferedSocket(next_layer_type socket) : socket_(std::move(socket)) {}

  executor_type get_executor() noexcept { return socket_.get_executor(); }
  next_layer_type& next_layer() noexcept { return socket_; }

  // Before the first write.
  void set_owner(Owner* owner) { owner_ = owner; }

  // Bytes appended since the start, and bytes the kernel has taken: a writer that noted
  // appended() after its writes knows they are out once flushed() reaches that figure.
  uint64_t appended() const { return appended_; }
  uint64_t flushed() const { return flushed_; }
  // Runs `f` once nothing is buffered and no socket write is in flight (now, if so already).
  void WhenIdle(std::function<void()> f);

  // Reading goes straight to the socket.
  template <class MutableBuffers>
  size_t read_some(const MutableBuffers& buffers, boost::beast::error_code& ec) {
    return socket_.read_some(buffers, ec);
  }
  template <class MutableBuffers>
  size_t read_some(const MutableBuffers& buffers) {
    return socket_.read_some(buffers);
  }
  template <class MutableBuffers, class Handler>
  auto async_read_some(const MutableBuffers& buffers, Handler&& handler) {
    return socket_.async_read_some(buffers, std::forward<Handler>(handler));
  }

  // Writing appends; it never blocks and takes everything, or fails once the socket failed.
  template <class ConstBuffers>
  size_t write_some(const ConstBuffers& buffers, boost::beast::error_code& ec) {
    if (failed_) {
      ec = boost::asio::error::broken_pipe;
      return 0;
    }
    size_t n = 0;
    for (auto it = boost::asio::buffer_sequence_begin(buffers);
         it != boost::asio::buffer_sequence_end(buffers); ++it) {
      boost::asio::const_buffer b(*it);
      if (!bufs_) bufs_ = std::make_unique<Buffers>();
      bufs_->gathering.append(static_cast<const char*>(b.data()), b.size());
      n += b.size();
    }
    appended_ += n;
    ScheduleFlush();
    return n;
  }
  template <class ConstBuffers>
  size_t write_some(const ConstBuffers& buffers) {
    boost::beast::error_code ec;
    size_t n = write_some(buffers, ec);
    if (ec) throw boost::system::system_error(ec);
    return n;
  }
  // Completes (posted, never inline) as soon as the bytes are appended.
  template <class ConstBuffers, class Handler>
  auto async_write_some(const ConstBuffers& buffers, Handler&& handler) {
    return boost::asio::async_initiate<Handler, void(boost::beast::error_code, size_t)>(
        [this](auto&& h, const ConstBuffers& buffers) {
          boost::beast::error_code ec;
          const size_t n = write_some(buffers, ec);
          boost::asio::post(get_executor(), boost::beast::bind_front_handler(std::move(h), ec, n));
        },
        handler, buffers);
  }

 private:
  void ScheduleFlush();
  void Flush();

  void RunWhenIdle();

  next_layer_type socket_;
  Owner* owner_ = nullptr;
  std::unique_ptr<std::function<void()>> when_idle_;  // rare (the close): kept out of line
  struct Buffers {
    std::string gathering;  // appended, not yet handed to the socket
    std::string writing;    // the socket write in flight
  };
  std::unique_ptr<Buffers> bufs_;  // only while bytes wait or are in flight
  bool writing_ = false;
  bool flush_posted_ = false;
  bool failed_ = false;  // a socket write failed: writes fail from then on
  uint64_t appended_ = 0;
  uint64_t flushed_ = 0;
};

// Beast tears the connection down after the closing handshake through these (found by ADL).
// The socket is shut down only once the gathered bytes (the close frame among them) are out.
void teardown(boost::beast::role_type role, BufferedSocket& s, boost::beast::error_code& ec);

template <class Handler>
void async_teardown(boost::beast::role_type role, BufferedSocket& s, Handler&& handler) {
  // Handlers are move-only; std::function needs a copyable callable.
  auto h = std::make_shared<std::decay_t<Handler>>(std::forward<Handler>(handler));
  s.WhenIdle([role, &s, h] {
    boost::beast::websocket::async_teardown(role, s.next_layer(), std::move(*h));
  });
}

}  // namespace mmchat::ws
