#include "wire/views.h"

#include "common/time.h"

namespace mmchat::wire {
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

void WriteAttachment(JsonWriter& w, const domain::Attachment& a) {
  w.BeginObject();
  w.Key("id").String(a.id);
  w.Key("filename").OptionalString(a.filename);
  w.Key("content_type").String(a.content_type);
  w.Key("size").Int(a.size);
  w.Key("created_at").Time(a.created_at);
  w.Key("url").String(UploadUrl(a.id));
  w.EndObject();
}

RawJson AttachmentText(const domain::Attachment& a) {
  JsonWriter w;
  WriteAttachment(w, a);
  return w.Take();
}

std::string UploadUrl(std::string_view id) { return "/api/uploads/" + std::string(id); }

void WriteMessage(JsonWriter& w, const domain::Message& m) {
  static constexpr const char* kStatus[] = {"sent", "delivered", "read"};
  w.BeginObject();
  w.Key("id").Int(m.id);
  w.Key("conversation_id").Int(m.conversation_id);
  w.Key("seq").Int(m.seq);
  w.Key("sender_id").Int(m.sender_id);
  w.Key("content").String(m.content);
  w.Key("client_id").OptionalString(m.client_id);
  w.Key("created_at").Time(m.created_at);
  w.Key("status").String(kStatus[static_cast<int>(m.status)]);
  w.Key("reply_to").OptionalInt(m.reply_to);
  w.Key("attachments").BeginArray();
  for (const auto& a : m.attachments) WriteAttachment(w, a);
  w.EndArray();
  w.Key("reactions").BeginArray();
  for (const auto& r : m.reactions) {
    w.BeginObject();
    w.Key("emoji").String(r.emoji);
    w.Key("count").Int(static_cast<int64_t>(r.user_ids.size()));
    w.Key("user_ids").BeginArray();
    for (int64_t u : r.user_ids) w.Int(u);
    w.EndArray();
    w.EndObject();
  }
  w.EndArray();
  w.Key("edited_at").OptionalTime(m.edited_at);
  w.Key("deleted_at").OptionalTime(m.deleted_at);
  w.Key("change_id").Int(m.change_id);
  w.EndObject();
}

RawJson MessageText(const domain::Message& m) {
  JsonWriter w;
  WriteMessage(w, m);
  return w.Take();
}

Json ReadMarkJson(const domain::ReadMark& mark) {
  return {{"conversation_id", mark.conversation_id},
          {"message_id", mark.message_id},
          {"read_at", FormatRfc3339(mark.read_at)}};
}

void WriteParticipant(JsonWriter& w, const domain::Participant& p) {
  w.BeginObject();
  w.Key("user_id").Int(p.user_id);
  w.Key("username").String(p.username);
  w.Key("profile_picture").OptionalString(p.profile_picture);
  w.Key("role").String(p.role == domain::Role::kAdmin ? "admin" : "member");
  w.Key("joined_at").Time(p.joined_at);
  w.EndObject();
}

void WriteConversation(JsonWriter& w, const domain::Conversation& c) {
  w.BeginObject();
  w.Key("id").Int(c.id);
  w.Key("type").String(c.type == domain::ConversationType::kPrivate ? "private" : "group");
  w.Key("name").OptionalString(c.name);
  w.Key("created_by").Int(c.created_by);
  w.Key("created_at").Time(c.created_at);
  w.Key("participants").BeginArray();
  for (const auto& p : c.participants) WriteParticipant(w, p);
  w.EndArray();
  w.Key("last_message");
  if (c.last_message) {
    WriteMessage(w, *c.last_message);
  } else {
    w.Null();
  }
  w.Key("unread_count").Int(c.unread_count);
  w.Key("last_read_message_id").Int(c.last_read_message_id);
  w.EndObject();
}

RawJson ConversationText(const domain::Conversation& c) {
  JsonWriter w;
  WriteConversation(w, c);
  return w.Take();
}

}  // namespace mmchat::wire
