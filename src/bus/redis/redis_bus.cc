#include "bus/redis/redis_bus.h"

#include <pthread.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <future>

#include "bus/redis/envelope.h"

namespace mmchat::bus::redis {
namespace net = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {

// A node that has not been heard of for this long is forgotten (it stopped, or restarted
// as a new origin).
constexpr auto kForgetPeerAfter = std::chrono::seconds(60);

std::string NewOrigin() {
  std::random_device rd;
  const uint64_t r = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  char buf[17];
  snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(r));
  return buf;
}

}  // namespace

RedisBus::RedisBus(RedisBusOptions options, metrics::Registry* registry)
    : options_(std::move(options)),
      origin_(NewOrigin()),
      guard_(net::make_work_guard(io_)),
      retry_timer_(io_),
      probe_timer_(io_),
      backoff_(options_.min_backoff),
      rng_(std::random_device{}()),
      live_(registry->GetGauge("mmchat_bus_up",
                               "1 while this node is subscribed to the cluster's Redis bus.")),
      published_(registry->GetCounter("mmchat_bus_events_published_total",
                                      "Events this node published to the Redis bus.")),
      received_(registry->GetCounter("mmchat_bus_events_received_total",
                                     "Events of other nodes received from the Redis bus.")),
      dropped_(registry->GetCounter(
          "mmchat_bus_events_dropped_total",
          "Events not sent to, or not taken from, the Redis bus (down, or too far behind).")),
      gaps_(registry->GetCounter(
          "mmchat_bus_gaps_total",
          "Times this node found it missed events of other nodes (a skipped number, or a "
          "resubscription).")),
      reconnects_(registry->GetCounter("mmchat_bus_reconnects_total",
                                       "Attempts to connect to Redis after the first.")),
      undecodable_(registry->GetCounter("mmchat_bus_undecodable_total",
                                        "Batches or events from the bus that could not be read.")),
      lag_(registry->GetHistogram(
          "mmchat_bus_lag_seconds",
          "Time from an event's publication on this node until its batch came back from Redis "
          "on this node's own subscription (other nodes receive it at about the same time).",
          "",
          {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
           5, 10})) {
  // Logged on the constructing thread, before the bus's own threads log: spdlog's registry
  // is made here, not by two of them at once (ThreadSanitizer cannot see libspdlog's guard).
  spdlog::debug("bus: this node is {} on {}", origin_, options_.channel);
}

RedisBus::~RedisBus() { Stop(); }

void RedisBus::Start() {
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "mmchat-redis");
    io_.run();
  });
  net::post(incoming_, [] { pthread_setname_np(pthread_self(), "mmchat-bus-in"); });
  net::post(incoming_presence_, [] { pthread_setname_np(pthread_self(), "mmchat-bus-pr"); });
  net::post(io_, [this] {
    Connect();
    ProbeTick();
  });
}

void RedisBus::Stop() {
  if (!thread_.joinable()) return;
  net::post(io_, [this] {
    SetState(State::kStopped);
    ++generation_;
    retry_timer_.cancel();
    probe_timer_.cancel();
    if (cmd_) cmd_->Close();
    if (sub_) sub_->Close();
    for (const auto& f : at_stop_) f();
  });
  guard_.reset();
  thread_.join();
  cmd_.reset();
  sub_.reset();
  incoming_.join();
  incoming_presence_.join();
}

void RedisBus::Subscribe(std::function<void(const domain::Event&)> subscriber,
                         domain::Reach reach) {
  (reach == domain::Reach::kCluster ? cluster_subscribers_ : own_subscribers_)
      .Subscribe(std::move(subscriber));
}

void RedisBus::Publish(const domain::Event& event) {
  cluster_subscribers_.Publish(event);
  own_subscribers_.Publish(event);
  if (std::holds_alternative<domain::EventsMissed>(event)) return;  // this node's own news
  Enqueue({.text = EncodeEvent(event)});
}

void RedisBus::Missed() {
  ++incoming_events_;
  net::post(incoming_, [this] {
    cluster_subscribers_.Publish(domain::EventsMissed{});
    --incoming_events_;
  });
}

bool RedisBus::Enqueue(Queued q) {
  q.at = Clock::now();
  std::lock_guard lock(queue_mu_);
  // A probe says every number below it went out: it takes none of its own.
  q.lseq = q.probe ? next_lseq_ : next_lseq_++;
  if (!accepting_ || queued_bytes_ + q.text.size() > options_.max_queued_bytes) {
    // The number is spent all the same: the other nodes see the gap.
    if (!q.probe) dropped_->Inc();
    return false;
  }
  queued_bytes_ += q.text.size();
  queue_.push_back(std::move(q));
  if (!drain_posted_) {
    drain_posted_ = true;
    net::post(io_, [this] { Drain(); });
  }
  return true;
}

void RedisBus::SetState(State s) {
  if (state_ == State::kStopped) return;
  state_ = s;
  live_->Set(s == State::kLive ? 1 : 0);
}

void RedisBus::Connect() {
  if (state_ == State::kStopped) return;
  SetState(State::kConnecting);
  const uint64_t gen = ++generation_;
  RedisConnection::Options o;
  o.host = options_.url.host;
  o.port = options_.url.port;
  o.username = options_.url.username;
  o.password = options_.url.password;
  o.db = options_.url.db;
  cmd_ = RedisConnection::Create(io_, o);
  sub_ = RedisConnection::Create(io_, o);
  auto ready = std::make_shared<int>(0);  // connections ready of this attempt, of 2
  auto one_ready = [this, gen, ready] {
    if (gen != generation_ || ++*ready < 2) return;
    SetState(State::kLive);
    spdlog::info("bus: subscribed to {} on redis {}:{} as node {}", options_.channel,
                 options_.url.host, options_.url.port, origin_);
    backoff_ = options_.min_backoff;
    heard_own_ = live_since_ = Clock::now();
    // What other nodes published while we were not listening (or before this node's first
    // subscription, while its connections may already have opened) is lost to us.
    if (resumed_) gaps_->Inc();
    resumed_ = true;
    Missed();
    peers_.clear();
    {
      std::lock_guard lock(queue_mu_);
      accepting_ = true;
    }
    Drain();
  };
  auto failed = [this, gen](Status why) {
    if (gen == generation_) ConnectionEnded(std::move(why));
  };
  cmd_->OnClosed(failed);
  sub_->OnClosed(failed);
  cmd_->Connect([failed, one_ready](Status s) {
    if (!s.ok()) return failed(s);
    one_ready();
  });
  sub_->Connect([this, gen, failed, one_ready](Status s) {
    if (!s.ok()) return failed(s);
    if (gen != generation_) return;
    sub_->Subscribe(
        {options_.channel},
        [this, gen](std::string_view, std::string_view payload) {
          if (gen == generation_) Received(payload);
        },
        [failed, one_ready](Status subscribed) {
          if (!subscribed.ok()) return failed(subscribed);
          one_ready();
        });
  });
}

void RedisBus::ConnectionEnded(Status why) {
  if (state_ == State::kStopped) return;
  if (state_ == State::kLive) {
    spdlog::warn(
        "bus: lost redis ({}); events reach this node's connections only until it "
        "is back",
        why.message());
  } else if (backoff_ == options_.min_backoff) {
    spdlog::warn("bus: cannot reach redis ({}); retrying", why.message());
  }
  SetState(State::kDown);
  ++generation_;
  publishing_ = false;
  sent_.clear();  // what was in flight does not come back
  if (cmd_) cmd_->Close();
  if (sub_) sub_->Close();
  cmd_.reset();
  sub_.reset();
  {
    std::lock_guard lock(queue_mu_);
    accepting_ = false;
    for (const auto& q : queue_) {
      if (!q.probe) dropped_->Inc();
    }
    queue_.clear();
    queued_bytes_ = 0;
  }
  RetryLater();
}

void RedisBus::RetryLater() {
  std::uniform_int_distribution<int64_t> jitter(options_.min_backoff.count(), backoff_.count());
  retry_timer_.expires_after(std::chrono::milliseconds(jitter(rng_)));
  backoff_ = std::min(backoff_ * 2, options_.max_backoff);
  retry_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec || state_ == State::kStopped) return;
    reconnects_->Inc();
    Connect();
  });
}

void RedisBus::Drain() {
  std::vector<std::string> events;
  uint64_t first = 0;
  Clock::time_point published;
  {
    std::lock_guard lock(queue_mu_);
    drain_posted_ = false;
    if (publishing_ || state_ != State::kLive || queue_.empty()) return;
    first = queue_.front().lseq;
    published = queue_.front().at;
    if (queue_.front().probe) {
      queue_.pop_front();
    } else {
      // One run of consecutive numbers (a dropped event ends it), up to the batch size.
      size_t bytes = 0;
      while (!queue_.empty() && !queue_.front().probe &&
             queue_.front().lseq == first + events.size() &&
             (events.empty() || bytes + queue_.front().text.size() <= options_.max_batch_bytes)) {
        bytes += queue_.front().text.size();
        queued_bytes_ -= queue_.front().text.size();
        events.push_back(std::move(queue_.front().text));
        queue_.pop_front();
      }
    }
  }
  std::string payload;
  EncodeBatch(origin_, first, events, payload);
  // Comes back in this order (one connection publishes, one subscribes); bounded in case
  // nothing does.
  if (sent_.size() >= 1024) sent_.pop_front();
  sent_.push_back({first, events.size(), published});
  publishing_ = true;
  const uint64_t gen = generation_;
  cmd_->Command({"PUBLISH", options_.channel, std::move(payload)},
                [this, gen, n = events.size()](Result<Reply> r) {
                  if (gen != generation_) return;
                  publishing_ = false;
                  if (!r.ok()) return;  // the connection ended: OnClosed says so
                  if (r->type == Reply::Type::kError) {
                    return ConnectionEnded(Status::Unavailable("PUBLISH refused: " + r->str));
                  }
                  // Nobody got it, not even this node: our subscription is not on the server
                  // we publish to (a failover), however healthy it looks.
                  if (r->type == Reply::Type::kInteger && r->integer == 0) {
                    return ConnectionEnded(
                        Status::Unavailable("PUBLISH reached no subscriber, not even this node"));
                  }
                  published_->Inc(n);
                  Drain();
                });
}

void RedisBus::Command(std::vector<std::string> args, RedisConnection::ReplyHandler done) {
  net::post(io_, [this, args = std::move(args), done = std::move(done)]() mutable {
    if (state_ != State::kLive || !cmd_) return done(Status::Unavailable("redis is not reachable"));
    cmd_->Command(std::move(args), std::move(done));
  });
}

Result<Reply> RedisBus::Call(std::vector<std::string> args, std::chrono::milliseconds timeout) {
  if (!Live()) return Status::Unavailable("redis is not reachable");
  // Shared: a reply after the timeout lands here unread.
  auto answer = std::make_shared<std::promise<Result<Reply>>>();
  auto future = answer->get_future();
  Command(std::move(args), [answer](Result<Reply> r) { answer->set_value(std::move(r)); });
  if (future.wait_for(timeout) != std::future_status::ready) {
    return Status::Unavailable("redis did not answer in time");
  }
  return future.get();
}

void RedisBus::ProbeTick() {
  if (state_ == State::kStopped) return;
  const auto now = Clock::now();
  if (state_ == State::kLive) {
    if (now - heard_own_ > options_.probe_timeout) {
      ConnectionEnded(Status::Unavailable("no probe of ours came back in " +
                                          std::to_string(options_.probe_timeout.count()) + " ms"));
    } else {
      Enqueue({.probe = true});
    }
  }
  std::erase_if(peers_, [&](const auto& p) { return now - p.second.heard > kForgetPeerAfter; });
  probe_timer_.expires_after(options_.probe_interval);
  probe_timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec) ProbeTick();
  });
}

void RedisBus::OwnBatchBack(uint64_t first_lseq, size_t count, Clock::time_point now) {
  // A probe and the batch after it may share a first number, never a count too.
  const auto it = std::find_if(sent_.begin(), sent_.end(), [&](const Sent& s) {
    return s.first_lseq == first_lseq && s.count == count;
  });
  if (it == sent_.end()) return;
  const std::chrono::duration<double> lag = now - it->at;
  lag_->Observe(lag.count());
  sent_.erase(sent_.begin(), it + 1);  // those before it were lost with a connection
}

void RedisBus::Received(std::string_view payload) {
  auto batch = DecodeBatch(payload);
  if (!batch.ok()) {
    undecodable_->Inc();
    spdlog::warn("bus: a batch could not be read: {}", batch.status().message());
    return;
  }
  const auto now = Clock::now();
  if (batch->origin == origin_) {
    heard_own_ = now;
    OwnBatchBack(batch->first_lseq, batch->events.size(), now);
    return;
  }
  const uint64_t first = batch->first_lseq;
  const uint64_t count = batch->events.size();
  auto [it, unknown] = peers_.try_emplace(std::string(batch->origin));
  Peer& peer = it->second;
  peer.heard = now;
  // A node not heard of before, well after this node subscribed (every node probes each
  // second), that has published before: it was silent a while (cut off from Redis, or
  // forgotten); what it published meanwhile is lost to us.
  if (unknown && first > 1 && now - live_since_ > options_.probe_timeout) {
    gaps_->Inc();
    Missed();
  }
  uint64_t skip = 0;
  if (peer.next_lseq != 0 && first > peer.next_lseq) {
    gaps_->Inc();
    Missed();
    spdlog::warn("bus: missed events {} to {} of node {}", peer.next_lseq, first - 1,
                 batch->origin);
  } else if (peer.next_lseq != 0 && first < peer.next_lseq) {
    skip = std::min(count, peer.next_lseq - first);  // seen already
  }
  peer.next_lseq = std::max(peer.next_lseq, first + count);
  bool dropped = false;
  for (uint64_t i = skip; i < count; ++i) {
    auto event = DecodeEvent(batch->events[i]);
    if (!event.ok()) {
      undecodable_->Inc();
      spdlog::warn("bus: an event of node {} could not be read: {}", batch->origin,
                   event.status().message());
      continue;
    }
    if (incoming_events_.load() >= options_.max_incoming_events) {
      // Too far behind: dropped, and repaired like any loss.
      dropped_->Inc();
      dropped = true;
      continue;
    }
    received_->Inc();
    ++incoming_events_;
    const bool presence = std::holds_alternative<domain::PresenceChanged>(*event);
    net::post(presence ? incoming_presence_ : incoming_, [this, e = std::move(event).value()] {
      cluster_subscribers_.Publish(e);
      --incoming_events_;
    });
  }
  if (dropped) {  // once per batch is enough
    gaps_->Inc();
    Missed();
  }
}

}  // namespace mmchat::bus::redis
