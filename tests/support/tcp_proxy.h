// A TCP proxy on a loopback port, between a server under test and the Redis it uses, for the
// bus fault tests: it forwards each connection to its target on a thread of its own, and can
// make the connections open now go silent (a server that is alive but says nothing, as a
// connection looks after a failover or behind a broken network) or send new connections to
// another target (the failover itself).
#pragma once

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

namespace mmchat::test {

class TcpProxy {
 public:
  // Listens on a free loopback port; a failure is a test failure, and port() is then 0.
  explicit TcpProxy(int target_port);
  ~TcpProxy();
  TcpProxy(const TcpProxy&) = delete;
  TcpProxy& operator=(const TcpProxy&) = delete;

  int port() const { return port_; }
  // The connections open now stay open, but from now on what either side sends is dropped.
  // Connections made later are forwarded as usual.
  void Blackhole();
  // Connections made from now on go to `target_port`.
  void Repoint(int target_port);
  // The connections forwarded now (not silent, not closed).
  size_t Forwarding() const;

 private:
  struct Pair {
    int client = -1;
    int server = -1;
    bool silent = false;
  };
  void Run();
  void Accept();
  // Moves what `from` has to its peer (or drops it); false when the pair ended.
  bool Pump(Pair& p, bool from_client);

  int listen_fd_ = -1;
  int wake_[2] = {-1, -1};  // a pipe: written to stop the thread
  int port_ = 0;
  std::atomic<int> target_port_;
  mutable std::mutex mu_;
  std::vector<Pair> pairs_;  // guarded by mu_
  std::thread thread_;
};

}  // namespace mmchat::test
