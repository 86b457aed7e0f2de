#include "bus/redis/redis_presence.h"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <charconv>
#include <future>
#include <nlohmann/json.hpp>

#include "common/time.h"

namespace mmchat::bus::redis {
namespace net = boost::asio;
using Json = nlohmann::json;

namespace {

// Each script reads Redis's own clock, so that nodes whose clocks differ agree on expiry.
#define MMCHAT_NOW                \
  "local t = redis.call('TIME') " \
  "local now = t[1] * 1000 + math.floor(t[2] / 1000) "

// ARGV: node, user. -1: the node was reaped; 0: no crossing; else the crossing's version.
constexpr const char* kOpen = R"lua(
if not redis.call('ZSCORE', 'mmchat:nodes', ARGV[1]) then return -1 end
if redis.call('SADD', 'mmchat:node:' .. ARGV[1], ARGV[2]) == 0 then return 0 end
if redis.call('HINCRBY', 'mmchat:online', ARGV[2], 1) == 1 then
  return redis.call('INCR', 'mmchat:presence:seq')
end
return 0
)lua";

// Every script that takes a user's count to 0 keeps the time of that last close in
// mmchat:seen:<user> for a minute, the same time the node stores as last_seen: a reader on
// any node that finds the user offline gets it even before the stored row reaches that
// node's cache (RedisPresence::Read).
#define MMCHAT_GONE                                                    \
  "local function gone(u, at) "                                         \
  "  redis.call('HDEL', 'mmchat:online', u) "                           \
  "  redis.call('SET', 'mmchat:seen:' .. u, at, 'PX', 60000) "          \
  "end "

// ARGV: node, user, the close's time (ms).
constexpr const char* kClose = MMCHAT_GONE R"lua(
if not redis.call('ZSCORE', 'mmchat:nodes', ARGV[1]) then return -1 end
if redis.call('SREM', 'mmchat:node:' .. ARGV[1], ARGV[2]) == 0 then return 0 end
if redis.call('HINCRBY', 'mmchat:online', ARGV[2], -1) <= 0 then
  gone(ARGV[2], ARGV[3])
  return redis.call('INCR', 'mmchat:presence:seq')
end
return 0
)lua";

// ARGV: node, ttl ms, the closes Redis did not hear ({"user": ms}, JSON), then the users the
// node has. Replaces the node's set and renews it. Returns {version, now, users that came
// online, users that went offline}.
constexpr const char* kRegister = MMCHAT_NOW MMCHAT_GONE R"lua(
local key = 'mmchat:node:' .. ARGV[1]
local unheard = cjson.decode(ARGV[3])
local want = {}
for i = 4, #ARGV do want[ARGV[i]] = true end
local ups, downs = {}, {}
for _, u in ipairs(redis.call('SMEMBERS', key)) do
  if want[u] then
    want[u] = nil
  else
    redis.call('SREM', key, u)
    if redis.call('HINCRBY', 'mmchat:online', u, -1) <= 0 then
      gone(u, unheard[u] or now)
      table.insert(downs, u)
    end
  end
end
for u, _ in pairs(want) do
  redis.call('SADD', key, u)
  if redis.call('HINCRBY', 'mmchat:online', u, 1) == 1 then table.insert(ups, u) end
end
redis.call('ZADD', 'mmchat:nodes', now + tonumber(ARGV[2]), ARGV[1])
-- The first registration after Redis lost its data names a new epoch.
redis.call('SET', 'mmchat:presence:epoch', ARGV[1] .. ':' .. now, 'NX')
local seq = 0
if #ups + #downs > 0 then seq = redis.call('INCR', 'mmchat:presence:seq') end
return {seq, now, ups, downs}
)lua";

// ARGV: node, ttl ms. -1: reaped (register again).
constexpr const char* kRenew = MMCHAT_NOW R"lua(
if not redis.call('ZSCORE', 'mmchat:nodes', ARGV[1]) then return -1 end
redis.call('ZADD', 'mmchat:nodes', now + tonumber(ARGV[2]), ARGV[1])
return 1
)lua";

// ARGV: ttl ms, and optionally one node to take out now (a clean stop). Removes the nodes
// past their time; returns {version, user, last_seen, user, last_seen, ...} for the users
// left with no node.
constexpr const char* kReap = MMCHAT_NOW MMCHAT_GONE R"lua(
local nodes = redis.call('ZRANGEBYSCORE', 'mmchat:nodes', '-inf', now)
local last = {}
for _, node in ipairs(nodes) do
  last[node] = tonumber(redis.call('ZSCORE', 'mmchat:nodes', node)) - tonumber(ARGV[1])
end
if ARGV[2] and redis.call('ZSCORE', 'mmchat:nodes', ARGV[2]) then
  table.insert(nodes, ARGV[2])
  last[ARGV[2]] = now
end
local out = {0}
for _, node in ipairs(nodes) do
  local key = 'mmchat:node:' .. node
  for _, u in ipairs(redis.call('SMEMBERS', key)) do
    if redis.call('HINCRBY', 'mmchat:online', u, -1) <= 0 then
      gone(u, last[node])
      table.insert(out, u)
      table.insert(out, last[node])
    end
  end
  redis.call('DEL', key)
  redis.call('DEL', 'mmchat:conns:' .. node)  -- its connections (redis_connection_tally.h)
  redis.call('ZREM', 'mmchat:nodes', node)
end
if #out > 1 then out[1] = redis.call('INCR', 'mmchat:presence:seq') end
return out
)lua";

// {version, users online anywhere, epoch}, read together.
constexpr const char* kOnline = R"lua(
return {tonumber(redis.call('GET', 'mmchat:presence:seq') or '0'), redis.call('HKEYS', 'mmchat:online'),
        redis.call('GET', 'mmchat:presence:epoch') or ''}
)lua";

// ARGV: user. {nodes that have the user, the time kept of its last close or false}.
constexpr const char* kRead = R"lua(
return {tonumber(redis.call('HGET', 'mmchat:online', ARGV[1]) or '0'),
        redis.call('GET', 'mmchat:seen:' .. ARGV[1])}
)lua";

#undef MMCHAT_NOW
#undef MMCHAT_GONE

int64_t ToId(const std::string& s) {
  int64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

std::vector<std::string> Eval(const char* script, std::vector<std::string> args) {
  std::vector<std::string> out{"EVAL", script, "0"};
  for (auto& a : args) out.push_back(std::move(a));
  return out;
}

}  // namespace

RedisPresence::RedisPresence(RedisBus* bus, std::string node, RedisPresenceOptions options)
    : bus_(bus),
      node_(std::move(node)),
      options_(options),
      renew_timer_(bus->io()),
      reap_timer_(bus->io()) {
  bus_->AtStop([this] {
    stopped_ = true;
    renew_timer_.cancel();
    reap_timer_.cancel();
  });
}

RedisPresence::~RedisPresence() { bus_->Stop(); }

void RedisPresence::Start(std::function<std::vector<int64_t>()> local_users,
                          std::function<void(std::function<void()>)> in_turn, Gone gone,
                          Back back) {
  local_users_ = std::move(local_users);
  in_turn_ = std::move(in_turn);
  gone_ = std::move(gone);
  back_ = std::move(back);
  net::post(bus_->io(), [this] {
    Renew();
    Reap();
  });
}

void RedisPresence::OutOfStep() {
  out_of_step_ = true;
  // One registration queued at a time covers everything that happened before it runs.
  if (!register_queued_.exchange(true)) in_turn_([this] { Register(); });
}

RedisPresence::Crossing RedisPresence::Change(const char* script, int64_t user_id,
                                              std::optional<TimeMs> closed_at) {
  std::vector<std::string> args{node_, std::to_string(user_id)};
  if (closed_at) args.push_back(std::to_string(*closed_at));
  auto r = bus_->Call(Eval(script, std::move(args)), options_.call_timeout);
  if (!r.ok() || r->type != Reply::Type::kInteger) {
    // Counted here alone for now; the registration once Redis is back tells it.
    out_of_step_ = true;
    if (closed_at) {
      std::lock_guard lock(offline_mu_);
      offline_unheard_[user_id] = *closed_at;
    }
    return {true, 0};
  }
  if (r->integer < 0) {  // this node was reaped: registering again sets things right
    OutOfStep();
    return {false, 0};
  }
  return {r->integer > 0, r->integer};
}

RedisPresence::Crossing RedisPresence::Opened(int64_t user_id) {
  return Change(kOpen, user_id, std::nullopt);
}

RedisPresence::Crossing RedisPresence::Closed(int64_t user_id, TimeMs at) {
  return Change(kClose, user_id, at);
}

Result<domain::PresenceView::Reading> RedisPresence::Read(int64_t user_id) {
  auto r = bus_->Call(Eval(kRead, {std::to_string(user_id)}), options_.call_timeout);
  if (!r.ok()) return r.status();
  if (r->type != Reply::Type::kArray || r->elements.size() != 2) {
    return Status::Unavailable("redis: unexpected presence reading");
  }
  domain::PresenceView::Reading out;
  out.online = r->elements[0].integer > 0;
  if (!out.online && r->elements[1].type == Reply::Type::kString) {
    out.last_seen = ToId(r->elements[1].str);
  }
  return out;
}

Result<domain::PresenceDirectory::Snapshot> RedisPresence::Online() {
  auto r = bus_->Call(Eval(kOnline, {}), options_.call_timeout);
  if (!r.ok()) return r.status();
  if (r->type != Reply::Type::kArray || r->elements.size() != 3) {
    return Status::Unavailable("redis: unexpected presence snapshot");
  }
  Snapshot out;
  out.version = r->elements[0].integer;
  out.epoch = r->elements[2].str;
  for (const Reply& u : r->elements[1].elements) out.online.push_back(ToId(u.str));
  return out;
}

void RedisPresence::Leave() {
  // The timers first: a reap of other nodes answered after this would find nobody to
  // announce its users.
  auto stopped = std::make_shared<std::promise<void>>();
  net::post(bus_->io(), [this, stopped] {
    stopped_ = true;
    renew_timer_.cancel();
    reap_timer_.cancel();
    stopped->set_value();
  });
  // The bus's thread may be gone already (then nothing is armed any more).
  stopped->get_future().wait_for(options_.call_timeout);
  auto r =
      bus_->Call(Eval(kReap, {std::to_string(options_.ttl.count()), node_}), options_.call_timeout);
  if (r.ok()) TellGone(*r);
}

void RedisPresence::ScheduleRenew(std::chrono::milliseconds after) {
  if (stopped_) return;
  renew_timer_.expires_after(after);
  renew_timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec) Renew();
  });
}

void RedisPresence::Renew() {
  if (stopped_) return;
  const auto period = options_.ttl / 3;
  if (!bus_->Live()) {
    // Whatever happens meanwhile, Redis does not hear of it: register once it is back.
    out_of_step_ = true;
    return ScheduleRenew(std::chrono::milliseconds(100));
  }
  if (out_of_step_) {
    OutOfStep();
    return ScheduleRenew(period);
  }
  bus_->Command(Eval(kRenew, {node_, std::to_string(options_.ttl.count())}),
                [this](Result<Reply> r) {
                  if (r.ok() && r->type == Reply::Type::kInteger && r->integer < 0) {
                    spdlog::warn(
                        "presence: this node was counted out of the cluster (cut off "
                        "for longer than CLUSTER_NODE_TTL_SEC); registering again");
                    OutOfStep();
                  }
                });
  ScheduleRenew(period);
}

void RedisPresence::Register() {
  // Changes from now on are told to Redis; a failure below sets this again.
  register_queued_ = false;
  out_of_step_ = false;
  // Closes Redis did not hear: it keeps their own times for readers (kept until the answer,
  // as a failed call leaves them unheard).
  std::unordered_map<int64_t, TimeMs> unheard;
  {
    std::lock_guard lock(offline_mu_);
    unheard = offline_unheard_;
  }
  Json unheard_json = Json::object();
  for (const auto& [user, at] : unheard) unheard_json[std::to_string(user)] = at;
  std::vector<std::string> args{node_, std::to_string(options_.ttl.count()), unheard_json.dump()};
  for (int64_t u : local_users_()) args.push_back(std::to_string(u));
  auto r = bus_->Call(Eval(kRegister, std::move(args)), options_.call_timeout);
  if (!r.ok() || r->type != Reply::Type::kArray || r->elements.size() != 4) {
    out_of_step_ = true;  // the next renewal tries again
    return;
  }
  {
    std::lock_guard lock(offline_mu_);
    for (const auto& [user, _] : unheard) offline_unheard_.erase(user);
  }
  const int64_t version = r->elements[0].integer;
  const TimeMs now = r->elements[1].integer;
  for (const Reply& u : r->elements[2].elements) back_(ToId(u.str), version);
  for (const Reply& u : r->elements[3].elements) {
    // Closed while Redis was away: last_seen is when that happened.
    const int64_t user = ToId(u.str);
    auto it = unheard.find(user);
    gone_(user, it != unheard.end() ? it->second : now, version);
  }
}

void RedisPresence::TellGone(const Reply& reaped) {
  if (reaped.type != Reply::Type::kArray || reaped.elements.size() < 3) return;
  const int64_t version = reaped.elements[0].integer;
  for (size_t i = 1; i + 1 < reaped.elements.size(); i += 2) {
    gone_(ToId(reaped.elements[i].str), reaped.elements[i + 1].integer, version);
  }
}

void RedisPresence::Reap() {
  if (stopped_) return;
  if (bus_->Live()) {
    bus_->Command(Eval(kReap, {std::to_string(options_.ttl.count())}), [this](Result<Reply> r) {
      // Nobody reaped (the usual answer, twice a second): nothing to hand to the hub.
      if (!r.ok() || r->type != Reply::Type::kArray || r->elements.size() < 3) return;
      in_turn_([this, reaped = std::move(r).value()] { TellGone(reaped); });
    });
  }
  reap_timer_.expires_after(options_.reap_interval);
  reap_timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec) Reap();
  });
}

}  // namespace mmchat::bus::redis
