#include "bus/local/local_bus.h"

namespace mmchat::bus {

void LocalBus::Publish(const domain::Event& event) {
  std::shared_ptr<const Subscribers> subs;
  {
    std::lock_guard lock(mu_);
    subs = subscribers_;
  }
  for (const auto& s : *subs) s(event);
}

void LocalBus::Subscribe(std::function<void(const domain::Event&)> subscriber, domain::Reach) {
  std::lock_guard lock(mu_);
  auto next = std::make_shared<Subscribers>(*subscribers_);
  next->push_back(std::move(subscriber));
  subscribers_ = std::move(next);
}

}  // namespace mmchat::bus
