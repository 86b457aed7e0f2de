// One WebSocket connection (one device of one user) on Boost.Beast: the handshake, a read
// loop that hands text frames to the Hub, and a bounded outgoing queue. Frames are shared
// immutable buffers, so a fan-out to many connections copies nothing until the write: then
// everything queued is encoded by Beast into the BufferedSocket below it and goes out in one
// socket write, and frames queued meanwhile wait for the next.
//
// Threading: the public methods may be called from any thread; everything else runs on the
// connection's strand (the executor of its socket). The Hub holds the owning reference from
// the upgrade until the connection ends.
//
// Memory: an idle connection keeps Beast's stream state and its 1.5 KiB read buffer, but no
// queue storage and no timer of its own; liveness is checked by the Hub's single sweep through
// Check(). Deadlines use the monotonic clock (SteadyMs).
#pragma once

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "common/time.h"
#include "http/connection_limits.h"
#include "ws/buffered_socket.h"
#include "ws/frames.h"

namespace mmchat::ws {

class Hub;

// A frame waiting to be written. A message frame to someone other than its sender names the
// message, so that writing it counts as a delivery.
struct Outgoing {
  Frame frame;
  int64_t conversation_id = 0;
  int64_t message_id = 0;  // 0: not a delivery
};

// The most bytes of queued frames one socket write takes (at least one frame). A batch is
// copied into the connection's own buffer; this bounds that copy for a connection that falls
// behind, while the frames still queued stay shared with the other recipients.
constexpr size_t kMaxBatchBytes = 64 * 1024;

// Client frames answered later (message, read) that one connection may have outstanding. At
// the limit it stops reading until an answer comes back: a client that floods frames is
// slowed by TCP instead of queueing work in the server.
constexpr uint16_t kMaxFramesInFlight = 64;

class Connection : public std::enable_shared_from_this<Connection>, private BufferedSocket::Owner {
 public:
  using Socket = boost::asio::ip::tcp::socket;
  using UpgradeRequest = boost::beast::http::request<boost::beast::http::string_body>;

  // `lease` holds the connection's place under the connection limits until it is destroyed.
  // `token_version`: that of the token it was opened with (domain/user.h), -1 when unknown.
  Connection(Socket socket, Hub* hub, int64_t user_id, int64_t token_version,
             http::ConnectionLimits::Lease lease);

  // Answers the upgrade (the Hub registered the connection before) and starts reading.
  void Start(UpgradeRequest req);

  // Queues a frame. Past the queue limit the connection is closed with 1008 and the queue is
  // dropped, instead of growing. Thread-safe.
  void Send(Outgoing out);
  // Sends a close frame with `code` after the frame being written (queued frames are dropped).
  // Thread-safe.
  void Close(boost::beast::websocket::close_code code);
  // The Hub's liveness sweep, run every `interval`: pings a connection silent for `interval`,
  // drops one that sent nothing since the previous check's ping, and one stuck in its
  // handshake or close. Thread-safe.
  void Check(TimeMs now, TimeMs interval);
  // Closes the socket now, whatever it is doing (shutdown's grace period ran out). Thread-safe.
  void Abort();

  int64_t user_id() const { return user_id_; }
  int64_t token_version() const { return token_version_; }

  // Around a frame answered later: BeginWork on the strand (in Hub::OnFrame), EndWork once
  // its answer is queued, from any thread.
  void BeginWork();
  void EndWork();

 private:
  void OnAccepted(boost::beast::error_code ec);
  void Read();
  void OnRead(boost::beast::error_code ec);
  // Writes what is due: a close frame, a ping, and the queued frames unless a batch is still
  // in flight.
  void Pump();
  // BufferedSocket::Owner. The socket took more bytes: once the batch is among them, it is
  // done.
  std::shared_ptr<void> KeepAlive() override { return shared_from_this(); }
  void OnFlushed() override;
  // Releases the batch: its bytes, and the deliveries of its first `written` frames.
  void FinishBatch(size_t written);
  void DoCheck(TimeMs now, TimeMs interval);
  // Closes the socket at once; pending operations end with errors.
  void Drop();
  // Drops the frames waiting (not the batch being written) and their bytes. Under mu_.
  void DropQueue();
  // The read loop ended: the connection is over.
  void Finish();

  boost::beast::websocket::stream<BufferedSocket, /*deflateSupported=*/false> ws_;
  Hub* const hub_;
  const int64_t user_id_;
  const int64_t token_version_;
  http::ConnectionLimits::Lease lease_;
  std::atomic<TimeMs> last_heard_{0};  // any frame or pong from the client

  // On the strand:
  std::unique_ptr<UpgradeRequest> upgrade_;              // kept until the handshake is answered
  std::unique_ptr<boost::beast::flat_buffer> read_buf_;  // the message being read, if any
  std::vector<Outgoing> batch_;                          // frames being written, in order
  uint64_t batch_end_ = 0;                               // the socket's appended() after the batch
  TimeMs pinged_at_ = 0;                                 // the check that last sent a ping
  TimeMs since_ = 0;                                     // when the handshake or the close started

  std::mutex mu_;
  std::vector<Outgoing> queue_;  // guarded by mu_; frames from queue_head_ on wait
  // Guarded by mu_; 32 bits each (the queue limit is at most 1 GiB), as every connection
  // carries them.
  uint32_t queue_head_ = 0;
  uint32_t queued_bytes_ = 0;  // queue_ plus batch_ (and in the hub's queued-bytes gauge)

  // The small members together (every connection carries them; padding adds up).
  // On the strand:
  char first_byte_ = 0;  // a message's first byte is read into it
  bool opened_ = false;  // handshake answered
  bool finished_ = false;
  bool writing_ = false;
  bool ping_due_ = false;
  bool close_sent_ = false;
  bool read_paused_ = false;  // kMaxFramesInFlight reached: EndWork resumes reading
  std::optional<boost::beast::websocket::close_code> close_code_;
  // Guarded by mu_:
  bool pump_posted_ = false;  // a Pump is scheduled or the batch is running
  bool refusing_ = false;     // closing or over the limit: Send drops
  uint16_t in_flight_ = 0;    // frames begun and not yet answered
};

}  // namespace mmchat::ws
