// The real-time hub: accepts WebSocket upgrades on /api/ws and is the façade of the parts
// that keep every open connection by user, fan domain events out to them, answer client
// frames, and own presence (online while a user has a connection), typing states and the
// liveness sweep. Each part keeps its local and (in a cluster) its other nodes' side by side:
//
//   ws/connection_registry.h  the connections by user; the connection tally and cap
//   ws/presence_tracker.h     presence transitions in turn; the replica of other nodes'
//   ws/fanout.h               one std::visit over domain::Event; sequencing and repairs
//   ws/sequencer.h            a cluster's messages in id order
//   ws/membership_index.h     who takes part in which conversation
//   ws/typing.h               typing states, their limiter and expiry
//   ws/receipts.h             delivery receipts of pushed messages, batched
//   ws/frame_handler.h        client frames and their answers; draining
//
// Timers: two for the whole hub (typing expiry plus batched delivery receipts, and the
// liveness sweep), none per connection. Thread-safe.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "domain/connection_tally.h"
#include "domain/conversation_service.h"
#include "domain/events.h"
#include "domain/message_service.h"
#include "domain/presence.h"
#include "domain/presence_service.h"
#include "domain/user_cache.h"
#include "http/server.h"
#include "metrics/registry.h"
#include "ws/connection.h"
#include "ws/connection_registry.h"
#include "ws/fanout.h"
#include "ws/frame_handler.h"
#include "ws/membership_index.h"
#include "ws/presence_tracker.h"
#include "ws/receipts.h"
#include "ws/typing.h"

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
  // The token version each connection was opened with; with it, a loss of events on the bus
  // re-checks them (a reset on another node may be among what was lost). Null: not kept.
  domain::UserCache* users = nullptr;
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
  Reading Read(int64_t user_id) const override;
  bool ReadBlocks() const override;

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
  void CountPolicyClose() { policy_closes_->Inc(); }
  // Bytes of frames queued (positive) or written or dropped (negative) on some connection.
  void QueuedBytes(int64_t n) { queued_bytes_->Add(n); }

 private:
  void ScheduleTick();
  void ScheduleSweep();

  HubDeps d_;
  const HubOptions options_;
  MembershipIndex index_;
  PresenceTracker presence_;
  ConnectionRegistry registry_;
  Typing typing_;
  Receipts receipts_;
  FrameHandler frames_;
  Fanout fanout_;
  boost::asio::strand<boost::asio::io_context::executor_type> timer_strand_;
  boost::asio::steady_timer tick_timer_;   // on timer_strand_
  boost::asio::steady_timer sweep_timer_;  // on timer_strand_

  metrics::Gauge* open_;
  metrics::Counter* accepted_;
  metrics::Counter* events_delivered_;
  metrics::Counter* frames_received_;
  metrics::Counter* slow_closes_;
  metrics::Counter* policy_closes_;
  metrics::Gauge* queued_bytes_;
};

}  // namespace mmchat::ws
