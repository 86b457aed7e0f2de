// The real-time hub: accepts WebSocket upgrades on /api/ws, keeps every open connection by
// user, fans domain events out to them, answers client frames, and owns presence (online
// while a user has a connection), typing states and the liveness sweep.
//
// Fan-out: an event is serialized once; recipients come from the in-memory MembershipIndex;
// each recipient connection queues the same shared buffer. The connection map is read under a
// shared lock while frames are queued; sockets are only written on connection strands.
//
// Timers: two for the whole hub (typing expiry plus batched delivery receipts, and the
// liveness sweep), none per connection. Thread-safe.
#pragma once

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/rate_limiter.h"
#include "common/status.h"
#include "domain/connection_tally.h"
#include "domain/conversation_service.h"
#include "domain/events.h"
#include "domain/message_service.h"
#include "domain/presence.h"
#include "domain/presence_service.h"
#include "http/server.h"
#include "metrics/registry.h"
#include "ws/connection.h"
#include "ws/membership_index.h"
#include "ws/sequencer.h"

namespace mmchat::ws {

struct HubOptions {
  std::string path = "/api/ws";
  TimeMs ping_interval_ms = 30'000;     // idle this long: pinged; twice as long: dropped
  TimeMs typing_timeout_ms = 10'000;    // a typing state not refreshed ends with typing_stop
  size_t max_queue_bytes = 1 << 20;     // per connection; past it the connection closes (1008)
  size_t max_frame_bytes = 64 * 1024;   // larger client frames close the connection (1009)
  size_t max_connections_per_user = 0;  // more upgrades are refused with 429 (0: no limit)
  // Typing changes relayed per user and second, twice as many at once (0: no limit). Each
  // goes to every other member: a client flipping start and stop as fast as it can would
  // multiply its frames by the size of the group.
  double typing_changes_per_sec = 5;
  // In a cluster, where other nodes' messages come through a bus that may reorder or lose
  // them: messages go out in id order, holes filled from the store (ws/sequencer.h).
  bool sequence_messages = false;
};

struct HubDeps {
  domain::MessageService* messages;
  domain::ConversationService* conversations;
  domain::PresenceService* presence;
  // In a cluster: the users' connections counted over every node (null: this node alone).
  domain::PresenceDirectory* directory = nullptr;
  // In a cluster: the users' connections on other nodes, for max_connections_per_user (null:
  // this node's only).
  domain::ConnectionTally* tally = nullptr;
  domain::ConversationStore* store;  // the membership index is loaded from it at start
  domain::EventBus* bus;
  std::function<Result<int64_t>(std::string_view token)> authenticate;
  boost::asio::any_io_executor workers;  // for calls that touch the database
  metrics::Registry* registry;
};

class Hub final : public http::UpgradeHandler, public domain::PresenceView {
 public:
  Hub(boost::asio::io_context& ioc, HubDeps deps, HubOptions options);
  ~Hub() override;

  // Loads the membership index, subscribes to the bus and starts the timers.
  Status Start();
  // The first step of a graceful stop: client frames other than `ping` are answered with
  // `unavailable` from now on, so that nothing new starts.
  void Drain();
  // Closes every connection with 1001 (going away), after the frames already queued for it,
  // and stops the timers.
  void Shutdown();
  // Drops every connection at once (the grace period ran out).
  void Abort();
  // True when every connection ended within `timeout`.
  bool WaitForConnections(std::chrono::milliseconds timeout);
  // Counts and announces the deliveries made by pushes: those of the members whose turn it is
  // (the tick calls it), or all of them (shutdown, at the end).
  void FlushDeliveries(bool all = true);

  // http::UpgradeHandler: the token comes from ?token= or the Authorization header.
  std::string_view path() const override { return options_.path; }
  Result<int64_t> Authorize(const http::Request& req) override;
  void Accept(int64_t user_id, boost::asio::ip::tcp::socket socket, Connection::UpgradeRequest req,
              http::ConnectionLimits::Lease lease) override;

  // domain::PresenceView: a connection here, or (in a cluster) on another node.
  bool IsOnline(int64_t user_id) const override;

  // For the cluster's presence directory: the users with a connection here; a task run in
  // turn with this node's presence changes; and waiting until those queued have run.
  std::vector<int64_t> LocalUsers() const;
  // For the cluster's connection tally: each user here with its number of connections.
  std::vector<std::pair<int64_t, size_t>> LocalConnectionCounts() const;
  void InPresenceTurn(std::function<void()> task);
  void WaitForPresence();

  // For connections.
  const HubOptions& options() const { return options_; }
  void Ended(Connection* c);
  // Every registered connection (for the sweep and shutdown).
  std::vector<std::shared_ptr<Connection>> Snapshot() const;
  void OnFrame(const std::shared_ptr<Connection>& c, std::string_view text, bool is_text);
  // The first `written` frames of `batch` reached the socket of one of `user_id`'s connections.
  void Written(int64_t user_id, const std::vector<Outgoing>& batch, size_t written);
  void CountSlowClose() { slow_closes_->Inc(); }

 private:
  using Key = std::pair<int64_t, int64_t>;  // conversation, user

  // Events from the bus, fanned out.
  void OnEvent(const domain::Event& event);
  void OnMessage(const domain::Message& m);
  void OnConversationChanged(const domain::Conversation& c);
  // The bus lost events of other nodes: what the hub keeps from events is read again.
  void OnEventsMissed();
  // The replica of who is online on other nodes: news applied in version order, and the
  // whole read again from the directory after lost events.
  void ApplyPresence(int64_t user_id, bool online, int64_t version);
  void ResetPresence();
  // On the tick: a sequencer repair, on the workers, when one is due.
  void RepairIfDue(TimeMs now);
  // Queues `out` to every connection of `users`, except the user `except`.
  void SendToUsers(const std::vector<int64_t>& users, const Outgoing& out, int64_t except = 0);
  void SendToMembers(int64_t conversation_id, const Outgoing& out, int64_t except = 0);

  // Client frames.
  void Answer(const std::shared_ptr<Connection>& c, const std::optional<std::string>& ref,
              const Result<RawJson>& outcome);
  void HandleMessage(const std::shared_ptr<Connection>& c, const ClientFrame& f);
  void HandleRead(const std::shared_ptr<Connection>& c, const ClientFrame& f);
  Status Typing(Connection* c, int64_t conversation_id, bool start);

  // Typing states end: by expiry, with their connection, or when the typist left.
  void ExpireTyping(TimeMs now);
  struct Typist {
    TimeMs deadline = 0;
    Connection* connection = nullptr;  // the one whose close ends it
  };
  void EndTyping(const std::function<bool(const Key&, const Typist&)>& which);
  void ScheduleTick();
  void ScheduleSweep();

  HubDeps d_;
  const HubOptions options_;
  MembershipIndex index_;
  std::unique_ptr<Sequencer> sequencer_;  // with sequence_messages only
  // Presence transitions touch the database: they run on the workers, one at a time, in the
  // order the connections opened and closed.
  boost::asio::strand<boost::asio::any_io_executor> presence_strand_;
  boost::asio::strand<boost::asio::io_context::executor_type> timer_strand_;
  boost::asio::steady_timer tick_timer_;   // on timer_strand_
  boost::asio::steady_timer sweep_timer_;  // on timer_strand_
  std::atomic<bool> stopping_{false};
  std::atomic<bool> draining_{false};
  std::atomic<int> frames_in_hand_{0};  // OnFrame calls running now (Drain waits for them)
  Frame pong_;

  mutable std::shared_mutex conns_mu_;
  std::condition_variable_any all_ended_;
  // Every connection from the upgrade to its end, by user (the owning references).
  std::unordered_map<int64_t, std::vector<std::shared_ptr<Connection>>> by_user_;  // conns_mu_
  // Users whose last connection closed and whose last_seen is not stored yet (how many such
  // closes are pending): still online to readers, so that nobody sees "offline" with an old
  // last_seen (API.md: last_seen is set when the last connection closes).
  std::unordered_map<int64_t, int> closing_;  // guarded by conns_mu_
  // In a cluster, who is online anywhere, as PresenceChanged news said (versions > 0).
  struct Remote {
    bool online = false;
    int64_t version = 0;
  };
  mutable std::mutex replica_mu_;
  std::unordered_map<int64_t, Remote> replica_;  // guarded by replica_mu_
  std::string replica_epoch_;                    // the directory's; guarded by replica_mu_

  // Lock order: typing_mu_, then conns_mu_ (fan-out of the announcement), never the reverse.
  std::mutex typing_mu_;
  std::map<Key, Typist> typing_;         // guarded by typing_mu_
  RateLimiter<int64_t> typing_limiter_;  // HubOptions::typing_changes_per_sec

  std::mutex delivered_mu_;
  std::map<Key, int64_t> delivered_;  // highest message id pushed; guarded by delivered_mu_
  uint64_t ticks_ = 0;  // ticks so far, for the receipt turns; guarded by delivered_mu_

  metrics::Gauge* open_;
  metrics::Counter* accepted_;
  metrics::Counter* events_delivered_;
  metrics::Counter* frames_received_;
  metrics::Counter* slow_closes_;
};

}  // namespace mmchat::ws
