#include "ws/hub.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <future>
#include <thread>

#include "wire/views.h"

namespace mmchat::ws {

namespace net = boost::asio;
namespace websocket = boost::beast::websocket;

namespace {

constexpr std::string_view kBearer = "Bearer ";

// How often typing expiry and batched delivery receipts are looked at (typing timeouts are
// whole seconds).
constexpr std::chrono::milliseconds kTick{100};

// Every member's delivery receipt goes to every other member, so a busy conversation of N
// members makes up to N*(N-1) receipt frames per round. A member announces its deliveries at
// most once per period: a second, or longer in large conversations so that the receipts stay
// under about kReceiptFramesPerSec (20 s at 1,000 members). Turns are spread over the ticks
// of the period, so that no tick carries a burst that would hold up messages: by
// conversation, and in conversations over kSharedTurnMembers by member too (in small ones
// the receipts go out together, so that they share socket writes).
constexpr double kReceiptFramesPerSec = 50'000;
constexpr TimeMs kMinReceiptPeriodMs = 1'000;
constexpr TimeMs kMaxReceiptPeriodMs = 60'000;
constexpr size_t kSharedTurnMembers = 32;

// In how many ticks each member of a conversation of `members` gets one turn.
uint64_t ReceiptTurns(size_t members, TimeMs tick_ms) {
  const double n = static_cast<double>(members);
  const auto period = std::clamp<TimeMs>(static_cast<TimeMs>(n * n / kReceiptFramesPerSec * 1000),
                                         kMinReceiptPeriodMs, kMaxReceiptPeriodMs);
  return static_cast<uint64_t>(std::max<TimeMs>(1, period / tick_ms));
}

}  // namespace

Hub::Hub(net::io_context& ioc, HubDeps deps, HubOptions options)
    : d_(std::move(deps)),
      options_(std::move(options)),
      presence_strand_(net::make_strand(d_.workers)),
      timer_strand_(net::make_strand(ioc)),
      tick_timer_(timer_strand_),
      sweep_timer_(timer_strand_),
      pong_(MakeFrame("pong", Json::object())),
      typing_limiter_(options_.typing_changes_per_sec, 2 * options_.typing_changes_per_sec),
      open_(d_.registry->GetGauge("mmchat_ws_connections", "Open WebSocket connections.")),
      accepted_(d_.registry->GetCounter("mmchat_ws_connections_accepted_total",
                                        "WebSocket upgrades accepted.")),
      events_delivered_(d_.registry->GetCounter("mmchat_ws_events_delivered_total",
                                                "Frames written to WebSocket connections.")),
      frames_received_(d_.registry->GetCounter("mmchat_ws_frames_received_total",
                                               "Frames received from WebSocket clients.")),
      slow_closes_(d_.registry->GetCounter(
          "mmchat_ws_slow_closes_total",
          "WebSocket connections closed (1008) for falling behind their events.")) {}

Hub::~Hub() = default;

Status Hub::Start() {
  auto memberships = d_.store->ListMemberships();
  if (!memberships.ok()) return memberships.status();
  index_.Load(*memberships);
  if (options_.sequence_messages) {
    auto last = d_.store->LastMessageId();
    if (!last.ok()) return last.status();
    sequencer_ =
        std::make_unique<Sequencer>(d_.store, [this](const domain::Message& m) { OnMessage(m); });
    sequencer_->Start(*last);
  }
  d_.bus->Subscribe([this](const domain::Event& e) { OnEvent(e); });
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
  std::string_view token;
  auto it = req.query.find("token");
  if (it != req.query.end()) {
    token = it->second;
  } else if (std::string_view auth = req.authorization;
             auth.size() > kBearer.size() && auth.substr(0, kBearer.size()) == kBearer) {
    token = auth.substr(kBearer.size());
  }
  if (token.empty()) return Status::Unauthorized("missing token");
  auto user = d_.authenticate(token);
  if (!user.ok() || options_.max_connections_per_user == 0) return user;
  size_t held = 0;
  {
    std::shared_lock lock(conns_mu_);
    if (auto it_user = by_user_.find(*user); it_user != by_user_.end()) {
      held = it_user->second.size();
    }
  }
  // In a cluster, with those on the other nodes (a Redis round trip: this runs on a database
  // thread, see http::Server).
  if (held < options_.max_connections_per_user && d_.tally != nullptr) {
    held += d_.tally->OnOtherNodes(*user);
  }
  if (held >= options_.max_connections_per_user) {
    // Checked before the upgrade, so two racing upgrades may both pass: a bound, not a count.
    return Status::RateLimited("too many WebSocket connections for this user", 5);
  }
  return user;
}

void Hub::Accept(int64_t user_id, net::ip::tcp::socket socket, Connection::UpgradeRequest req,
                 http::ConnectionLimits::Lease lease) {
  auto c = std::make_shared<Connection>(std::move(socket), this, user_id, std::move(lease));
  {
    // Registered before the handshake answer goes out, so that no event committed after the
    // client saw its 101 can miss it; frames wait in the queue until the handshake is done.
    // stopping_ is checked under the lock Shutdown sets it under: a connection is either in
    // Shutdown's snapshot or never registered.
    std::unique_lock lock(conns_mu_);
    if (stopping_) return;  // shutting down: the socket closes with `c`
    auto& list = by_user_[user_id];
    list.push_back(c);
    if (d_.tally != nullptr) d_.tally->Set(user_id, list.size());  // under the lock: in order
    if (list.size() == 1) {
      // Posted under the lock, so transitions of one user reach the strand in order.
      net::post(presence_strand_, [this, user_id] {
        // In a cluster, online only if no other node had the user already.
        const auto first = d_.directory ? d_.directory->Opened(user_id)
                                        : domain::PresenceDirectory::Crossing{true, 0};
        if (!first.crossed) return;
        if (Status s = d_.presence->WentOnline(user_id, first.version); !s.ok()) {
          spdlog::warn("presence of user {} not announced: {}", user_id, s.message());
        }
      });
    }
  }
  accepted_->Inc();
  open_->Add(1);
  c->Start(std::move(req));
}

void Hub::Ended(Connection* c) {
  open_->Add(-1);
  EndTyping([c](const Key&, const Typist& t) { return t.connection == c; });
  const int64_t user = c->user_id();
  std::unique_lock lock(conns_mu_);
  auto it = by_user_.find(user);
  if (it != by_user_.end()) {
    auto& list = it->second;
    list.erase(
        std::remove_if(list.begin(), list.end(), [c](const auto& p) { return p.get() == c; }),
        list.end());
    if (d_.tally != nullptr) d_.tally->Set(user, list.size());  // under the lock: in order
    if (list.empty()) {
      by_user_.erase(it);
      ++closing_[user];
      net::post(presence_strand_, [this, user] {
        auto closed = [this, user] {
          std::unique_lock lock(conns_mu_);
          if (auto c = closing_.find(user); c != closing_.end() && --c->second == 0) {
            closing_.erase(c);
          }
        };
        // In a cluster, offline only if no other node has the user.
        const auto last = d_.directory ? d_.directory->Closed(user)
                                       : domain::PresenceDirectory::Crossing{true, 0};
        if (!last.crossed) return closed();
        // Offline to readers once last_seen is stored, before the news goes out.
        Status s = d_.presence->WentOffline(user, closed, last.version);
        if (!s.ok()) spdlog::warn("last_seen of user {} not saved: {}", user, s.message());
      });
    }
  }
  if (by_user_.empty()) all_ended_.notify_all();
}

std::vector<std::shared_ptr<Connection>> Hub::Snapshot() const {
  std::vector<std::shared_ptr<Connection>> live;
  std::shared_lock lock(conns_mu_);
  live.reserve(by_user_.size());
  for (const auto& [_, list] : by_user_) live.insert(live.end(), list.begin(), list.end());
  return live;
}

bool Hub::IsOnline(int64_t user_id) const {
  {
    std::shared_lock lock(conns_mu_);
    if (by_user_.contains(user_id) || closing_.contains(user_id)) return true;
  }
  std::lock_guard lock(replica_mu_);
  auto it = replica_.find(user_id);
  return it != replica_.end() && it->second.online;
}

std::vector<int64_t> Hub::LocalUsers() const {
  std::shared_lock lock(conns_mu_);
  std::vector<int64_t> out;
  out.reserve(by_user_.size());
  for (const auto& [user, _] : by_user_) out.push_back(user);
  return out;
}

std::vector<std::pair<int64_t, size_t>> Hub::LocalConnectionCounts() const {
  std::shared_lock lock(conns_mu_);
  std::vector<std::pair<int64_t, size_t>> out;
  out.reserve(by_user_.size());
  for (const auto& [user, list] : by_user_) out.emplace_back(user, list.size());
  return out;
}

void Hub::InPresenceTurn(std::function<void()> task) {
  net::post(presence_strand_, std::move(task));
}

void Hub::WaitForPresence() {
  std::promise<void> done;
  net::post(presence_strand_, [&done] { done.set_value(); });
  done.get_future().wait();
}

void Hub::ApplyPresence(int64_t user_id, bool online, int64_t version) {
  std::lock_guard lock(replica_mu_);
  Remote& r = replica_[user_id];
  if (version > r.version) r = {online, version};
}

void Hub::ResetPresence() {
  if (!d_.directory) return;
  net::post(presence_strand_, [this] {
    auto snapshot = d_.directory->Online();
    if (!snapshot.ok()) {
      spdlog::warn("who is online elsewhere not read: {}", snapshot.status().message());
      return;
    }
    std::lock_guard lock(replica_mu_);
    if (snapshot->epoch.empty() || snapshot->epoch != replica_epoch_) {
      // The directory lost its memory (Redis restarted empty; no node has registered since,
      // or one has and named a new epoch) and counts versions from 0 again: what is kept is
      // from its past life.
      replica_.clear();
      replica_epoch_ = snapshot->epoch;
    }
    // Older knowledge gives way to the snapshot; news newer than it stays.
    for (auto& [_, r] : replica_) {
      if (r.version <= snapshot->version) r = {false, snapshot->version};
    }
    for (int64_t u : snapshot->online) {
      Remote& r = replica_[u];
      if (r.version <= snapshot->version) r = {true, snapshot->version};
    }
  });
}

void Hub::Drain() {
  draining_ = true;
  // A frame being handled may have looked at draining_ before it was set: once these are
  // done, every message that will ever be appended has been handed to the store.
  while (frames_in_hand_.load() > 0) std::this_thread::yield();
}

void Hub::Shutdown() {
  {
    std::unique_lock lock(conns_mu_);
    stopping_ = true;
  }
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
  std::unique_lock lock(conns_mu_);
  return all_ended_.wait_for(lock, timeout, [this] { return by_user_.empty(); });
}

// ---------------------------------------------------------------------------------------------
// Timers: typing expiry, delivery receipts, liveness
// ---------------------------------------------------------------------------------------------

void Hub::ScheduleTick() {
  tick_timer_.expires_after(kTick);
  tick_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec || stopping_) return;
    const TimeMs now = SteadyMs();
    ExpireTyping(now);
    FlushDeliveries(/*all=*/false);
    RepairIfDue(now);
    ScheduleTick();
  });
}

void Hub::ScheduleSweep() {
  sweep_timer_.expires_after(std::chrono::milliseconds(options_.ping_interval_ms));
  sweep_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec || stopping_) return;
    const TimeMs now = SteadyMs();
    for (auto& c : Snapshot()) c->Check(now, options_.ping_interval_ms);
    ScheduleSweep();
  });
}

void Hub::Written(int64_t user_id, const std::vector<Outgoing>& batch, size_t written) {
  events_delivered_->Inc(static_cast<double>(written));
  std::lock_guard lock(delivered_mu_);
  for (size_t i = 0; i < written; ++i) {
    const Outgoing& o = batch[i];
    if (o.message_id == 0) continue;
    int64_t& mark = delivered_[{o.conversation_id, user_id}];
    mark = std::max(mark, o.message_id);
  }
}

void Hub::FlushDeliveries(bool all) {
  const TimeMs tick_ms = kTick.count();
  std::vector<std::pair<Key, int64_t>> batch;
  {
    std::lock_guard lock(delivered_mu_);
    const uint64_t tick = all ? 0 : ++ticks_;
    // Entries are ordered by conversation: the turns are worked out once per conversation.
    for (auto it = delivered_.begin(); it != delivered_.end();) {
      const int64_t conversation = it->first.first;
      uint64_t turns = 1;
      bool shared_turn = true;
      if (!all) {
        auto members = index_.MembersOf(conversation);
        const size_t n = members ? members->size() : 0;
        turns = ReceiptTurns(n, tick_ms);
        shared_turn = n <= kSharedTurnMembers;
      }
      for (; it != delivered_.end() && it->first.first == conversation;) {
        const auto turn = static_cast<uint64_t>(conversation) +
                          (shared_turn ? 0 : static_cast<uint64_t>(it->first.second));
        if ((tick + turn) % turns != 0) {
          ++it;
          continue;
        }
        batch.emplace_back(*it);
        it = delivered_.erase(it);
      }
    }
  }
  for (const auto& [key, id] : batch) d_.messages->DeliveredLive(key.first, key.second, id);
}

// ---------------------------------------------------------------------------------------------
// Typing
// ---------------------------------------------------------------------------------------------

Status Hub::Typing(Connection* c, int64_t conversation_id, bool start) {
  const int64_t user = c->user_id();
  auto members = index_.MembersOf(conversation_id);
  if (!members) return Status::NotFound("conversation not found");
  if (std::find(members->begin(), members->end(), user) == members->end()) {
    return Status::Forbidden("not a participant of this conversation");
  }
  // Announced under the lock, so that a start and a stop racing from two devices reach the
  // peers in the order they changed the state.
  std::lock_guard lock(typing_mu_);
  auto it = typing_.find({conversation_id, user});
  if (start && it != typing_.end()) {
    it->second = {SteadyMs() + options_.typing_timeout_ms, c};
    return Status::Ok();  // a refresh: the peers already know
  }
  if (!start && it == typing_.end()) return Status::Ok();  // a stop without a start
  if (const int64_t wait_ms = typing_limiter_.TryTake(user, SteadyMs())) {
    return Status::RateLimited("typing changes too fast", (wait_ms + 999) / 1000);
  }
  if (start) {
    typing_.emplace(Key{conversation_id, user}, Typist{SteadyMs() + options_.typing_timeout_ms, c});
  } else {
    typing_.erase(it);
  }
  d_.bus->Publish(domain::TypingChanged{conversation_id, user, start});
  return Status::Ok();
}

void Hub::ExpireTyping(TimeMs now) {
  EndTyping([now](const Key&, const Typist& t) { return t.deadline <= now; });
}

void Hub::EndTyping(const std::function<bool(const Key&, const Typist&)>& which) {
  std::lock_guard lock(typing_mu_);  // announced under it, as in Typing
  for (auto it = typing_.begin(); it != typing_.end();) {
    if (which(it->first, it->second)) {
      d_.bus->Publish(domain::TypingChanged{it->first.first, it->first.second, false});
      it = typing_.erase(it);
    } else {
      ++it;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Client frames
// ---------------------------------------------------------------------------------------------

void Hub::Answer(const std::shared_ptr<Connection>& c, const std::optional<std::string>& ref,
                 const Result<RawJson>& outcome) {
  if (Frame f = AnswerFrame(ref, outcome)) c->Send({std::move(f)});
}

void Hub::OnFrame(const std::shared_ptr<Connection>& c, std::string_view text, bool is_text) {
  frames_received_->Inc();
  ++frames_in_hand_;  // before draining_ is read (see Drain)
  struct Release {
    std::atomic<int>& n;
    ~Release() { --n; }
  } release{frames_in_hand_};
  if (!is_text) return Answer(c, std::nullopt, Status::InvalidRequest("frames must be JSON text"));
  const ClientFrame f = ParseClientFrame(text);
  if (!f.error.ok()) return Answer(c, f.ref, f.error);
  if (draining_ && f.type != "ping") {
    return Answer(c, f.ref, Status::Unavailable("the server is shutting down"));
  }
  if (f.type == "message") return HandleMessage(c, f);
  if (f.type == "read") return HandleRead(c, f);
  if (f.type == "typing_start" || f.type == "typing_stop") {
    auto conversation = wire::RequiredId(f.body, "conversation_id");
    if (!conversation.ok()) return Answer(c, f.ref, conversation.status());
    Status s = Typing(c.get(), *conversation, f.type == "typing_start");
    if (!s.ok()) return Answer(c, f.ref, s);
    return Answer(c, f.ref, RawJson{});
  }
  if (f.type == "ping") {
    c->Send({pong_});
    return Answer(c, f.ref, RawJson{});
  }
  Answer(c, f.ref, Status::InvalidRequest("unknown frame type"));
}

void Hub::HandleMessage(const std::shared_ptr<Connection>& c, const ClientFrame& f) {
  auto conversation = wire::RequiredId(f.body, "conversation_id");
  if (!conversation.ok()) return Answer(c, f.ref, conversation.status());
  auto content = wire::RequiredString(f.body, "content");
  if (!content.ok()) return Answer(c, f.ref, content.status());
  auto client_id = wire::OptionalString(f.body, "client_id");
  if (!client_id.ok()) return Answer(c, f.ref, client_id.status());
  domain::SendInput input{*conversation, std::move(content).value(), std::move(client_id).value()};
  // Acked from the store's answer thread, after the commit.
  c->BeginWork();
  d_.messages->Send(c->user_id(), std::move(input),
                    [this, c, ref = f.ref](Result<domain::AppendResult> r) {
                      if (!r.ok()) {
                        Answer(c, ref, r.status());
                      } else {
                        Answer(c, ref, wire::MessageText(r->message));
                      }
                      c->EndWork();
                    });
}

void Hub::HandleRead(const std::shared_ptr<Connection>& c, const ClientFrame& f) {
  auto conversation = wire::RequiredId(f.body, "conversation_id");
  if (!conversation.ok()) return Answer(c, f.ref, conversation.status());
  auto message = wire::RequiredId(f.body, "message_id");
  if (!message.ok()) return Answer(c, f.ref, message.status());
  c->BeginWork();
  net::post(d_.workers, [this, c, ref = f.ref, conversation = *conversation, message = *message] {
    auto mark = d_.messages->MarkRead(c->user_id(), conversation, message);
    if (!mark.ok()) {
      Answer(c, ref, mark.status());
    } else {
      Answer(c, ref, wire::ToRaw(wire::ReadMarkJson(*mark)));
    }
    c->EndWork();
  });
}

// ---------------------------------------------------------------------------------------------
// Fan-out of domain events
// ---------------------------------------------------------------------------------------------

void Hub::SendToUsers(const std::vector<int64_t>& users, const Outgoing& out, int64_t except) {
  std::shared_lock lock(conns_mu_);
  for (int64_t u : users) {
    if (u == except) continue;
    auto it = by_user_.find(u);
    if (it == by_user_.end()) continue;
    for (const auto& c : it->second) c->Send(out);
  }
}

void Hub::SendToMembers(int64_t conversation_id, const Outgoing& out, int64_t except) {
  if (auto members = index_.MembersOf(conversation_id)) SendToUsers(*members, out, except);
}

void Hub::OnMessage(const domain::Message& m) {
  auto members = index_.MembersOf(m.conversation_id);
  if (!members) return;
  Outgoing out{MakeRawFrame("message", wire::MessageText(m)), m.conversation_id, m.id};
  std::shared_lock lock(conns_mu_);
  for (int64_t u : *members) {
    auto it = by_user_.find(u);
    if (it == by_user_.end()) continue;
    out.message_id = u == m.sender_id ? 0 : m.id;  // the sender's own devices: no delivery
    for (const auto& c : it->second) c->Send(out);
  }
}

void Hub::OnConversationChanged(const domain::Conversation& conversation) {
  std::vector<int64_t> members;
  for (const auto& p : conversation.participants) members.push_back(p.user_id);
  index_.Set(conversation.id, members);
  // Each connected participant gets its own view (unread count, read marker).
  std::vector<int64_t> online;
  {
    std::shared_lock lock(conns_mu_);
    for (int64_t u : members) {
      if (by_user_.count(u)) online.push_back(u);
    }
  }
  for (int64_t u : online) {
    auto view = d_.conversations->ForReader(conversation, u);
    if (!view.ok()) {
      spdlog::warn("conversation {} event for user {} not sent: {}", conversation.id, u,
                   view.status().message());
      continue;
    }
    SendToUsers({u}, {MakeRawFrame("conversation", wire::ConversationText(*view))});
  }
}

void Hub::RepairIfDue(TimeMs now) {
  if (!sequencer_ || !sequencer_->RepairDue(now)) return;
  net::post(d_.workers, [this, now] {
    auto caught_up = sequencer_->Repair(now);
    if (!caught_up.ok()) {
      spdlog::warn("messages of other nodes not caught up yet: {}", caught_up.status().message());
    } else if (!*caught_up) {
      // Too much was missed to push it all: the clients catch up with `sync` when they
      // reconnect (1012: the server is restarting, as far as they can tell).
      spdlog::warn("missed too many messages of other nodes: closing WebSocket connections");
      for (auto& c : Snapshot()) c->Close(websocket::close_code::service_restart);
    }
  });
}

void Hub::OnEventsMissed() {
  ResetPresence();
  // Conversation changes may be among what was lost: the index is read again (one reload at
  // a time, on the presence strand; a change applied while reading wins, and the reading
  // starts over), then the missed messages go to the members it names.
  net::post(presence_strand_, [this] {
    for (int attempt = 0; attempt < 3; ++attempt) {
      const uint64_t before = index_.changes();
      auto memberships = d_.store->ListMemberships();
      if (!memberships.ok()) {
        spdlog::warn("conversation memberships not reloaded: {}", memberships.status().message());
        break;
      }
      if (index_.LoadIfUnchanged(*memberships, before)) break;
    }
    if (sequencer_) sequencer_->Suspect();
  });
}

void Hub::OnEvent(const domain::Event& event) {
  if (auto* e = std::get_if<domain::MessageCreated>(&event)) {
    if (sequencer_) return sequencer_->Offer(e->message, SteadyMs());
    return OnMessage(e->message);
  }
  if (std::holds_alternative<domain::EventsMissed>(event)) return OnEventsMissed();
  if (auto* e = std::get_if<domain::ReadReceipt>(&event)) {
    Json data = {{"conversation_id", e->conversation_id},
                 {"user_id", e->user_id},
                 {"message_id", e->message_id},
                 {"read_at", FormatRfc3339(e->read_at)}};
    return SendToMembers(e->conversation_id, {MakeFrame("read_receipt", data)}, e->user_id);
  }
  if (auto* e = std::get_if<domain::DeliveryReceipt>(&event)) {
    Json data = {{"conversation_id", e->conversation_id},
                 {"user_id", e->user_id},
                 {"message_id", e->message_id},
                 {"delivered_at", FormatRfc3339(e->delivered_at)}};
    return SendToMembers(e->conversation_id, {MakeFrame("delivery_receipt", data)}, e->user_id);
  }
  if (auto* e = std::get_if<domain::TypingChanged>(&event)) {
    Json data = {{"conversation_id", e->conversation_id}, {"user_id", e->user_id}};
    return SendToMembers(e->conversation_id,
                         {MakeFrame(e->typing ? "typing_start" : "typing_stop", data)}, e->user_id);
  }
  if (auto* e = std::get_if<domain::PresenceChanged>(&event)) {
    if (e->version > 0) ApplyPresence(e->user_id, e->online, e->version);
    Json data = {{"user_id", e->user_id},
                 {"online", e->online},
                 {"last_seen", e->last_seen ? Json(FormatRfc3339(*e->last_seen)) : Json()}};
    return SendToUsers(index_.PeersOf(e->user_id), {MakeFrame("presence", data)});
  }
  if (auto* e = std::get_if<domain::ConversationChanged>(&event)) {
    return OnConversationChanged(e->conversation);
  }
  if (auto* e = std::get_if<domain::ConversationRemoved>(&event)) {
    index_.Remove(e->conversation_id, e->user_id);
    const Key gone{e->conversation_id, e->user_id};
    EndTyping([gone](const Key& k, const Typist&) { return k == gone; });
    SendToUsers({e->user_id},
                {MakeFrame("conversation_removed", {{"conversation_id", e->conversation_id}})});
  }
  if (auto* e = std::get_if<domain::TokensRevoked>(&event)) {
    // Their token no longer authenticates: the connections it opened end (1008).
    std::shared_lock lock(conns_mu_);
    auto it = by_user_.find(e->user_id);
    if (it == by_user_.end()) return;
    for (const auto& c : it->second) c->Close(websocket::close_code::policy_error);
  }
}

}  // namespace mmchat::ws
