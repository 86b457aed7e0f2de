#include "bus/redis/envelope.h"

#include <charconv>
#include <nlohmann/json.hpp>

namespace mmchat::bus::redis {
namespace {

using Json = nlohmann::json;
using domain::Event;

constexpr std::string_view kMagic = "MM1";
// Longer origins are refused: they would only be a damaged or hostile header.
constexpr size_t kMaxOrigin = 128;

// Reading a JSON object that came from another node: a missing or mistyped field throws
// Bad, turned into kInvalidRequest once, at the top.
struct Bad {
  std::string what;
};

const Json& Field(const Json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) throw Bad{std::string("missing ") + key};
  return *it;
}
int64_t Int(const Json& j, const char* key) {
  const Json& v = Field(j, key);
  if (!v.is_number_integer()) throw Bad{std::string(key) + " is not an integer"};
  return v.get<int64_t>();
}
bool Bool(const Json& j, const char* key) {
  const Json& v = Field(j, key);
  if (!v.is_boolean()) throw Bad{std::string(key) + " is not a boolean"};
  return v.get<bool>();
}
std::string String(const Json& j, const char* key) {
  const Json& v = Field(j, key);
  if (!v.is_string()) throw Bad{std::string(key) + " is not a string"};
  return v.get<std::string>();
}
// Absent or null: nullopt.
std::optional<int64_t> OptionalInt(const Json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  return Int(j, key);
}
std::optional<std::string> OptionalString(const Json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  return String(j, key);
}
const Json& Object(const Json& j, const char* key) {
  const Json& v = Field(j, key);
  if (!v.is_object()) throw Bad{std::string(key) + " is not an object"};
  return v;
}

template <typename T>
Json Optional(const std::optional<T>& v) {
  return v ? Json(*v) : Json();
}

Json MessageJson(const domain::Message& m) {
  Json reactions = Json::array();
  for (const auto& r : m.reactions)
    reactions.push_back({{"emoji", r.emoji}, {"user_ids", r.user_ids}});
  Json attachments = Json::array();
  for (const auto& a : m.attachments) {
    attachments.push_back({{"id", a.id},
                           {"filename", Optional(a.filename)},
                           {"content_type", a.content_type},
                           {"size", a.size},
                           {"created_at", a.created_at}});
  }
  return {{"id", m.id},
          {"conversation_id", m.conversation_id},
          {"seq", m.seq},
          {"sender_id", m.sender_id},
          {"content", m.content},
          {"client_id", Optional(m.client_id)},
          {"created_at", m.created_at},
          {"members_version", m.members_version},
          {"reply_to", Optional(m.reply_to)},
          {"edited_at", Optional(m.edited_at)},
          {"deleted_at", Optional(m.deleted_at)},
          {"change_id", m.change_id},
          {"reactions", std::move(reactions)},
          {"attachments", std::move(attachments)},
          {"status", static_cast<int>(m.status)}};
}
domain::Message ReadMessage(const Json& j) {
  domain::Message m;
  m.id = Int(j, "id");
  m.conversation_id = Int(j, "conversation_id");
  m.seq = Int(j, "seq");
  m.sender_id = Int(j, "sender_id");
  m.content = String(j, "content");
  m.client_id = OptionalString(j, "client_id");
  m.created_at = Int(j, "created_at");
  // Absent from a node of an older release: 0, "not known".
  m.members_version = OptionalInt(j, "members_version").value_or(0);
  m.reply_to = OptionalInt(j, "reply_to");
  m.edited_at = OptionalInt(j, "edited_at");
  m.deleted_at = OptionalInt(j, "deleted_at");
  m.change_id = OptionalInt(j, "change_id").value_or(m.id);
  if (auto it = j.find("reactions"); it != j.end()) {
    if (!it->is_array()) throw Bad{"reactions is not an array"};
    for (const Json& r : *it) {
      if (!r.is_object()) throw Bad{"a reaction is not an object"};
      domain::Reaction reaction{String(r, "emoji"), {}};
      const Json& users = Field(r, "user_ids");
      if (!users.is_array()) throw Bad{"user_ids is not an array"};
      for (const Json& u : users) {
        if (!u.is_number_integer()) throw Bad{"a user id is not an integer"};
        reaction.user_ids.push_back(u.get<int64_t>());
      }
      m.reactions.push_back(std::move(reaction));
    }
  }
  // Absent from a node of an older release: none.
  if (auto it = j.find("attachments"); it != j.end()) {
    if (!it->is_array()) throw Bad{"attachments is not an array"};
    for (const Json& a : *it) {
      if (!a.is_object()) throw Bad{"an attachment is not an object"};
      domain::Attachment attachment;
      attachment.id = String(a, "id");
      attachment.filename = OptionalString(a, "filename");
      attachment.content_type = String(a, "content_type");
      attachment.size = Int(a, "size");
      attachment.created_at = Int(a, "created_at");
      m.attachments.push_back(std::move(attachment));
    }
  }
  const int64_t status = OptionalInt(j, "status").value_or(0);
  if (status < 0 || status > 2) throw Bad{"status out of range"};
  m.status = static_cast<domain::MessageStatus>(status);
  return m;
}

Json ParticipantJson(const domain::Participant& p) {
  return {{"user_id", p.user_id},
          {"username", p.username},
          {"profile_picture", Optional(p.profile_picture)},
          {"admin", p.role == domain::Role::kAdmin},
          {"joined_at", p.joined_at},
          {"read_marker", p.read_marker},
          {"read_at", Optional(p.read_at)},
          {"delivered_marker", p.delivered_marker}};
}
domain::Participant ReadParticipant(const Json& j) {
  domain::Participant p;
  p.user_id = Int(j, "user_id");
  p.username = String(j, "username");
  p.profile_picture = OptionalString(j, "profile_picture");
  p.role = Bool(j, "admin") ? domain::Role::kAdmin : domain::Role::kMember;
  p.joined_at = Int(j, "joined_at");
  p.read_marker = Int(j, "read_marker");
  p.read_at = OptionalInt(j, "read_at");
  p.delivered_marker = Int(j, "delivered_marker");
  return p;
}

// The conversation as every member shares it: the per-reader fields are filled in by each
// node for its own readers.
Json ConversationJson(const domain::Conversation& c) {
  Json parts = Json::array();
  for (const auto& p : c.participants) parts.push_back(ParticipantJson(p));
  return {{"id", c.id},
          {"group", c.type == domain::ConversationType::kGroup},
          {"name", Optional(c.name)},
          {"created_by", c.created_by},
          {"created_at", c.created_at},
          {"last_activity", c.last_activity},
          {"members_version", c.members_version},
          {"participants", std::move(parts)}};
}
domain::Conversation ReadConversation(const Json& j) {
  domain::Conversation c;
  c.id = Int(j, "id");
  c.type = Bool(j, "group") ? domain::ConversationType::kGroup : domain::ConversationType::kPrivate;
  c.name = OptionalString(j, "name");
  c.created_by = Int(j, "created_by");
  c.created_at = Int(j, "created_at");
  c.last_activity = Int(j, "last_activity");
  c.members_version = OptionalInt(j, "members_version").value_or(0);
  const Json& parts = Field(j, "participants");
  if (!parts.is_array()) throw Bad{"participants is not an array"};
  for (const Json& p : parts) {
    if (!p.is_object()) throw Bad{"a participant is not an object"};
    c.participants.push_back(ReadParticipant(p));
  }
  return c;
}

// Each event kind's name and fields.
struct ToJson {
  Json operator()(const domain::MessageCreated& e) const {
    return {{"kind", "message"}, {"message", MessageJson(e.message)}};
  }
  Json operator()(const domain::MessageUpdated& e) const {
    return {{"kind", "message_updated"}, {"message", MessageJson(e.message)}};
  }
  Json operator()(const domain::ReadReceipt& e) const {
    return {{"kind", "read"},
            {"conversation_id", e.conversation_id},
            {"user_id", e.user_id},
            {"message_id", e.message_id},
            {"at", e.read_at}};
  }
  Json operator()(const domain::DeliveryReceipt& e) const {
    return {{"kind", "delivered"},
            {"conversation_id", e.conversation_id},
            {"user_id", e.user_id},
            {"message_id", e.message_id},
            {"at", e.delivered_at}};
  }
  Json operator()(const domain::ConversationChanged& e) const {
    return {{"kind", "conversation"}, {"conversation", ConversationJson(e.conversation)}};
  }
  Json operator()(const domain::ConversationRemoved& e) const {
    return {{"kind", "conversation_removed"},
            {"conversation_id", e.conversation_id},
            {"user_id", e.user_id}};
  }
  Json operator()(const domain::PresenceChanged& e) const {
    return {{"kind", "presence"},
            {"user_id", e.user_id},
            {"online", e.online},
            {"last_seen", Optional(e.last_seen)},
            {"version", e.version}};
  }
  Json operator()(const domain::TypingChanged& e) const {
    return {{"kind", "typing"},
            {"conversation_id", e.conversation_id},
            {"user_id", e.user_id},
            {"typing", e.typing}};
  }
  Json operator()(const domain::TokensRevoked& e) const {
    return {{"kind", "tokens_revoked"}, {"user_id", e.user_id}};
  }
  Json operator()(const domain::UserChanged& e) const {
    return {{"kind", "user_changed"}, {"user_id", e.user_id}};
  }
  // Never sent (it is a node's own news); encoded for completeness, refused when read.
  Json operator()(const domain::EventsMissed&) const { return {{"kind", "events_missed"}}; }
};

Event FromJson(const Json& j) {
  const std::string kind = String(j, "kind");
  if (kind == "message") return domain::MessageCreated{ReadMessage(Object(j, "message"))};
  if (kind == "message_updated") {
    return domain::MessageUpdated{ReadMessage(Object(j, "message"))};
  }
  if (kind == "read") {
    return domain::ReadReceipt{Int(j, "conversation_id"), Int(j, "user_id"), Int(j, "message_id"),
                               Int(j, "at")};
  }
  if (kind == "delivered") {
    return domain::DeliveryReceipt{Int(j, "conversation_id"), Int(j, "user_id"),
                                   Int(j, "message_id"), Int(j, "at")};
  }
  if (kind == "conversation") {
    return domain::ConversationChanged{ReadConversation(Object(j, "conversation"))};
  }
  if (kind == "conversation_removed") {
    return domain::ConversationRemoved{Int(j, "conversation_id"), Int(j, "user_id")};
  }
  if (kind == "presence") {
    return domain::PresenceChanged{Int(j, "user_id"), Bool(j, "online"),
                                   OptionalInt(j, "last_seen"), Int(j, "version")};
  }
  if (kind == "typing") {
    return domain::TypingChanged{Int(j, "conversation_id"), Int(j, "user_id"), Bool(j, "typing")};
  }
  if (kind == "tokens_revoked") return domain::TokensRevoked{Int(j, "user_id")};
  if (kind == "user_changed") return domain::UserChanged{Int(j, "user_id")};
  throw Bad{"unknown kind " + kind};
}

// A decimal number at the front of `s`, followed by `end`; advances `s` past both.
bool Number(std::string_view& s, char end, uint64_t& out) {
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  if (ec != std::errc() || p == s.data() || p == s.data() + s.size() || *p != end) return false;
  s.remove_prefix(static_cast<size_t>(p - s.data()) + 1);
  return true;
}

}  // namespace

std::string EncodeEvent(const Event& event) {
  // Every text was checked as UTF-8 on its way in; were one not, it is mended, not thrown.
  return std::visit(ToJson{}, event).dump(-1, ' ', false, Json::error_handler_t::replace);
}

Result<Event> DecodeEvent(std::string_view json) {
  Json j = Json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return Status::InvalidRequest("bus event: not a JSON object");
  try {
    return FromJson(j);
  } catch (const Bad& bad) {
    return Status::InvalidRequest("bus event: " + bad.what);
  } catch (const Json::exception& e) {  // a number out of int64's range
    return Status::InvalidRequest(std::string("bus event: ") + e.what());
  }
}

void EncodeBatch(std::string_view origin, uint64_t first_lseq,
                 const std::vector<std::string>& events, std::string& out) {
  out.append(kMagic).append(" ").append(origin).append(" ");
  out.append(std::to_string(first_lseq)).append(" ").append(std::to_string(events.size()));
  out.push_back('\n');
  for (const std::string& e : events) {
    out.append(std::to_string(e.size())).push_back('\n');
    out.append(e);
  }
}

Result<BatchView> DecodeBatch(std::string_view payload) {
  auto bad = [](const char* what) {
    return Status::InvalidRequest(std::string("bus batch: ") + what);
  };
  std::string_view s = payload;
  if (s.substr(0, kMagic.size() + 1) != std::string(kMagic) + " ") return bad("not MM1");
  s.remove_prefix(kMagic.size() + 1);
  const size_t space = s.find(' ');
  if (space == 0 || space == std::string_view::npos || space > kMaxOrigin) return bad("origin");
  BatchView out;
  out.origin = s.substr(0, space);
  s.remove_prefix(space + 1);
  uint64_t count = 0;
  if (!Number(s, ' ', out.first_lseq) || !Number(s, '\n', count)) return bad("header");
  // Each event takes at least two bytes ("0\n"): a larger count is a lie, not a reason to
  // reserve memory.
  if (count > s.size() / 2) return bad("count");
  out.events.reserve(count);
  for (uint64_t i = 0; i < count; ++i) {
    uint64_t length = 0;
    if (!Number(s, '\n', length) || length > s.size()) return bad("event length");
    out.events.push_back(s.substr(0, length));
    s.remove_prefix(length);
  }
  if (!s.empty()) return bad("trailing bytes");
  return out;
}

}  // namespace mmchat::bus::redis
