#include "http/connection_limits.h"

namespace mmchat::http {

ConnectionLimits::Lease& ConnectionLimits::Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    Release();
    entry_ = std::exchange(other.entry_, nullptr);
  }
  return *this;
}

const boost::asio::ip::address& ConnectionLimits::Lease::address() const {
  static const boost::asio::ip::address kNone;
  return entry_ != nullptr ? entry_->address : kNone;
}

void ConnectionLimits::Lease::Release() {
  if (entry_ == nullptr) return;
  ConnectionLimits* owner = entry_->owner;
  std::lock_guard lock(owner->mu_);
  --owner->total_;
  // Entries live in the map's nodes, which stay put until erased: the last lease erases it.
  if (--entry_->count == 0) owner->by_address_.erase(entry_->address);
  entry_ = nullptr;
}

ConnectionLimits::Lease ConnectionLimits::Acquire(const boost::asio::ip::address& address,
                                                  Refusal* refusal) {
  std::lock_guard lock(mu_);
  *refusal = Refusal::kNone;
  if (max_total_ > 0 && total_ >= max_total_) {
    *refusal = Refusal::kTotal;
    return {};
  }
  auto [it, fresh] = by_address_.try_emplace(address, Entry{this, address});
  Entry& e = it->second;
  if (max_per_address_ > 0 && e.count >= max_per_address_) {
    *refusal = Refusal::kPerAddress;
    return {};
  }
  ++e.count;
  ++total_;
  return Lease(&e);
}

size_t ConnectionLimits::open() const {
  std::lock_guard lock(mu_);
  return total_;
}

}  // namespace mmchat::http
