#include "http/views.h"

#include "common/time.h"

namespace mmchat::http {
namespace {

Json OptionalTime(const std::optional<TimeMs>& t) {
  return t ? Json(FormatRfc3339(*t)) : Json(nullptr);
}

}  // namespace

Json UserJson(const domain::User& user, bool with_email) {
  Json j = {{"id", user.id},
            {"username", user.username},
            {"profile_picture", user.profile_picture ? Json(*user.profile_picture) : Json(nullptr)},
            {"created_at", FormatRfc3339(user.created_at)},
            {"online", user.online},
            {"last_seen", OptionalTime(user.last_seen)}};
  if (with_email) j["email"] = user.email;
  return j;
}

Json AuthJson(const domain::AuthResult& auth) {
  return {{"token", auth.token.token},
          {"expires_at", FormatRfc3339(auth.token.expires_at)},
          {"user", UserJson(auth.user, /*with_email=*/false)}};  // email only in /api/me
}

Json LastSeenJson(const domain::LastSeen& ls) {
  return {
      {"user_id", ls.user_id}, {"online", ls.online}, {"last_seen", OptionalTime(ls.last_seen)}};
}

Json MessageJson(const domain::Message& m) {
  static constexpr const char* kStatus[] = {"sent", "delivered", "read"};
  // Field by field rather than from an initializer list, which builds a two-element array
  // per field first: this runs for every message of every page and push.
  Json j = Json::object();
  j["id"] = m.id;
  j["conversation_id"] = m.conversation_id;
  j["seq"] = m.seq;
  j["sender_id"] = m.sender_id;
  j["content"] = m.content;
  j["client_id"] = m.client_id ? Json(*m.client_id) : Json(nullptr);
  j["created_at"] = FormatRfc3339(m.created_at);
  j["status"] = kStatus[static_cast<int>(m.status)];
  return j;
}

Json ReadMarkJson(const domain::ReadMark& mark) {
  return {{"conversation_id", mark.conversation_id},
          {"message_id", mark.message_id},
          {"read_at", FormatRfc3339(mark.read_at)}};
}

Json ParticipantJson(const domain::Participant& p) {
  return {{"user_id", p.user_id},
          {"username", p.username},
          {"profile_picture", p.profile_picture ? Json(*p.profile_picture) : Json(nullptr)},
          {"role", p.role == domain::Role::kAdmin ? "admin" : "member"},
          {"joined_at", FormatRfc3339(p.joined_at)}};
}

Json ConversationJson(const domain::Conversation& c) {
  Json participants = Json::array();
  for (const auto& p : c.participants) participants.push_back(ParticipantJson(p));
  return {{"id", c.id},
          {"type", c.type == domain::ConversationType::kPrivate ? "private" : "group"},
          {"name", c.name ? Json(*c.name) : Json(nullptr)},
          {"created_by", c.created_by},
          {"created_at", FormatRfc3339(c.created_at)},
          {"participants", std::move(participants)},
          {"last_message", c.last_message ? MessageJson(*c.last_message) : Json(nullptr)},
          {"unread_count", c.unread_count},
          {"last_read_message_id", c.last_read_message_id}};
}

}  // namespace mmchat::http
