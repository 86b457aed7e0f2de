#include "ws/buffered_socket.h"

#include <boost/asio/write.hpp>

namespace mmchat::ws {

namespace net = boost::asio;

void BufferedSocket::ScheduleFlush() {
  if (writing_ || flush_posted_) return;  // an ending write starts the next one itself
  flush_posted_ = true;
  // After the current handler, so that every write it makes goes out together.
  net::post(get_executor(), [this, keep = owner_->KeepAlive()] {
    flush_posted_ = false;
    Flush();
  });
}

void BufferedSocket::Flush() {
  if (writing_) return;
  if (!bufs_ || bufs_->gathering.empty()) {
    bufs_.reset();  // idle connections keep no buffer
    RunWhenIdle();
    return;
  }
  writing_ = true;
  bufs_->writing.swap(bufs_->gathering);
  net::async_write(socket_, net::buffer(bufs_->writing),
                   [this, keep = owner_->KeepAlive()](boost::beast::error_code ec, size_t n) {
                     writing_ = false;
                     if (ec) {
                       failed_ = true;
                       bufs_.reset();
                       boost::beast::error_code ignored;
                       socket_.close(ignored);  // the pending read ends; the connection finishes
                       RunWhenIdle();
                       return;
                     }
                     bufs_->writing.clear();
                     flushed_ += n;
                     owner_->OnFlushed();
                     Flush();
                   });
}

void BufferedSocket::WhenIdle(std::function<void()> f) {
  when_idle_ = std::make_unique<std::function<void()>>(std::move(f));
  if (!writing_ && !flush_posted_) Flush();
}

void BufferedSocket::RunWhenIdle() {
  if (auto f = std::move(when_idle_)) (*f)();
}

void teardown(boost::beast::role_type role, BufferedSocket& s, boost::beast::error_code& ec) {
  boost::beast::websocket::teardown(role, s.next_layer(), ec);
}

}  // namespace mmchat::ws
