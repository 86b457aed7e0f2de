#include "app/logging.h"

#include <rapidjson/writer.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <mutex>
#include <string>

#include "common/log_context.h"
#include "common/time.h"
#include "common/utf8.h"

namespace mmchat::app {
namespace {

// RapidJSON's writer straight into spdlog's line buffer: no string in between.
struct LineStream {
  using Ch = char;
  spdlog::memory_buf_t& out;
  void Put(char c) { out.push_back(c); }
  void Flush() {}
};
using LineWriter = rapidjson::Writer<LineStream>;

// A JSON string of `s`. Text that is not valid UTF-8 (a client's bytes quoted in a message)
// goes as LogSafe shows it, with the bad bytes as `\xNN`: a JSON line must be UTF-8.
void String(LineWriter& w, std::string_view s) {
  if (Utf8Length(s)) {
    w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
    return;
  }
  const std::string safe = LogSafe(s, s.size());
  w.String(safe.data(), static_cast<rapidjson::SizeType>(safe.size()));
}

void Value(LineWriter& w, const log::Field& f) {
  if (const auto* s = std::get_if<std::string_view>(&f.value)) return String(w, *s);
  if (const auto* i = std::get_if<int64_t>(&f.value)) {
    w.Int64(*i);
    return;
  }
  w.Double(std::get<double>(f.value));
}

std::string_view LevelName(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace:
      return "trace";
    case spdlog::level::debug:
      return "debug";
    case spdlog::level::info:
      return "info";
    case spdlog::level::warn:
      return "warn";
    case spdlog::level::err:
      return "error";
    case spdlog::level::critical:
      return "critical";
    default:
      return "off";
  }
}

class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    LineStream stream{dest};
    LineWriter w(stream);
    char ts[kRfc3339Length];
    FormatRfc3339(
        std::chrono::duration_cast<std::chrono::milliseconds>(msg.time.time_since_epoch()).count(),
        ts);
    w.StartObject();
    w.Key("ts");
    w.String(ts, kRfc3339Length);
    w.Key("level");
    String(w, LevelName(msg.level));
    w.Key("msg");
    String(w, std::string_view(msg.payload.data(), msg.payload.size()));
    if (const std::string_view id = log::CurrentRequestId(); !id.empty()) {
      w.Key("request_id");
      String(w, id);
    }
    for (const log::Field& f : log::CurrentFields()) {
      w.Key(f.key.data(), static_cast<rapidjson::SizeType>(f.key.size()));
      Value(w, f);
    }
    w.EndObject();
    dest.push_back('\n');
  }

  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

// A text value as it is when it reads as one word, else as a JSON string.
void AppendText(spdlog::memory_buf_t& dest, std::string_view s) {
  bool plain = !s.empty();
  for (char c : s) {
    if (c <= ' ' || c > '~' || c == '"' || c == '\\' || c == '=') {
      plain = false;
      break;
    }
  }
  if (plain) {
    dest.append(s.data(), s.data() + s.size());
    return;
  }
  LineStream stream{dest};
  LineWriter w(stream);
  String(w, s);
}

// `%*` in the text pattern: the request id and the fields after the message.
class ContextFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg&, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    if (const std::string_view id = log::CurrentRequestId(); !id.empty()) {
      Key(dest, "request_id");
      AppendText(dest, id);
    }
    for (const log::Field& f : log::CurrentFields()) {
      Key(dest, f.key);
      if (const auto* s = std::get_if<std::string_view>(&f.value)) {
        AppendText(dest, *s);
      } else if (const auto* i = std::get_if<int64_t>(&f.value)) {
        fmt::format_to(std::back_inserter(dest), "{}", *i);
      } else {
        fmt::format_to(std::back_inserter(dest), "{}", std::get<double>(f.value));
      }
    }
  }

  std::unique_ptr<spdlog::custom_flag_formatter> clone() const override {
    return std::make_unique<ContextFlag>();
  }

 private:
  static void Key(spdlog::memory_buf_t& dest, std::string_view key) {
    dest.push_back(' ');
    dest.append(key.data(), key.data() + key.size());
    dest.push_back('=');
  }
};

// Standard output or error when it is a file or a pipe (a service's log), through stdio's
// buffer: the loggers say when to flush (SetUpLogging). spdlog's own stdout sinks flush every
// line.
class StdioSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit StdioSink(std::FILE* out) : out_(out) {}

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t line;
    formatter_->format(msg, line);
    std::fwrite(line.data(), 1, line.size(), out_);
  }
  void flush_() override { std::fflush(out_); }

 private:
  std::FILE* out_;
};

}  // namespace

std::unique_ptr<spdlog::formatter> MakeLogFormatter(std::string_view format) {
  if (format == "json") return std::make_unique<JsonFormatter>();
  auto text = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
  text->add_flag<ContextFlag>('*').set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%l%$ %v%*");
  return text;
}

void SetUpLogging(std::string_view level, std::string_view format, std::FILE* out) {
  // A terminal gets spdlog's colours, a line at a time; anything else the buffered sink.
  spdlog::sink_ptr sink;
  if (!isatty(fileno(out))) {
    sink = std::make_shared<StdioSink>(out);
  } else if (out == stderr) {
    sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  } else {
    sink = std::make_shared<spdlog::sinks::stdout_color_sink_mt>();
  }
  sink->set_formatter(MakeLogFormatter(format));
  auto general = std::make_shared<spdlog::logger>("", sink);
  auto access = std::make_shared<spdlog::logger>(std::string(log::kAccessLogger), sink);
  general->set_level(spdlog::level::from_str(std::string(level)));
  access->set_level(general->level());
  // Every line at once (codes and start-up lines must be seen at once), but the access log's
  // below warn: those wait in the buffer for the next other line, a full buffer or the flush
  // every second, so that tens of thousands of requests a second cost a write of a few
  // kilobytes now and then instead of a system call each.
  general->flush_on(spdlog::level::trace);
  access->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(general);
  spdlog::drop(std::string(log::kAccessLogger));  // set up twice (tests): the newer one
  spdlog::register_logger(access);
  spdlog::flush_every(std::chrono::seconds(1));  // the access log's buffered lines
}

}  // namespace mmchat::app
