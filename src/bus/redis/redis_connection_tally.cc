#include "bus/redis/redis_connection_tally.h"

#include <boost/asio/post.hpp>
#include <future>
#include <memory>
#include <variant>

namespace mmchat::bus::redis {
namespace {

namespace net = boost::asio;

// ARGV: this node, the user. The user's connections on the other nodes still alive.
constexpr const char* kOnOtherNodes = R"lua(
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local sum = 0
for _, node in ipairs(redis.call('ZRANGEBYSCORE', 'mmchat:nodes', '(' .. now, '+inf')) do
  if node ~= ARGV[1] then
    sum = sum + tonumber(redis.call('HGET', 'mmchat:conns:' .. node, ARGV[2]) or '0')
  end
end
return sum
)lua";

// KEYS[1]: this node's hash; ARGV: user, count, user, count, ... Replaces the hash.
constexpr const char* kRewrite = R"lua(
redis.call('DEL', KEYS[1])
for i = 1, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 0
)lua";

}  // namespace

RedisConnectionTally::RedisConnectionTally(RedisBus* bus, std::string node,
                                           std::chrono::milliseconds resync,
                                           std::chrono::milliseconds call_timeout)
    : bus_(bus),
      node_(std::move(node)),
      key_("mmchat:conns:" + node_),
      resync_(resync),
      call_timeout_(call_timeout),
      timer_(bus->io()) {
  bus_->AtStop([this] {
    stopped_ = true;
    timer_.cancel();
  });
  // A (re)subscription: Redis may have lost everything meanwhile (a restart).
  bus_->Subscribe(
      [this](const domain::Event& e) {
        if (std::holds_alternative<domain::EventsMissed>(e)) lost_ = true;
      },
      domain::Reach::kCluster);
}

RedisConnectionTally::~RedisConnectionTally() { bus_->Stop(); }

void RedisConnectionTally::Start(std::function<Counts()> local) {
  local_ = std::move(local);
  net::post(bus_->io(), [this] { Tick(); });
}

void RedisConnectionTally::Leave() {
  auto stopped = std::make_shared<std::promise<void>>();
  net::post(bus_->io(), [this, stopped] {
    stopped_ = true;
    timer_.cancel();
    stopped->set_value();
  });
  stopped->get_future().wait_for(call_timeout_);
  (void)bus_->Call({"DEL", key_}, call_timeout_);
}

void RedisConnectionTally::Set(int64_t user, size_t count) {
  ++changes_;
  if (!bus_->Live()) {
    lost_ = true;
    return;
  }
  std::vector<std::string> args =
      count == 0
          ? std::vector<std::string>{"HDEL", key_, std::to_string(user)}
          : std::vector<std::string>{"HSET", key_, std::to_string(user), std::to_string(count)};
  bus_->Command(std::move(args), [this](Result<Reply> r) {
    if (!r.ok()) lost_ = true;
  });
}

size_t RedisConnectionTally::OnOtherNodes(int64_t user) {
  if (!bus_->Live()) return 0;
  auto r = bus_->Call({"EVAL", kOnOtherNodes, "0", node_, std::to_string(user)}, call_timeout_);
  if (!r.ok() || r->type != Reply::Type::kInteger || r->integer < 0) return 0;
  return static_cast<size_t>(r->integer);
}

void RedisConnectionTally::Tick() {
  if (stopped_) return;
  const auto now = std::chrono::steady_clock::now();
  if (bus_->Live() && (lost_ || now - last_rewrite_ >= resync_)) Rewrite();
  timer_.expires_after(std::chrono::seconds(1));
  timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec) Tick();
  });
}

void RedisConnectionTally::Rewrite() {
  last_rewrite_ = std::chrono::steady_clock::now();
  lost_ = false;
  const uint64_t before = changes_;
  std::vector<std::string> args{"EVAL", kRewrite, "1", key_};
  for (const auto& [user, count] : local_()) {
    args.push_back(std::to_string(user));
    args.push_back(std::to_string(count));
  }
  bus_->Command(std::move(args), [this](Result<Reply> r) {
    if (!r.ok()) lost_ = true;
  });
  // A change between the snapshot and this command may have been written before it, and
  // overwritten by the older count: write everything again in a second.
  if (changes_ != before) lost_ = true;
}

}  // namespace mmchat::bus::redis
