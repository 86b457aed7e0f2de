// A private redis-server for one test: Debian's binary on a free loopback port, no
// persistence, its files in a temporary directory; stopped (or killed) when this ends.
// Nothing running beforehand is needed or touched.
#pragma once

#include <netinet/in.h>
#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace mmchat::test {

class TestRedis {
 public:
  // Starts it and waits (5 s at most) until it accepts connections; a failure is a test
  // failure, and ok() is then false. `settings` are extra `--name value` arguments.
  explicit TestRedis(std::vector<std::string> settings = {});
  ~TestRedis();
  TestRedis(const TestRedis&) = delete;
  TestRedis& operator=(const TestRedis&) = delete;

  bool ok() const { return pid_ > 0; }
  int port() const { return port_; }
  // SIGKILL now, and reap it: the server is gone without a word to its clients.
  void Kill();
  // Kills it if running, then starts a new empty server on the same port (a restart, as its
  // clients see it); false, with a test failure, when it does not come up.
  bool Restart();

 private:
  bool Start();  // on port_

  std::vector<std::string> settings_;
  std::string dir_;
  bool keep_dir_ = false;
  int port_ = 0;
  pid_t pid_ = -1;
};

// A loopback port nothing listens on (bound and released): for refused connections.
int FreeLoopbackPort();
// 127.0.0.1:`port`, for bind and connect.
sockaddr_in LoopbackAddress(int port);

// Polls `done` every 10 ms until it holds; false after `limit` (for what a bus or a server
// does on threads of its own).
bool WaitUntil(const std::function<bool()>& done,
               std::chrono::milliseconds limit = std::chrono::seconds(10));

}  // namespace mmchat::test
