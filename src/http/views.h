// JSON shapes of domain objects, exactly as API.md's Objects section gives them.
#pragma once

#include "domain/account_service.h"
#include "domain/conversation.h"
#include "domain/message_service.h"
#include "domain/user.h"
#include "domain/user_service.h"
#include "http/json_io.h"

namespace mmchat::http {

// The User object; `with_email` only for /api/me (API.md).
Json UserJson(const domain::User& user, bool with_email);
// {"token","expires_at","user"}.
Json AuthJson(const domain::AuthResult& auth);
Json LastSeenJson(const domain::LastSeen& ls);
Json MessageJson(const domain::Message& m);
// {"conversation_id","message_id","read_at"}: the answer to a read.
Json ReadMarkJson(const domain::ReadMark& mark);
Json ParticipantJson(const domain::Participant& p);
Json ConversationJson(const domain::Conversation& c);

}  // namespace mmchat::http
