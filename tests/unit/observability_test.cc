// Observability parts: the log formatters (app/logging.h) with a line's request id and fields
// (common/log_context.h), request ids (http/request_id.h), LOG_FORMAT and ACCESS_LOG, and the
// message writer's metrics (store/common/group_commit.h).
#include <gtest/gtest.h>
#include <spdlog/details/log_msg.h>

#include <future>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "app/config.h"
#include "app/logging.h"
#include "common/log_context.h"
#include "http/request_id.h"
#include "metrics/registry.h"
#include "store/common/group_commit.h"

namespace mmchat {
namespace {

using Json = nlohmann::json;

std::string Format(std::string_view format, spdlog::level::level_enum level,
                   std::string_view text) {
  auto formatter = app::MakeLogFormatter(format);
  spdlog::details::log_msg msg("", level, spdlog::string_view_t(text.data(), text.size()));
  msg.time = std::chrono::system_clock::time_point(std::chrono::milliseconds(1796464800123));
  spdlog::memory_buf_t out;
  formatter->format(msg, out);
  return std::string(out.data(), out.size());
}

TEST(LogFormatTest, JsonIsOneObjectPerLine) {
  const std::string line = Format("json", spdlog::level::warn, "a \"quoted\"\nline\t\\ \x01");
  ASSERT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1);  // the newline in the text is escaped
  const Json j = Json::parse(line);
  EXPECT_EQ(j, (Json{{"ts", "2026-12-05T10:00:00.123Z"},
                     {"level", "warn"},
                     {"msg", "a \"quoted\"\nline\t\\ \x01"}}));
  EXPECT_EQ(Json::parse(Format("json", spdlog::level::err, "x"))["level"], "error");
  EXPECT_EQ(Json::parse(Format("json", spdlog::level::critical, "x"))["level"], "critical");
}

TEST(LogFormatTest, JsonKeepsInvalidUtf8Readable) {
  const std::string line = Format("json", spdlog::level::info, "bad \xff\xfe bytes");
  const Json j = Json::parse(line);  // valid UTF-8 JSON
  EXPECT_EQ(j["msg"], "bad \\xff\\xfe bytes");
}

TEST(LogFormatTest, JsonCarriesTheRequestIdAndFields) {
  const log::Field fields[] = {{"method", std::string_view("GET")},
                               {"path", std::string_view("/a \"b\"")},
                               {"status", int64_t{404}},
                               {"duration_ms", 1.25}};
  const log::RequestScope request("req-1");
  std::string line;
  {
    const log::FieldsScope with(fields);
    line = Format("json", spdlog::level::info, "request");
  }
  EXPECT_EQ(Json::parse(line), (Json{{"ts", "2026-12-05T10:00:00.123Z"},
                                     {"level", "info"},
                                     {"msg", "request"},
                                     {"request_id", "req-1"},
                                     {"method", "GET"},
                                     {"path", "/a \"b\""},
                                     {"status", 404},
                                     {"duration_ms", 1.25}}));
  // Fields last only for their line; the request id for the scope.
  EXPECT_EQ(Json::parse(Format("json", spdlog::level::info, "next")),
            (Json{{"ts", "2026-12-05T10:00:00.123Z"},
                  {"level", "info"},
                  {"msg", "next"},
                  {"request_id", "req-1"}}));
}

TEST(LogFormatTest, TextPutsFieldsAfterTheMessage) {
  EXPECT_EQ(Format("text", spdlog::level::info, "hello"), "2026-12-05T10:00:00.123Z info hello\n");
  const log::Field fields[] = {{"route", std::string_view("GET /api/me")},
                               {"path", std::string_view("/api/me")},
                               {"empty", std::string_view("")},
                               {"status", int64_t{200}},
                               {"duration_ms", 0.5}};
  const log::RequestScope request("abc");
  const log::FieldsScope with(fields);
  EXPECT_EQ(Format("text", spdlog::level::info, "request"),
            "2026-12-05T10:00:00.123Z info request request_id=abc route=\"GET /api/me\" "
            "path=/api/me empty=\"\" status=200 duration_ms=0.5\n");
}

TEST(LogConfigTest, FormatAndAccessLog) {
  auto get = [](std::map<std::string, std::string> env) {
    return [env](const char* name) -> std::optional<std::string> {
      auto it = env.find(name);
      if (it == env.end()) return std::nullopt;
      return it->second;
    };
  };
  auto defaults = app::LoadConfig(get({}), {});
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(defaults->log_format, "text");
  EXPECT_TRUE(defaults->access_log);
  auto set = app::LoadConfig(get({{"LOG_FORMAT", "json"}, {"ACCESS_LOG", "off"}}), {});
  ASSERT_TRUE(set.ok());
  EXPECT_EQ(set->log_format, "json");
  EXPECT_FALSE(set->access_log);
  for (const auto& [name, value] : std::map<std::string, std::string>{
           {"LOG_FORMAT", "JSON"}, {"LOG_FORMAT", "logfmt"}, {"ACCESS_LOG", "yes"}}) {
    auto bad = app::LoadConfig(get({{name, value}}), {});
    ASSERT_FALSE(bad.ok()) << name << "=" << value;
    EXPECT_EQ(bad.status().message().rfind(name + ":", 0), 0u) << bad.status().message();
  }
}

TEST(RequestIdPartsTest, SaneIdsAreKept) {
  EXPECT_TRUE(http::SaneRequestId("a"));
  EXPECT_TRUE(http::SaneRequestId("!~\"'{}[]<>"));
  EXPECT_TRUE(http::SaneRequestId(std::string(128, 'x')));
  EXPECT_EQ(http::RequestIdFor("trace-1"), "trace-1");
  for (const std::string& bad : {std::string(), std::string(129, 'x'), std::string("a b"),
                                 std::string("a\tb"), std::string("a\nb"), std::string("\x7f"),
                                 std::string("caf\xc3\xa9"), std::string("nul\0x", 5)}) {
    EXPECT_FALSE(http::SaneRequestId(bad)) << bad;
    EXPECT_NE(http::RequestIdFor(bad), bad);
  }
}

TEST(RequestIdPartsTest, NewIdsAreHexAndDistinct) {
  static const std::regex kHex("^[0-9a-f]{32}$");
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    const std::string id = http::NewRequestId();
    ASSERT_TRUE(std::regex_match(id, kHex)) << id;
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 1000u);
}

TEST(WriterMetricsTest, BatchesCommitTimesAndFailuresAreCounted) {
  metrics::Registry registry;
  std::atomic<bool> fail{false};
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<int> batches{0};
  store::GroupCommitWriter writer(
      [&](const std::vector<store::Write>& batch) {
        if (batches++ == 0) released.wait();  // the first batch holds the writer
        store::GroupCommitWriter::Committed out;
        for (size_t i = 0; i < batch.size(); ++i) {
          if (fail) {
            out.results.emplace_back(Status::Unavailable("database error"));
          } else {
            out.results.emplace_back(
                store::Written(domain::StoredAppend{domain::AppendOutcome::kCreated, {}}));
          }
        }
        out.committed = !fail;
        return out;
      },
      "metricstest", nullptr, &registry);
  std::atomic<int> answered{0};
  auto append = [&] {
    writer.Append(domain::NewMessage{}, [&](Result<domain::StoredAppend>) { ++answered; });
  };
  append();  // taken alone; the writer then waits in it
  while (batches == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  for (int i = 0; i < 7; ++i) append();  // queued behind it: one batch of 7
  std::string text = registry.Render();
  EXPECT_NE(text.find("mmchat_writer_queue_depth 7\n"), std::string::npos) << text;
  release.set_value();
  ASSERT_TRUE(writer.WaitForAppends(std::chrono::seconds(5)));
  fail = true;
  append();
  ASSERT_TRUE(writer.WaitForAppends(std::chrono::seconds(5)));
  EXPECT_EQ(answered, 9);

  text = registry.Render();
  for (const char* line : {"mmchat_writer_batch_size_count 3", "mmchat_writer_batch_size_sum 9",
                           "mmchat_writer_batch_size_bucket{le=\"1\"} 2",
                           "mmchat_writer_batch_size_bucket{le=\"4\"} 2",
                           "mmchat_writer_batch_size_bucket{le=\"8\"} 3",
                           "mmchat_writer_commit_duration_seconds_count 3",
                           "mmchat_writer_queue_depth 0", "mmchat_writer_failed_batches_total 1"}) {
    EXPECT_NE(text.find(std::string(line) + "\n"), std::string::npos) << line << "\n" << text;
  }
}

}  // namespace
}  // namespace mmchat
