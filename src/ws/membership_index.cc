#include "ws/membership_index.h"

#include <algorithm>
#include <mutex>

namespace mmchat::ws {

void MembershipIndex::Load(const std::vector<domain::Membership>& memberships) {
  std::unordered_map<int64_t, std::vector<int64_t>> by_conversation;
  std::unordered_map<int64_t, int64_t> versions;
  for (const auto& m : memberships) {
    by_conversation[m.conversation_id].push_back(m.user_id);
    versions[m.conversation_id] = m.members_version;
  }
  std::unique_lock lock(mu_);
  members_.clear();
  conversations_.clear();
  versions_ = std::move(versions);
  for (auto& [conversation, users] : by_conversation) {
    Link(conversation, users);
    members_[conversation] = std::make_shared<const std::vector<int64_t>>(std::move(users));
  }
}

std::vector<int64_t> MembershipIndex::Stale(
    const std::vector<domain::Membership>& memberships) const {
  std::unordered_map<int64_t, int64_t> fresh;  // conversation -> members_version
  for (const auto& m : memberships) fresh[m.conversation_id] = m.members_version;
  std::vector<int64_t> stale;
  {
    std::shared_lock lock(mu_);
    for (const auto& [conversation, version] : fresh) {
      auto held = versions_.find(conversation);
      if (held == versions_.end() || held->second < version) stale.push_back(conversation);
    }
    for (const auto& [conversation, members] : members_) {
      if (!members->empty() && !fresh.contains(conversation)) stale.push_back(conversation);
    }
  }
  std::sort(stale.begin(), stale.end());
  return stale;
}

bool MembershipIndex::Set(int64_t conversation_id, std::vector<int64_t> members, int64_t version) {
  std::unique_lock lock(mu_);
  // An equal version is applied: the list a failed removal announces again (domain's
  // ConversationService::RemoveParticipant) has the version of the one before it.
  auto [held, fresh] = versions_.try_emplace(conversation_id, version);
  if (!fresh && version < held->second) return false;
  held->second = version;
  auto& slot = members_[conversation_id];
  if (slot) Unlink(conversation_id, *slot);
  Link(conversation_id, members);
  slot = std::make_shared<const std::vector<int64_t>>(std::move(members));
  return true;
}

void MembershipIndex::Remove(int64_t conversation_id, int64_t user_id) {
  std::unique_lock lock(mu_);
  auto it = members_.find(conversation_id);
  if (it == members_.end()) return;
  std::vector<int64_t> rest = *it->second;
  rest.erase(std::remove(rest.begin(), rest.end(), user_id), rest.end());
  Unlink(conversation_id, {user_id});
  it->second = std::make_shared<const std::vector<int64_t>>(std::move(rest));
}

std::optional<int64_t> MembershipIndex::Version(int64_t conversation_id) const {
  std::shared_lock lock(mu_);
  auto it = versions_.find(conversation_id);
  if (it == versions_.end()) return std::nullopt;
  return it->second;
}

MembershipIndex::Members MembershipIndex::MembersOf(int64_t conversation_id) const {
  std::shared_lock lock(mu_);
  auto it = members_.find(conversation_id);
  return it == members_.end() ? nullptr : it->second;
}

std::vector<int64_t> MembershipIndex::PeersOf(int64_t user_id) const {
  std::vector<int64_t> peers;
  {
    std::shared_lock lock(mu_);
    auto it = conversations_.find(user_id);
    if (it == conversations_.end()) return peers;
    for (int64_t conversation : it->second) {
      auto m = members_.find(conversation);
      if (m == members_.end()) continue;
      for (int64_t u : *m->second) {
        if (u != user_id) peers.push_back(u);
      }
    }
  }
  std::sort(peers.begin(), peers.end());
  peers.erase(std::unique(peers.begin(), peers.end()), peers.end());
  return peers;
}

void MembershipIndex::Link(int64_t conversation_id, const std::vector<int64_t>& members) {
  for (int64_t u : members) conversations_[u].push_back(conversation_id);
}

void MembershipIndex::Unlink(int64_t conversation_id, const std::vector<int64_t>& members) {
  for (int64_t u : members) {
    auto it = conversations_.find(u);
    if (it == conversations_.end()) continue;
    auto& list = it->second;
    list.erase(std::remove(list.begin(), list.end(), conversation_id), list.end());
    if (list.empty()) conversations_.erase(it);
  }
}

}  // namespace mmchat::ws
