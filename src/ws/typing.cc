#include "ws/typing.h"

#include <algorithm>

#include "ws/connection.h"

namespace mmchat::ws {

Typing::Typing(const MembershipIndex& index, domain::EventBus* bus, TimeMs timeout_ms,
               double changes_per_sec)
    : index_(index),
      bus_(bus),
      timeout_ms_(timeout_ms),
      typing_limiter_(changes_per_sec, 2 * changes_per_sec) {}

Status Typing::Change(Connection* c, int64_t conversation_id, bool start) {
  const int64_t user = c->user_id();
  auto members = index_.MembersOf(conversation_id);
  if (!members) return Status::NotFound("conversation not found");
  if (std::find(members->begin(), members->end(), user) == members->end()) {
    return Status::Forbidden("not a participant of this conversation");
  }
  // Announced under the lock, so that a start and a stop racing from two devices reach the
  // peers in the order they changed the state.
  std::lock_guard lock(typing_mu_);
  auto it = typing_.find({conversation_id, user});
  if (start && it != typing_.end()) {
    it->second = {SteadyMs() + timeout_ms_, c};
    return Status::Ok();  // a refresh: the peers already know
  }
  if (!start && it == typing_.end()) return Status::Ok();  // a stop without a start
  if (const int64_t wait_ms = typing_limiter_.TryTake(user, SteadyMs())) {
    return Status::RateLimited("typing changes too fast", (wait_ms + 999) / 1000);
  }
  if (start) {
    typing_.emplace(Key{conversation_id, user}, Typist{SteadyMs() + timeout_ms_, c});
  } else {
    typing_.erase(it);
  }
  bus_->Publish(domain::TypingChanged{conversation_id, user, start});
  return Status::Ok();
}

void Typing::Expire(TimeMs now) {
  End([now](const Key&, const Typist& t) { return t.deadline <= now; });
}

void Typing::EndedWith(const Connection* c) {
  End([c](const Key&, const Typist& t) { return t.connection == c; });
}

void Typing::Left(int64_t conversation_id, int64_t user_id) {
  const Key gone{conversation_id, user_id};
  End([gone](const Key& k, const Typist&) { return k == gone; });
}

void Typing::Heard(const domain::TypingChanged& e) {
  std::lock_guard lock(heard_mu_);
  if (e.typing) {
    heard_.insert({e.conversation_id, e.user_id});
  } else {
    heard_.erase({e.conversation_id, e.user_id});
  }
}

std::vector<Typing::Key> Typing::ForgetHeard() {
  return ForgetHeardIf([](const Key&) { return true; });
}

std::vector<Typing::Key> Typing::ForgetHeardOf(int64_t user_id) {
  return ForgetHeardIf([user_id](const Key& k) { return k.second == user_id; });
}

std::vector<Typing::Key> Typing::ForgetHeardIf(const std::function<bool(const Key&)>& which) {
  std::vector<Key> out;
  {
    std::lock_guard lock(heard_mu_);
    for (auto it = heard_.begin(); it != heard_.end();) {
      if (which(*it)) {
        out.push_back(*it);
        it = heard_.erase(it);
      } else {
        ++it;
      }
    }
  }
  // This node's own states end here, with a stop of their own.
  std::lock_guard lock(typing_mu_);
  std::erase_if(out, [this](const Key& k) { return typing_.contains(k); });
  return out;
}

void Typing::End(const std::function<bool(const Key&, const Typist&)>& which) {
  std::lock_guard lock(typing_mu_);  // announced under it, as in Change
  for (auto it = typing_.begin(); it != typing_.end();) {
    if (which(it->first, it->second)) {
      bus_->Publish(domain::TypingChanged{it->first.first, it->first.second, false});
      it = typing_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace mmchat::ws
