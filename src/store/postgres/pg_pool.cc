#include "store/postgres/pg_pool.h"

#include <spdlog/spdlog.h>

namespace mmchat::store::postgres {
namespace {

// After a failed connect, connects fail at once for this long: during an outage each request
// gets its 503 quickly, and the database is asked again a few times a second.
constexpr auto kRetryPause = std::chrono::milliseconds(250);
// While the database stays away, one log line this often.
constexpr auto kOutageLogPeriod = std::chrono::seconds(10);

}  // namespace

PgPool::PgPool(ConnectOptions options, size_t max_size, std::chrono::milliseconds wait)
    : options_(std::move(options)), max_size_(max_size < 1 ? 1 : max_size), wait_(wait) {}

PgPool::~PgPool() {
  std::lock_guard lock(mu_);
  idle_.clear();
}

Result<std::unique_ptr<PgConnection>> PgPool::Open() {
  auto conn = Connect();
  // The reason is in the log (Connect); clients hear no more than that the database is away
  // (API.md, decision 11).
  if (!conn.ok()) return Status::Unavailable("database unavailable");
  return conn;
}

Result<std::unique_ptr<PgConnection>> PgPool::Connect() {
  auto conn = PgConnection::Connect(options_);
  std::lock_guard lock(log_mu_);
  if (conn.ok()) {
    if (failed_connects_ > 0) {
      spdlog::info("postgres: connected again after {} failed attempts", failed_connects_);
    }
    failed_connects_ = 0;
    return conn;
  }
  ++failed_connects_;
  if (const auto now = Clock::now(); now >= next_log_) {
    spdlog::error("postgres: cannot connect ({} attempts so far): {}", failed_connects_,
                  conn.status().message());
    next_log_ = now + kOutageLogPeriod;
  }
  return conn;
}

Result<PgPool::Lease> PgPool::Acquire(std::optional<std::chrono::milliseconds> wait) {
  std::unique_lock lock(mu_);
  const auto deadline = Clock::now() + wait.value_or(wait_);
  for (;;) {
    while (!idle_.empty()) {
      std::unique_ptr<PgConnection> conn = std::move(idle_.back());
      idle_.pop_back();
      if (conn->StillUp()) return Lease(this, std::move(conn));
      --open_;  // dropped: a new one may be opened in its place
    }
    if (open_ < max_size_) {
      if (Clock::now() < retry_after_) return Status::Unavailable("database unavailable");
      ++open_;
      lock.unlock();
      auto conn = Connect();
      lock.lock();
      if (conn.ok()) return Lease(this, std::move(conn).value());
      --open_;
      retry_after_ = Clock::now() + kRetryPause;
      returned_.notify_one();  // the place is free again
      return Status::Unavailable("database unavailable");
    }
    if (returned_.wait_until(lock, deadline) == std::cv_status::timeout) {
      return Status::Unavailable("database busy");
    }
  }
}

void PgPool::Return(std::unique_ptr<PgConnection> conn) {
  {
    std::lock_guard lock(mu_);
    // A connection left inside a transaction (an error mid-way) is as good as broken.
    if (conn->broken() || conn->InTransaction()) {
      --open_;
    } else {
      idle_.push_back(std::move(conn));
    }
  }
  returned_.notify_one();
}

}  // namespace mmchat::store::postgres
