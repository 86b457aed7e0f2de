// domain::ExpiringCache, under the user and conversation caches: what is kept, what news moves or
// drops it, and that a read racing news is not kept.
#include "domain/expiring_cache.h"

#include <gtest/gtest.h>

#include <vector>

#include "fakes.h"

namespace mmchat::domain {
namespace {

TEST(ExpiringCacheTest, AReadThatNewsOvertookIsNotKept) {
  test::FakeClock clock;
  ExpiringCache<int> cache(clock.Fn(), 1000, 100);
  auto bump = [](int& v) {
    ++v;
    return true;
  };

  uint64_t ticket = cache.BeginRead(1);
  cache.Update(1, bump);  // news while the read is in flight
  cache.Put(1, 10, ticket);
  EXPECT_EQ(cache.Peek(1), std::nullopt);

  ticket = cache.BeginRead(1);
  cache.Forget(1);
  cache.Put(1, 10, ticket);
  EXPECT_EQ(cache.Peek(1), std::nullopt);

  ticket = cache.BeginRead(1);
  cache.ForgetAll();
  cache.Put(1, 10, ticket);
  EXPECT_EQ(cache.Peek(1), std::nullopt);

  // Of two reads in flight the later one is kept.
  const uint64_t first = cache.BeginRead(1);
  const uint64_t second = cache.BeginRead(1);
  cache.Put(1, 20, second);
  cache.Put(1, 10, first);
  EXPECT_EQ(cache.Peek(1), 20);

  // News about another id does not spoil a read.
  ticket = cache.BeginRead(2);
  cache.Update(3, bump);
  cache.Forget(4);
  cache.Put(2, 30, ticket);
  EXPECT_EQ(cache.Peek(2), 30);

  // A kept value takes news in place; news it cannot take drops it.
  cache.Update(2, bump);
  EXPECT_EQ(cache.Peek(2), 31);
  cache.Update(2, [](int&) { return false; });
  EXPECT_EQ(cache.Peek(2), std::nullopt);

  // A read begun before news about a kept value does not put its older read back.
  cache.Put(1, 20, cache.BeginRead(1));
  ticket = cache.BeginRead(1);
  cache.Update(1, bump);
  cache.Put(1, 20, ticket);
  EXPECT_EQ(cache.Peek(1), 21);
  clock.Advance(1000);
  EXPECT_EQ(cache.Peek(1), std::nullopt);
}

// Under steady load a read of a busy id is always in flight: overlapping reads must not
// spoil each other, or no read would ever be kept (the cache would read the store for every
// request, as a history page did before this test).
TEST(ExpiringCacheTest, OverlappingReadsAreKept) {
  test::FakeClock clock;
  ExpiringCache<int> cache(clock.Fn(), 1000, 100);
  const uint64_t t1 = cache.BeginRead(1);
  const uint64_t t2 = cache.BeginRead(1);
  cache.Put(1, 10, t1);
  EXPECT_EQ(cache.Peek(1), 10);
  const uint64_t t3 = cache.BeginRead(1);
  cache.Put(1, 11, t2);
  EXPECT_EQ(cache.Peek(1), 11);
  cache.Put(1, 12, t3);
  EXPECT_EQ(cache.Peek(1), 12);
}

// A read that found nothing leaves no placeholder behind: with a bound of 16 (one per
// shard), 1,000 lookups of missing ids would otherwise make every shard start over and
// drop what it kept.
TEST(ExpiringCacheTest, AReadThatFoundNothingLeavesNothing) {
  test::FakeClock clock;
  ExpiringCache<int> cache(clock.Fn(), 1000, 16);
  for (int64_t id = 0; id < 16; ++id) cache.Put(id, 7, cache.BeginRead(id));
  for (int64_t missing = 1000; missing < 2000; ++missing) {
    cache.EndRead(missing, cache.BeginRead(missing));
  }
  for (int64_t id = 0; id < 16; ++id) EXPECT_EQ(cache.Peek(id), 7) << id;
  // Only the read's own placeholder goes: a value, or a later read's ticket, stays.
  const uint64_t first = cache.BeginRead(3);
  const uint64_t second = cache.BeginRead(3);
  cache.EndRead(3, first);
  cache.Put(3, 8, second);
  EXPECT_EQ(cache.Peek(3), 8);
  cache.EndRead(3, second);
  EXPECT_EQ(cache.Peek(3), 8);
}

// With a weight, a shard is full by the weight of its values, not their count. 16 shards of
// weight 10 each (bound 160): ids 0, 16, 32, ... share shard 0.
TEST(ExpiringCacheTest, HeavyValuesFillAShardSooner) {
  test::FakeClock clock;
  ExpiringCache<std::vector<int>> cache(clock.Fn(), 1000, 16 * 9,
                                        [](const std::vector<int>& v) { return v.size(); });
  cache.Put(0, std::vector<int>(6), cache.BeginRead(0));
  cache.Put(16, std::vector<int>(1), cache.BeginRead(16));
  EXPECT_TRUE(cache.Peek(0).has_value());
  // Growing in place counts too: the shard now weighs 6 + 4.
  cache.Update(16, [](std::vector<int>& v) {
    v.resize(4);
    return true;
  });
  cache.Put(32, std::vector<int>(1), cache.BeginRead(32));  // the shard was full: starts over
  EXPECT_FALSE(cache.Peek(0).has_value());
  EXPECT_FALSE(cache.Peek(16).has_value());
  EXPECT_EQ(cache.Peek(32)->size(), 1u);
  // Forgetting gives the weight back: eight light values fit after a heavy one left.
  cache.Put(48, std::vector<int>(8), cache.BeginRead(48));
  cache.Forget(48);
  for (int64_t id = 64; id < 64 + 16 * 7; id += 16) {
    cache.Put(id, std::vector<int>(1), cache.BeginRead(id));
  }
  EXPECT_TRUE(cache.Peek(32).has_value());
}

TEST(ExpiringCacheTest, ForgetIfDropsWhatMayHaveChangedAndReadsInFlight) {
  test::FakeClock clock;
  ExpiringCache<int> cache(clock.Fn(), 1000, 100);
  for (int64_t id = 1; id <= 4; ++id) cache.Put(id, static_cast<int>(id), cache.BeginRead(id));
  const uint64_t in_flight = cache.BeginRead(5);
  cache.ForgetIf([](int v) { return v % 2 == 0; });
  EXPECT_EQ(cache.Peek(1), 1);
  EXPECT_EQ(cache.Peek(2), std::nullopt);
  EXPECT_EQ(cache.Peek(3), 3);
  EXPECT_EQ(cache.Peek(4), std::nullopt);
  cache.Put(5, 5, in_flight);  // it may have read before the change
  EXPECT_EQ(cache.Peek(5), std::nullopt);
}

}  // namespace
}  // namespace mmchat::domain
