// A message's reactions and attachments as stored columns (both backends): JSON text,
// [{"emoji":"👍","user_ids":[7,9]}, ...] in API.md's order, and
// [{"id":"k3J9x…","filename":"plan.pdf","content_type":"application/pdf","size":48213,
// "created_at":1764842400123}, ...], NULL when there are none. One row holds all a message
// needs, so no read of a page joins another table.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "domain/conversation.h"

namespace mmchat::store {

std::optional<std::string> EncodeReactions(const std::vector<domain::Reaction>& reactions);
// A column this process did not write is read as well as it can: what does not parse is none.
std::vector<domain::Reaction> DecodeReactions(const std::optional<std::string>& column);

std::optional<std::string> EncodeAttachments(const std::vector<domain::Attachment>& attachments);
std::vector<domain::Attachment> DecodeAttachments(const std::optional<std::string>& column);

}  // namespace mmchat::store
