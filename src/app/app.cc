#include "app/app.h"

#include <malloc.h>
#include <pthread.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <fstream>
#include <future>
#include <iostream>
#include <optional>
#include <thread>
#include <vector>

#include "app/admin_socket.h"
#include "app/services.h"
#include "bus/redis/redis_connection_tally.h"
#include "bus/redis/redis_presence.h"
#include "domain/account_service.h"
#include "domain/user_service.h"
#include "http/dispatcher.h"
#include "http/router.h"
#include "http/server.h"
#include "metrics/registry.h"
#include "ws/hub.h"

namespace mmchat::app {
namespace {

constexpr auto kShutdownGrace = std::chrono::seconds(10);
// How often batched delivered watermarks are written.
constexpr auto kDeliveryFlushPeriod = std::chrono::seconds(1);

// Every connection is a file descriptor: take the hard limit, and say what it allows.
// Returns the open-file limit now in force (0: unknown).
size_t RaiseFileLimit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return 0;
  if (lim.rlim_cur < lim.rlim_max) {
    rlimit raised = lim;
    raised.rlim_cur = lim.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) lim = raised;
  }
  // The HTTP server keeps some descriptors for the database, logs and the listener.
  spdlog::info("open-file limit {}: room for about {} connections", lim.rlim_cur,
               lim.rlim_cur > http::kReservedFiles ? lim.rlim_cur - http::kReservedFiles : 0);
  return lim.rlim_cur == RLIM_INFINITY ? 0 : static_cast<size_t>(lim.rlim_cur);
}

int Cores() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

}  // namespace

Status MigrateOnly(const Config& config) {
  auto store = OpenStore(config);
  if (!store.ok()) return store.status();
  spdlog::info("database {} is up to date", DescribeStore(config));
  return Status::Ok();
}

Status AddUsers(const Config& config, const AddUsersOptions& options) {
  std::vector<domain::NewAccount> accounts;
  if (options.count > 0) {
    accounts.reserve(static_cast<size_t>(options.count));
    for (int64_t i = 1; i <= options.count; ++i) {
      const std::string name = options.prefix + "_" + std::to_string(i);
      accounts.push_back({name, name + "@" + options.email_domain});
    }
  } else {
    accounts.push_back({options.username, options.email});
  }
  // No codes are sent: the accounts are verified by the administrator.
  auto services = Services::Open(config, [](std::function<void()> task) { task(); });
  if (!services.ok()) return services.status();
  auto created = (*services)->accounts->CreateAccounts(accounts, options.password);
  if (!created.ok()) return created.status();

  std::ofstream file;
  std::ostream* out = nullptr;
  if (options.tokens_path == "-") {
    out = &std::cout;
  } else if (!options.tokens_path.empty()) {
    file.open(options.tokens_path);
    if (!file) return Status::InvalidRequest("cannot write " + options.tokens_path);
    out = &file;
  }
  if (out != nullptr) {
    for (const auto& a : *created) {
      *out << a.user.id << ' ' << a.user.username << ' ' << a.token.token << '\n';
    }
    out->flush();
  }
  spdlog::info("created {} user(s), ids {} to {}", created->size(), created->front().user.id,
               created->back().user.id);
  return Status::Ok();
}

int Serve(const Config& config) {
  // glibc hands freed memory back with madvise as soon as 128 KiB are free at the top of an
  // arena; with frames and batches freed on other threads than they were made on, that ran
  // many times a second and each call stopped every core for a TLB flush (a quarter of the
  // message writer's time in perf). Keep up to 16 MiB per arena, and mmap only blocks of
  // 4 MiB and more. Measured: 25,000 -> 35,000 persisted messages/s.
  mallopt(M_TRIM_THRESHOLD, 16 << 20);
  mallopt(M_MMAP_THRESHOLD, 4 << 20);
  const size_t open_files = RaiseFileLimit();
  // Slow work (password hashing, mail) runs here, never on io threads.
  const int worker_threads = config.worker_threads > 0 ? config.worker_threads : Cores();
  boost::asio::thread_pool workers(static_cast<size_t>(worker_threads));
  auto services_or = Services::Open(config, [&workers](std::function<void()> task) {
    boost::asio::post(workers, std::move(task));
  });
  if (!services_or.ok()) {
    spdlog::critical("{}", services_or.status().message());
    return 1;
  }
  Services& s = **services_or;

  const int io_threads = config.http_threads > 0 ? config.http_threads : Cores();
  // Before the io_context: connections still referenced by its handlers release their place
  // in it when the io_context goes, last.
  http::ConnectionLimits connection_limits(static_cast<size_t>(config.max_connections),
                                           static_cast<size_t>(config.max_conns_per_ip));
  boost::asio::io_context ioc(io_threads);
  auto authenticate = [&s](std::string_view token) { return s.accounts->Authenticate(token); };

  // WebSocket: the hub is also who knows which users are online.
  ws::HubOptions hub_options;
  hub_options.ping_interval_ms = config.ws_ping_interval_sec * 1000;
  hub_options.typing_timeout_ms = config.ws_typing_timeout_sec * 1000;
  hub_options.max_queue_bytes = static_cast<size_t>(config.ws_max_queue_bytes);
  hub_options.max_connections_per_user = static_cast<size_t>(config.ws_max_conns_per_user);
  hub_options.typing_changes_per_sec = static_cast<double>(config.ws_typing_rate_per_sec);
  hub_options.sequence_messages = s.cluster_bus != nullptr;
  // In a cluster, presence counts the connections of every node.
  std::optional<bus::redis::RedisPresence> cluster_presence;
  // And WS_MAX_CONNS_PER_USER counts them too.
  std::optional<bus::redis::RedisConnectionTally> cluster_tally;
  if (s.cluster_bus != nullptr) {
    cluster_presence.emplace(
        s.cluster_bus, s.cluster_bus->origin(),
        bus::redis::RedisPresenceOptions{.ttl = std::chrono::seconds(config.cluster_node_ttl_sec)});
    if (config.ws_max_conns_per_user > 0) {
      cluster_tally.emplace(s.cluster_bus, s.cluster_bus->origin());
    }
  }
  ws::Hub hub(
      ioc,
      {.messages = s.messages.get(),
       .conversations = s.conversations.get(),
       .presence = s.presence.get(),
       .directory = cluster_presence ? &*cluster_presence : nullptr,
       .tally = cluster_tally ? &*cluster_tally : nullptr,
       .store = s.store.get(),
       .users = s.user_cache.get(),
       .bus = s.bus.get(),
       // In a cluster an upgrade reads the user's row: a reset made on another node
       // refuses the old token here at once, not one bus hop later.
       .authenticate = s.cluster_bus != nullptr ? std::function<Result<int64_t>(std::string_view)>(
                                                      [&s](std::string_view token) {
                                                        return s.accounts->AuthenticateFresh(token);
                                                      })
                                                : authenticate,
       .workers = workers.get_executor(),
       .registry = &s.registry},
      hub_options);
  if (Status st = hub.Start(); !st.ok()) {
    spdlog::critical("cannot load conversation memberships: {}", st.message());
    return 1;
  }
  domain::UserService users(s.store.get(), &hub, s.user_cache.get(), s.bus.get());

  // HTTP.
  http::Router router;
  s.AddRoutes(router, &users);
  http::ClientLimiter per_client(static_cast<double>(config.auth_rate_per_min) / 60.0,
                                 static_cast<double>(config.auth_rate_per_min));
  // With PostgreSQL every read is a network round trip: requests run on threads of their
  // own, one per pooled connection, so that io threads only move bytes.
  std::optional<boost::asio::thread_pool> database_threads;
  std::optional<boost::asio::any_io_executor> database_executor;
  if (!config.database_url.empty()) {
    database_threads.emplace(static_cast<size_t>(config.database_pool_size));
    database_executor = database_threads->get_executor();
  }
  http::Dispatcher dispatcher(
      &router, authenticate, workers.get_executor(), &s.registry, &per_client, database_executor,
      [&s](std::string_view token) { return s.accounts->AuthenticateCached(token); });
  http::ServerOptions options;
  options.host = config.http_host;
  options.port = config.http_port;
  options.read_timeout = std::chrono::seconds(config.http_read_timeout_sec);
  options.max_open_files = open_files;
  options.header_limit = static_cast<size_t>(config.http_max_header_bytes);
  options.max_headers = static_cast<size_t>(config.http_max_headers);
  options.limits = &connection_limits;
  options.database = database_executor;
  options.access_log = config.access_log;
  // LoadConfig checked the list.
  const http::CorsPolicy cors = http::CorsPolicy::Parse(config.cors_allowed_origins).value();
  if (cors.enabled()) options.cors = &cors;
  http::Server server(ioc, &dispatcher, &s.registry, options);
  server.SetUpgradeHandler(&hub);
  if (Status st = server.Listen(); !st.ok()) {
    spdlog::critical("{}", st.message());
    return 1;
  }

  // Every subscriber is in and the port is ours: the events of other nodes may start
  // coming (no early return below leaves the hub before the bus stops).
  if (s.cluster_bus != nullptr) {
    cluster_presence->Start(
        [&hub] { return hub.LocalUsers(); },
        [&hub](std::function<void()> task) { hub.InPresenceTurn(std::move(task)); },
        [&s](int64_t user, TimeMs last_seen, int64_t version) {
          // Its last node died (or this node's registration found it gone).
          if (Status st = s.presence->WentOffline(user, {}, version, last_seen); !st.ok()) {
            spdlog::warn("last_seen of user {} not saved: {}", user, st.message());
          }
        },
        [&s](int64_t user, int64_t version) {
          if (Status st = s.presence->WentOnline(user, version); !st.ok()) {
            spdlog::warn("presence of user {} not announced: {}", user, st.message());
          }
        });
    if (cluster_tally) cluster_tally->Start([&hub] { return hub.LocalConnectionCounts(); });
    s.cluster_bus->Start();
  }

  std::promise<int> stop_signal;
  boost::asio::signal_set signals(ioc, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (!ec) stop_signal.set_value(sig);
  });

  // `mmchat user ...` (another process) tells this one what it changed in the store; the
  // events go out on the bus, to every node of a cluster.
  AdminSocket admin(ioc, workers.get_executor(), [&s](const AdminNews& news) {
    if (news.tokens_revoked) s.bus->Publish(domain::TokensRevoked{*news.tokens_revoked});
    if (news.user_changed) s.bus->Publish(domain::UserChanged{*news.user_changed});
    for (int64_t id : news.left) s.conversations->AnnounceLeft(id, news.user);
    return Status::Ok();
  });
  if (config.admin_socket != "-" && admin.Listen(config.admin_socket)) admin.Start();

  server.Start();
  const std::string shown_host = config.http_host.empty() ? "0.0.0.0" : config.http_host;
  spdlog::info("mmchat listening on http://{}:{} ({} io threads, {} workers, database {}{})",
               shown_host, server.port(), io_threads, worker_threads, DescribeStore(config),
               s.cluster_bus != nullptr ? ", cluster node " + s.cluster_bus->origin() : "");

  // Delivered watermarks go to the database in batches, off the io threads.
  boost::asio::steady_timer flush_timer(ioc);
  std::atomic<bool> flushes_stopped{false};  // a completion already queued must not re-arm
  std::function<void()> schedule_flush = [&] {
    flush_timer.expires_after(kDeliveryFlushPeriod);
    flush_timer.async_wait([&](const boost::system::error_code& ec) {
      if (ec || flushes_stopped) return;  // shutting down: the final flush comes below
      boost::asio::post(workers, [&] {
        if (Status st = s.tracker.Flush(s.store.get()); !st.ok()) {
          spdlog::warn("delivery receipts not saved yet: {}", st.message());
        }
      });
      schedule_flush();
    });
  };
  schedule_flush();

  // Uploads attached to no message for a day, and those of deleted messages, go: off the io
  // threads, one sweep at a time.
  boost::asio::steady_timer sweep_timer(ioc);
  std::atomic<bool> sweeping{false};
  std::function<void()> schedule_sweep = [&] {
    sweep_timer.expires_after(std::chrono::seconds(config.upload_sweep_sec));
    sweep_timer.async_wait([&](const boost::system::error_code& ec) {
      if (ec || flushes_stopped) return;
      if (!sweeping.exchange(true)) {
        boost::asio::post(workers, [&] {
          auto swept = s.uploads->Sweep();
          if (!swept.ok()) {
            spdlog::warn("uploads not swept: {}", swept.status().message());
          } else if (*swept > 0) {
            spdlog::info("removed {} orphaned or deleted upload(s)", *swept);
          }
          sweeping = false;
        });
      }
      schedule_sweep();
    });
  };
  schedule_sweep();

  auto guard = boost::asio::make_work_guard(ioc);
  std::vector<std::thread> threads;
  for (int i = 0; i < io_threads; ++i) {
    threads.emplace_back([&ioc] {
      pthread_setname_np(pthread_self(), "mmchat-io");  // for top -H and perf
      ioc.run();
    });
  }

  const int sig = stop_signal.get_future().get();
  spdlog::info("received signal {}: shutting down", sig);
  const auto deadline = std::chrono::steady_clock::now() + kShutdownGrace;
  auto left = [&] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::max(
        deadline - std::chrono::steady_clock::now(), std::chrono::steady_clock::duration{}));
  };
  // Nothing new starts; what was accepted is committed and answered; then the WebSocket
  // connections close with 1001 after the answers queued for them.
  server.Stop();
  admin.Stop();
  hub.Drain();
  if (!s.store->writer().WaitForAppends(left()))
    spdlog::warn("messages still being written at shutdown");
  hub.Shutdown();
  if (!server.WaitForConnections(left()) || !hub.WaitForConnections(left())) {
    spdlog::warn("connections still open after {}s; closing them", kShutdownGrace.count());
    server.Abort();
    hub.Abort();
  }
  flushes_stopped = true;
  boost::asio::post(ioc, [&] {
    flush_timer.cancel();
    sweep_timer.cancel();
  });
  // WebSocket connections end first: their last presence changes run on the workers.
  while (!hub.WaitForConnections(std::chrono::seconds(5))) {
    spdlog::warn("waiting for WebSocket connections to close");
    hub.Abort();
  }
  // The last closes reached the other nodes; this node leaves the cluster's count; then
  // the events of other nodes stop coming before the hub, their subscriber, goes.
  if (s.cluster_bus != nullptr) {
    hub.WaitForPresence();
    cluster_presence->Leave();
    if (cluster_tally) cluster_tally->Leave();
    hub.WaitForPresence();  // what Leave's last reap announced
    s.cluster_bus->Stop();
  }
  // Worker tasks (a hash, a mail) finish and post their answers to closed connections, which
  // then end. Every session must be gone before the io_context stops: a session destroyed
  // later, with the io_context, would outlive the server it belongs to.
  if (database_threads) database_threads->join();
  workers.join();
  while (!server.WaitForConnections(std::chrono::seconds(5))) {
    spdlog::warn("waiting for connections to close");
    server.Abort();
  }
  guard.reset();
  ioc.stop();
  for (auto& t : threads) t.join();
  hub.FlushDeliveries();
  if (Status st = s.tracker.Flush(s.store.get()); !st.ok()) {
    spdlog::error("delivery receipts lost at shutdown: {}", st.message());
  }
  s.store.reset();  // writes queued messages, checkpoints the WAL, closes the database
  spdlog::info("stopped cleanly");
  return 0;
}

}  // namespace mmchat::app
