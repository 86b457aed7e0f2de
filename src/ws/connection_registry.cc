#include "ws/connection_registry.h"

#include <algorithm>

namespace mmchat::ws {

ConnectionRegistry::ConnectionRegistry(PresenceTracker& presence, domain::ConnectionTally* tally)
    : presence_(presence), tally_(tally) {}

bool ConnectionRegistry::Add(const std::shared_ptr<Connection>& c) {
  const int64_t user_id = c->user_id();
  // stopping_ is checked under the lock Stop sets it under: a connection is either in
  // Shutdown's snapshot or never registered.
  std::unique_lock lock(conns_mu_);
  if (stopping_) return false;
  auto& list = by_user_[user_id];
  list.push_back(c);
  if (tally_ != nullptr) tally_->Set(user_id, list.size());  // under the lock: in order
  // Posted under the lock, so transitions of one user reach the presence strand in order.
  if (list.size() == 1) presence_.Opened(user_id);
  return true;
}

void ConnectionRegistry::Remove(Connection* c) {
  const int64_t user = c->user_id();
  std::unique_lock lock(conns_mu_);
  auto it = by_user_.find(user);
  if (it != by_user_.end()) {
    auto& list = it->second;
    list.erase(
        std::remove_if(list.begin(), list.end(), [c](const auto& p) { return p.get() == c; }),
        list.end());
    if (tally_ != nullptr) tally_->Set(user, list.size());  // under the lock: in order
    if (list.empty()) {
      by_user_.erase(it);
      ++closing_[user];
      // Posted under the lock, as in Add.
      presence_.Closed(user, [this, user] {
        std::unique_lock lock(conns_mu_);
        if (auto c = closing_.find(user); c != closing_.end() && --c->second == 0) {
          closing_.erase(c);
        }
      });
    }
  }
  if (by_user_.empty()) all_ended_.notify_all();
}

void ConnectionRegistry::Stop() {
  std::unique_lock lock(conns_mu_);
  stopping_ = true;
}

bool ConnectionRegistry::WaitUntilEmpty(std::chrono::milliseconds timeout) {
  std::unique_lock lock(conns_mu_);
  return all_ended_.wait_for(lock, timeout, [this] { return by_user_.empty(); });
}

bool ConnectionRegistry::AtCap(int64_t user_id, size_t max) const {
  size_t held = 0;
  {
    std::shared_lock lock(conns_mu_);
    if (auto it = by_user_.find(user_id); it != by_user_.end()) held = it->second.size();
  }
  // In a cluster, with those on the other nodes (a Redis round trip: this runs on a database
  // thread, see http::Server).
  if (held < max && tally_ != nullptr) held += tally_->OnOtherNodes(user_id);
  return held >= max;
}

bool ConnectionRegistry::OnlineHere(int64_t user_id) const {
  std::shared_lock lock(conns_mu_);
  return by_user_.contains(user_id) || closing_.contains(user_id);
}

std::vector<std::shared_ptr<Connection>> ConnectionRegistry::Snapshot() const {
  std::vector<std::shared_ptr<Connection>> live;
  std::shared_lock lock(conns_mu_);
  live.reserve(by_user_.size());
  for (const auto& [_, list] : by_user_) live.insert(live.end(), list.begin(), list.end());
  return live;
}

std::vector<int64_t> ConnectionRegistry::LocalUsers() const {
  std::shared_lock lock(conns_mu_);
  std::vector<int64_t> out;
  out.reserve(by_user_.size());
  for (const auto& [user, _] : by_user_) out.push_back(user);
  return out;
}

std::vector<std::pair<int64_t, size_t>> ConnectionRegistry::LocalConnectionCounts() const {
  std::shared_lock lock(conns_mu_);
  std::vector<std::pair<int64_t, size_t>> out;
  out.reserve(by_user_.size());
  for (const auto& [user, list] : by_user_) out.emplace_back(user, list.size());
  return out;
}

std::vector<int64_t> ConnectionRegistry::Connected(const std::vector<int64_t>& users) const {
  std::vector<int64_t> online;
  std::shared_lock lock(conns_mu_);
  for (int64_t u : users) {
    if (by_user_.count(u)) online.push_back(u);
  }
  return online;
}

void ConnectionRegistry::SendToUsers(const std::vector<int64_t>& users, const Outgoing& out,
                                     int64_t except) const {
  ForEach(users, [&](int64_t u, const std::shared_ptr<Connection>& c) {
    if (u != except) c->Send(out);
  });
}

}  // namespace mmchat::ws
