#include "ws/hub.h"

#include <boost/asio/dispatch.hpp>
#include <future>

namespace mmchat::ws {

namespace net = boost::asio;
namespace websocket = boost::beast::websocket;

namespace {

// How often typing expiry and batched delivery receipts are looked at (typing timeouts are
// whole seconds).
constexpr std::chrono::milliseconds kTick{100};

}  // namespace

Hub::Hub(net::io_context& ioc, HubDeps deps, HubOptions options)
    : d_(std::move(deps)),
      options_(std::move(options)),
      presence_(d_.workers, d_.presence, d_.directory),
      registry_(presence_, d_.tally),
      typing_(index_, d_.bus, options_.typing_timeout_ms, options_.typing_changes_per_sec),
      receipts_(index_, d_.messages, kTick.count()),
      frames_(d_.messages, d_.workers, typing_),
      fanout_({registry_, index_, presence_, typing_, d_.conversations, d_.store, d_.users, d_.bus,
               d_.workers},
              options_.sequence_messages),
      timer_strand_(net::make_strand(ioc)),
      tick_timer_(timer_strand_),
      sweep_timer_(timer_strand_),
      open_(d_.registry->GetGauge("mmchat_ws_connections", "Open WebSocket connections.")),
      accepted_(d_.registry->GetCounter("mmchat_ws_connections_accepted_total",
                                        "WebSocket upgrades accepted.")),
      events_delivered_(d_.registry->GetCounter("mmchat_ws_events_delivered_total",
                                                "Frames written to WebSocket connections.")),
      frames_received_(d_.registry->GetCounter("mmchat_ws_frames_received_total",
                                               "Frames received from WebSocket clients.")),
      slow_closes_(d_.registry->GetCounter(
          "mmchat_ws_slow_closes_total",
          "WebSocket connections closed (1008) for falling behind their events.")),
      policy_closes_(d_.registry->GetCounter(
          "mmchat_ws_policy_closes_total",
          "WebSocket connections closed with 1008 (policy): too far behind their events, or "
          "their token no longer valid.")),
      queued_bytes_(d_.registry->GetGauge("mmchat_ws_queued_bytes",
                                          "Bytes of frames waiting to be written to WebSocket "
                                          "connections, all of them together.")) {}

Hub::~Hub() = default;

Status Hub::Start() {
  auto memberships = d_.store->ListMemberships();
  if (!memberships.ok()) return memberships.status();
  index_.Load(*memberships);
  if (Status s = fanout_.Start(); !s.ok()) return s;
  net::dispatch(timer_strand_, [this] {
    ScheduleTick();
    ScheduleSweep();
  });
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------
// Connections: upgrade, open, end, shutdown
// ---------------------------------------------------------------------------------------------

Result<int64_t> Hub::Authorize(const http::Request& req) {
  const std::string_view token = http::RequestToken(req, /*query_allowed=*/true);
  if (token.empty()) return Status::Unauthorized("missing token");
  auto user = d_.authenticate(token);
  if (!user.ok() || options_.max_connections_per_user == 0) return user;
  if (registry_.AtCap(*user, options_.max_connections_per_user)) {
    // Checked before the upgrade, so two racing upgrades may both pass: a bound, not a count.
    return Status::RateLimited("too many WebSocket connections for this user", 5);
  }
  return user;
}

void Hub::Accept(int64_t user_id, net::ip::tcp::socket socket, Connection::UpgradeRequest req,
                 http::ConnectionLimits::Lease lease) {
  // Authorize just read the user, and its token version with it, into the cache.
  const auto user = d_.users != nullptr ? d_.users->Peek(user_id) : std::nullopt;
  const int64_t token_version = user ? user->token_version : -1;
  auto c = std::make_shared<Connection>(std::move(socket), this, user_id, token_version,
                                        std::move(lease));
  // Registered before the handshake answer goes out, so that no event committed after the
  // client saw its 101 can miss it; frames wait in the queue until the handshake is done.
  if (!registry_.Add(c)) return;  // shutting down: the socket closes with `c`
  accepted_->Inc();
  open_->Add(1);
  if (!presence_.Clustered()) return c->Start(std::move(req));
  // In a cluster, the 101 waits until the directory counts the user (the open Add queued
  // before this turn), so that a reader on any node sees the user online from then on.
  presence_.InTurn([c, req = std::make_shared<Connection::UpgradeRequest>(std::move(req))] {
    c->Start(std::move(*req));
  });
}

void Hub::Ended(Connection* c) {
  open_->Add(-1);
  typing_.EndedWith(c);
  registry_.Remove(c);
}

std::vector<std::shared_ptr<Connection>> Hub::Snapshot() const { return registry_.Snapshot(); }

bool Hub::IsOnline(int64_t user_id) const {
  return registry_.OnlineHere(user_id) || presence_.OnlineElsewhere(user_id);
}

domain::PresenceView::Reading Hub::Read(int64_t user_id) const {
  // A connection here counts until its close's last_seen is stored.
  if (registry_.OnlineHere(user_id)) return {true, std::nullopt};
  return presence_.ReadElsewhere(user_id).value_or(Reading{});
}

bool Hub::ReadBlocks() const { return presence_.Clustered(); }

std::vector<int64_t> Hub::LocalUsers() const { return registry_.LocalUsers(); }

std::vector<std::pair<int64_t, size_t>> Hub::LocalConnectionCounts() const {
  return registry_.LocalConnectionCounts();
}

void Hub::InPresenceTurn(std::function<void()> task) { presence_.InTurn(std::move(task)); }

void Hub::WaitForPresence() { presence_.Wait(); }

void Hub::Drain() { frames_.Drain(); }

void Hub::Shutdown() {
  registry_.Stop();
  std::promise<void> stopped;
  net::dispatch(timer_strand_, [this, &stopped] {
    tick_timer_.cancel();
    sweep_timer_.cancel();
    stopped.set_value();
  });
  stopped.get_future().wait();
  for (auto& c : Snapshot()) c->Close(websocket::close_code::going_away);
  FlushDeliveries();
}

void Hub::Abort() {
  for (auto& c : Snapshot()) c->Abort();
}

bool Hub::WaitForConnections(std::chrono::milliseconds timeout) {
  return registry_.WaitUntilEmpty(timeout);
}

// ---------------------------------------------------------------------------------------------
// Frames of connections
// ---------------------------------------------------------------------------------------------

void Hub::OnFrame(const std::shared_ptr<Connection>& c, std::string_view text, bool is_text) {
  frames_received_->Inc();
  frames_.OnFrame(c, text, is_text);
}

void Hub::Written(int64_t user_id, const std::vector<Outgoing>& batch, size_t written) {
  events_delivered_->Inc(static_cast<double>(written));
  receipts_.Written(user_id, batch, written);
}

void Hub::FlushDeliveries(bool all) { receipts_.Flush(all); }

// ---------------------------------------------------------------------------------------------
// Timers: typing expiry, delivery receipts, liveness
// ---------------------------------------------------------------------------------------------

void Hub::ScheduleTick() {
  tick_timer_.expires_after(kTick);
  tick_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec || registry_.stopping()) return;
    const TimeMs now = SteadyMs();
    typing_.Expire(now);
    FlushDeliveries(/*all=*/false);
    fanout_.RepairIfDue(now);
    ScheduleTick();
  });
}

void Hub::ScheduleSweep() {
  sweep_timer_.expires_after(std::chrono::milliseconds(options_.ping_interval_ms));
  sweep_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec || registry_.stopping()) return;
    const TimeMs now = SteadyMs();
    for (auto& c : Snapshot()) c->Check(now, options_.ping_interval_ms);
    ScheduleSweep();
  });
}

}  // namespace mmchat::ws
