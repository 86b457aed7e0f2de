// The in-process event bus: Publish calls every subscriber on the publishing thread.
// Subscribers are added at start-up; the list is copied under a lock so that Subscribe may
// still race with Publish safely.
#pragma once

#include <memory>
#include <mutex>
#include <vector>

#include "domain/events.h"

namespace mmchat::bus {

class LocalBus final : public domain::EventBus {
 public:
  using EventBus::Subscribe;
  void Publish(const domain::Event& event) override;
  // Every event is this process's own: `reach` makes no difference.
  void Subscribe(std::function<void(const domain::Event&)> subscriber,
                 domain::Reach reach) override;

 private:
  using Subscribers = std::vector<std::function<void(const domain::Event&)>>;
  std::mutex mu_;
  std::shared_ptr<const Subscribers> subscribers_ = std::make_shared<Subscribers>();  // guarded
};

}  // namespace mmchat::bus
