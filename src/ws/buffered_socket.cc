#include "ws/buffered_socket.h"

#include <boost/asio/write.hpp>

namespace mmchat::ws {

namespace net = boost::asio;

void BufferedSocket::ScheduleFlush() {
  if (writing_ || flush_posted_) return;  // an ending write starts the next one itself
  flush_posted_ = true;
  // After the current handler, so that every write it makes goes out together.
  net::post(get_executor(), [this, owner = owner_.lock()] {
    flush_posted_ = false;
    Flush();
  });
}

void BufferedSocket::Flush() {
  if (writing_) return;
  if (gathering_.empty()) {
    if (when_idle_) std::exchange(when_idle_, nullptr)();
    return;
  }
  writing_ = true;
  writing_buf_.swap(gathering_);
  net::async_write(socket_, net::buffer(writing_buf_),
                   [this, owner = owner_.lock()](boost::beast::error_code ec, size_t n) {
                     writing_ = false;
                     std::string().swap(writing_buf_);  // idle connections keep no buffer
                     if (ec) {
                       failed_ = ec;
                       std::string().swap(gathering_);
                       boost::beast::error_code ignored;
                       socket_.close(ignored);  // the pending read ends; the connection finishes
                       if (when_idle_) std::exchange(when_idle_, nullptr)();
                       return;
                     }
                     flushed_ += n;
                     if (on_flushed_) on_flushed_();
                     Flush();
                   });
}

void BufferedSocket::WhenIdle(std::function<void()> f) {
  when_idle_ = std::move(f);
  if (!writing_ && !flush_posted_) Flush();
}

void teardown(boost::beast::role_type role, BufferedSocket& s, boost::beast::error_code& ec) {
  boost::beast::websocket::teardown(role, s.next_layer(), ec);
}

}  // namespace mmchat::ws
