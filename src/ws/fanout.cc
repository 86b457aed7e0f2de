#include "ws/fanout.h"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <limits>
#include <string>
#include <string_view>
#include <variant>

#include "wire/views.h"

namespace mmchat::ws {

namespace net = boost::asio;
namespace websocket = boost::beast::websocket;

namespace {

// An overload set of lambdas, for std::visit.
template <typename... F>
struct Overloaded : F... {
  using F::operator()...;
};
template <typename... F>
Overloaded(F...) -> Overloaded<F...>;

// A read_receipt or delivery_receipt frame; `at` is when, named `at_key`.
template <typename Receipt>
Outgoing ReceiptFrame(std::string_view type, const Receipt& e, std::string_view at_key, TimeMs at) {
  Json data = {{"conversation_id", e.conversation_id},
               {"user_id", e.user_id},
               {"message_id", e.message_id},
               {std::string(at_key), FormatRfc3339(at)}};
  return {MakeFrame(type, data)};
}

}  // namespace

Fanout::Fanout(Deps deps, bool sequence_messages)
    : d_(std::move(deps)), sequence_messages_(sequence_messages) {}

Fanout::~Fanout() = default;

Status Fanout::Start() {
  if (sequence_messages_) {
    auto last = d_.store->LastMessageId();
    if (!last.ok()) return last.status();
    sequencer_ = std::make_unique<Sequencer>(
        d_.store, &d_.index,
        [this](const domain::Message& m, bool update) { update ? OnUpdated(m) : OnMessage(m); },
        [this](const domain::Conversation& c) { OnConversationRead(c); });
    sequencer_->Start(*last);
  }
  d_.bus->Subscribe([this](const domain::Event& e) { OnEvent(e); });
  return Status::Ok();
}

// Every alternative of domain::Event has its handler here, taking that type exactly (no
// generic lambda): an alternative added without one fails to compile.
void Fanout::OnEvent(const domain::Event& event) {
  std::visit(
      Overloaded{
          [this](const domain::MessageCreated& e) {
            if (sequencer_) return sequencer_->Offer(e.message, false, SteadyMs());
            CatchUpMembers(e.message);
            OnMessage(e.message);
          },
          [this](const domain::MessageUpdated& e) {
            if (sequencer_) return sequencer_->Offer(e.message, true, SteadyMs());
            OnUpdated(e.message);
          },
          [this](const domain::EventsMissed&) { OnEventsMissed(); },
          [this](const domain::ReadReceipt& e) {
            SendToMembers(e.conversation_id, ReceiptFrame("read_receipt", e, "read_at", e.read_at),
                          e.user_id);
          },
          [this](const domain::DeliveryReceipt& e) {
            SendToMembers(e.conversation_id,
                          ReceiptFrame("delivery_receipt", e, "delivered_at", e.delivered_at),
                          e.user_id);
          },
          [this](const domain::TypingChanged& e) {
            d_.typing.Heard(e);
            SendTyping(e.conversation_id, e.user_id, e.typing);
          },
          [this](const domain::PresenceChanged& e) {
            if (e.version > 0) d_.presence.Apply(e.user_id, e.online, e.version);
            // Gone from every node (a dead node's users too): no stop will come from there.
            if (!e.online) EndTyping(d_.typing.ForgetHeardOf(e.user_id));
            Json data = {{"user_id", e.user_id},
                         {"online", e.online},
                         {"last_seen", e.last_seen ? Json(FormatRfc3339(*e.last_seen)) : Json()}};
            d_.registry.SendToUsers(d_.index.PeersOf(e.user_id), {MakeFrame("presence", data)});
          },
          [this](const domain::ConversationChanged& e) { OnConversationChanged(e.conversation); },
          [this](const domain::ConversationRemoved& e) {
            d_.index.Remove(e.conversation_id, e.user_id);
            OnLeft(e.conversation_id, e.user_id);
          },
          [this](const domain::TokensRevoked& e) {
            // Their token no longer authenticates: the connections it opened end (1008).
            d_.registry.ForEach({e.user_id}, [](int64_t, const std::shared_ptr<Connection>& c) {
              c->Close(websocket::close_code::policy_error);
            });
          },
          // What is cached of the user is the caches' to forget (domain/user_cache.cc): no frame.
          [](const domain::UserChanged&) {},
      },
      event);
}

void Fanout::SendToMembers(int64_t conversation_id, const Outgoing& out, int64_t except) {
  if (auto members = d_.index.MembersOf(conversation_id)) {
    d_.registry.SendToUsers(*members, out, except);
  }
}

void Fanout::OnMessage(const domain::Message& m) {
  auto members = d_.index.MembersOf(m.conversation_id);
  if (!members) return;
  Outgoing out{MakeRawFrame("message", wire::MessageText(m)), m.conversation_id, m.id};
  d_.registry.ForEach(*members, [&](int64_t u, const std::shared_ptr<Connection>& c) {
    out.message_id = u == m.sender_id ? 0 : m.id;  // the sender's own devices: no delivery
    c->Send(out);
  });
}

void Fanout::OnUpdated(const domain::Message& m) {
  // Every participant's connections, the actor's included (its other devices must hear it).
  SendToMembers(m.conversation_id, {MakeRawFrame("message_updated", wire::MessageText(m))});
}

void Fanout::OnLeft(int64_t conversation_id, int64_t user_id) {
  d_.typing.Left(conversation_id, user_id);
  d_.registry.SendToUsers(
      {user_id}, {MakeFrame("conversation_removed", {{"conversation_id", conversation_id}})});
}

void Fanout::OnConversationRead(const domain::Conversation& conversation) {
  const auto before = d_.index.MembersOf(conversation.id);
  if (!OnConversationChanged(conversation) || !before) return;
  for (int64_t u : *before) {
    if (conversation.Find(u) == nullptr) OnLeft(conversation.id, u);
  }
}

void Fanout::CatchUpMembers(const domain::Message& m) {
  const auto held = d_.index.Version(m.conversation_id);
  if (held && *held >= m.members_version) return;
  auto conversations = d_.store->GetConversations({m.conversation_id});
  if (!conversations.ok()) {
    spdlog::warn("members of conversation {} not read: {}", m.conversation_id,
                 conversations.status().message());
    return;
  }
  for (const auto& c : *conversations) OnConversationRead(c);
}

bool Fanout::OnConversationChanged(const domain::Conversation& conversation) {
  std::vector<int64_t> members;
  for (const auto& p : conversation.participants) members.push_back(p.user_id);
  // News older than what the index holds (two changes heard out of order) is not shown.
  if (!d_.index.Set(conversation.id, members, conversation.members_version)) return false;
  // Each connected participant gets its own view (unread count, read marker).
  for (int64_t u : d_.registry.Connected(members)) {
    auto view = d_.conversations->ForReader(conversation, u);
    if (!view.ok()) {
      spdlog::warn("conversation {} event for user {} not sent: {}", conversation.id, u,
                   view.status().message());
      continue;
    }
    d_.registry.SendToUsers({u}, {MakeRawFrame("conversation", wire::ConversationText(*view))});
  }
  // Then the messages that waited for these members: a new member hears of the
  // conversation before its messages.
  if (sequencer_) sequencer_->Recheck(SteadyMs());
  return true;
}

// ---------------------------------------------------------------------------------------------
// Cluster: repairs after lost or late events of other nodes
// ---------------------------------------------------------------------------------------------

void Fanout::RepairIfDue(TimeMs now) {
  if (!sequencer_ || !sequencer_->RepairDue(now)) return;
  net::post(d_.workers, [this, now] {
    auto caught_up = sequencer_->Repair(now);
    if (!caught_up.ok()) {
      spdlog::warn("messages of other nodes not caught up yet: {}", caught_up.status().message());
    } else if (!*caught_up) {
      // Too much was missed to push it all: the clients catch up with `sync` when they
      // reconnect (1012: the server is restarting, as far as they can tell).
      spdlog::warn("missed too many messages of other nodes: closing WebSocket connections");
      for (auto& c : d_.registry.Snapshot()) c->Close(websocket::close_code::service_restart);
    }
  });
}

void Fanout::SendTyping(int64_t conversation_id, int64_t user_id, bool typing) {
  Json data = {{"conversation_id", conversation_id}, {"user_id", user_id}};
  SendToMembers(conversation_id, {MakeFrame(typing ? "typing_start" : "typing_stop", data)},
                user_id);
}

void Fanout::EndTyping(const std::vector<Typing::Key>& states) {
  for (const auto& [conversation, user] : states) SendTyping(conversation, user, false);
}

void Fanout::OnEventsMissed() {
  d_.presence.Reset();
  // The stops of other nodes' typing states may be among what was lost.
  EndTyping(d_.typing.ForgetHeard());
  // Conversation changes may be among what was lost: those the store has newer than the
  // index are announced (on the presence strand, one catch-up at a time); then the missed
  // messages go to the members they name.
  d_.presence.InTurn([this] {
    if (Status s = CatchUpConversations(); !s.ok()) {
      spdlog::warn("conversation changes not caught up: {}", s.message());
    }
    if (sequencer_) sequencer_->Suspect();
    CloseRevoked();
  });
}

Status Fanout::CatchUpConversations() {
  auto memberships = d_.store->ListMemberships();
  if (!memberships.ok()) return memberships.status();
  const std::vector<int64_t> stale = d_.index.Stale(*memberships);
  // In pages, so that a long outage does not read every changed conversation at once.
  constexpr size_t kPage = 500;
  for (size_t from = 0; from < stale.size(); from += kPage) {
    const size_t to = std::min(stale.size(), from + kPage);
    auto conversations =
        d_.store->GetConversations(std::vector<int64_t>(stale.begin() + from, stale.begin() + to));
    if (!conversations.ok()) return conversations.status();
    for (const auto& c : *conversations) OnConversationRead(c);
  }
  return Status::Ok();
}

void Fanout::CloseRevoked() {
  if (d_.users == nullptr) return;
  for (int64_t user : d_.registry.LocalUsers()) {
    auto row = d_.users->Reload(user);
    if (!row.ok()) {
      spdlog::warn("token versions not checked again: {}", row.status().message());
      return;
    }
    // A user deleted meanwhile has no valid token left.
    const int64_t current =
        row->has_value() ? (*row)->token_version : std::numeric_limits<int64_t>::max();
    d_.registry.ForEach({user}, [current](int64_t, const std::shared_ptr<Connection>& c) {
      if (c->token_version() >= 0 && c->token_version() < current) {
        c->Close(websocket::close_code::policy_error);
      }
    });
  }
}

}  // namespace mmchat::ws
