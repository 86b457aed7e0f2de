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

PgPool::PgPool(ConnectOptions options, size_t max_size, std::chrono::milliseconds wait,
               metrics::Registry* registry)
    : options_(std::move(options)), max_size_(max_size < 1 ? 1 : max_size), wait_(wait) {
  if (registry == nullptr) return;
  waits_ = registry->GetCounter(
      "mmchat_db_pool_waits_total",
      "Requests that found every pooled PostgreSQL connection in use and waited for one.");
  wait_timeouts_ = registry->GetCounter(
      "mmchat_db_pool_wait_timeouts_total",
      "Requests that waited for a pooled PostgreSQL connection in vain (answered 503).");
  wait_seconds_ = registry->GetHistogram(
      "mmchat_db_pool_wait_seconds",
      "How long requests that waited for a pooled PostgreSQL connection waited.", "",
      {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
       10, 30});
}

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
  const auto start = Clock::now();
  const auto deadline = start + wait.value_or(wait_);
  bool waited = false;
  // Counted once the wait is over, however it ended.
  auto count_wait = [&](bool timed_out) {
    if (!waited || waits_ == nullptr) return;
    waits_->Inc();
    if (timed_out) wait_timeouts_->Inc();
    const std::chrono::duration<double> took = Clock::now() - start;
    wait_seconds_->Observe(took.count());
  };
  for (;;) {
    while (!idle_.empty()) {
      std::unique_ptr<PgConnection> conn = std::move(idle_.back());
      idle_.pop_back();
      if (conn->StillUp()) {
        count_wait(false);
        return Lease(this, std::move(conn));
      }
      --open_;  // dropped: a new one may be opened in its place
    }
    if (open_ < max_size_) {
      if (Clock::now() < retry_after_) {
        count_wait(false);
        return Status::Unavailable("database unavailable");
      }
      count_wait(false);  // a place came free: what follows is connecting, not waiting
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
    waited = true;
    if (returned_.wait_until(lock, deadline) == std::cv_status::timeout) {
      count_wait(true);
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
