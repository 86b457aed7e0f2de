// The server's log: spdlog's default logger on standard output (a command's, such as `user
// list` or `backup`, on standard error, so that its output stays clean), in LOG_FORMAT.
//
//   text: `2026-12-05T10:00:00.123Z info <message> key=value ...`, the fields of
//         common/log_context.h after the message (a value with spaces, quotes or control
//         characters as a JSON string).
//   json: one object per line for log shippers:
//         {"ts":"2026-12-05T10:00:00.123Z","level":"info","msg":"...","request_id":"...",...},
//         the same fields as members (numbers as numbers); levels are trace, debug, info, warn,
//         error and critical.
#pragma once

#include <spdlog/formatter.h>

#include <cstdio>
#include <memory>
#include <string_view>

namespace mmchat::app {

// Sets the default logger's level (LOG_LEVEL: debug, info, warn or error) and format
// (LOG_FORMAT: text or json), on `out` (stdout or stderr). Lines of info and above reach the
// output at once.
void SetUpLogging(std::string_view level, std::string_view format, std::FILE* out = stdout);

// The formatter of a LOG_FORMAT (text for anything but "json").
std::unique_ptr<spdlog::formatter> MakeLogFormatter(std::string_view format);

}  // namespace mmchat::app
