#include "domain/conversation_service.h"

#include <algorithm>
#include <set>
#include <tuple>
#include <unordered_map>

#include "domain/validation.h"

namespace mmchat::domain {
namespace {

Status ValidateGroupName(const std::string& name) { return ValidateText("name", name, 1, 100); }

// The words for what a membership primitive refused.
Status Refused(MembershipOutcome outcome) {
  switch (outcome) {
    case MembershipOutcome::kDone:
      return Status::Ok();
    case MembershipOutcome::kNoSuchUser:
      return Status::NotFound(kUserNotFound);
    case MembershipOutcome::kAlreadyParticipant:
      return Status::Conflict("already a participant");
    case MembershipOutcome::kNotParticipant:
      return Status::NotFound("not a participant of this conversation");
    case MembershipOutcome::kWouldLeaveNoAdmin:
      return Status::InvalidRequest("role: the group needs an admin; promote someone first");
  }
  return Status::Internal("unknown membership outcome");
}

}  // namespace

Status ConversationNotFound() { return Status::NotFound("conversation not found"); }
Status NotAParticipant() { return Status::Forbidden("not a participant of this conversation"); }

MessageStatuses::MessageStatuses(int64_t conversation_id,
                                 const std::vector<ParticipantMarks>& marks,
                                 const DeliveryTracker& tracker) {
  marks_.reserve(marks.size());
  for (const auto& p : marks) {
    marks_.push_back({p.user_id, p.read_marker,
                      std::max(p.read_marker,
                               tracker.Effective(conversation_id, p.user_id, p.delivered_marker))});
  }
}

MessageStatuses::MessageStatuses(const Conversation& c, const DeliveryTracker& tracker)
    : MessageStatuses(c.id, MarksOf(c), tracker) {}

std::vector<ParticipantMarks> MarksOf(const Conversation& c) {
  std::vector<ParticipantMarks> marks;
  marks.reserve(c.participants.size());
  for (const auto& p : c.participants) {
    marks.push_back({p.user_id, p.read_marker, p.delivered_marker});
  }
  return marks;
}

MessageStatus MessageStatuses::Of(const Message& m) const {
  bool all_read = true;
  bool all_delivered = true;
  bool anyone = false;
  for (const auto& p : marks_) {
    if (p.user_id == m.sender_id) continue;
    anyone = true;
    all_read = all_read && p.read >= m.id;
    all_delivered = all_delivered && p.delivered >= m.id;
  }
  if (!anyone) return MessageStatus::kSent;  // nobody else to receive it
  if (all_read) return MessageStatus::kRead;
  return all_delivered ? MessageStatus::kDelivered : MessageStatus::kSent;
}

MessageStatus StatusOf(const Message& m, const Conversation& c, const DeliveryTracker& tracker) {
  return MessageStatuses(c, tracker).Of(m);
}

ConversationService::ConversationService(Deps deps) : d_(std::move(deps)) {}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

Result<Conversation> ConversationService::LoadForParticipant(int64_t caller, int64_t id) {
  auto c = d_.conversations->GetConversation(id);
  if (!c.ok()) return c.status();
  if (!c->has_value()) return ConversationNotFound();
  if ((*c)->Find(caller) == nullptr) return NotAParticipant();
  return std::move(**c);
}

Result<Conversation> ConversationService::ForReader(Conversation c, int64_t reader) {
  const Participant* me = c.Find(reader);
  c.last_read_message_id = me ? me->read_marker : 0;
  auto last = d_.conversations->LastMessage(c.id);
  if (!last.ok()) return last.status();
  if (last->has_value()) {
    (*last)->status = StatusOf(**last, c, *d_.tracker);
    c.last_message = std::move(*last);
  }
  auto unread = d_.conversations->CountUnread(c.id, reader, c.last_read_message_id);
  if (!unread.ok()) return unread.status();
  c.unread_count = *unread;
  return c;
}

Result<Conversation> ConversationService::Get(int64_t caller, int64_t id) {
  auto c = LoadForParticipant(caller, id);
  if (!c.ok()) return c.status();
  return ForReader(std::move(c).value(), caller);
}

Result<std::vector<Conversation>> ConversationService::List(int64_t caller) {
  // Which conversations, and where the caller stands in each, come from the store; the rest
  // from the cache (at most two more store calls, for what it does not keep).
  auto states = d_.conversations->ListReaderStates(caller);
  if (!states.ok()) return states.status();
  std::unordered_map<int64_t, ReaderState> mine;
  std::vector<int64_t> ids;
  for (const ReaderState& s : *states) {
    mine[s.conversation_id] = s;
    ids.push_back(s.conversation_id);
  }
  auto kept = d_.cache->GetMany(ids);
  if (!kept.ok()) return kept.status();
  std::vector<Conversation> list;
  list.reserve(kept->size());
  std::vector<int64_t> from_before;  // kept from before the caller joined: read again
  for (Conversation& c : *kept) {
    if (c.Find(caller) != nullptr) {
      list.push_back(std::move(c));
    } else {
      from_before.push_back(c.id);
    }
  }
  if (!from_before.empty()) {
    auto again = d_.cache->Reload(from_before);
    if (!again.ok()) return again.status();
    for (Conversation& c : *again) {
      if (c.Find(caller) != nullptr) list.push_back(std::move(c));  // else left meanwhile
    }
  }
  for (Conversation& c : list) {
    const ReaderState& me = mine[c.id];
    c.last_read_message_id = me.read_marker;
    c.unread_count = me.unread_count;
    if (c.last_message) c.last_message->status = StatusOf(*c.last_message, c, *d_.tracker);
  }
  std::sort(list.begin(), list.end(), [](const Conversation& a, const Conversation& b) {
    return std::tie(a.last_activity, a.id) > std::tie(b.last_activity, b.id);
  });  // newest activity first
  return list;
}

Result<Conversation> ConversationService::Changed(int64_t caller, int64_t id) {
  auto c = d_.conversations->GetConversation(id);
  if (!c.ok()) return c.status();
  if (!c->has_value()) return ConversationNotFound();
  d_.bus->Publish(ConversationChanged{**c});
  return ForReader(std::move(**c), caller);
}

// ---------------------------------------------------------------------------------------------
// Creating
// ---------------------------------------------------------------------------------------------

Result<std::pair<Conversation, bool>> ConversationService::CreatePrivate(int64_t caller,
                                                                         int64_t other) {
  if (other == caller) return Status::InvalidRequest("user_id: cannot talk to yourself");
  auto user = d_.users->FindUserById(other);
  if (!user.ok()) return user.status();
  if (!user->has_value() || (**user).user.status == UserStatus::kDeleted) {
    return Status::NotFound(kUserNotFound);
  }
  auto created = d_.conversations->GetOrCreatePrivate(caller, other, d_.now());
  if (!created.ok()) return created.status();
  const auto [id, is_new] = *created;
  auto view = is_new ? Changed(caller, id) : Get(caller, id);
  if (!view.ok()) return view.status();
  return std::make_pair(std::move(view).value(), is_new);
}

Result<Conversation> ConversationService::CreateGroup(int64_t caller, const std::string& name,
                                                      const std::vector<int64_t>& member_ids) {
  if (Status s = ValidateGroupName(name); !s.ok()) return s;
  std::vector<int64_t> members;
  std::set<int64_t> seen{caller};
  for (int64_t id : member_ids) {
    if (seen.insert(id).second) members.push_back(id);  // the creator and repeats once only
  }
  auto created = d_.conversations->CreateGroup(name, caller, members, d_.now());
  if (!created.ok()) return created.status();
  if (created->outcome != MembershipOutcome::kDone) {
    return Status::NotFound("user " + std::to_string(created->missing_user) + " not found");
  }
  return Changed(caller, created->id);
}

// ---------------------------------------------------------------------------------------------
// Changing
// ---------------------------------------------------------------------------------------------

std::unique_lock<std::mutex> ConversationService::LockChanges(int64_t id) {
  return std::unique_lock(change_mu_[static_cast<uint64_t>(id) % change_mu_.size()]);
}

Result<Conversation> ConversationService::LoadForAdmin(int64_t caller, int64_t id, bool* is_admin) {
  auto c = LoadForParticipant(caller, id);
  if (!c.ok()) return c.status();
  if (c->type == ConversationType::kPrivate) {
    return Status::InvalidRequest("a private conversation cannot be changed");
  }
  *is_admin = c->Find(caller)->role == Role::kAdmin;
  return c;
}

Result<Conversation> ConversationService::Rename(int64_t caller, int64_t id,
                                                 const std::string& name) {
  auto lock = LockChanges(id);
  bool admin = false;
  auto c = LoadForAdmin(caller, id, &admin);
  if (!c.ok()) return c.status();
  if (!admin) return Status::Forbidden("only admins can rename the group");
  if (Status s = ValidateGroupName(name); !s.ok()) return s;
  if (Status s = d_.conversations->Rename(id, name, d_.now()); !s.ok()) return s;
  return Changed(caller, id);
}

Result<Conversation> ConversationService::AddParticipant(int64_t caller, int64_t id,
                                                         int64_t user_id,
                                                         std::optional<Role> role) {
  auto lock = LockChanges(id);
  bool admin = false;
  auto c = LoadForAdmin(caller, id, &admin);
  if (!c.ok()) return c.status();
  if (!admin) return Status::Forbidden("only admins can add participants");
  auto added =
      d_.conversations->AddParticipant(id, user_id, role.value_or(Role::kMember), d_.now());
  if (!added.ok()) return added.status();
  if (Status s = Refused(*added); !s.ok()) return s;
  return Changed(caller, id);
}

Result<Conversation> ConversationService::SetRole(int64_t caller, int64_t id, int64_t user_id,
                                                  Role role) {
  auto lock = LockChanges(id);
  bool admin = false;
  auto c = LoadForAdmin(caller, id, &admin);
  if (!c.ok()) return c.status();
  if (!admin) return Status::Forbidden("only admins can change roles");
  // The store keeps an admin: a demotion of the last one comes back kWouldLeaveNoAdmin.
  auto changed = d_.conversations->SetRole(id, user_id, role, d_.now());
  if (!changed.ok()) return changed.status();
  if (Status s = Refused(*changed); !s.ok()) return s;
  return Changed(caller, id);
}

Status ConversationService::RemoveParticipant(int64_t caller, int64_t id, int64_t user_id) {
  auto lock = LockChanges(id);
  bool admin = false;
  auto c = LoadForAdmin(caller, id, &admin);
  if (!c.ok()) return c.status();
  if (user_id != caller && !admin) return Status::Forbidden("only admins can remove others");
  if (c->Find(user_id) == nullptr) return Refused(MembershipOutcome::kNotParticipant);
  return RemoveLocked(id, user_id);
}

Result<std::vector<int64_t>> ConversationService::LeaveAll(int64_t user_id) {
  auto states = d_.conversations->ListReaderStates(user_id);
  if (!states.ok()) return states.status();
  std::vector<int64_t> left;
  for (const ReaderState& r : *states) {
    auto lock = LockChanges(r.conversation_id);
    // A private conversation has exactly two participants (API.md): the other one keeps it,
    // with the erased account as its partner.
    auto c = d_.conversations->GetConversation(r.conversation_id);
    if (!c.ok()) return c.status();
    if (!c->has_value() || (*c)->type == ConversationType::kPrivate) continue;
    const Status s = RemoveLocked(r.conversation_id, user_id);
    if (s.code() == StatusCode::kNotFound) continue;  // gone meanwhile
    if (!s.ok()) return s;
    left.push_back(r.conversation_id);
  }
  return left;
}

void ConversationService::AnnounceLeft(int64_t id, int64_t user_id) {
  auto lock = LockChanges(id);
  d_.bus->Publish(ConversationRemoved{id, user_id});
  auto after = d_.conversations->GetConversation(id);
  if (after.ok() && after->has_value() && !(*after)->participants.empty()) {
    d_.bus->Publish(ConversationChanged{**after});
  }
}

Status ConversationService::RemoveLocked(int64_t id, int64_t user_id) {
  // Announced before the write: a message committed right after the removal must not be
  // pushed to the removed user while the real-time layer still counts it as a member.
  d_.bus->Publish(ConversationRemoved{id, user_id});
  auto removed = d_.conversations->RemoveParticipant(id, user_id, d_.now());
  Status s = removed.ok() ? Refused(*removed) : removed.status();
  if (!s.ok()) {
    if (auto unchanged = d_.conversations->GetConversation(id);
        unchanged.ok() && unchanged->has_value()) {
      d_.bus->Publish(ConversationChanged{**unchanged});  // still a member after all
    }
    return s;
  }
  auto after = d_.conversations->GetConversation(id);
  if (after.ok() && after->has_value() && !(*after)->participants.empty()) {
    d_.bus->Publish(ConversationChanged{**after});
  }
  return Status::Ok();
}

}  // namespace mmchat::domain
