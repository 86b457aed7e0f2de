#include "http/errors.h"

#include "wire/errors.h"
#include "wire/json.h"

namespace mmchat::http {

int HttpStatusFor(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return 200;
    case StatusCode::kInvalidRequest:
    case StatusCode::kOtpInvalid:
    case StatusCode::kOtpExpired:
      return 400;
    case StatusCode::kUnauthorized:
    case StatusCode::kInvalidCredentials:
      return 401;
    case StatusCode::kForbidden:
      return 403;
    case StatusCode::kNotFound:
      return 404;
    case StatusCode::kConflict:
      return 409;
    case StatusCode::kPayloadTooLarge:
      return 413;
    case StatusCode::kRateLimited:
      return 429;
    case StatusCode::kInternal:
      return 500;
    case StatusCode::kUnavailable:
    case StatusCode::kDeliveryFailed:
      return 503;
  }
  return 500;
}

Response ErrorResponse(const Status& status) {
  Response res;
  res.status = HttpStatusFor(status.code());
  const wire::Json body = {{"error", wire::ErrorObject(status)}};
  // Messages may quote client input; replace rather than throw on invalid UTF-8.
  res.body = wire::ToRaw(body).text;
  if (auto retry = status.retry_after_sec()) {
    res.headers.emplace_back("Retry-After", std::to_string(*retry));
  }
  return res;
}

}  // namespace mmchat::http
