// The one place where a domain Status becomes an HTTP status; the error object itself is
// wire/errors.h.
#pragma once

#include "common/status.h"
#include "http/message.h"

namespace mmchat::http {

int HttpStatusFor(StatusCode code);

// {"error": {"code", "message"}} with the matching status (and Retry-After for 429).
Response ErrorResponse(const Status& status);

}  // namespace mmchat::http
