#include "domain/message_change.h"

#include <algorithm>

namespace mmchat::domain {

ChangeOutcome ApplyChange(const MessageChange& change, const ChangeActor& actor, Message& m) {
  using Kind = MessageChange::Kind;
  if (!actor.participant) return ChangeOutcome::kNotParticipant;
  const bool sender = change.actor == m.sender_id;
  switch (change.kind) {
    case Kind::kEdit:
      if (!sender) return ChangeOutcome::kNotAllowed;
      if (m.deleted_at) return ChangeOutcome::kDeleted;
      // As when sending: a message may say nothing only when it carries attachments.
      if (change.text.empty() && m.attachments.empty()) return ChangeOutcome::kEmptyContent;
      if (m.content == change.text) return ChangeOutcome::kUnchanged;
      m.content = change.text;
      m.edited_at = change.at;
      return ChangeOutcome::kChanged;
    case Kind::kDelete:
      if (!sender && !actor.group_admin) return ChangeOutcome::kNotAllowed;
      if (m.deleted_at) return ChangeOutcome::kUnchanged;
      // For good: what the message said goes with it.
      m.content.clear();
      m.attachments.clear();
      m.reactions.clear();
      m.deleted_at = change.at;
      return ChangeOutcome::kChanged;
    case Kind::kReact:
    case Kind::kUnreact:
      break;
  }
  if (m.deleted_at) return ChangeOutcome::kDeleted;
  auto it = std::find_if(m.reactions.begin(), m.reactions.end(),
                         [&](const Reaction& r) { return r.emoji == change.text; });
  if (change.kind == Kind::kReact) {
    if (it == m.reactions.end()) {
      if (m.reactions.size() >= kMaxReactionEmoji) return ChangeOutcome::kTooManyReactions;
      m.reactions.push_back({change.text, {change.actor}});
      return ChangeOutcome::kChanged;
    }
    auto& users = it->user_ids;
    if (std::find(users.begin(), users.end(), change.actor) != users.end()) {
      return ChangeOutcome::kUnchanged;
    }
    users.push_back(change.actor);
    return ChangeOutcome::kChanged;
  }
  if (it == m.reactions.end()) return ChangeOutcome::kUnchanged;
  auto& users = it->user_ids;
  auto mine = std::find(users.begin(), users.end(), change.actor);
  if (mine == users.end()) return ChangeOutcome::kUnchanged;
  users.erase(mine);
  if (users.empty()) m.reactions.erase(it);  // the emoji's place in the order goes with it
  return ChangeOutcome::kChanged;
}

}  // namespace mmchat::domain
