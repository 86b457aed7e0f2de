// Request ids (X-Request-Id): every HTTP request has one, kept from the client when it is
// sane, made here otherwise; the answer echoes it and the request's log lines carry it.
#pragma once

#include <string>
#include <string_view>

namespace mmchat::http {

inline constexpr std::string_view kRequestIdHeader = "X-Request-Id";

// The longest client id kept.
inline constexpr size_t kMaxRequestIdBytes = 128;

// 1 to kMaxRequestIdBytes visible ASCII characters (`!` to `~`: no spaces, no control
// characters, nothing beyond ASCII), so that the id is one word in any log and header.
bool SaneRequestId(std::string_view id);

// A new id: 32 lowercase hex digits (128 random bits, the shape of a W3C trace id). Unique,
// not secret: drawn from a per-thread generator seeded by std::random_device.
std::string NewRequestId();

// `incoming` (the request's X-Request-Id, empty when absent) when sane, else a new id.
std::string RequestIdFor(std::string_view incoming);

}  // namespace mmchat::http
