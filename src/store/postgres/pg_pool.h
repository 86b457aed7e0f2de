// A bounded pool of PostgreSQL connections, opened on demand. A connection found broken is
// dropped when it comes back, so that the pool heals by itself once the database is back;
// while the database is down, a failed connect makes the next ones fail fast for a moment
// instead of every caller waiting out its own connect timeout.
//
// Thread-safe. Connections are handed out whole (a Lease) and come back when it ends.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "metrics/registry.h"
#include "store/postgres/pg_connection.h"

namespace mmchat::store::postgres {

class PgPool {
 public:
  // At most `max_size` connections; a caller waits up to `wait` for one to come back.
  // `registry` (may be null) counts the waits (docs/metrics.md).
  PgPool(ConnectOptions options, size_t max_size, std::chrono::milliseconds wait,
         metrics::Registry* registry = nullptr);
  ~PgPool();

  class Lease {
   public:
    Lease(PgPool* pool, std::unique_ptr<PgConnection> conn) : pool_(pool), conn_(std::move(conn)) {}
    Lease(Lease&&) = default;
    Lease& operator=(Lease&&) = delete;
    ~Lease() {
      if (pool_ && conn_) pool_->Return(std::move(conn_));
    }
    PgConnection& operator*() const { return *conn_; }
    PgConnection* operator->() const { return conn_.get(); }

   private:
    PgPool* pool_;
    std::unique_ptr<PgConnection> conn_;
  };

  // An idle connection, a new one, or one that comes back within the wait (the pool's, or
  // `wait`); kUnavailable when none can be had.
  Result<Lease> Acquire(std::optional<std::chrono::milliseconds> wait = std::nullopt);
  // Opens a connection outside the pool (the message writer keeps its own).
  Result<std::unique_ptr<PgConnection>> Open();

  const ConnectOptions& options() const { return options_; }

 private:
  void Return(std::unique_ptr<PgConnection> conn);
  // Connects, and tells the log about an outage once (then every 10 s while it lasts) and
  // about its end, rather than once per failed attempt.
  Result<std::unique_ptr<PgConnection>> Connect();

  const ConnectOptions options_;
  const size_t max_size_;
  const std::chrono::milliseconds wait_;

  std::mutex mu_;
  std::condition_variable returned_;
  std::vector<std::unique_ptr<PgConnection>> idle_;  // guarded by mu_
  size_t open_ = 0;                                  // guarded by mu_; idle and leased
  Clock::time_point retry_after_{};                  // guarded by mu_; after a failed connect

  // Null without a registry: acquisitions that waited for a connection to come back, those
  // that waited in vain, and how long they waited.
  metrics::Counter* waits_ = nullptr;
  metrics::Counter* wait_timeouts_ = nullptr;
  metrics::Histogram* wait_seconds_ = nullptr;

  std::mutex log_mu_;
  uint64_t failed_connects_ = 0;  // guarded by log_mu_; since the last success
  Clock::time_point next_log_{};  // guarded by log_mu_
};

}  // namespace mmchat::store::postgres
