// The administration socket (ADMIN_SOCKET): a Unix-domain stream socket on which the command
// line (`mmchat user disable|enable|delete|set-password`) tells the running server what it
// has just committed to the store, so that the server acts on it at once: its connections of
// a disabled user close, its caches forget. One connection carries one JSON object on one
// line, and the server answers one line: {"ok":true} or {"ok":false,"error":"..."}.
//
// The server publishes the matching domain events on its bus, so that in a cluster every node
// hears them. The socket file is mode 0600: only the service's user (and root) may speak.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace mmchat::app {

// What changed, any part of it at once:
//   {"tokens_revoked": ID}      the user's tokens stopped working (disable, set-password,
//                               delete): its connections end, what is kept of it is forgotten
//   {"user_changed": ID}        the user's row changed otherwise (enable)
//   {"user": ID, "left": [C…]}  the user left these conversations (delete)
struct AdminNews {
  std::optional<int64_t> tokens_revoked;
  std::optional<int64_t> user_changed;
  int64_t user = 0;
  std::vector<int64_t> left;
};

// The one line (without its newline), and back. Parsing refuses anything else.
std::string FormatAdminNews(const AdminNews& news);
Result<AdminNews> ParseAdminNews(std::string_view line);

// The server's side. Thread-safe: Stop may be called from any thread.
class AdminSocket {
 public:
  // `handler` runs on `work` (it may read the store), one line at a time per connection.
  using Handler = std::function<Status(const AdminNews&)>;
  AdminSocket(boost::asio::io_context& ioc, boost::asio::any_io_executor work, Handler handler);
  ~AdminSocket();

  // Binds `path`, mode 0600. A socket file nobody answers on (left by a server that died) is
  // removed first. False, with a warning logged, when a live server already answers there or
  // the path cannot be used: the server then serves without an admin socket.
  bool Listen(const std::string& path);
  // Accepts connections (after Listen succeeded).
  void Start();
  // Stops accepting, closes the connections, and removes the socket file if it is still the
  // one Listen made.
  void Stop();

 private:
  class Session;
  void Accept();

  boost::asio::io_context& ioc_;
  boost::asio::any_io_executor work_;
  Handler handler_;
  boost::asio::local::stream_protocol::acceptor acceptor_;
  std::string path_;
  ino_t inode_ = 0;  // of the file Listen made
  std::atomic<bool> stopped_{false};
  std::mutex mu_;
  std::vector<std::weak_ptr<Session>> sessions_;  // guarded by mu_
};

// The command line's side. Ok(true): the server at `path` applied the news; Ok(false): no
// server listens there (no file, or nobody answers). An error when the server answered an
// error or did not answer within `timeout`.
Result<bool> TellServer(const std::string& path, const AdminNews& news,
                        std::chrono::milliseconds timeout = std::chrono::seconds(10));

}  // namespace mmchat::app
