// Who is online, as the hub knows it: this node's own presence transitions and, in a cluster,
// the replica of who is online on the other nodes. The registry says who has a connection
// here (ws/connection_registry.h); Hub::IsOnline asks both.
//
// Local: a user's first connection here announces the user online, the last one offline with
// last_seen. The transitions touch the database: they run on the workers, one at a time, in
// the order the connections opened and closed (the presence strand). In a cluster the
// directory counts the user's connections over every node, and only its crossings of 0 are
// announced.
//
// Cluster: the replica of who is online on other nodes, PresenceChanged news applied in
// version order, and the whole read again from the directory after lost events.
//
// Thread-safe.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/strand.hpp>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "domain/presence.h"
#include "domain/presence_service.h"

namespace mmchat::ws {

class PresenceTracker {
 public:
  // `directory`: in a cluster, the users' connections counted over every node (null: this
  // node alone).
  PresenceTracker(boost::asio::any_io_executor workers, domain::PresenceService* presence,
                  domain::PresenceDirectory* directory);

  // A user's first connection here opened: announced online in turn (in a cluster, only if no
  // other node had the user already).
  void Opened(int64_t user_id);
  // A user's last connection here closed: announced offline in turn (in a cluster, only if no
  // other node has the user). `closed` runs once the user is offline to readers here: when
  // last_seen is stored, before the news goes out, or when another node still has the user.
  void Closed(int64_t user_id, std::function<void()> closed);

  // In a cluster: whether the replica says `user_id` is online on another node.
  bool OnlineElsewhere(int64_t user_id) const;
  // In a cluster: the directory's word on `user_id` over every node (a Redis round trip; the
  // replica's when Redis cannot answer). Single node: nullopt.
  std::optional<domain::PresenceView::Reading> ReadElsewhere(int64_t user_id) const;
  bool Clustered() const { return directory_ != nullptr; }
  // News of another node (versions > 0), applied in version order.
  void Apply(int64_t user_id, bool online, int64_t version);
  // The bus lost events: the replica is read again from the directory (in turn).
  void Reset();

  // A task run in turn with this node's presence changes; and waiting until those queued have
  // run.
  void InTurn(std::function<void()> task);
  void Wait();

 private:
  domain::PresenceService* const presence_;
  domain::PresenceDirectory* const directory_;
  // Presence transitions touch the database: they run on the workers, one at a time, in the
  // order the connections opened and closed.
  boost::asio::strand<boost::asio::any_io_executor> strand_;

  // In a cluster, who is online anywhere, as PresenceChanged news said (versions > 0).
  struct Remote {
    bool online = false;
    int64_t version = 0;
  };
  mutable std::mutex replica_mu_;
  std::unordered_map<int64_t, Remote> replica_;  // guarded by replica_mu_
  std::string replica_epoch_;                    // the directory's; guarded by replica_mu_
};

}  // namespace mmchat::ws
