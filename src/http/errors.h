// The one place where a domain Status becomes an HTTP status and API.md error object.
#pragma once

#include "common/status.h"
#include "http/message.h"

namespace mmchat::http {

int HttpStatusFor(StatusCode code);
const char* ErrorCodeFor(StatusCode code);

// {"error": {"code", "message"}} with the matching status (and Retry-After for 429).
Response ErrorResponse(const Status& status);

}  // namespace mmchat::http
