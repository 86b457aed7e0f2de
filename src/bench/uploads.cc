// `uploads`: attachments' throughput and memory (issue 14). First --rounds times, one file of
// --size bytes is uploaded (POST /api/uploads) and downloaded again (GET /api/uploads/:id) on
// one connection, the bytes compared; reported per direction and together (the bytes moved
// both ways over the time of both). Then --concurrent uploads of --size bytes run at once, each
// on a connection of its own, while the server's RSS is sampled every 5 ms: its growth over
// the RSS before is what the uploads cost the server in memory.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "bench/scenarios.h"

namespace mmchat::bench {

namespace net = boost::asio;
namespace bhttp = boost::beast::http;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;

namespace {

double Since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// One keep-alive connection making blocking calls.
class Connection {
 public:
  explicit Connection(const Target& t) : socket_(ioc_) {
    tcp::resolver resolver(ioc_);
    net::connect(socket_, resolver.resolve(t.host, std::to_string(t.port)));
    socket_.set_option(tcp::no_delay(true));
    buffer_.reserve(64 * 1024);  // Beast reads at most the free room at a time
  }

  // The upload's id; throws on anything but 201.
  std::string Upload(const std::string& token, const std::string& bytes) {
    bhttp::request<bhttp::span_body<const char>> req{bhttp::verb::post, "/api/uploads", 11};
    req.set(bhttp::field::host, "127.0.0.1");
    req.set(bhttp::field::authorization, "Bearer " + token);
    req.set(bhttp::field::content_type, "application/octet-stream");
    req.body() = {bytes.data(), bytes.size()};
    req.prepare_payload();
    bhttp::write(socket_, req);
    bhttp::response<bhttp::string_body> res;
    bhttp::read(socket_, buffer_, res);
    if (res.result_int() != 201) {
      throw std::runtime_error("upload: " + std::to_string(res.result_int()) + " " + res.body());
    }
    return Json::parse(res.body()).at("id").get<std::string>();
  }

  // The upload's bytes; throws on anything but 200.
  std::string Download(const std::string& token, const std::string& id) {
    bhttp::request<bhttp::empty_body> req{bhttp::verb::get, "/api/uploads/" + id, 11};
    req.set(bhttp::field::host, "127.0.0.1");
    req.set(bhttp::field::authorization, "Bearer " + token);
    bhttp::write(socket_, req);
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(std::numeric_limits<std::uint64_t>::max());
    bhttp::read(socket_, buffer_, parser);
    if (parser.get().result_int() != 200) {
      throw std::runtime_error("download: " + std::to_string(parser.get().result_int()));
    }
    return std::move(parser.get().body());
  }

 private:
  net::io_context ioc_;
  tcp::socket socket_;
  boost::beast::flat_buffer buffer_;
};

}  // namespace

int RunUploads(const UploadsOptions& o, const std::vector<Account>& accounts) {
  if (o.size < 1 || o.rounds < 1 || o.concurrent < 0) {
    std::fprintf(stderr, "uploads needs --size, --rounds >= 1\n");
    return 2;
  }
  const Account& user = accounts[0];
  std::string bytes(static_cast<size_t>(o.size), '\0');
  std::mt19937_64 rng(7);  // incompressible, like photos and archives
  for (size_t i = 0; i + 8 <= bytes.size(); i += 8) {
    const uint64_t v = rng();
    std::memcpy(&bytes[i], &v, 8);
  }
  const double mb = static_cast<double>(o.size) / 1e6;

  // 1. One upload and its download at a time.
  std::vector<double> up_s, down_s;
  int64_t mismatches = 0;
  Connection conn(o.target);
  for (int r = 0; r < o.rounds; ++r) {
    auto start = Clock::now();
    const std::string id = conn.Upload(user.token, bytes);
    up_s.push_back(Since(start));
    start = Clock::now();
    const std::string back = conn.Download(user.token, id);
    down_s.push_back(Since(start));
    if (back != bytes) ++mismatches;
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  const double up = median(up_s), down = median(down_s);
  std::vector<double> both;
  for (size_t i = 0; i < up_s.size(); ++i) both.push_back(up_s[i] + down_s[i]);
  const double round_trip = median(both);
  std::printf("%10s %12s %12s %12s %14s %10s\n", "MB", "upload MB/s", "download MB/s", "both MB/s",
              "file MB/s", "mismatches");
  std::printf("%10.1f %12.0f %12.0f %12.0f %14.0f %10lld\n", mb, mb / up, mb / down,
              2 * mb / round_trip, mb / round_trip, static_cast<long long>(mismatches));

  // 2. Many at once, the server's RSS sampled meanwhile.
  Json concurrent = nullptr;
  if (o.concurrent > 0) {
    const int64_t rss_before = o.server_pid ? RssKib(o.server_pid) : -1;
    std::atomic<int64_t> rss_peak{rss_before};
    std::atomic<bool> done{false};
    std::thread sampler([&] {
      while (!done && o.server_pid) {
        rss_peak = std::max<int64_t>(rss_peak, RssKib(o.server_pid));
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    });
    std::atomic<int64_t> failed{0};
    std::vector<std::thread> uploaders;
    const auto start = Clock::now();
    for (int i = 0; i < o.concurrent; ++i) {
      uploaders.emplace_back([&] {
        try {
          Connection c(o.target);
          c.Upload(user.token, bytes);
        } catch (const std::exception& e) {
          std::fprintf(stderr, "concurrent upload failed: %s\n", e.what());
          ++failed;
        }
      });
    }
    for (auto& t : uploaders) t.join();
    const double seconds = Since(start);
    done = true;
    sampler.join();
    const double growth_mib =
        rss_before < 0 ? -1 : static_cast<double>(rss_peak - rss_before) / 1024.0;
    std::printf("%10s %12s %14s %14s %14s %8s\n", "uploads", "seconds", "MB/s in all",
                "RSS before MiB", "RSS growth MiB", "failed");
    std::printf("%10d %12.2f %14.0f %14.1f %14.1f %8lld\n", o.concurrent, seconds,
                mb * o.concurrent / seconds, static_cast<double>(rss_before) / 1024.0, growth_mib,
                static_cast<long long>(failed.load()));
    concurrent = {{"uploads", o.concurrent},
                  {"seconds", seconds},
                  {"mb_per_sec", mb * o.concurrent / seconds},
                  {"rss_before_kib", rss_before},
                  {"rss_peak_kib", rss_peak.load()},
                  {"rss_growth_mib", growth_mib},
                  {"failed", failed.load()}};
    if (failed > 0) mismatches += failed;
  }
  std::cout << Json{{"scenario", "uploads"},
                    {"bytes", o.size},
                    {"rounds", o.rounds},
                    {"upload_mb_per_sec", mb / up},
                    {"download_mb_per_sec", mb / down},
                    {"both_mb_per_sec", 2 * mb / round_trip},
                    {"file_mb_per_sec", mb / round_trip},
                    {"mismatches", mismatches},
                    {"concurrent", concurrent}}
                   .dump()
            << std::endl;
  return mismatches == 0 ? 0 : 1;
}

}  // namespace mmchat::bench
