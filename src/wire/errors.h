// API.md's error object, for both transports: the code of each Status, named once. How a
// transport carries it (an HTTP status and Retry-After; an ack or error frame) is its own.
#pragma once

#include "common/status.h"
#include "wire/json.h"

namespace mmchat::wire {

const char* ErrorCodeFor(StatusCode code);

// {"code", "message"}.
Json ErrorObject(const Status& status);

}  // namespace mmchat::wire
