#include "ws/presence_tracker.h"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <future>

namespace mmchat::ws {

namespace net = boost::asio;

PresenceTracker::PresenceTracker(net::any_io_executor workers, domain::PresenceService* presence,
                                 domain::PresenceDirectory* directory)
    : presence_(presence), directory_(directory), strand_(net::make_strand(workers)) {}

// ---------------------------------------------------------------------------------------------
// This node's transitions
// ---------------------------------------------------------------------------------------------

void PresenceTracker::Opened(int64_t user_id) {
  net::post(strand_, [this, user_id] {
    // In a cluster, online only if no other node had the user already.
    const auto first =
        directory_ ? directory_->Opened(user_id) : domain::PresenceDirectory::Crossing{true, 0};
    if (!first.crossed) return;
    if (Status s = presence_->WentOnline(user_id, first.version); !s.ok()) {
      spdlog::warn("presence of user {} not announced: {}", user_id, s.message());
    }
  });
}

void PresenceTracker::Closed(int64_t user, std::function<void()> closed) {
  net::post(strand_, [this, user, closed = std::move(closed)] {
    // In a cluster, offline only if no other node has the user; the directory keeps this
    // close's time for readers on other nodes, so it is the one stored.
    std::optional<TimeMs> at;
    if (directory_) at = NowMs();
    const auto last =
        directory_ ? directory_->Closed(user, *at) : domain::PresenceDirectory::Crossing{true, 0};
    if (!last.crossed) return closed();
    // Offline to readers once last_seen is stored, before the news goes out.
    Status s = presence_->WentOffline(user, closed, last.version, at);
    if (!s.ok()) spdlog::warn("last_seen of user {} not saved: {}", user, s.message());
  });
}

void PresenceTracker::InTurn(std::function<void()> task) { net::post(strand_, std::move(task)); }

void PresenceTracker::Wait() {
  std::promise<void> done;
  net::post(strand_, [&done] { done.set_value(); });
  done.get_future().wait();
}

// ---------------------------------------------------------------------------------------------
// The other nodes' (cluster)
// ---------------------------------------------------------------------------------------------

std::optional<domain::PresenceView::Reading> PresenceTracker::ReadElsewhere(
    int64_t user_id) const {
  if (!directory_) return std::nullopt;
  auto r = directory_->Read(user_id);
  if (r.ok()) return *r;
  spdlog::debug("presence of user {} read from the replica: {}", user_id, r.status().message());
  return domain::PresenceView::Reading{OnlineElsewhere(user_id), std::nullopt};
}

bool PresenceTracker::OnlineElsewhere(int64_t user_id) const {
  std::lock_guard lock(replica_mu_);
  auto it = replica_.find(user_id);
  return it != replica_.end() && it->second.online;
}

void PresenceTracker::Apply(int64_t user_id, bool online, int64_t version) {
  std::lock_guard lock(replica_mu_);
  Remote& r = replica_[user_id];
  if (version > r.version) r = {online, version};
}

void PresenceTracker::Reset() {
  if (!directory_) return;
  net::post(strand_, [this] {
    auto snapshot = directory_->Online();
    if (!snapshot.ok()) {
      spdlog::warn("who is online elsewhere not read: {}", snapshot.status().message());
      return;
    }
    std::lock_guard lock(replica_mu_);
    if (snapshot->epoch.empty() || snapshot->epoch != replica_epoch_) {
      // The directory lost its memory (Redis restarted empty; no node has registered since,
      // or one has and named a new epoch) and counts versions from 0 again: what is kept is
      // from its past life.
      replica_.clear();
      replica_epoch_ = snapshot->epoch;
    }
    // Older knowledge gives way to the snapshot; news newer than it stays.
    for (auto& [_, r] : replica_) {
      if (r.version <= snapshot->version) r = {false, snapshot->version};
    }
    for (int64_t u : snapshot->online) {
      Remote& r = replica_[u];
      if (r.version <= snapshot->version) r = {true, snapshot->version};
    }
  });
}

}  // namespace mmchat::ws
