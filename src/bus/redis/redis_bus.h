// The cluster's event bus (REDIS_URL): every event a node publishes reaches the subscribers
// of every node. Local subscribers are called at once on the publishing thread, as with the
// LocalBus, so a node serves its own connections whether Redis is up or not; the event also
// goes to Redis on one channel that every node subscribes to (docs/design/cluster-plan.md
// says why one channel, and what it costs).
//
// Redis pub/sub is at-most-once, so the bus checks what it can see:
// - every event carries its origin's gapless lseq (envelope.h): a skipped number is a gap,
//   counted in mmchat_bus_gaps_total and given to this node's subscribers as
//   domain::EventsMissed, as is every (re)subscription: they read what they keep again;
// - each node publishes a probe to itself every `probe_interval`; heard nothing of its own
//   for `probe_timeout`, or told by PUBLISH that nobody listens (a failover to a server that
//   never saw our SUBSCRIBE), it drops both connections and makes new ones.
//
// Threads: one thread (mmchat-redis) owns both Redis connections (one subscribed, one for
// PUBLISH); the events of other nodes are decoded there and run on a second thread
// (mmchat-bus-in), because subscribers may read the database; presence changes run on a
// third (mmchat-bus-pr). A user's presence fans out to everyone who shares a conversation with
// it, so many connections opening at once (a node restarted, 1,000 members of one group) make
// a storm that held messages behind it for seconds; presence carries versions, so its order
// relative to the other events does not matter.
#pragma once

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>

#include "bus/local/local_bus.h"
#include "bus/redis/redis_connection.h"
#include "bus/redis/redis_url.h"
#include "domain/events.h"
#include "metrics/registry.h"

namespace mmchat::bus::redis {

struct RedisBusOptions {
  RedisUrl url;
  std::string channel = "mmchat:events";
  std::chrono::milliseconds probe_interval{1000};
  std::chrono::milliseconds probe_timeout{3000};
  // Between attempts to reconnect: doubling from the first to the last, with full jitter.
  std::chrono::milliseconds min_backoff{100};
  std::chrono::milliseconds max_backoff{5000};
  size_t max_batch_bytes = 64 * 1024;  // events packed into one PUBLISH
  // Events waiting for Redis, or for their subscribers, beyond these are dropped (and show
  // as a gap), rather than held without bound.
  size_t max_queued_bytes = 16 << 20;
  size_t max_incoming_events = 100'000;
};

class RedisBus final : public domain::EventBus, public domain::BusHealth {
 public:
  RedisBus(RedisBusOptions options, metrics::Registry* registry);
  ~RedisBus() override;
  RedisBus(const RedisBus&) = delete;
  RedisBus& operator=(const RedisBus&) = delete;

  // Starts connecting, in the background: events before the bus is up reach local
  // subscribers only.
  void Start();
  // Stops both threads; events published afterwards reach local subscribers only.
  void Stop();

  using EventBus::Subscribe;
  void Publish(const domain::Event& event) override;
  void Subscribe(std::function<void(const domain::Event&)> subscriber,
                 domain::Reach reach) override;

  // Subscribed, with both connections up.
  bool Live() const override { return state_ == State::kLive; }
  const std::string& origin() const { return origin_; }

  // For the cluster's other uses of Redis (presence): a command on the bus's command
  // connection. `done` runs on the bus's thread, with Unavailable when the bus is not live.
  void Command(std::vector<std::string> args, RedisConnection::ReplyHandler done);
  // The same, waited for at most `timeout`, from a thread that may block.
  Result<Reply> Call(std::vector<std::string> args, std::chrono::milliseconds timeout);
  // The bus's thread, for the timers of those uses; `at_stop` runs on it when the bus
  // stops (cancel them there, or Stop would wait for them).
  boost::asio::io_context& io() { return io_; }
  void AtStop(std::function<void()> at_stop) { at_stop_.push_back(std::move(at_stop)); }

 private:
  enum class State { kDown, kConnecting, kLive, kStopped };
  // One event waiting for PUBLISH, or a probe (no text).
  struct Queued {
    uint64_t lseq = 0;
    std::string text;
    bool probe = false;
    std::chrono::steady_clock::time_point at{};  // when it was published (Enqueue)
  };
  // A batch sent, until it comes back on our own subscription (the bus lag metric).
  struct Sent {
    uint64_t first_lseq = 0;
    size_t count = 0;
    std::chrono::steady_clock::time_point at;  // when its first event was published
  };

  // On the mmchat-redis thread.
  void Connect();
  void ConnectionEnded(Status why);
  void RetryLater();
  void Drain();
  void ProbeTick();
  void Received(std::string_view payload);
  void SetState(State s);
  // One of our own batches came back: its lag, and the batches before it that never will.
  void OwnBatchBack(uint64_t first_lseq, size_t count, std::chrono::steady_clock::time_point now);
  // Tells this node's subscribers, in turn with the events of other nodes, that some of
  // those were lost (domain::EventsMissed).
  void Missed();

  // Queues under queue_mu_; false when it was dropped.
  bool Enqueue(Queued q);

  const RedisBusOptions options_;
  const std::string origin_;  // this life of the node
  LocalBus cluster_subscribers_;
  LocalBus own_subscribers_;

  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_;
  std::thread thread_;
  boost::asio::thread_pool incoming_{1};           // events of other nodes, in order
  boost::asio::thread_pool incoming_presence_{1};  // their presence changes
  std::atomic<size_t> incoming_events_{0};         // waiting on either
  std::atomic<State> state_{State::kDown};
  std::vector<std::function<void()>> at_stop_;  // set up before Start

  // Guarded by queue_mu_.
  std::mutex queue_mu_;
  std::deque<Queued> queue_;
  size_t queued_bytes_ = 0;
  uint64_t next_lseq_ = 1;
  bool accepting_ = false;  // connected for PUBLISH: otherwise events are only counted
  bool drain_posted_ = false;

  // Only on the mmchat-redis thread.
  std::shared_ptr<RedisConnection> cmd_;
  std::shared_ptr<RedisConnection> sub_;
  uint64_t generation_ = 0;  // moved by every (re)connect, so late callbacks are ignored
  bool resumed_ = false;     // subscribed before: the next subscription is a resumption
  bool publishing_ = false;
  boost::asio::steady_timer retry_timer_;
  boost::asio::steady_timer probe_timer_;
  std::chrono::milliseconds backoff_;
  std::chrono::steady_clock::time_point heard_own_;   // our latest batch back on `sub`
  std::chrono::steady_clock::time_point live_since_;  // the latest subscription
  struct Peer {
    uint64_t next_lseq = 0;
    std::chrono::steady_clock::time_point heard;
  };
  std::unordered_map<std::string, Peer> peers_;  // by origin
  std::deque<Sent> sent_;                        // in the order published
  std::mt19937_64 rng_;

  metrics::Gauge* live_;
  metrics::Counter* published_;
  metrics::Counter* received_;
  metrics::Counter* dropped_;
  metrics::Counter* gaps_;
  metrics::Counter* reconnects_;
  metrics::Counter* undecodable_;
  metrics::Histogram* lag_;
};

}  // namespace mmchat::bus::redis
