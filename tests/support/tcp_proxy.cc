#include "tcp_proxy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

#include "test_redis.h"

namespace mmchat::test {
namespace {

// Writes all of `data` (blocking); false when the peer is gone.
bool SendAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

TcpProxy::TcpProxy(int target_port) : target_port_(target_port) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr = LoopbackAddress(0);
  socklen_t len = sizeof addr;
  if (listen_fd_ < 0 || ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listen_fd_, 64) != 0 ||
      ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0 ||
      ::pipe2(wake_, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "the TCP proxy could not listen";
    return;
  }
  port_ = ntohs(addr.sin_port);
  thread_ = std::thread([this] { Run(); });
}

TcpProxy::~TcpProxy() {
  if (thread_.joinable()) {
    const char stop = 1;
    (void)!::write(wake_[1], &stop, 1);
    thread_.join();
  }
  for (const Pair& p : pairs_) {
    ::close(p.client);
    ::close(p.server);
  }
  for (int fd : {listen_fd_, wake_[0], wake_[1]}) {
    if (fd >= 0) ::close(fd);
  }
}

void TcpProxy::Blackhole() {
  std::lock_guard lock(mu_);
  for (Pair& p : pairs_) p.silent = true;
}

void TcpProxy::Repoint(int target_port) { target_port_ = target_port; }

size_t TcpProxy::Forwarding() const {
  std::lock_guard lock(mu_);
  return static_cast<size_t>(
      std::count_if(pairs_.begin(), pairs_.end(), [](const Pair& p) { return !p.silent; }));
}

void TcpProxy::Accept() {
  const int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
  if (client < 0) return;
  const int server = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const sockaddr_in to = LoopbackAddress(target_port_);
  if (server < 0 || ::connect(server, reinterpret_cast<const sockaddr*>(&to), sizeof to) != 0) {
    ::close(client);  // as a refused connection looks to the client
    if (server >= 0) ::close(server);
    return;
  }
  std::lock_guard lock(mu_);
  pairs_.push_back({client, server, false});
}

bool TcpProxy::Pump(Pair& p, bool from_client) {
  char buf[64 * 1024];
  const int from = from_client ? p.client : p.server;
  const int to = from_client ? p.server : p.client;
  const ssize_t n = ::recv(from, buf, sizeof buf, 0);
  if (n <= 0) return false;
  if (p.silent) return true;  // read, so that the sender never blocks, and dropped
  return SendAll(to, buf, static_cast<size_t>(n));
}

void TcpProxy::Run() {
  for (;;) {
    std::vector<pollfd> fds = {{wake_[0], POLLIN, 0}, {listen_fd_, POLLIN, 0}};
    {
      std::lock_guard lock(mu_);
      for (const Pair& p : pairs_) {
        fds.push_back({p.client, POLLIN, 0});
        fds.push_back({p.server, POLLIN, 0});
      }
    }
    if (::poll(fds.data(), fds.size(), 100) < 0) continue;
    if (fds[0].revents != 0) return;
    if (fds[1].revents & POLLIN) Accept();
    std::lock_guard lock(mu_);
    // Pairs only ever end here, on this thread, so the fds polled are still those of
    // pairs_[0 .. (fds.size() - 2) / 2).
    std::vector<bool> ended(pairs_.size(), false);
    for (size_t i = 2; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      const size_t pair = (i - 2) / 2;
      if (!ended[pair] && !Pump(pairs_[pair], (i - 2) % 2 == 0)) ended[pair] = true;
    }
    for (size_t i = ended.size(); i-- > 0;) {
      if (!ended[i]) continue;
      ::close(pairs_[i].client);
      ::close(pairs_[i].server);
      pairs_.erase(pairs_.begin() + static_cast<std::ptrdiff_t>(i));
    }
  }
}

}  // namespace mmchat::test
