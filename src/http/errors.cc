#include "http/errors.h"

#include <nlohmann/json.hpp>

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

const char* ErrorCodeFor(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return "ok";
    case StatusCode::kInvalidRequest:
      return "invalid_request";
    case StatusCode::kOtpInvalid:
      return "otp_invalid";
    case StatusCode::kOtpExpired:
      return "otp_expired";
    case StatusCode::kUnauthorized:
      return "unauthorized";
    case StatusCode::kInvalidCredentials:
      return "invalid_credentials";
    case StatusCode::kForbidden:
      return "forbidden";
    case StatusCode::kNotFound:
      return "not_found";
    case StatusCode::kConflict:
      return "conflict";
    case StatusCode::kPayloadTooLarge:
      return "payload_too_large";
    case StatusCode::kRateLimited:
      return "rate_limited";
    case StatusCode::kInternal:
      return "internal";
    case StatusCode::kUnavailable:
    case StatusCode::kDeliveryFailed:
      return "unavailable";
  }
  return "internal";
}

Response ErrorResponse(const Status& status) {
  Response res;
  res.status = HttpStatusFor(status.code());
  nlohmann::json body = {
      {"error", {{"code", ErrorCodeFor(status.code())}, {"message", status.message()}}}};
  // Messages may quote client input; replace rather than throw on invalid UTF-8.
  res.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (auto retry = status.retry_after_sec()) {
    res.headers.emplace_back("Retry-After", std::to_string(*retry));
  }
  return res;
}

}  // namespace mmchat::http
