// bus/redis/redis_connection: hiredis driven by Asio, against a real redis-server started by
// each test (tests/support/test_redis.h): commands and replies, deadlines, subscriptions,
// and every way a connection ends being reported once.
#include "bus/redis/redis_connection.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "bus/redis/redis_url.h"
#include "test_redis.h"

namespace mmchat::bus::redis {
namespace {

using namespace std::chrono_literals;
using test::TestRedis;

// Runs `io` until `done()` holds; false after `limit`.
bool RunUntil(boost::asio::io_context& io, const std::function<bool()>& done,
              std::chrono::milliseconds limit = 5000ms) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  io.restart();
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    io.run_one_for(10ms);
  }
  return true;
}

class RedisConnectionTest : public ::testing::Test {
 protected:
  std::shared_ptr<RedisConnection> Connected(int port, RedisConnection::Options o = {}) {
    if (o.host.empty()) o.host = "localhost";
    o.port = port;
    auto c = RedisConnection::Create(io_, o);
    std::optional<Status> s;
    c->Connect([&](Status r) { s = r; });
    EXPECT_TRUE(RunUntil(io_, [&] { return s.has_value(); }));
    EXPECT_TRUE(s && s->ok()) << (s ? s->message() : "no answer");
    return c;
  }

  Result<Reply> Run(RedisConnection& c, std::vector<std::string> args) {
    std::optional<Result<Reply>> r;
    c.Command(std::move(args), [&](Result<Reply> reply) { r = std::move(reply); });
    EXPECT_TRUE(RunUntil(io_, [&] { return r.has_value(); }));
    return r ? std::move(*r) : Result<Reply>(Status::Internal("no answer"));
  }

  boost::asio::io_context io_;
};

TEST_F(RedisConnectionTest, CommandsGetTheirRepliesInOrderAndAnErrorReplyKeepsTheConnection) {
  TestRedis server;
  ASSERT_TRUE(server.ok());
  auto c = Connected(server.port());
  ASSERT_TRUE(c->connected());

  auto set = Run(*c, {"SET", "k", std::string("v\0w", 3)});  // binary-safe arguments
  ASSERT_TRUE(set.ok());
  EXPECT_EQ(set->type, Reply::Type::kStatus);
  EXPECT_EQ(set->str, "OK");
  auto get = Run(*c, {"GET", "k"});
  ASSERT_TRUE(get.ok());
  EXPECT_EQ(get->type, Reply::Type::kString);
  EXPECT_EQ(get->str, std::string("v\0w", 3));
  EXPECT_EQ(Run(*c, {"GET", "missing"})->type, Reply::Type::kNil);

  auto wrong = Run(*c, {"INCR", "k"});  // not an integer: Redis answers with an error
  ASSERT_TRUE(wrong.ok());
  EXPECT_EQ(wrong->type, Reply::Type::kError);
  EXPECT_NE(wrong->str.find("not an integer"), std::string::npos) << wrong->str;

  // Many at once: each handler gets its own reply.
  std::vector<long long> got;
  for (int i = 1; i <= 50; ++i) {
    c->Command({"INCRBY", "n", "1"}, [&](Result<Reply> r) {
      ASSERT_TRUE(r.ok());
      got.push_back(r->integer);
    });
  }
  ASSERT_TRUE(RunUntil(io_, [&] { return got.size() == 50; }));
  for (int i = 0; i < 50; ++i) EXPECT_EQ(got[static_cast<size_t>(i)], i + 1);

  auto list = Run(*c, {"LRANGE", "none", "0", "-1"});
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->type, Reply::Type::kArray);
  EXPECT_TRUE(list->elements.empty());
  c->Close();
  ASSERT_TRUE(RunUntil(io_, [&] { return !c->connected(); }));
}

TEST_F(RedisConnectionTest, ARefusedConnectionIsUnavailable) {
  const int port = test::FreeLoopbackPort();
  auto c = RedisConnection::Create(io_, {.host = "127.0.0.1", .port = port});
  std::optional<Status> s;
  c->Connect([&](Status r) { s = r; });
  ASSERT_TRUE(RunUntil(io_, [&] { return s.has_value(); }));
  EXPECT_EQ(s->code(), StatusCode::kUnavailable);
  EXPECT_FALSE(c->connected());
  auto r = Run(*c, {"PING"});
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);

  // A connection is made once: a second Connect is refused, the first answered once.
  auto twice = RedisConnection::Create(io_, {.host = "127.0.0.1", .port = port});
  int first = 0;
  std::optional<Status> second;
  twice->Connect([&](Status) { ++first; });
  twice->Connect([&](Status r2) { second = r2; });
  ASSERT_TRUE(RunUntil(io_, [&] { return first == 1 && second.has_value(); }));
  EXPECT_NE(second->message().find("already used"), std::string::npos) << second->message();
  RunUntil(
      io_, [] { return false; }, 100ms);
  EXPECT_EQ(first, 1);
}

TEST_F(RedisConnectionTest, AnUnansweredCommandEndsTheConnectionAndFailsTheRest) {
  TestRedis server;
  ASSERT_TRUE(server.ok());
  auto c = Connected(server.port(), {.command_timeout = 300ms});
  std::optional<Status> closed;
  c->OnClosed([&](Status s) { closed = s; });

  // BLPOP on an empty list answers only after 5 s; the deadline ends the wait first.
  std::optional<Result<Reply>> blocked, behind;
  c->Command({"BLPOP", "empty", "5"}, [&](Result<Reply> r) { blocked = std::move(r); });
  c->Command({"PING"}, [&](Result<Reply> r) { behind = std::move(r); });
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(RunUntil(io_, [&] { return blocked && behind && closed; }));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
  EXPECT_EQ(blocked->status().code(), StatusCode::kUnavailable);
  EXPECT_NE(blocked->status().message().find("no reply within 300 ms"), std::string::npos)
      << blocked->status().message();
  EXPECT_EQ(behind->status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(closed->code(), StatusCode::kUnavailable);
  EXPECT_FALSE(c->connected());
  EXPECT_EQ(Run(*c, {"PING"}).status().code(), StatusCode::kUnavailable);
}

TEST_F(RedisConnectionTest, ASubscriberGetsEveryMessageOfItsChannelsOnly) {
  TestRedis server;
  ASSERT_TRUE(server.ok());
  auto sub = Connected(server.port());
  auto pub = Connected(server.port());
  std::vector<std::pair<std::string, std::string>> got;
  std::optional<Status> subscribed;
  sub->Subscribe(
      {"a", "b"},
      [&](std::string_view ch, std::string_view payload) { got.emplace_back(ch, payload); },
      [&](Status s) { subscribed = s; });
  ASSERT_TRUE(RunUntil(io_, [&] { return subscribed.has_value(); }));
  ASSERT_TRUE(subscribed->ok()) << subscribed->message();

  // Nothing else runs on a subscribed connection: its reply would go to the subscription.
  auto refused = Run(*sub, {"PING"});
  EXPECT_EQ(refused.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(refused.status().message().find("subscri"), std::string::npos);
  EXPECT_TRUE(sub->connected());

  const std::string binary("x\0y\r\n", 5);
  EXPECT_EQ(Run(*pub, {"PUBLISH", "a", "one"})->integer, 1);  // one subscriber heard it
  EXPECT_EQ(Run(*pub, {"PUBLISH", "c", "elsewhere"})->integer, 0);
  EXPECT_EQ(Run(*pub, {"PUBLISH", "b", binary})->integer, 1);
  ASSERT_TRUE(RunUntil(io_, [&] { return got.size() == 2; }));
  EXPECT_EQ(got[0], (std::pair<std::string, std::string>{"a", "one"}));
  EXPECT_EQ(got[1], (std::pair<std::string, std::string>{"b", binary}));
  sub->Close();
  pub->Close();
  ASSERT_TRUE(RunUntil(io_, [&] { return !sub->connected() && !pub->connected(); }));
}

TEST_F(RedisConnectionTest, AKilledSubscriptionAndAServerThatDiesAreReportedOnce) {
  TestRedis server;
  ASSERT_TRUE(server.ok());
  auto sub = Connected(server.port());
  auto cmd = Connected(server.port());
  int sub_closed = 0, cmd_closed = 0;
  sub->OnClosed([&](Status s) {
    EXPECT_EQ(s.code(), StatusCode::kUnavailable);
    ++sub_closed;
  });
  cmd->OnClosed([&](Status s) {
    EXPECT_EQ(s.code(), StatusCode::kUnavailable);
    ++cmd_closed;
  });
  std::optional<Status> subscribed;
  sub->Subscribe(
      {"a"}, [](std::string_view, std::string_view) {}, [&](Status s) { subscribed = s; });
  ASSERT_TRUE(RunUntil(io_, [&] { return subscribed.has_value(); }));

  // The server drops the subscriber (as it does past client-output-buffer-limit pubsub).
  auto killed = Run(*cmd, {"CLIENT", "KILL", "TYPE", "pubsub"});
  ASSERT_TRUE(killed.ok());
  EXPECT_EQ(killed->integer, 1);
  ASSERT_TRUE(RunUntil(io_, [&] { return sub_closed == 1; }));
  EXPECT_FALSE(sub->connected());

  // The server dies with a command in flight: it fails, and the end is reported once.
  std::optional<Result<Reply>> in_flight;
  cmd->Command({"BLPOP", "empty", "5"}, [&](Result<Reply> r) { in_flight = std::move(r); });
  server.Kill();
  ASSERT_TRUE(RunUntil(io_, [&] { return in_flight.has_value() && cmd_closed == 1; }));
  EXPECT_EQ(in_flight->status().code(), StatusCode::kUnavailable);
  cmd->Close();  // closing an ended connection is harmless
  RunUntil(
      io_, [] { return false; }, 100ms);
  EXPECT_EQ(sub_closed, 1);
  EXPECT_EQ(cmd_closed, 1);
}

TEST_F(RedisConnectionTest, AuthAndSelectComeBeforeTheConnectionIsReady) {
  TestRedis server({"--requirepass", "s3cret"});
  ASSERT_TRUE(server.ok());
  // A name, not an address: resolved without blocking the thread.
  auto c = Connected(server.port(), {.host = "", .password = "s3cret", .db = 3});
  ASSERT_TRUE(c->connected());
  ASSERT_EQ(Run(*c, {"SET", "k", "in three"})->str, "OK");
  auto zero = Connected(server.port(), {.password = "s3cret"});
  EXPECT_EQ(Run(*zero, {"GET", "k"})->type, Reply::Type::kNil);  // db 0 has no k
  EXPECT_EQ(Run(*zero, {"SELECT", "3"})->str, "OK");
  EXPECT_EQ(Run(*zero, {"GET", "k"})->str, "in three");

  for (const std::string password : {"wrong", ""}) {
    auto refused = RedisConnection::Create(
        io_, {.host = "localhost", .port = server.port(), .password = password});
    std::optional<Status> s;
    refused->Connect([&](Status r) { s = r; });
    ASSERT_TRUE(RunUntil(io_, [&] { return s.has_value(); }));
    if (password.empty()) {
      // No AUTH: the server lets it connect, and refuses its first command.
      ASSERT_TRUE(s->ok());
      auto r = Run(*refused, {"GET", "k"});
      ASSERT_TRUE(r.ok());
      EXPECT_EQ(r->type, Reply::Type::kError);
      EXPECT_NE(r->str.find("NOAUTH"), std::string::npos) << r->str;
    } else {
      EXPECT_EQ(s->code(), StatusCode::kUnavailable);
      EXPECT_NE(s->message().find("AUTH refused"), std::string::npos) << s->message();
      EXPECT_EQ(s->message().find("wrong"), std::string::npos) << "the password is not told";
      EXPECT_FALSE(refused->connected());
    }
  }
}

TEST_F(RedisConnectionTest, AnUnknownHostIsUnavailable) {
  // However slow this machine's resolver is, the answer names the host.
  auto c = RedisConnection::Create(
      io_, {.host = "no-such-host.invalid", .port = 6379, .connect_timeout = 20s});
  std::optional<Status> s;
  c->Connect([&](Status r) { s = r; });
  ASSERT_TRUE(RunUntil(
      io_, [&] { return s.has_value(); }, 30s));
  EXPECT_EQ(s->code(), StatusCode::kUnavailable);
  EXPECT_NE(s->message().find("no-such-host.invalid"), std::string::npos) << s->message();
}

TEST(RedisUrlTest, TheFormsOfApiMd) {
  auto plain = ParseRedisUrl("redis://127.0.0.1:6380");
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->host, "127.0.0.1");
  EXPECT_EQ(plain->port, 6380);
  EXPECT_EQ(plain->password, "");
  EXPECT_EQ(plain->db, 0);

  auto full = ParseRedisUrl("redis://:p@ss:w@rd@cache.internal:6379/2");
  ASSERT_TRUE(full.ok());
  EXPECT_EQ(full->host, "cache.internal");
  EXPECT_EQ(full->username, "");
  EXPECT_EQ(full->password, "p@ss:w@rd");  // up to the last '@'
  EXPECT_EQ(full->db, 2);

  auto user = ParseRedisUrl("redis://mmchat:pw@[::1]:7000/");
  ASSERT_TRUE(user.ok());
  EXPECT_EQ(user->username, "mmchat");
  EXPECT_EQ(user->password, "pw");
  EXPECT_EQ(user->host, "::1");
  EXPECT_EQ(user->port, 7000);

  auto default_port = ParseRedisUrl("redis://redis");
  ASSERT_TRUE(default_port.ok());
  EXPECT_EQ(default_port->host, "redis");
  EXPECT_EQ(default_port->port, 6379);
}

TEST(RedisUrlTest, WhatIsWrongIsSaidWithoutThePassword) {
  for (const char* bad :
       {"http://h:1", "redis://", "redis://:1", "redis://h:", "redis://h:0", "redis://h:65536",
        "redis://h:port", "redis://h:1/x", "redis://h:1/-1", "redis://secret@h:1", "redis://:@h:1",
        "redis://[::1:1", "redis://[::1]x"}) {
    auto r = ParseRedisUrl(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidRequest) << bad;
    EXPECT_NE(r.status().message().find("REDIS_URL"), std::string::npos) << bad;
    EXPECT_EQ(r.status().message().find("secret"), std::string::npos) << bad;
  }
}

}  // namespace
}  // namespace mmchat::bus::redis
