#include "ws/connection.h"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>

#include "http/request_id.h"
#include "ws/hub.h"

namespace mmchat::ws {

namespace beast = boost::beast;
namespace websocket = boost::beast::websocket;
namespace net = boost::asio;

Connection::Connection(Socket socket, Hub* hub, int64_t user_id, int64_t token_version,
                       http::ConnectionLimits::Lease lease)
    : ws_(std::move(socket)),
      hub_(hub),
      user_id_(user_id),
      token_version_(token_version),
      lease_(std::move(lease)),
      since_(SteadyMs()) {  // the handshake's deadline counts from the upgrade request
  ws_.next_layer().set_owner(this);
  ws_.read_message_max(hub_->options().max_frame_bytes);  // over it: Beast closes with 1009
  ws_.auto_fragment(false);
  // Pongs (and pings) count as signs of life for the liveness sweep.
  ws_.control_callback(
      [this](websocket::frame_type, beast::string_view) { last_heard_ = SteadyMs(); });
}

// ---------------------------------------------------------------------------------------------
// Opening and reading
// ---------------------------------------------------------------------------------------------

void Connection::Start(UpgradeRequest req) {
  // Already registered with the Hub: events queue until the handshake.
  upgrade_ = std::make_unique<UpgradeRequest>(std::move(req));
  // The 101 (or Beast's refusal) echoes the request id the HTTP session gave the request.
  ws_.set_option(
      websocket::stream_base::decorator([req = upgrade_.get()](websocket::response_type& res) {
        res.set(http::kRequestIdHeader, (*req)[http::kRequestIdHeader]);
      }));
  // The hub may start it from a worker (in a cluster, once the directory counts it).
  net::dispatch(ws_.get_executor(), [self = shared_from_this()] {
    self->ws_.async_accept(*self->upgrade_, [self](beast::error_code ec) { self->OnAccepted(ec); });
  });
}

void Connection::OnAccepted(beast::error_code ec) {
  // The decorator points into the request: both go (an empty decorator keeps no memory).
  ws_.set_option(websocket::stream_base::decorator([](websocket::response_type&) {}));
  upgrade_.reset();
  if (ec) return Finish();
  opened_ = true;
  last_heard_ = SteadyMs();
  Read();
  Pump();  // events that arrived during the handshake
}

void Connection::Read() {
  if (!read_buf_) {
    // A new message: its first byte goes to a member, and only then is a buffer allocated for
    // the rest. Beast reserves the room a read asks for before any data arrives, so an idle
    // connection (most of them) holds no read buffer at all, instead of Beast's default 1.5
    // KiB, and its pending operation is the smaller one of the non-dynamic read.
    ws_.async_read_some(
        net::buffer(&first_byte_, 1), [self = shared_from_this()](beast::error_code ec, size_t n) {
          if (!ec && n == 1) {
            self->read_buf_ = std::make_unique<beast::flat_buffer>();
            self->read_buf_->commit(
                net::buffer_copy(self->read_buf_->prepare(1), net::buffer(&self->first_byte_, 1)));
          }
          self->OnRead(ec);
        });
    return;
  }
  // The rest of the message comes from Beast's own read buffer without another system call.
  ws_.async_read_some(
      *read_buf_, hub_->options().max_frame_bytes,
      [self = shared_from_this()](beast::error_code ec, size_t) { self->OnRead(ec); });
}

void Connection::OnRead(beast::error_code ec) {
  if (ec) return Finish();  // closed by either side, too big (1009 sent by Beast), or dropped
  last_heard_ = SteadyMs();
  if (close_sent_) {
    // Our close frame is out: Beast's close now reads and discards what the client still
    // sends (it may have dropped the rest of this message). Only wait for the end; reading on
    // into the message would trip Beast's assertion that some of it remains.
    read_buf_.reset();
    return Read();
  }
  if (!ws_.is_message_done()) return Read();
  std::string_view text;
  if (read_buf_) {
    const auto data = read_buf_->cdata();
    text = std::string_view(static_cast<const char*>(data.data()), data.size());
  }
  hub_->OnFrame(shared_from_this(), text, ws_.got_text());
  read_buf_.reset();  // idle connections keep no read buffer
  {
    std::lock_guard lock(mu_);
    if (in_flight_ >= kMaxFramesInFlight) {
      read_paused_ = true;  // EndWork reads on
      return;
    }
  }
  Read();  // after our close frame too: the read loop ends when the client's close arrives
}

void Connection::BeginWork() {
  std::lock_guard lock(mu_);
  ++in_flight_;
}

void Connection::EndWork() {
  bool was_full;
  {
    std::lock_guard lock(mu_);
    was_full = in_flight_-- == kMaxFramesInFlight;
  }
  if (!was_full) return;
  net::dispatch(ws_.get_executor(), [self = shared_from_this()] {
    if (!self->read_paused_ || self->finished_) return;
    self->read_paused_ = false;
    self->Read();
  });
}

// ---------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------

void Connection::Send(Outgoing out) {
  const size_t size = out.frame->size();
  bool overflow = false;
  {
    std::lock_guard lock(mu_);
    if (refusing_) return;
    if (queued_bytes_ + size <= hub_->options().max_queue_bytes) {
      queued_bytes_ += static_cast<uint32_t>(size);
      hub_->QueuedBytes(static_cast<int64_t>(size));
      queue_.push_back(std::move(out));
      if (pump_posted_) return;
      pump_posted_ = true;
    } else {
      // Too far behind: drop what waits and close; the client catches up with sync.
      refusing_ = true;
      overflow = true;
      DropQueue();
    }
  }
  if (overflow) {
    hub_->CountSlowClose();
    return Close(websocket::close_code::policy_error);
  }
  net::post(ws_.get_executor(), [self = shared_from_this()] { self->Pump(); });
}

void Connection::Close(websocket::close_code code) {
  net::dispatch(ws_.get_executor(), [self = shared_from_this(), code] {
    if (self->finished_ || self->close_code_) return;
    if (code == websocket::close_code::policy_error) self->hub_->CountPolicyClose();
    {
      std::lock_guard lock(self->mu_);
      self->refusing_ = true;
      // A graceful stop (1001) sends what is queued first: acks of committed messages among it.
      if (code != websocket::close_code::going_away) self->DropQueue();
    }
    self->close_code_ = code;
    self->since_ = SteadyMs();
    self->Pump();
  });
}

void Connection::Pump() {
  if (finished_ || !opened_) return;
  bool queued;
  {
    std::lock_guard lock(mu_);
    queued = queue_head_ < queue_.size();
  }
  if (close_code_ && !queued) {
    if (close_sent_) return;
    close_sent_ = true;
    // After the batch in flight, if any. Beast sends the close frame, then waits for the
    // client's and ends the read loop.
    ws_.async_close(*close_code_, [self = shared_from_this()](beast::error_code ec) {
      if (ec) self->Drop();
    });
    return;
  }
  // Beast is closing (the client's close frame, or a protocol error it answers itself): its
  // close frame is already written, and nothing may follow it.
  if (close_sent_ || !ws_.is_open()) return;
  beast::error_code ec;
  if (ping_due_ && !close_code_) {
    ping_due_ = false;
    ws_.ping({}, ec);
    if (ec) return Drop();
  }
  if (writing_) return;  // OnFlushed pumps again
  {
    // A batch takes up to kMaxBatchBytes from the front of the queue: it is copied into the
    // socket's buffer, while what stays queued is still shared with the other recipients.
    std::lock_guard lock(mu_);
    if (queue_head_ == queue_.size()) {
      pump_posted_ = false;
      return;
    }
    size_t bytes = 0;
    size_t end = queue_head_;
    while (end < queue_.size() &&
           (end == queue_head_ || bytes + queue_[end].frame->size() <= kMaxBatchBytes)) {
      bytes += queue_[end].frame->size();
      ++end;
    }
    batch_.assign(std::make_move_iterator(queue_.begin() + static_cast<ptrdiff_t>(queue_head_)),
                  std::make_move_iterator(queue_.begin() + static_cast<ptrdiff_t>(end)));
    queue_head_ = static_cast<uint32_t>(end);
    if (queue_head_ == queue_.size()) {
      // Taken whole: an idle connection keeps no queue storage.
      std::vector<Outgoing>().swap(queue_);
      queue_head_ = 0;
    } else if (queue_head_ > queue_.size() / 2) {
      // A connection that stays behind: drop the taken front now and then.
      queue_.erase(queue_.begin(), queue_.begin() + static_cast<ptrdiff_t>(queue_head_));
      queue_head_ = 0;
    }
  }
  // Beast encodes each frame into the socket's buffer; one socket write sends them all.
  ws_.text(true);
  for (const auto& o : batch_) {
    ws_.write(net::buffer(*o.frame), ec);
    if (ec) return Drop();
  }
  writing_ = true;
  batch_end_ = ws_.next_layer().appended();
}

void Connection::OnFlushed() {
  if (!writing_ || ws_.next_layer().flushed() < batch_end_) return;
  writing_ = false;
  FinishBatch(batch_.size());
  Pump();
}

void Connection::FinishBatch(size_t written) {
  if (batch_.empty()) return;
  hub_->Written(user_id_, batch_, written);
  size_t bytes = 0;
  for (const auto& o : batch_) bytes += o.frame->size();
  {
    std::lock_guard lock(mu_);
    const auto done = static_cast<uint32_t>(std::min<size_t>(bytes, queued_bytes_));
    queued_bytes_ -= done;
    hub_->QueuedBytes(-int64_t{done});
  }
  // An idle connection keeps no queue storage (the queue takes this vector at the next swap).
  if (batch_.capacity() > 4) {
    std::vector<Outgoing>().swap(batch_);
  } else {
    batch_.clear();
  }
}

// ---------------------------------------------------------------------------------------------
// Liveness and the end
// ---------------------------------------------------------------------------------------------

void Connection::Check(TimeMs now, TimeMs interval) {
  net::post(ws_.get_executor(),
            [self = shared_from_this(), now, interval] { self->DoCheck(now, interval); });
}

void Connection::DoCheck(TimeMs now, TimeMs interval) {
  if (finished_) return;
  if (!opened_ || close_code_) {
    if (now - since_ >= interval) Drop();  // handshake or close never completed
    return;
  }
  const TimeMs heard = last_heard_.load();
  if (pinged_at_ > heard) {
    Drop();  // pinged at the previous check and nothing heard since
  } else if (now - heard >= interval) {
    pinged_at_ = now;
    ping_due_ = true;
    Pump();
  }
}

void Connection::Abort() {
  net::dispatch(ws_.get_executor(), [self = shared_from_this()] { self->Drop(); });
}

void Connection::DropQueue() {
  size_t bytes = 0;
  for (size_t i = queue_head_; i < queue_.size(); ++i) bytes += queue_[i].frame->size();
  std::vector<Outgoing>().swap(queue_);
  queue_head_ = 0;
  const auto dropped = static_cast<uint32_t>(std::min<size_t>(bytes, queued_bytes_));
  queued_bytes_ -= dropped;
  hub_->QueuedBytes(-int64_t{dropped});
}

void Connection::Drop() {
  beast::error_code ignored;
  beast::get_lowest_layer(ws_).close(ignored);
}

void Connection::Finish() {
  if (finished_) return;
  finished_ = true;
  Drop();
  {
    std::lock_guard lock(mu_);
    refusing_ = true;
    DropQueue();
  }
  FinishBatch(0);  // a batch still in flight did not reach the client
  {
    std::lock_guard lock(mu_);  // nothing is queued any more: the gauge keeps none of it
    hub_->QueuedBytes(-int64_t{queued_bytes_});
    queued_bytes_ = 0;
  }
  hub_->Ended(this);
}

}  // namespace mmchat::ws
