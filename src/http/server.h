// The HTTP/1.1 server on Boost.Beast: accepts connections, reads requests with size and time
// limits, hands them to the Dispatcher, writes responses, keeps connections alive.
//
// Each connection runs on its own strand of the shared io_context. Start/Stop may be called
// from any thread. Stop closes the listener and idle connections; requests already being
// handled finish and are answered before their connections close.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "http/connection_limits.h"
#include "http/cors.h"
#include "http/dispatcher.h"
#include "metrics/registry.h"

namespace mmchat::http {

struct ServerOptions {
  std::string host;  // empty: every IPv4 interface
  uint16_t port = 8080;
  // For a whole request (headers and body: a client that dribbles bytes is cut off), and for
  // an idle keep-alive connection.
  std::chrono::seconds read_timeout{30};
  size_t body_limit = 64 * 1024;
  size_t header_limit = 16 * 1024;  // bytes of request line and headers
  size_t max_headers = 100;         // header fields per request
  // Open connections, HTTP and WebSocket together, and per client address: over them a
  // connection is answered 503 or 429 and closed. Null: no limits but the open-file limit.
  // It must outlive every connection, the WebSocket ones too, whose last references may go
  // only with the io_context: create it before the io_context.
  ConnectionLimits* limits = nullptr;
  // The process's open-file limit (0: not enforced). A connection that would leave fewer than
  // kReservedFiles descriptors free is answered 503 and closed, so the database, the logs and
  // the listener always have descriptors.
  size_t max_open_files = 0;
  // Where WebSocket upgrades check their token when that may read a remote database (the
  // same threads as the Dispatcher's database executor); unset: on the connection's strand.
  std::optional<boost::asio::any_io_executor> database;
  // CORS_ALLOWED_ORIGINS: preflights answered, CORS headers on every answer. Null: off.
  const CorsPolicy* cors = nullptr;
  // ACCESS_LOG: a log line per answer (info); off, only for answers of 500 and up (warn).
  bool access_log = true;
};

// Descriptors kept free for everything that is not a client connection.
constexpr size_t kReservedFiles = 100;

// Takes over connections that ask for a WebSocket upgrade on its path (the ws layer does).
// Called on the connection's strand, but for Authorize, which may run on the database
// threads (ServerOptions::database).
class UpgradeHandler {
 public:
  virtual ~UpgradeHandler() = default;
  virtual std::string_view path() const = 0;
  // Decides before any upgrade (the token); a failure is answered over HTTP with the error
  // object, and so is a request to the path that is not an upgrade.
  virtual Result<int64_t> Authorize(const Request& req) = 0;
  // From here on the connection is the handler's: it answers the handshake and runs it.
  // `lease` is the connection's place under the connection limits: keep it while open.
  virtual void Accept(int64_t user_id, boost::asio::ip::tcp::socket socket,
                      boost::beast::http::request<boost::beast::http::string_body> req,
                      ConnectionLimits::Lease lease) = 0;
};

// The parts of a parsed request the handlers use; the body is moved out of `msg`.
Request ToRequest(boost::beast::http::request<boost::beast::http::string_body>& msg);

class Session;

class Server {
 public:
  Server(boost::asio::io_context& ioc, Dispatcher* dispatcher, metrics::Registry* registry,
         ServerOptions options);
  ~Server();

  // Binds and listens; afterwards port() is the real port (useful with port 0).
  Status Listen();
  // Before Start: where WebSocket upgrades go (none: the path is an ordinary route).
  void SetUpgradeHandler(UpgradeHandler* handler) { upgrader_ = handler; }
  uint16_t port() const { return port_; }
  void Start();
  // Stops accepting (synchronously) and closes idle connections; busy ones close after their
  // response.
  void Stop();
  // Closes every connection now, busy or not. For when the grace period ran out.
  void Abort();
  // Waits until every connection has closed or `timeout` passed; true when all closed.
  bool WaitForConnections(std::chrono::milliseconds timeout);

 private:
  friend class Session;
  void Accept();
  // Answers a connection over a limit and closes it: 503 at capacity (counted in the metric
  // and, at most every 10 s, in the log), 429 over the per-address limit.
  enum class Over { kOpenFiles, kConnections, kPerAddress };
  void Refuse(boost::asio::ip::tcp::socket& socket, Over over);
  void Register(const std::shared_ptr<Session>& s);
  void Unregister(Session* s);
  // Strong references to every open session, taken under the lock. Callers act on them
  // outside the lock: dropping the last reference runs ~Session, which takes the lock.
  std::vector<std::shared_ptr<Session>> LiveSessions();

  boost::asio::io_context& ioc_;
  Dispatcher* dispatcher_;
  UpgradeHandler* upgrader_ = nullptr;
  const ServerOptions options_;
  ConnectionLimits unlimited_{0, 0};  // when options_.limits is null
  ConnectionLimits& limits_;
  boost::asio::ip::tcp::acceptor acceptor_;
  boost::asio::steady_timer accept_backoff_;  // on the acceptor's strand
  // Connections take turns on a fixed set of strands instead of one strand each: a strand
  // costs ~100 bytes per connection. With far more strands than io threads, sharing one
  // rarely makes a connection wait (64 strands measured a few percent slower than 1,024).
  std::vector<boost::asio::strand<boost::asio::io_context::executor_type>> strands_;
  size_t next_strand_ = 0;  // on the acceptor's strand
  uint16_t port_ = 0;

  metrics::Gauge* open_connections_;
  metrics::Counter* accepted_connections_;
  metrics::Counter* refused_connections_;
  metrics::Counter* refused_per_address_;
  // On the acceptor's strand: refusals not yet logged, and when the log last said so.
  uint64_t refusals_unlogged_ = 0;  // at capacity only: per-address refusals are not news
  std::chrono::steady_clock::time_point refusal_logged_{};
  std::chrono::steady_clock::time_point accept_error_logged_{};

  std::mutex mu_;
  std::condition_variable all_closed_;
  bool stopping_ = false;                                          // guarded by mu_
  std::unordered_map<Session*, std::weak_ptr<Session>> sessions_;  // guarded by mu_
};

}  // namespace mmchat::http
