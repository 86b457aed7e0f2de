#include "app/services.h"

#include <spdlog/spdlog.h>

#include "bus/redis/redis_send_rate.h"
#include "crypto/argon2_hasher.h"
#include "crypto/random_id.h"
#include "http/handlers/routes.h"
#include "mail/log_sender.h"
#include "mail/smtp_sender.h"
#include "store/postgres/postgres_store.h"
#include "store/sqlite/sqlite_store.h"

namespace mmchat::app {
namespace {

// JWT_SECRET, or the secret kept in the database (generated on first start).
Result<std::string> JwtSecret(const Config& config, domain::SettingsStore* settings) {
  if (config.jwt_secret) return *config.jwt_secret;
  auto secret = settings->GetOrCreateSetting("jwt_secret", crypto::GenerateSecret());
  if (secret.ok()) {
    spdlog::warn("JWT_SECRET is not set: using the secret generated and kept in the database");
  }
  return secret;
}

std::unique_ptr<domain::CodeSender> MakeSender(const Config& config) {
  if (config.otp_sender == "smtp") {
    return std::make_unique<mail::SmtpSender>(config.smtp_url, config.smtp_from);
  }
  return std::make_unique<mail::LogSender>();
}

}  // namespace

Result<std::unique_ptr<store::Store>> OpenStore(const Config& config, metrics::Registry* registry) {
  if (!config.database_url.empty()) {
    store::postgres::Options options;
    options.url = config.database_url;
    options.pool_size = static_cast<size_t>(config.database_pool_size);
    options.startup_wait = std::chrono::seconds(config.database_wait_sec);
    options.metrics = registry;
    auto pg = store::postgres::PostgresStore::Open(options);
    if (!pg.ok()) return pg.status();
    return std::unique_ptr<store::Store>(std::move(pg).value());
  }
  store::sqlite::Options options;
  options.dsn = config.sqlite_dsn;
  options.synchronous = config.sqlite_synchronous;
  options.metrics = registry;
  auto lite = store::sqlite::SqliteStore::Open(options);
  if (!lite.ok()) return lite.status();
  return std::unique_ptr<store::Store>(std::move(lite).value());
}

std::string DescribeStore(const Config& config) {
  if (!config.database_url.empty()) return store::postgres::Describe(config.database_url);
  return "sqlite " + config.sqlite_dsn;
}

namespace {

// The per-user message rate's port (null: no limit), built into `s`.
domain::SendRateLimit* SendRate(const Config& config, Services& s) {
  if (config.msg_rate_per_sec <= 0) return nullptr;
  const auto per_second = static_cast<double>(config.msg_rate_per_sec);
  const auto burst = static_cast<double>(config.msg_rate_burst);
  s.local_send_rate = std::make_unique<domain::LocalSendRate>(per_second, burst);
  if (s.cluster_bus == nullptr) return s.local_send_rate.get();
  s.cluster_send_rate = std::make_unique<bus::redis::RedisSendRate>(s.cluster_bus, per_second,
                                                                    burst, s.local_send_rate.get());
  return s.cluster_send_rate.get();
}

}  // namespace

Result<std::unique_ptr<Services>> Services::Open(
    const Config& config, std::function<void(std::function<void()>)> background,
    std::unique_ptr<domain::PasswordHasher> hasher) {
  auto s = std::make_unique<Services>();
  if (config.redis_url.empty()) {
    s->bus = std::make_unique<bus::LocalBus>();
  } else {
    auto url = bus::redis::ParseRedisUrl(config.redis_url);
    if (!url.ok()) return url.status();
    auto cluster = std::make_unique<bus::redis::RedisBus>(
        bus::redis::RedisBusOptions{.url = std::move(url).value()}, &s->registry);
    s->cluster_bus = cluster.get();
    s->bus = std::move(cluster);
  }
  auto store = OpenStore(config, &s->registry);
  if (!store.ok()) return store.status();
  s->store = std::move(store).value();
  auto secret = JwtSecret(config, s->store.get());
  if (!secret.ok())
    return Status(secret.status().code(),
                  "cannot read the JWT secret: " + secret.status().message());

  s->hasher = hasher ? std::move(hasher) : std::make_unique<crypto::Argon2Hasher>();
  s->otp = std::make_unique<crypto::SodiumOtp>(*secret);
  s->tokens = std::make_unique<crypto::JwtCodec>(*secret, config.jwt_ttl_min * 60'000);
  s->sender = MakeSender(config);
  domain::AccountPolicy policy;
  policy.otp_digits = config.otp_digits;
  policy.otp_ttl_ms = config.otp_ttl_sec * 1000;
  // Subscribed before the hub: a user's cached last_seen is forgotten before the hub tells
  // anyone that the user went offline, so that a reader of that news sees the new value.
  s->user_cache = std::make_unique<domain::UserCache>(s->store.get(), s->bus.get(), SteadyMs);
  s->accounts = std::make_unique<domain::AccountService>(
      domain::AccountService::Deps{.users = s->store.get(),
                                   .codes = s->store.get(),
                                   .hasher = s->hasher.get(),
                                   .otp = s->otp.get(),
                                   .tokens = s->tokens.get(),
                                   .sender = s->sender.get(),
                                   .background = std::move(background),
                                   .bus = s->bus.get(),
                                   .user_cache = s->user_cache.get()},
      policy);
  s->conversation_cache =
      std::make_unique<domain::ConversationCache>(s->store.get(), s->bus.get(), SteadyMs);
  s->conversations = std::make_unique<domain::ConversationService>(
      domain::ConversationService::Deps{.conversations = s->store.get(),
                                        .users = s->store.get(),
                                        .bus = s->bus.get(),
                                        .tracker = &s->tracker,
                                        .cache = s->conversation_cache.get()});
  s->messages = std::make_unique<domain::MessageService>(
      domain::MessageService::Deps{.conversations = s->store.get(),
                                   .access = s->conversations.get(),
                                   .bus = s->bus.get(),
                                   .tracker = &s->tracker,
                                   .cache = s->conversation_cache.get(),
                                   .max_message_len = static_cast<int>(config.max_message_len),
                                   .send_rate = SendRate(config, *s)});
  s->uploads = std::make_unique<domain::UploadService>(
      domain::UploadService::Deps{.uploads = s->store.get(),
                                  .access = s->conversations.get(),
                                  .new_id = [] { return crypto::RandomId(); },
                                  .max_upload_bytes = config.max_upload_bytes,
                                  .max_pending_bytes = config.max_pending_upload_bytes});
  s->presence =
      std::make_unique<domain::PresenceService>(s->store.get(), s->user_cache.get(), s->bus.get());

  if (s->cluster_bus != nullptr) {
    // Another node's delivery receipt counts in statuses here before that node's batch
    // reaches the store (this node's own are in the tracker already).
    s->bus->Subscribe([tracker = &s->tracker](const domain::Event& e) {
      if (const auto* d = std::get_if<domain::DeliveryReceipt>(&e)) {
        tracker->Heard(d->conversation_id, d->user_id, d->message_id, SteadyMs());
      }
    });
  }

  // Metrics fed by domain events.
  metrics::Counter* messages_sent =
      s->registry.GetCounter("mmchat_messages_sent_total", "Messages committed.");
  s->bus->Subscribe(
      [messages_sent](const domain::Event& e) {
        if (std::holds_alternative<domain::MessageCreated>(e)) messages_sent->Inc();
      },
      domain::Reach::kThisNode);
  return s;
}

void Services::AddRoutes(http::Router& router, domain::UserService* users) {
  http::AddOpsRoutes(router, store.get(), &registry, cluster_bus);
  http::AddWebRoutes(router);
  http::AddAccountRoutes(router, accounts.get());
  http::AddUserRoutes(router, users);
  http::AddConversationRoutes(router, conversations.get());
  http::AddMessageRoutes(router, messages.get());
  http::AddUploadRoutes(router, uploads.get());
}

}  // namespace mmchat::app
