// Test harness: starts the real mmchat binary on a free loopback port with a temporary
// database, and talks HTTP to it over real sockets with a small Beast client.
#pragma once

#include <sys/types.h>

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace mmchat::test {

class TestRedis;
using Json = nlohmann::json;

struct HttpResult {
  int status = 0;
  std::string body;
  Json json;                                   // null when the body is not JSON
  std::map<std::string, std::string> headers;  // lower-case names

  // The error object's code, or "" when there is none.
  std::string ErrorCode() const;
};

// The status, body, lower-cased headers and parsed JSON of a Beast response.
HttpResult ToResult(const boost::beast::http::response<boost::beast::http::string_body>& res);

// Asserts an API.md error answer: the status, the error code, a message, JSON content type.
void ExpectError(const HttpResult& r, int status, const std::string& code);

// `s` for a URL path segment or query value: every byte but the unreserved characters
// (letters, digits, - . _ ~) percent-encoded (%XX), so the server's decoder gets the raw bytes
// back, whatever they are.
std::string PercentEncode(std::string_view s);

// A keep-alive HTTP/1.1 client on one connection. It reconnects only when the server closed the
// idle connection before a request was written; a request that fails once written throws (a
// retry could hide a dropped connection or send a write twice).
class HttpClient {
 public:
  explicit HttpClient(uint16_t port);
  ~HttpClient();
  HttpResult Request(const std::string& method, const std::string& target,
                     const std::string& body = "", const std::string& token = "",
                     const std::map<std::string, std::string>& headers = {});
  HttpResult Get(const std::string& target, const std::string& token = "") {
    return Request("GET", target, "", token);
  }
  HttpResult Post(const std::string& target, const Json& body, const std::string& token = "") {
    return Request("POST", target, body.dump(), token);
  }
  HttpResult Put(const std::string& target, const Json& body, const std::string& token = "") {
    return Request("PUT", target, body.dump(), token);
  }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The API record, checked against docs/openapi.yaml and docs/asyncapi.yaml by
// tests/api/check_recorded.mjs: when MMCHAT_API_RECORD names a directory, the HTTP answers and
// WebSocket frames the tests see are appended to <dir>/<pid>.jsonl, a JSON object a line.
//
// Appends make() unless recording is off or `key` (a kind of exchange, e.g.
// "http GET /api/users/* 200" or "ws_in message") was recorded 100 times already in this
// process, or the process wrote 16 MiB: load tests repeat one exchange thousands of times.
// make() runs only when its line is wanted; a null from it writes nothing. The harness's own
// tests (Harness*, against fake peers) record nothing.
void RecordApi(const std::string& key, const std::function<Json()>& make);
// {"kind":"http","method","path" (no query),"status","content_type","body"}: the body (parsed;
// null when it does not parse) only when the answer is JSON and not empty. Nothing when there
// was no answer (status 0).
void RecordHttp(const std::string& method, const std::string& target, const HttpResult& r);

// For load tests: every abuse limit off, as one address opens thousands of connections and
// each user sends as fast as it can (scripts/bench.sh does the same).
inline const std::map<std::string, std::string> kNoAbuseLimits = {
    {"MSG_RATE_PER_SEC", "0"},
    {"MAX_CONNS_PER_IP", "0"},
    {"WS_MAX_CONNS_PER_USER", "0"},
    {"WS_TYPING_RATE_PER_SEC", "0"},
    {"MAX_PENDING_UPLOAD_BYTES", "0"}};

struct ServerOptions {
  std::map<std::string, std::string> env;  // added to (and overriding) the defaults
  std::vector<std::string> args;
  std::string dotenv;            // written to .env in the working directory when not empty
  bool wait_ready = true;        // wait for the "listening on" line
  std::filesystem::path dir;     // working directory; a fresh temporary one when empty
  unsigned long open_files = 0;  // the server's open-file limit (soft and hard); 0: inherited
  // Substrings of the error (or critical) log lines the test provokes on purpose. Any other
  // such line, or any sanitizer report, in the log fails the test at teardown.
  std::vector<std::string> expected_errors;
  // Under SplitNodes(): false keeps this server one process (a node of a cluster the test
  // builds itself).
  bool split = true;
};

// At destruction a server still running must not have exited by itself; it is stopped with
// SIGTERM and must exit 0. Its log (this run's part) must hold no unexpected error line and no
// sanitizer report. A server the test stopped itself (Stop, WaitExit) is only checked for
// sanitizer reports: the test chose how it ends.
//
// Under SplitNodes() a TestServer is two nodes of one cluster, on one PostgreSQL database and a
// redis-server of its own: port() is the first (REST), ws_port() the second (WebSocket), and
// the log and teardown checks cover both.
class TestServer {
 public:
  explicit TestServer(ServerOptions options = {});
  ~TestServer();

  uint16_t port() const { return port_; }
  // Where WebSocket clients connect: the second node under SplitNodes(), else port().
  uint16_t ws_port() const { return ws_node_ ? ws_node_->port() : port_; }
  const std::filesystem::path& dir() const { return dir_; }
  std::filesystem::path db_path() const { return dir_ / "chat.db"; }
  // The log of this server's process (of both, the first's then the second's, under
  // SplitNodes()).
  std::string Log() const;

  // Waits until the log contains `needle`; false after `timeout`.
  bool WaitForLog(const std::string& needle,
                  std::chrono::milliseconds timeout = std::chrono::seconds(10)) const;
  // Under SplitNodes(): waits until the WebSocket node has taken from the bus every event the
  // REST node published so far (their mmchat_bus_events_* counters), so that the news of a REST
  // call just answered (a new conversation, say) does not reach a connection opened after this
  // as if it were new. Always true when the server is one process; false after `timeout`.
  bool WaitForBus(std::chrono::milliseconds timeout = std::chrono::seconds(10)) const;
  // The newest verification code logged for `email` (the log sender's line).
  std::optional<std::string> LatestCode(const std::string& email) const;

  // Sends `sig` and waits for the exit; returns the exit code (or 128 + signal). Under
  // SplitNodes() both nodes, the second first; 0 only when both exited with 0.
  int Stop(int sig = 15);
  // Waits for the process to exit by itself; returns the exit code, or -1 after `timeout`.
  int WaitExit(std::chrono::milliseconds timeout = std::chrono::seconds(15));
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  // The process holding the WebSocket connections (the second node under SplitNodes()).
  pid_t ws_pid() const { return ws_node_ ? ws_node_->pid() : pid_; }

 private:
  std::string OwnLog() const;  // the first process's

  std::filesystem::path dir_;
  bool own_dir_ = false;
  // Under SplitNodes(): the second node and the Redis joining the two (destroyed first).
  std::unique_ptr<TestRedis> redis_;
  std::unique_ptr<TestServer> ws_node_;
  size_t log_start_ = 0;  // this run's part of a log shared with earlier runs in dir_
  std::vector<std::string> expected_errors_;
  bool stopped_by_test_ = false;  // Stop or WaitExit was called: the test checks the end
  // Reaps the process if it has exited; returns true when it is gone.
  bool Reap(int options) const;
  // The teardown checks (see the class comment), as gtest failures.
  void CheckAtTeardown();

  mutable pid_t pid_ = -1;
  mutable std::optional<int> exit_code_;
  uint16_t port_ = 0;
};

// Which store the servers of this run use: SQLite by default; PostgreSQL when
// MMCHAT_TEST_STORE=postgres (ctest runs the whole suite that way too, as pg.*), on the test
// server scripts/with-postgres.sh started.
// MMCHAT_TEST_STORE=split: PostgreSQL too, and every server is two nodes of a cluster with
// REST on one and WebSockets on the other (SplitNodes(); ctest runs a part of the suite that
// way, as split.*).
bool OnPostgres();
bool SplitNodes();

// The binaries under test, mmchat (servers and commands) and mmchat-bench: those of the build
// directory MMCHAT_TEST_BUILD when set, else the ones built beside these tests. scripts/test.sh's
// sanitizer stages run these tests, built plainly, against their sanitized binaries: the tests'
// own code is a client, not what they check.
const std::string& ServerBinary();
const std::string& BenchBinary();
// The sanitizer the binaries under test are built with: MMCHAT_TEST_SANITIZER (address or
// thread) beside MMCHAT_TEST_BUILD, else the tests' own (a server is built like the tests beside
// it). A sanitizer raises a server's memory use, which some bounds allow for.
enum class Sanitizer { kNone, kAddress, kThread };
Sanitizer ServerSanitizer();
// The environment that points mmchat (a server, --migrate, user add) at the database of the
// directory `dir`: SQLITE_DSN=dir/chat.db, or on PostgreSQL the DATABASE_URL of a database of
// that directory's own (created on first use; its name is kept in dir/database_url).
std::map<std::string, std::string> StoreEnv(const std::filesystem::path& dir);
// Every row of `sql` on the database of `dir`, on either store, each column as text ("NULL"
// for NULL); a failure is a test failure. Write SQL both stores take.
std::vector<std::vector<std::string>> QueryStore(const std::filesystem::path& dir,
                                                 const std::string& sql);
// The first column of the first row ("" for none).
std::string QueryStoreOne(const std::filesystem::path& dir, const std::string& sql);
// Drops the directory's PostgreSQL database, if it has one.
void DropStore(const std::filesystem::path& dir);
// The tables of the database of `dir`, sorted: on SQLite those of dir/chat.db (none when the
// file does not exist), on PostgreSQL the base tables of the public schema.
std::vector<std::string> StoreTables(const std::filesystem::path& dir);
// "ok" when the database of `dir` is sound, else the problems, a line each. SQLite:
// `PRAGMA integrity_check` on dir/chat.db (run it with the server stopped). PostgreSQL: the
// amcheck extension's bt_index_check(index, heapallindexed => true) on every btree index of
// the public schema (a database without any is a problem too: nothing would be checked).
std::string StoreIntegrityCheck(const std::filesystem::path& dir);
// Everything the database of `dir` holds, for looking for what must not be stored: on SQLite
// the raw bytes of dir/chat.db and its -wal; on PostgreSQL the text of every row of every
// table of the public schema (`SELECT t::text FROM table t`), a line each.
std::string StoreContents(const std::filesystem::path& dir);

// A verified account, made through signup/initiate + verify with the logged code.
struct Account {
  int64_t id = 0;
  std::string username;
  std::string email;
  std::string password;
  std::string token;
};
Account SignUp(TestServer& server, HttpClient& client, const std::string& username,
               const std::string& password = "correct horse");

// A fresh temporary directory under $TMPDIR.
std::filesystem::path MakeTempDir();

// A fresh temporary directory, and on PostgreSQL the database a server made for it (StoreEnv),
// removed at the end unless the test failed (then its path is printed, to look into).
class TempDir {
 public:
  TempDir() : path_(MakeTempDir()) {}
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// Runs the binary to completion (for --help, --version, --migrate, config errors).
struct RunResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};
RunResult RunBinary(const std::vector<std::string>& args,
                    const std::map<std::string, std::string>& env,
                    const std::filesystem::path& dir);
// The same for another program of the project (e.g. mmchat-bench).
RunResult RunProgram(const std::string& program, const std::vector<std::string>& args,
                     const std::map<std::string, std::string>& env,
                     const std::filesystem::path& dir);

// The resident set size of a process in KiB (VmRSS), or -1 when it cannot be read.
int64_t RssKib(pid_t pid);
// The number of open file descriptors of a process (entries of /proc/<pid>/fd), or -1 when
// they cannot be listed. With a `target_prefix`, only those whose target starts with it, e.g.
// "socket:" or a directory's path.
int OpenFdCount(pid_t pid, const std::string& target_prefix = "");

// Polls `pred` until it holds or `timeout` passes; the last result.
template <class Pred>
bool Eventually(Pred pred, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return pred();
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
}

// A value of an unlabelled series in Prometheus text, or nullopt when absent.
std::optional<double> MetricValue(const std::string& text, const std::string& name);

// A free TCP port on 127.0.0.1 at the time of the call.
uint16_t FreePort();

// ---------------------------------------------------------------------------------------------
// API.md, the wire contract (MMCHAT_API_MD), read at test time so that a field or variable it
// gains is checked without editing the tests. Unreadable: a test failure.
// ---------------------------------------------------------------------------------------------

// The top-level keys of the example of `object` ("User", "Participant", "Message",
// "Conversation") in API.md's "Objects"; empty (and a failure) when it cannot be found.
std::set<std::string> ApiObjectFields(const std::string& object);
// The first column of the "## Configuration" table of a Markdown file (API.md, the README), in
// its order; empty (and a failure) when there is none.
std::vector<std::string> ConfigTableVariables(const std::filesystem::path& markdown);
std::vector<std::string> ApiConfigVariables();

// `j` has exactly the fields API.md lists for `object`, except `omitted` (absent from this
// form, e.g. User's email outside /api/me) and those not implemented yet (see harness.cc),
// which must be absent.
void ExpectApiFields(const Json& j, const std::string& object,
                     const std::set<std::string>& omitted = {});

// The objects of API.md's "Objects": their fields (ExpectApiFields) and the values' types.
void ExpectUserShape(const Json& u, bool with_email);
void ExpectParticipantShape(const Json& p);
void ExpectMessageShape(const Json& m);
void ExpectConversationShape(const Json& c);

}  // namespace mmchat::test
