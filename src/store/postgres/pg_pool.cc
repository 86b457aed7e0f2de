#include "store/postgres/pg_pool.h"

#include <spdlog/spdlog.h>

namespace mmchat::store::postgres {
namespace {

// After a failed connect, connects fail at once for this long: during an outage each request
// gets its 503 quickly, and the database is asked again a few times a second.
constexpr auto kRetryPause = std::chrono::milliseconds(250);

}  // namespace

PgPool::PgPool(ConnectOptions options, size_t max_size, std::chrono::milliseconds wait)
    : options_(std::move(options)), max_size_(max_size < 1 ? 1 : max_size), wait_(wait) {}

PgPool::~PgPool() {
  std::lock_guard lock(mu_);
  idle_.clear();
}

Result<std::unique_ptr<PgConnection>> PgPool::Open() { return PgConnection::Connect(options_); }

Result<PgPool::Lease> PgPool::Acquire() {
  std::unique_lock lock(mu_);
  const auto deadline = Clock::now() + wait_;
  for (;;) {
    while (!idle_.empty()) {
      std::unique_ptr<PgConnection> conn = std::move(idle_.back());
      idle_.pop_back();
      if (!conn->broken()) return Lease(this, std::move(conn));
      --open_;  // dropped: a new one may be opened in its place
    }
    if (open_ < max_size_) {
      if (Clock::now() < retry_after_) return Status::Unavailable("database unavailable");
      ++open_;
      lock.unlock();
      auto conn = PgConnection::Connect(options_);
      lock.lock();
      if (conn.ok()) return Lease(this, std::move(conn).value());
      --open_;
      retry_after_ = Clock::now() + kRetryPause;
      returned_.notify_one();  // the place is free again
      spdlog::error("postgres: cannot connect: {}", conn.status().message());
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
