// JSON shapes of domain objects, exactly as API.md's Objects section gives them, for REST
// answers and WebSocket frames alike.
#pragma once

#include "domain/account_service.h"
#include "domain/conversation.h"
#include "domain/message_service.h"
#include "domain/user.h"
#include "domain/user_service.h"
#include "wire/json.h"
#include "wire/json_writer.h"

namespace mmchat::wire {

// The User object; `with_email` only for /api/me (API.md).
Json UserJson(const domain::User& user, bool with_email);
// {"token","expires_at","user"}.
Json AuthJson(const domain::AuthResult& auth);
Json LastSeenJson(const domain::LastSeen& ls);
// {"conversation_id","message_id","read_at"}: the answer to a read.
Json ReadMarkJson(const domain::ReadMark& mark);

// The hot objects (every page, list and push) are streamed out (wire/json_writer.h): Write*
// appends one object to a writer, *Text serializes one on its own.
void WriteMessage(JsonWriter& w, const domain::Message& m);
RawJson MessageText(const domain::Message& m);
// API.md's Attachment, and where it is downloaded.
RawJson AttachmentText(const domain::Attachment& a);
std::string UploadUrl(std::string_view id);
void WriteParticipant(JsonWriter& w, const domain::Participant& p);
void WriteConversation(JsonWriter& w, const domain::Conversation& c);
RawJson ConversationText(const domain::Conversation& c);

}  // namespace mmchat::wire
