// Everything below the transports, built from a Config: the store (migrated), crypto, mail,
// the event bus and the domain services. Serve() and `mmchat user add` build one; so do the
// fuzz targets, which then drive the real services with outside input.
#pragma once

#include <functional>
#include <memory>

#include "app/config.h"
#include "bus/local/local_bus.h"
#include "bus/redis/redis_bus.h"
#include "common/status.h"
#include "crypto/jwt_codec.h"
#include "crypto/sodium_otp.h"
#include "domain/account_service.h"
#include "domain/conversation_service.h"
#include "domain/delivery_tracker.h"
#include "domain/message_service.h"
#include "domain/presence_service.h"
#include "domain/send_rate.h"
#include "domain/upload_service.h"
#include "domain/user_cache.h"
#include "domain/user_service.h"
#include "http/router.h"
#include "metrics/registry.h"
#include "store/common/store.h"

namespace mmchat::app {

// The store configuration chose (PostgreSQL with DATABASE_URL, else SQLite), connected and
// migrated, counting in `registry` when given (the message writer, the pool); and how to name
// it in a log line.
Result<std::unique_ptr<store::Store>> OpenStore(const Config& config,
                                                metrics::Registry* registry = nullptr);
std::string DescribeStore(const Config& config);

struct Services {
  // First, so that it outlives every part that counts in it.
  metrics::Registry registry;
  // `background` runs slow account work (a hash, a mail); `hasher` replaces Argon2 with the
  // given one (the fuzz targets use cheap settings). Fails when the database cannot be
  // opened or migrated, or the JWT secret cannot be read.
  static Result<std::unique_ptr<Services>> Open(
      const Config& config, std::function<void(std::function<void()>)> background,
      std::unique_ptr<domain::PasswordHasher> hasher = nullptr);

  // Adds every REST route; `users` answers the online state (the WebSocket hub's view).
  void AddRoutes(http::Router& router, domain::UserService* users);

  std::unique_ptr<store::Store> store;
  std::unique_ptr<domain::PasswordHasher> hasher;
  std::unique_ptr<crypto::SodiumOtp> otp;
  std::unique_ptr<crypto::JwtCodec> tokens;
  std::unique_ptr<domain::CodeSender> sender;
  // Declared before the bus, which it subscribes to: destroyed after it.
  std::unique_ptr<domain::UserCache> user_cache;  // shared by the account and user services
  std::unique_ptr<domain::ConversationCache> conversation_cache;  // lists and statuses
  // MSG_RATE_PER_SEC (none when 0): this process's count, and with REDIS_URL the cluster's,
  // which falls back on it while Redis is away.
  std::unique_ptr<domain::LocalSendRate> local_send_rate;
  std::unique_ptr<domain::SendRateLimit> cluster_send_rate;
  // The LocalBus, or with REDIS_URL the cluster's bus (also `cluster_bus`; not connected
  // until Serve starts it).
  std::unique_ptr<domain::EventBus> bus;
  bus::redis::RedisBus* cluster_bus = nullptr;
  std::unique_ptr<domain::AccountService> accounts;
  domain::DeliveryTracker tracker;
  std::unique_ptr<domain::ConversationService> conversations;
  std::unique_ptr<domain::MessageService> messages;
  std::unique_ptr<domain::UploadService> uploads;
  std::unique_ptr<domain::PresenceService> presence;
};

}  // namespace mmchat::app
