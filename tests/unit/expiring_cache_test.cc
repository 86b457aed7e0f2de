// domain::ExpiringCache, under the user and marks caches: what is kept, what news moves or
// drops it, and that a read racing news is not kept.
#include "domain/expiring_cache.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace mmchat::domain
