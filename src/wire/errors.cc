#include "wire/errors.h"

namespace mmchat::wire {

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

Json ErrorObject(const Status& status) {
  return {{"code", ErrorCodeFor(status.code())}, {"message", status.message()}};
}

}  // namespace mmchat::wire
