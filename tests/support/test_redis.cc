#include "test_redis.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <thread>

namespace mmchat::test {

sockaddr_in LoopbackAddress(int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return addr;
}

int FreeLoopbackPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr = LoopbackAddress(0);
  socklen_t len = sizeof addr;
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ADD_FAILURE() << "no free loopback port";
    if (fd >= 0) close(fd);
    return 0;
  }
  close(fd);
  return ntohs(addr.sin_port);
}

bool WaitUntil(const std::function<bool()>& done, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

TestRedis::TestRedis(std::vector<std::string> settings) : settings_(std::move(settings)) {
  char tmpl[] = "/tmp/mmchat-redis-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) {
    ADD_FAILURE() << "mkdtemp failed";
    return;
  }
  dir_ = tmpl;
  // The free port is released before redis-server binds it, so another process may take it
  // first: then this server exits, and another port is tried.
  for (int attempt = 0; attempt < 3 && pid_ <= 0; ++attempt) {
    port_ = FreeLoopbackPort();
    if (Start()) return;
  }
  keep_dir_ = true;  // the log says why
  ADD_FAILURE() << "redis-server did not start (installed? scripts/setup.sh test); see " << dir_
                << "/redis.log";
}

bool TestRedis::Start() {
  const std::string log = dir_ + "/redis.log";
  // Readiness is read from this run's log alone.
  std::error_code ec;
  std::filesystem::remove(log, ec);
  std::vector<std::string> args{"redis-server",
                                "--port",
                                std::to_string(port_),
                                "--bind",
                                "127.0.0.1",
                                "--save",
                                "",
                                "--appendonly",
                                "no",
                                "--dir",
                                dir_,
                                "--logfile",
                                log};
  args.insert(args.end(), settings_.begin(), settings_.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid == 0) {
    // Only system calls between fork and exec: this process has other threads.
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // a test process killed outright takes it along
    if (getppid() != parent) _exit(1);
    const int null = open("/dev/null", O_RDWR);
    dup2(null, STDIN_FILENO);
    dup2(null, STDOUT_FILENO);
    close_range(3, ~0U, 0);  // none of the test's sockets
    execvp("redis-server", argv.data());
    _exit(127);
  }
  if (pid < 0) return false;
  pid_ = pid;
  // Ready once it says so: that line comes after its port is bound, so it is this server.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return false;
    }
    std::ifstream in(log);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (text.find("Ready to accept connections") != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  Kill();
  return false;
}

TestRedis::~TestRedis() {
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
  }
  std::error_code ec;
  if (!dir_.empty() && !keep_dir_) std::filesystem::remove_all(dir_, ec);
}

bool TestRedis::Restart() {
  Kill();
  // The port was ours a moment ago; a client's connection in TIME_WAIT does not stop a
  // server binding it (redis-server sets SO_REUSEADDR).
  for (int attempt = 0; attempt < 50; ++attempt) {
    if (Start()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ADD_FAILURE() << "redis-server did not start again on port " << port_;
  return false;
}

void TestRedis::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

}  // namespace mmchat::test
