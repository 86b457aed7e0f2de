// Status and Result<T>: how every layer below http/ reports failure without exceptions.
// A Status carries a code from API.md's error table and a human message that is safe to
// show to the client. Value types; thread-compatible.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace mmchat {

enum class StatusCode {
  kOk,
  kInvalidRequest,      // 400 invalid_request
  kOtpInvalid,          // 400 otp_invalid
  kOtpExpired,          // 400 otp_expired
  kUnauthorized,        // 401 unauthorized
  kInvalidCredentials,  // 401 invalid_credentials
  kForbidden,           // 403 forbidden
  kNotFound,            // 404 not_found
  kConflict,            // 409 conflict
  kPayloadTooLarge,     // 413 payload_too_large
  kRateLimited,         // 429 rate_limited (+ retry_after_sec)
  kInternal,            // 500 internal
  kUnavailable,         // 503 unavailable (a dependency such as the database failed)
  kDeliveryFailed,      // 503 unavailable (the verification mail could not be sent)
};

class Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return {}; }
  static Status InvalidRequest(std::string m) {
    return {StatusCode::kInvalidRequest, std::move(m)};
  }
  static Status OtpInvalid(std::string m) { return {StatusCode::kOtpInvalid, std::move(m)}; }
  static Status OtpExpired(std::string m) { return {StatusCode::kOtpExpired, std::move(m)}; }
  static Status Unauthorized(std::string m) { return {StatusCode::kUnauthorized, std::move(m)}; }
  static Status InvalidCredentials(std::string m) {
    return {StatusCode::kInvalidCredentials, std::move(m)};
  }
  static Status Forbidden(std::string m) { return {StatusCode::kForbidden, std::move(m)}; }
  static Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
  static Status Conflict(std::string m) { return {StatusCode::kConflict, std::move(m)}; }
  static Status PayloadTooLarge(std::string m) {
    return {StatusCode::kPayloadTooLarge, std::move(m)};
  }
  static Status RateLimited(std::string m, int64_t retry_after_sec) {
    Status s{StatusCode::kRateLimited, std::move(m)};
    s.retry_after_sec_ = retry_after_sec < 1 ? 1 : retry_after_sec;
    return s;
  }
  static Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }
  static Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // Seconds to wait before retrying; set only for kRateLimited.
  std::optional<int64_t> retry_after_sec() const { return retry_after_sec_; }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
  std::optional<int64_t> retry_after_sec_;
};

// A value or a non-ok Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}         // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {}  // NOLINT: implicit by design

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace mmchat
