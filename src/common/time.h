// Wall-clock helpers. The server stores and compares times as milliseconds since the Unix
// epoch (UTC) and formats them as RFC 3339 with milliseconds only at the edges.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace mmchat {

using TimeMs = int64_t;

// Current wall-clock time in milliseconds since the epoch.
TimeMs NowMs();

// Milliseconds on a monotonic clock, for deadlines and silences: it never jumps with NTP.
TimeMs SteadyMs();

// "2026-11-23T10:00:00.123Z".
inline constexpr size_t kRfc3339Length = 24;
std::string FormatRfc3339(TimeMs t);
// The same into `out` (kRfc3339Length chars, no terminator): no allocation, for JSON writers.
void FormatRfc3339(TimeMs t, char* out);

}  // namespace mmchat
