#include "bus/redis/redis_send_rate.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

namespace mmchat::bus::redis {
namespace {

// KEYS[1]: the user's key. ARGV: interval µs, tolerance µs. Returns 0 (counted) or the µs to
// wait. The due time is written with %.0f: Lua's default number format would round it.
constexpr const char* kGcra = R"lua(
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local due = tonumber(redis.call('GET', KEYS[1]) or now)
if due < now then due = now end
local wait = due - tonumber(ARGV[2]) - now
if wait > 0 then return wait end
due = due + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%.0f', due), 'PX', math.ceil((due - now) / 1000) + 1)
return 0
)lua";

}  // namespace

RedisSendRate::RedisSendRate(RedisBus* bus, double per_second, double burst,
                             domain::LocalSendRate* fallback)
    : bus_(bus),
      interval_us_(static_cast<int64_t>(std::llround(1e6 / per_second))),
      tolerance_us_(
          static_cast<int64_t>(std::llround((std::max(burst, 1.0) - 1) * 1e6 / per_second))),
      fallback_(fallback) {}

void RedisSendRate::Acquire(int64_t user, std::function<void(int64_t)> done) {
  if (!bus_->Live()) return done(fallback_->TryTake(user));
  std::vector<std::string> args{"EVAL",
                                kGcra,
                                "1",
                                "mmchat:rate:msg:" + std::to_string(user),
                                std::to_string(interval_us_),
                                std::to_string(tolerance_us_)};
  bus_->Command(std::move(args), [this, user, done = std::move(done)](Result<Reply> r) {
    if (!r.ok() || r->type != Reply::Type::kInteger) return done(fallback_->TryTake(user));
    done(r->integer <= 0 ? 0 : (r->integer + 999) / 1000);
  });
}

}  // namespace mmchat::bus::redis
