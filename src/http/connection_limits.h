// Open connections per client address and in all (MAX_CONNS_PER_IP, MAX_CONNECTIONS). A
// connection holds a Lease from accept until its socket closes, also after it became a
// WebSocket, so one count covers HTTP and WebSocket alike. Thread-safe.
#pragma once

#include <boost/asio/ip/address.hpp>
#include <cstddef>
#include <map>
#include <mutex>
#include <utility>

namespace mmchat::http {

class ConnectionLimits {
  struct Entry;

 public:
  // Move-only; destroying it releases the connection's place. 8 bytes, as every idle
  // WebSocket connection keeps one.
  class Lease {
   public:
    Lease() = default;
    Lease(Lease&& other) noexcept : entry_(std::exchange(other.entry_, nullptr)) {}
    Lease& operator=(Lease&& other) noexcept;
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease() { Release(); }

    explicit operator bool() const { return entry_ != nullptr; }
    const boost::asio::ip::address& address() const;

   private:
    friend class ConnectionLimits;
    explicit Lease(Entry* entry) : entry_(entry) {}
    void Release();
    Entry* entry_ = nullptr;
  };

  enum class Refusal { kNone, kTotal, kPerAddress };

  // 0: no limit. Every Lease must be gone before this is destroyed.
  ConnectionLimits(size_t max_total, size_t max_per_address)
      : max_total_(max_total), max_per_address_(max_per_address) {}

  // A place for a new connection from `address`; an empty Lease and the reason when full.
  Lease Acquire(const boost::asio::ip::address& address, Refusal* refusal);
  size_t open() const;

 private:
  struct Entry {
    ConnectionLimits* owner;
    boost::asio::ip::address address;
    size_t count = 0;
  };

  const size_t max_total_;
  const size_t max_per_address_;
  mutable std::mutex mu_;
  size_t total_ = 0;                                      // guarded by mu_
  std::map<boost::asio::ip::address, Entry> by_address_;  // guarded by mu_
};

}  // namespace mmchat::http
