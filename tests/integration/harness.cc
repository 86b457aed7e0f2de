#include "harness.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <cerrno>
#include <fstream>
#include <mutex>
#include <random>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#include "bench/stats.h"
#include "test_postgres.h"
#include "test_redis.h"

namespace mmchat::test {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = net::ip::tcp;

// ---------------------------------------------------------------------------------------------
// HttpResult / HttpClient
// ---------------------------------------------------------------------------------------------

std::string HttpResult::ErrorCode() const {
  if (json.is_object() && json.contains("error") && json["error"].is_object() &&
      json["error"].contains("code") && json["error"]["code"].is_string()) {
    return json["error"]["code"].get<std::string>();
  }
  return "";
}

std::string PercentEncode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);  // unreserved: the same either way, and a third the size
    } else {
      out += {'%', kHex[c >> 4], kHex[c & 15]};
    }
  }
  return out;
}

void ExpectError(const HttpResult& r, int status, const std::string& code) {
  EXPECT_EQ(r.status, status) << r.body;
  EXPECT_EQ(r.ErrorCode(), code) << r.body;
  // Checked step by step: operator[] on a body that is not the error object would abort.
  const bool has_message = r.json.is_object() && r.json.contains("error") &&
                           r.json["error"].is_object() && r.json["error"].contains("message") &&
                           r.json["error"]["message"].is_string();
  EXPECT_TRUE(has_message) << r.body;
  ASSERT_TRUE(r.headers.contains("content-type")) << r.body;
  EXPECT_EQ(r.headers.at("content-type"), "application/json");
}

HttpResult ToResult(const boost::beast::http::response<boost::beast::http::string_body>& res) {
  HttpResult out;
  out.status = static_cast<int>(res.result_int());
  out.body = res.body();
  for (const auto& f : res) {
    std::string name(f.name_string());
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out.headers[name] = std::string(f.value());
  }
  out.json = Json::parse(out.body, nullptr, false);
  if (out.json.is_discarded()) out.json = nullptr;
  return out;
}

struct HttpClient::Impl {
  uint16_t port;
  net::io_context ioc;
  std::optional<beast::tcp_stream> stream;
  beast::flat_buffer buffer;

  void Connect() {
    stream.emplace(ioc);
    stream->connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
    buffer.clear();
  }

  // Whether the kept-alive connection was closed by the server while idle (end of stream or
  // an error waiting on it). Bytes on an idle connection answer no request: a failure.
  bool ClosedWhileIdle() {
    if (buffer.size() > 0) throw std::runtime_error("HTTP: bytes after the previous response");
    pollfd p{stream->socket().native_handle(), POLLIN, 0};
    if (::poll(&p, 1, 0) <= 0) return false;
    char c = 0;
    const ssize_t n = ::recv(p.fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0) throw std::runtime_error("HTTP: unsolicited bytes on an idle connection");
    return n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
  }
};

HttpClient::HttpClient(uint16_t port) : impl_(std::make_unique<Impl>()) { impl_->port = port; }
HttpClient::~HttpClient() = default;

HttpResult HttpClient::Request(const std::string& method, const std::string& target,
                               const std::string& body, const std::string& token,
                               const std::map<std::string, std::string>& headers) {
  bhttp::request<bhttp::string_body> req{bhttp::string_to_verb(method), target, 11};
  req.set(bhttp::field::host, "127.0.0.1");
  if (!body.empty()) req.set(bhttp::field::content_type, "application/json");
  if (!token.empty()) req.set(bhttp::field::authorization, "Bearer " + token);
  for (const auto& [k, v] : headers) req.set(k, v);
  req.body() = body;
  req.prepare_payload();

  const auto fail = [&](const beast::error_code& ec) {
    impl_->stream.reset();
    return std::runtime_error("HTTP " + method + " " + target + " failed: " + ec.message());
  };
  if (impl_->stream && (!impl_->stream->socket().is_open() || impl_->ClosedWhileIdle())) {
    impl_->stream.reset();
  }
  const bool reused = impl_->stream.has_value();
  if (!reused) impl_->Connect();
  beast::error_code ec;
  const size_t written = bhttp::write(*impl_->stream, req, ec);
  if (ec && written == 0 && reused) {
    // Closed between the check and the write, before any byte of the request went out: the
    // one case where sending it again on a new connection cannot send it twice.
    impl_->Connect();
    ec = {};
    bhttp::write(*impl_->stream, req, ec);
  }
  if (ec) throw fail(ec);
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(64 * 1024 * 1024);
  bhttp::read(*impl_->stream, impl_->buffer, parser, ec);
  if (ec) throw fail(ec);
  auto res = parser.release();
  if (!res.keep_alive()) impl_->stream.reset();
  HttpResult out = ToResult(res);
  RecordHttp(method, target, out);
  return out;
}

// ---------------------------------------------------------------------------------------------
// The API record
// ---------------------------------------------------------------------------------------------

namespace {

constexpr int kApiRecordPerKey = 100;
constexpr size_t kApiRecordMaxBytes = size_t{16} << 20;

// MMCHAT_TEST_BUILD (harness.h, ServerBinary), or "" when unset.
std::string TestBuild() {
  const char* set = std::getenv("MMCHAT_TEST_BUILD");
  return set != nullptr ? set : "";
}

struct ApiRecorder {
  std::mutex mu;
  bool enabled = false;  // set once, before any use: read without the lock
  int fd = -1;           // -1: not recording
  size_t written = 0;
  std::unordered_map<std::string, int> counts;

  ApiRecorder() {
    const char* dir = std::getenv("MMCHAT_API_RECORD");
    if (dir == nullptr || *dir == '\0') return;
    // The record is of this build's server (the api stage reads it); a run against another
    // build's (MMCHAT_TEST_BUILD, a sanitizer stage) would only add to it.
    if (!TestBuild().empty()) return;
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    const auto path = std::filesystem::path(dir) / (std::to_string(getpid()) + ".jsonl");
    // O_CLOEXEC: the servers the tests start must not inherit it (their descriptors are counted).
    fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) std::fprintf(stderr, "MMCHAT_API_RECORD: cannot open %s\n", path.c_str());
    enabled = fd >= 0;
  }
};

ApiRecorder& Recorder() {
  static ApiRecorder recorder;
  return recorder;
}

// The key's form of a path: segments other than lower-case words (ids, upload ids, emoji)
// become "*", so that each route counts once whatever it was called with.
std::string PathShape(std::string_view path) {
  std::string out;
  for (size_t at = 0; at < path.size();) {
    const size_t end = std::min(path.find('/', at + 1), path.size());
    const std::string_view seg = path.substr(at, end - at);
    const bool word = std::all_of(seg.begin(), seg.end(), [](char c) {
      return (c >= 'a' && c <= 'z') || c == '/' || c == '-' || c == '.' || c == '_';
    });
    out += word ? std::string(seg) : "/*";
    at = end;
  }
  return out;
}

}  // namespace

void RecordApi(const std::string& key, const std::function<Json()>& make) {
  ApiRecorder& r = Recorder();
  if (!r.enabled) return;
  // The harness's own tests (Harness*) talk to fake peers, not to the server.
  const auto* test = ::testing::UnitTest::GetInstance()->current_test_info();
  if (test != nullptr && std::string_view(test->test_suite_name()).starts_with("Harness")) return;
  {
    std::lock_guard lock(r.mu);
    if (r.fd < 0 || r.written >= kApiRecordMaxBytes || ++r.counts[key] > kApiRecordPerKey) return;
  }
  const Json line = make();
  if (line.is_null()) return;
  const std::string text = line.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n";
  std::lock_guard lock(r.mu);
  if (r.fd < 0) return;
  // One write per line: a test process that dies leaves whole lines behind.
  if (::write(r.fd, text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    std::fprintf(stderr, "MMCHAT_API_RECORD: a write failed; recording stops\n");
    ::close(r.fd);
    r.fd = -1;
    return;
  }
  r.written += text.size();
}

void RecordHttp(const std::string& method, const std::string& target, const HttpResult& r) {
  if (r.status == 0 || !Recorder().enabled) return;
  const std::string path = target.substr(0, target.find('?'));
  RecordApi("http " + method + " " + PathShape(path) + " " + std::to_string(r.status), [&] {
    Json line = {{"kind", "http"}, {"method", method}, {"path", path}, {"status", r.status}};
    const auto type = r.headers.find("content-type");
    if (type != r.headers.end()) {
      line["content_type"] = type->second;
      // An empty body (a 204's) is no JSON: recorded as absent, not as null.
      if (type->second.rfind("application/json", 0) == 0 && !r.body.empty()) {
        line["body"] = r.json;
      }
    }
    return line;
  });
}

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

std::filesystem::path MakeTempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base ? base : "/tmp") + "/mmchat-test-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  return tmpl;
}

uint16_t FreePort() {
  net::io_context ioc;
  tcp::acceptor a(ioc, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
  return a.local_endpoint().port();
}

namespace {

std::string ReadFile(const std::filesystem::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Starts the binary in `dir` with exactly `env` (plus PATH), output to dir/server.log, with
// its open-file limit (soft and hard) lowered to `open_files` when not 0.
pid_t Spawn(const std::vector<std::string>& args, const std::map<std::string, std::string>& env,
            const std::filesystem::path& dir, const std::filesystem::path& log,
            const std::string& program = ServerBinary(), rlim_t open_files = 0) {
  std::vector<std::string> argv_s = {program};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<std::string> env_s = {"PATH=/usr/bin:/bin"};
  for (const auto& [k, v] : env) env_s.push_back(k + "=" + v);
  // Sanitizer options pass through, so that a sanitized server's reports land where the test
  // run asked for them (e.g. ASAN_OPTIONS=log_path=...).
  for (const char* name : {"ASAN_OPTIONS", "UBSAN_OPTIONS", "TSAN_OPTIONS", "LSAN_OPTIONS"}) {
    if (const char* v = std::getenv(name); v != nullptr && env.count(name) == 0) {
      env_s.push_back(std::string(name) + "=" + v);
    }
  }
  std::vector<char*> argv, envp;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);

  const pid_t pid = fork();
  if (pid == 0) {
    // A test binary that dies (an abort) must not leave its servers running.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (chdir(dir.c_str()) != 0) _exit(126);
    const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) _exit(126);
    dup2(fd, 1);
    dup2(fd, 2);
    if (open_files > 0) {
      const rlimit lim{open_files, open_files};
      if (setrlimit(RLIMIT_NOFILE, &lim) != 0) _exit(126);
    }
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  return pid;
}

int DecodeWaitStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace

RunResult RunBinary(const std::vector<std::string>& args,
                    const std::map<std::string, std::string>& env,
                    const std::filesystem::path& dir) {
  return RunProgram(ServerBinary(), args, env, dir);
}

RunResult RunProgram(const std::string& program, const std::vector<std::string>& args,
                     const std::map<std::string, std::string>& env,
                     const std::filesystem::path& dir) {
  const auto log = dir / "run.log";
  std::filesystem::remove(log);
  const pid_t pid = Spawn(args, env, dir, log, program);
  int status = 0;
  waitpid(pid, &status, 0);
  return {DecodeWaitStatus(status), ReadFile(log)};
}

TestServer::TestServer(ServerOptions options) {
  dir_ = options.dir.empty() ? MakeTempDir() : options.dir;
  own_dir_ = options.dir.empty();
  if (!options.dotenv.empty()) std::ofstream(dir_ / ".env") << options.dotenv;
  std::map<std::string, std::string> env = {
      {"HTTP_ADDR", "127.0.0.1:0"},
      {"JWT_SECRET", "integration-test-secret-0123456789"},
      {"HTTP_THREADS", "2"},
      {"WORKER_THREADS", "2"},
  };
  // A server given its database (a node of a cluster) makes none of its own.
  if (!options.env.contains("DATABASE_URL")) env.merge(StoreEnv(dir_));
  const bool split = SplitNodes() && options.split;
  if (split) {
    redis_ = std::make_unique<TestRedis>();
    if (!redis_->ok()) throw std::runtime_error("the Redis joining the two nodes did not start");
    env["REDIS_URL"] = "redis://127.0.0.1:" + std::to_string(redis_->port());
  }
  for (const auto& [k, v] : options.env) {
    if (v.empty()) {
      env.erase(k);  // an empty override removes a default
    } else {
      env[k] = v;
    }
  }
  // A restart in the same directory appends to the same log: look only at this run's part.
  std::error_code size_ec;
  const auto offset = std::filesystem::file_size(dir_ / "server.log", size_ec);
  const size_t start = size_ec ? 0 : static_cast<size_t>(offset);
  log_start_ = start;
  expected_errors_ = options.expected_errors;
  pid_ = Spawn(options.args, env, dir_, dir_ / "server.log", ServerBinary(), options.open_files);
  if (!options.wait_ready) return;
  auto ready = [&] { return OwnLog().find("listening on http://", start) != std::string::npos; };
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!ready() && !Reap(WNOHANG) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (!ready()) {
    const std::string log = OwnLog();
    Stop(SIGKILL);
    throw std::runtime_error("server did not start:\n" + log);
  }
  static const std::regex kListen(R"(listening on http://[^ ]*:(\d+))");
  const std::string log = OwnLog().substr(start);
  std::optional<std::string> port;
  for (auto it = std::sregex_iterator(log.begin(), log.end(), kListen);
       it != std::sregex_iterator(); ++it) {
    port = (*it)[1];
  }
  if (!port) throw std::runtime_error("no port in log");
  port_ = static_cast<uint16_t>(std::stoi(*port));
  if (!split) return;
  // The second node: the same settings and database, a directory (and log) of its own.
  ServerOptions second = options;
  second.env = env;
  second.dir = dir_ / "ws-node";
  second.dotenv.clear();
  second.split = false;
  std::filesystem::create_directories(second.dir);
  auto ws_node = std::make_unique<TestServer>(second);
  // Both subscribed: what one node publishes from now on reaches the other.
  for (TestServer* node : {this, ws_node.get()}) {
    if (!node->WaitForLog("bus: subscribed to")) {
      const std::string log = node->OwnLog();
      Stop(SIGKILL);
      throw std::runtime_error("a node did not subscribe to the bus:\n" + log);
    }
  }
  ws_node_ = std::move(ws_node);
}

TestServer::~TestServer() {
  CheckAtTeardown();
  if (pid_ > 0) Stop(SIGKILL);
  ws_node_.reset();  // checked in turn, before the directory it lives in goes
  redis_.reset();
  if (own_dir_ && !::testing::Test::HasFailure()) DropStore(dir_);
  if (own_dir_ && !::testing::Test::HasFailure()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  } else if (own_dir_) {
    std::fprintf(stderr, "kept server directory %s\n", dir_.c_str());
  }
}

std::string TestServer::OwnLog() const { return ReadFile(dir_ / "server.log"); }

std::string TestServer::Log() const { return OwnLog() + (ws_node_ ? ws_node_->Log() : ""); }

namespace {

// A sanitizer's report (ASan, UBSan, TSan, LSan), wherever it is in the line.
bool IsSanitizerLine(const std::string& line) {
  for (const char* mark : {"ERROR: AddressSanitizer", "runtime error:", "WARNING: ThreadSanitizer",
                           "ERROR: LeakSanitizer", "ERROR: UndefinedBehaviorSanitizer"}) {
    if (line.find(mark) != std::string::npos) return true;
  }
  return false;
}

// An spdlog line of level error or critical ("<timestamp>Z error ...", or with LOG_FORMAT=json
// {"ts":"<timestamp>","level":"error",...}).
bool IsErrorLine(const std::string& line) {
  static const std::regex kLevel(R"(^\d{4}-\d\d-\d\dT[\d:.]+Z (error|critical) )");
  static const std::regex kJsonLevel(R"re(^\{"ts":"[^"]*","level":"(error|critical)")re");
  return std::regex_search(line, kLevel) || std::regex_search(line, kJsonLevel);
}

}  // namespace

void TestServer::CheckAtTeardown() {
  const bool check_end = !stopped_by_test_;
  if (check_end) {
    if (Reap(WNOHANG)) {
      ADD_FAILURE() << "the server exited by itself during the test, with "
                    << exit_code_.value_or(-1) << "; its log:\n"
                    << OwnLog().substr(log_start_);
    } else {
      // A graceful stop must be quick; bounded, so that a hang fails instead of timing out.
      kill(pid_, SIGTERM);
      const int code = WaitExit(std::chrono::seconds(30));
      if (code == -1) {
        ADD_FAILURE() << "the server did not exit within 30 s of SIGTERM at the end of the test";
        Stop(SIGKILL);
      } else if (code != 0) {
        ADD_FAILURE() << "the server exited with " << code
                      << " on SIGTERM at the end of the test; its log:\n"
                      << OwnLog().substr(log_start_);
      }
    }
  }
  const std::string log = OwnLog();
  std::istringstream in(log.substr(std::min(log_start_, log.size())));
  std::string unexpected;
  for (std::string line; std::getline(in, line);) {
    bool bad = IsSanitizerLine(line);
    if (!bad && check_end && IsErrorLine(line)) {
      bad = std::none_of(expected_errors_.begin(), expected_errors_.end(),
                         [&](const std::string& e) { return line.find(e) != std::string::npos; });
    }
    if (bad) unexpected += line + "\n";
  }
  if (!unexpected.empty()) {
    ADD_FAILURE() << "unexpected error or sanitizer lines in the server log (" << dir_.string()
                  << "/server.log):\n"
                  << unexpected;
  }
}

bool TestServer::WaitForBus(std::chrono::milliseconds timeout) const {
  if (!ws_node_) return true;
  auto metric = [](uint16_t port, const std::string& name) {
    const HttpResult r = HttpClient(port).Get("/metrics");
    return r.status == 200 ? MetricValue(r.body, name) : std::nullopt;
  };
  const auto published = metric(port_, "mmchat_bus_events_published_total");
  if (!published) return false;
  return Eventually(
      [&] {
        return metric(ws_node_->port(), "mmchat_bus_events_received_total").value_or(-1) >=
               *published;
      },
      timeout);
}

bool TestServer::WaitForLog(const std::string& needle, std::chrono::milliseconds timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (Log().find(needle) != std::string::npos) return true;
    if (Reap(WNOHANG)) return Log().find(needle) != std::string::npos;  // exited: last look
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

std::optional<std::string> TestServer::LatestCode(const std::string& email_in) const {
  std::string email = email_in;  // the server keeps emails in lower case
  for (char& c : email) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const std::regex line(
      "otp: to=" + std::regex_replace(email, std::regex(R"([.+*?^$()\[\]{}|\\])"), R"(\$&)") +
      R"( .* is (\d+))");
  std::optional<std::string> code;
  const std::string log = Log();
  for (auto it = std::sregex_iterator(log.begin(), log.end(), line); it != std::sregex_iterator();
       ++it) {
    code = (*it)[1];
  }
  return code;
}

bool TestServer::Reap(int options) const {
  if (pid_ <= 0) return true;
  int status = 0;
  if (waitpid(pid_, &status, options) != pid_) return false;
  exit_code_ = DecodeWaitStatus(status);
  pid_ = -1;
  return true;
}

int TestServer::Stop(int sig) {
  stopped_by_test_ = true;
  // Both nodes of a split server: the test stops the whole deployment.
  const int second = ws_node_ ? ws_node_->Stop(sig) : 0;
  if (pid_ > 0) {
    kill(pid_, sig);
    Reap(0);
  }
  const int first = exit_code_.value_or(-1);
  return first != 0 ? first : second;
}

int TestServer::WaitExit(std::chrono::milliseconds timeout) {
  stopped_by_test_ = true;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (Reap(WNOHANG)) return exit_code_.value_or(-1);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return -1;
}

// ---------------------------------------------------------------------------------------------
// Stores
// ---------------------------------------------------------------------------------------------

bool OnPostgres() {
  const char* store = std::getenv("MMCHAT_TEST_STORE");
  return store != nullptr && (std::string_view(store) == "postgres" || SplitNodes());
}

bool SplitNodes() {
  const char* store = std::getenv("MMCHAT_TEST_STORE");
  return store != nullptr && std::string_view(store) == "split";
}

const std::string& ServerBinary() {
  static const std::string binary = TestBuild().empty() ? MMCHAT_BINARY : TestBuild() + "/mmchat";
  return binary;
}

const std::string& BenchBinary() {
  static const std::string binary =
      TestBuild().empty() ? MMCHAT_BENCH_BINARY : TestBuild() + "/mmchat-bench";
  return binary;
}

// MMCHAT_ASAN or MMCHAT_TSAN when the tests themselves are built with AddressSanitizer or
// ThreadSanitizer. GCC defines __SANITIZE_*__; clang 14 only answers __has_feature.
#if defined(__SANITIZE_ADDRESS__)
#define MMCHAT_ASAN 1
#elif defined(__SANITIZE_THREAD__)
#define MMCHAT_TSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MMCHAT_ASAN 1
#elif __has_feature(thread_sanitizer)
#define MMCHAT_TSAN 1
#endif
#endif

Sanitizer ServerSanitizer() {
  static const Sanitizer sanitizer = [] {
    const char* set = std::getenv("MMCHAT_TEST_SANITIZER");
    if (set == nullptr || *set == '\0') {
#if defined(MMCHAT_ASAN)
      return Sanitizer::kAddress;
#elif defined(MMCHAT_TSAN)
      return Sanitizer::kThread;
#else
      return Sanitizer::kNone;
#endif
    }
    const std::string_view name = set;
    if (name == "address") return Sanitizer::kAddress;
    if (name == "thread") return Sanitizer::kThread;
    if (name == "none") return Sanitizer::kNone;
    std::fprintf(stderr, "MMCHAT_TEST_SANITIZER=%s: expected address, thread or none\n", set);
    std::abort();
  }();
  return sanitizer;
}

namespace {

// The directory's PostgreSQL database name, created on first use.
std::string DatabaseOf(const std::filesystem::path& dir) {
  const auto file = dir / "database_url";
  if (std::ifstream in(file); in) {
    std::string name;
    std::getline(in, name);
    if (!name.empty()) return name;
  }
  const std::string name = UniqueDatabaseName("mmchat_i");
  if (CreateTestDatabase(name).empty()) return "";
  std::ofstream(file) << name << "\n";
  return name;
}

}  // namespace

std::map<std::string, std::string> StoreEnv(const std::filesystem::path& dir) {
  if (!OnPostgres()) return {{"SQLITE_DSN", (dir / "chat.db").string()}};
  return {{"DATABASE_URL", WithDatabase(TestPostgresUrl(), DatabaseOf(dir))}};
}

std::vector<std::vector<std::string>> QueryStore(const std::filesystem::path& dir,
                                                 const std::string& sql) {
  if (OnPostgres()) return QueryAt(StoreEnv(dir).at("DATABASE_URL"), sql);
  std::vector<std::vector<std::string>> out;
  const auto path = dir / "chat.db";
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
    ADD_FAILURE() << "cannot open " << path << ": " << (db ? sqlite3_errmsg(db) : "");
    sqlite3_close(db);
    return out;
  }
  sqlite3_busy_timeout(db, 5000);
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
    ADD_FAILURE() << sql << ": " << sqlite3_errmsg(db);
  } else {
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      auto& row = out.emplace_back();
      for (int i = 0; i < sqlite3_column_count(st); ++i) {
        // Every byte, NULs included (a text or blob column), so that comparisons are exact.
        const auto* t = reinterpret_cast<const char*>(sqlite3_column_text(st, i));
        row.push_back(t ? std::string(t, static_cast<size_t>(sqlite3_column_bytes(st, i)))
                        : "NULL");
      }
    }
    if (rc != SQLITE_DONE) ADD_FAILURE() << sql << ": " << sqlite3_errmsg(db);
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return out;
}

std::string QueryStoreOne(const std::filesystem::path& dir, const std::string& sql) {
  auto rows = QueryStore(dir, sql);
  return rows.empty() || rows[0].empty() ? "" : rows[0][0];
}

TempDir::~TempDir() {
  if (::testing::Test::HasFailure()) {
    std::fprintf(stderr, "kept directory %s\n", path_.c_str());
    return;
  }
  DropStore(path_);
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

void DropStore(const std::filesystem::path& dir) {
  if (!OnPostgres()) return;
  std::ifstream in(dir / "database_url");
  std::string name;
  if (in && std::getline(in, name) && !name.empty()) DropTestDatabase(name);
}

std::vector<std::string> StoreTables(const std::filesystem::path& dir) {
  std::vector<std::string> out;
  if (!OnPostgres() && !std::filesystem::exists(dir / "chat.db")) return out;
  const auto rows =
      QueryStore(dir, OnPostgres() ? "SELECT table_name FROM information_schema.tables "
                                     "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
                                   : "SELECT name FROM sqlite_master WHERE type = 'table'");
  for (const auto& row : rows) out.push_back(row.at(0));
  std::sort(out.begin(), out.end());
  return out;
}

std::string StoreIntegrityCheck(const std::filesystem::path& dir) {
  std::string problems;
  auto add = [&](const std::string& p) { problems += (problems.empty() ? "" : "\n") + p; };
  if (!OnPostgres()) {
    const auto rows = QueryStore(dir, "PRAGMA integrity_check");
    if (rows.empty()) add("no answer from PRAGMA integrity_check on " + (dir / "chat.db").string());
    for (const auto& row : rows) {
      if (row.at(0) != "ok") add(row.at(0));
    }
    return problems.empty() ? "ok" : problems;
  }
  // Each index on its own statement, so that one index's error does not hide the others'.
  const std::string url = StoreEnv(dir).at("DATABASE_URL");
  std::unique_ptr<PGconn, decltype(&PQfinish)> conn(PQconnectdb(url.c_str()), PQfinish);
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    return "cannot connect: " + std::string(PQerrorMessage(conn.get()));
  }
  PQsetNoticeProcessor(
      conn.get(), [](void*, const char*) {}, nullptr);
  auto exec = [&](const std::string& sql, std::vector<std::string>* first_column) {
    PGresult* r = PQexec(conn.get(), sql.c_str());
    const auto st = PQresultStatus(r);
    const bool ok = st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK;
    if (!ok) {
      std::string error = PQresultErrorMessage(r);
      while (!error.empty() && error.back() == '\n') error.pop_back();
      add(sql + ": " + error);
    } else if (first_column != nullptr && st == PGRES_TUPLES_OK) {
      for (int i = 0; i < PQntuples(r); ++i) first_column->push_back(PQgetvalue(r, i, 0));
    }
    PQclear(r);
    return ok;
  };
  if (!exec("CREATE EXTENSION IF NOT EXISTS amcheck", nullptr)) return problems;
  std::vector<std::string> indexes;
  if (!exec("SELECT c.oid::regclass::text FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_am a ON a.oid = c.relam "
            "WHERE n.nspname = 'public' AND a.amname = 'btree' ORDER BY 1",
            &indexes)) {
    return problems;
  }
  if (indexes.empty()) add("no btree index in the public schema");
  for (const std::string& index : indexes) {
    exec("SELECT bt_index_check('" + index + "'::regclass, true)", nullptr);
  }
  return problems.empty() ? "ok" : problems;
}

std::string StoreContents(const std::filesystem::path& dir) {
  std::string out;
  if (!OnPostgres()) {
    for (const char* suffix : {"", "-wal"}) out += ReadFile(dir.string() + "/chat.db" + suffix);
    return out;
  }
  for (const std::string& table : StoreTables(dir)) {
    for (const auto& row : QueryStore(dir, "SELECT t::text FROM \"" + table + "\" t")) {
      out += table + " " + row.at(0) + "\n";
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Accounts
// ---------------------------------------------------------------------------------------------

Account SignUp(TestServer& server, HttpClient& client, const std::string& username,
               const std::string& password) {
  Account a;
  a.username = username;
  a.email = username + "@example.com";
  a.password = password;
  auto init = client.Post("/api/signup/initiate",
                          {{"username", username}, {"email", a.email}, {"password", password}});
  if (init.status != 202) throw std::runtime_error("signup/initiate: " + init.body);
  auto code = server.LatestCode(a.email);
  if (!code) throw std::runtime_error("no code logged for " + a.email);
  auto verify = client.Post("/api/signup/verify", {{"email", a.email}, {"otp", *code}});
  if (verify.status != 201) throw std::runtime_error("signup/verify: " + verify.body);
  a.token = verify.json["token"].get<std::string>();
  a.id = verify.json["user"]["id"].get<int64_t>();
  return a;
}

int64_t RssKib(pid_t pid) { return bench::RssKib(pid); }

int OpenFdCount(pid_t pid, const std::string& target_prefix) {
  std::error_code ec;
  std::filesystem::directory_iterator it("/proc/" + std::to_string(pid) + "/fd", ec);
  if (ec) return -1;
  int n = 0;
  for (; it != std::filesystem::directory_iterator(); it.increment(ec)) {
    if (target_prefix.empty()) {
      ++n;
      continue;
    }
    std::error_code link_ec;  // a descriptor closed meanwhile: not counted
    const std::string target = std::filesystem::read_symlink(it->path(), link_ec).string();
    if (!link_ec && target.rfind(target_prefix, 0) == 0) ++n;
  }
  return ec ? -1 : n;
}

std::optional<double> MetricValue(const std::string& text, const std::string& name) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.find(' ');
    if (space == std::string::npos || line.substr(0, space) != name) continue;
    try {
      return std::stod(line.substr(space + 1));
    } catch (...) {
      return std::nullopt;
    }
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// API.md
// ---------------------------------------------------------------------------------------------

namespace {

// Fields of API.md's objects that the server does not implement yet. They must be absent from
// its answers (so this list cannot go stale): remove a field here when implementing it.
const std::map<std::string, std::set<std::string>>& NotYetImplemented() {
  // Every field is served now (Message.attachments is always [] until uploads are built,
  // which is what a message without attachments holds).
  static const std::map<std::string, std::set<std::string>> kFields = {};
  return kFields;
}

// API.md's text, read once; empty, with a failure each time it is asked for, when unreadable.
const std::string& ApiMd() {
  static const std::string text = ReadFile(MMCHAT_API_MD);
  if (text.empty()) ADD_FAILURE() << "cannot read API.md at " << MMCHAT_API_MD;
  return text;
}

// The top-level keys of the JSON-like object starting at text[open] ('{'). API.md's examples
// are not strict JSON (`[Attachment, …]`, `Message|null`), so keys are found by scanning:
// a string at depth 1, followed by ':'.
std::set<std::string> TopLevelKeys(const std::string& text, size_t open) {
  std::set<std::string> keys;
  int depth = 0;
  for (size_t i = open; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '"') {
      const size_t end = text.find('"', i + 1);
      if (end == std::string::npos) break;
      const size_t next = text.find_first_not_of(" \n", end + 1);
      if (depth == 1 && next != std::string::npos && text[next] == ':') {
        keys.insert(text.substr(i + 1, end - i - 1));
      }
      i = end;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if (c == '}' || c == ']') {
      if (--depth == 0) break;
    }
  }
  return keys;
}

}  // namespace

std::set<std::string> ApiObjectFields(const std::string& object) {
  const std::string& md = ApiMd();
  // "**Message**:" or "**User** (public form; ...):" at the start of a line; its example is the
  // first object after it (a ```json block or inline code).
  const size_t at = md.find("\n**" + object + "**");
  const size_t open = at == std::string::npos ? at : md.find('{', at);
  if (open == std::string::npos) {
    ADD_FAILURE() << "no example of " << object << " in " << MMCHAT_API_MD;
    return {};
  }
  return TopLevelKeys(md, open);
}

std::vector<std::string> ConfigTableVariables(const std::filesystem::path& markdown) {
  const std::string md = ReadFile(markdown);
  const size_t section = md.find("\n## Configuration\n");
  if (section == std::string::npos) {
    ADD_FAILURE() << "no Configuration section in " << markdown << " (or it cannot be read)";
    return {};
  }
  const size_t section_end = md.find("\n## ", section + 1);
  std::istringstream in(md.substr(section, section_end - section));
  // Table rows: "| `NAME` | default | meaning |".
  static const std::regex kRow(R"(^\| `([A-Z0-9_]+)` \|)");
  std::vector<std::string> out;
  std::smatch m;
  for (std::string line; std::getline(in, line);) {
    if (std::regex_search(line, m, kRow)) out.push_back(m[1]);
  }
  if (out.empty()) ADD_FAILURE() << "no variables in the Configuration table of " << markdown;
  return out;
}

std::vector<std::string> ApiConfigVariables() { return ConfigTableVariables(MMCHAT_API_MD); }

void ExpectApiFields(const Json& j, const std::string& object,
                     const std::set<std::string>& omitted) {
  ASSERT_TRUE(j.is_object()) << object << ": " << j.dump();
  const std::set<std::string> documented = ApiObjectFields(object);
  ASSERT_FALSE(documented.empty()) << object;
  const auto it = NotYetImplemented().find(object);
  const std::set<std::string> pending =
      it == NotYetImplemented().end() ? std::set<std::string>() : it->second;
  std::set<std::string> expected, actual;
  for (const auto& f : documented) {
    if (!omitted.contains(f) && !pending.contains(f)) expected.insert(f);
  }
  for (const auto& [k, v] : j.items()) actual.insert(k);
  EXPECT_EQ(actual, expected) << object
                              << " fields (API.md, less those not implemented yet): " << j.dump();
  for (const auto& f : pending) {
    EXPECT_TRUE(documented.contains(f)) << object << "." << f << " is no longer in API.md";
    EXPECT_FALSE(j.contains(f)) << object << "." << f
                                << " is implemented now: remove it from NotYetImplemented() in "
                                   "harness.cc";
  }
}

namespace {

const std::regex kRfc3339Millis(R"(^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$)");

// `key` of an object, or null when absent (const operator[] must not see a missing key).
Json FieldOf(const Json& j, const std::string& key) {
  const auto it = j.find(key);
  return it == j.end() ? Json() : *it;
}

void ExpectTimestamp(const Json& j, const std::string& key) {
  const Json v = FieldOf(j, key);
  EXPECT_TRUE(v.is_string() && std::regex_match(v.get<std::string>(), kRfc3339Millis))
      << key << ": " << j.dump();
}

void ExpectNullOr(const Json& j, const std::string& key, bool (Json::*is)() const noexcept) {
  EXPECT_TRUE(j.contains(key)) << key << ": " << j.dump();
  const Json v = FieldOf(j, key);
  EXPECT_TRUE(v.is_null() || (v.*is)()) << key << ": " << j.dump();
}

bool IsPositiveInt(const Json& v) { return v.is_number_integer() && v.get<int64_t>() > 0; }

}  // namespace

void ExpectUserShape(const Json& u, bool with_email) {
  ExpectApiFields(u, "User", with_email ? std::set<std::string>() : std::set<std::string>{"email"});
  if (!u.is_object()) return;
  EXPECT_TRUE(IsPositiveInt(FieldOf(u, "id"))) << u.dump();
  EXPECT_TRUE(FieldOf(u, "username").is_string()) << u.dump();
  ExpectNullOr(u, "profile_picture", &Json::is_string);
  ExpectTimestamp(u, "created_at");
  EXPECT_TRUE(FieldOf(u, "online").is_boolean()) << u.dump();
  ExpectNullOr(u, "last_seen", &Json::is_string);
  if (with_email) {
    EXPECT_TRUE(FieldOf(u, "email").is_string()) << u.dump();
  }
}

void ExpectParticipantShape(const Json& p) {
  ExpectApiFields(p, "Participant");
  if (!p.is_object()) return;
  EXPECT_TRUE(IsPositiveInt(FieldOf(p, "user_id"))) << p.dump();
  EXPECT_TRUE(FieldOf(p, "username").is_string()) << p.dump();
  ExpectNullOr(p, "profile_picture", &Json::is_string);
  const Json role = FieldOf(p, "role");
  EXPECT_TRUE(role == "admin" || role == "member") << p.dump();
  ExpectTimestamp(p, "joined_at");
}

void ExpectMessageShape(const Json& m) {
  ExpectApiFields(m, "Message");
  if (!m.is_object()) return;
  EXPECT_TRUE(IsPositiveInt(FieldOf(m, "id"))) << m.dump();
  EXPECT_TRUE(IsPositiveInt(FieldOf(m, "conversation_id"))) << m.dump();
  EXPECT_TRUE(IsPositiveInt(FieldOf(m, "seq"))) << m.dump();
  EXPECT_TRUE(IsPositiveInt(FieldOf(m, "sender_id"))) << m.dump();
  EXPECT_TRUE(FieldOf(m, "content").is_string()) << m.dump();
  ExpectNullOr(m, "client_id", &Json::is_string);
  ExpectTimestamp(m, "created_at");
  const Json status = FieldOf(m, "status");
  EXPECT_TRUE(status == "sent" || status == "delivered" || status == "read") << m.dump();
}

void ExpectConversationShape(const Json& c) {
  ExpectApiFields(c, "Conversation");
  if (!c.is_object()) return;
  EXPECT_TRUE(IsPositiveInt(FieldOf(c, "id"))) << c.dump();
  const Json type = FieldOf(c, "type");
  EXPECT_TRUE(type == "private" || type == "group") << c.dump();
  const Json name = FieldOf(c, "name");
  EXPECT_TRUE(type == "private" ? name.is_null() : name.is_string()) << c.dump();
  EXPECT_TRUE(IsPositiveInt(FieldOf(c, "created_by"))) << c.dump();
  ExpectTimestamp(c, "created_at");
  const Json participants = FieldOf(c, "participants");
  EXPECT_TRUE(participants.is_array()) << c.dump();
  if (participants.is_array()) {
    for (const auto& p : participants) ExpectParticipantShape(p);
  }
  const Json last = FieldOf(c, "last_message");
  if (!last.is_null()) ExpectMessageShape(last);
  EXPECT_TRUE(FieldOf(c, "unread_count").is_number_integer()) << c.dump();
  EXPECT_TRUE(FieldOf(c, "last_read_message_id").is_number_integer()) << c.dump();
}

}  // namespace mmchat::test
