#include "bus/redis/redis_connection.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <boost/asio/post.hpp>

namespace mmchat::bus::redis {
namespace net = boost::asio;

namespace {

RedisConnection* Self(const redisAsyncContext* ac) {
  return static_cast<RedisConnection*>(ac->data);
}

Reply Copy(const redisReply* r) {
  Reply out;
  switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
      out.type = r->type == REDIS_REPLY_STRING   ? Reply::Type::kString
                 : r->type == REDIS_REPLY_STATUS ? Reply::Type::kStatus
                                                 : Reply::Type::kError;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_INTEGER:
      out.type = Reply::Type::kInteger;
      out.integer = r->integer;
      break;
    case REDIS_REPLY_ARRAY:
      out.type = Reply::Type::kArray;
      out.elements.reserve(r->elements);
      for (size_t i = 0; i < r->elements; ++i) out.elements.push_back(Copy(r->element[i]));
      break;
    default:
      out.type = Reply::Type::kNil;
  }
  return out;
}

}  // namespace

std::shared_ptr<RedisConnection> RedisConnection::Create(net::io_context& io, Options options) {
  return std::shared_ptr<RedisConnection>(new RedisConnection(io, std::move(options)));
}

RedisConnection::RedisConnection(net::io_context& io, Options options)
    : io_(io),
      options_(std::move(options)),
      connect_timer_(io),
      resolver_(io),
      command_timer_(io),
      subscribe_timer_(io) {}

RedisConnection::~RedisConnection() {
  // Reached with nothing armed, or while the io_context is destroyed with waits of ours still
  // in it. Pending handlers are dropped uncalled; hiredis closes its own socket.
  if (ac_ == nullptr) return;
  if (socket_) socket_->release();
  ac_->data = nullptr;
  ac_->ev.data = nullptr;
  ac_->ev.cleanup = nullptr;
  redisAsyncFree(ac_);
}

void RedisConnection::Connect(std::function<void(Status)> done) {
  if (state_ != State::kIdle) {
    net::post(io_, [done = std::move(done)] {
      done(Status::Unavailable("redis: this connection was already used"));
    });
    return;
  }
  on_connect_ = std::move(done);
  state_ = State::kConnecting;
  connect_timer_.expires_after(options_.connect_timeout);
  connect_timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (ec || self->state_ == State::kReady || self->state_ == State::kEnded) return;
    self->Abort(Status::Unavailable("redis: no connection to " + self->options_.host + ":" +
                                    std::to_string(self->options_.port) + " within " +
                                    std::to_string(self->options_.connect_timeout.count()) +
                                    " ms"));
  });
  resolver_.async_resolve(
      options_.host, std::to_string(options_.port),
      [self = shared_from_this()](boost::system::error_code ec,
                                  net::ip::tcp::resolver::results_type results) {
        if (self->state_ != State::kConnecting) return;  // timed out meanwhile
        if (ec || results.empty()) {
          self->Abort(Status::Unavailable("redis: cannot resolve " + self->options_.host + ": " +
                                          ec.message()));
          return;
        }
        // IPv4 first: "localhost" may also name ::1, where a server bound to 127.0.0.1
        // refuses.
        auto chosen = results.begin();
        for (auto it = results.begin(); it != results.end(); ++it) {
          if (it->endpoint().address().is_v4()) {
            chosen = it;
            break;
          }
        }
        self->Open(chosen->endpoint().address().to_string());
      });
}

void RedisConnection::Open(const std::string& address) {
  ac_ = redisAsyncConnect(address.c_str(), options_.port);
  if (ac_ == nullptr || ac_->err != 0) {
    const std::string why = ac_ != nullptr ? ac_->errstr : "out of memory";
    if (ac_ != nullptr) redisAsyncFree(ac_);  // not attached yet: no hook of ours runs
    ac_ = nullptr;
    Abort(Status::Unavailable("redis: " + why));
    return;
  }
  ac_->data = this;
  ac_->ev.data = this;
  ac_->ev.addRead = AddRead;
  ac_->ev.delRead = DelRead;
  ac_->ev.addWrite = AddWrite;
  ac_->ev.delWrite = DelWrite;
  ac_->ev.cleanup = Cleanup;
  socket_ = std::make_unique<net::posix::stream_descriptor>(io_, ac_->c.fd);
  redisAsyncSetDisconnectCallback(ac_, Disconnected);
  // hiredis reports the connection made on the first writable event, which this arms.
  redisAsyncSetConnectCallback(ac_, Connected);
}

void RedisConnection::Handshake() {
  std::vector<std::vector<std::string>> commands;
  if (!options_.password.empty()) {
    commands.push_back(
        options_.username.empty()
            ? std::vector<std::string>{"AUTH", options_.password}
            : std::vector<std::string>{"AUTH", options_.username, options_.password});
  }
  if (options_.db != 0) commands.push_back({"SELECT", std::to_string(options_.db)});
  auto ready = [self = shared_from_this()] {
    if (self->state_ != State::kHandshake) return;
    self->state_ = State::kReady;
    self->connect_timer_.cancel();
    self->on_connect_(Status::Ok());
  };
  if (commands.empty()) return net::post(io_, ready);
  auto left = std::make_shared<size_t>(commands.size());
  for (auto& command : commands) {
    const std::string name = command.front();
    Command(std::move(command), [self = shared_from_this(), ready, left, name](Result<Reply> r) {
      if (!r.ok()) return;  // the connection ended: Connect hears it from Ended
      if (r->type == Reply::Type::kError) {
        return self->Abort(Status::Unavailable("redis: " + name + " refused: " + r->str));
      }
      if (--*left == 0) ready();
    });
  }
}

void RedisConnection::Command(std::vector<std::string> args, ReplyHandler done) {
  auto fail = [&](const char* why) {
    net::post(io_, [done = std::move(done), why] { done(Status::Unavailable(why)); });
  };
  const bool open = state_ == State::kReady || state_ == State::kHandshake;
  if (!open || ac_ == nullptr) return fail("redis: not connected");
  // Replies on a subscribed connection go to the subscription: they would never come back.
  if (subscribed_) return fail("redis: a subscribed connection runs nothing but its subscription");
  if (!Send(args, CommandReplied)) return fail("redis: the connection is closing");
  pending_.push_back(
      {std::move(done), std::chrono::steady_clock::now() + options_.command_timeout});
  ArmCommandDeadline();
}

bool RedisConnection::Send(const std::vector<std::string>& args,
                           void (*replied)(redisAsyncContext*, void*, void*)) {
  std::vector<const char*> argv;
  std::vector<size_t> lengths;
  for (const auto& a : args) {
    argv.push_back(a.data());
    lengths.push_back(a.size());
  }
  return redisAsyncCommandArgv(ac_, replied, nullptr, static_cast<int>(argv.size()), argv.data(),
                               lengths.data()) == REDIS_OK;
}

void RedisConnection::Subscribe(std::vector<std::string> channels, MessageHandler on_message,
                                std::function<void(Status)> subscribed) {
  auto fail = [&](const char* why) {
    net::post(io_,
              [subscribed = std::move(subscribed), why] { subscribed(Status::Unavailable(why)); });
  };
  if (state_ != State::kReady || ac_ == nullptr) return fail("redis: not connected");
  if (subscribed_ || channels.empty()) return fail("redis: subscribe once, to some channel");
  const size_t count = channels.size();
  channels.insert(channels.begin(), "SUBSCRIBE");
  if (!Send(channels, SubscriptionReplied)) return fail("redis: the connection is closing");
  subscribed_ = true;
  on_message_ = std::move(on_message);
  on_subscribed_ = std::move(subscribed);
  unconfirmed_channels_ = count;
  // The confirmations are answers like any other: unanswered in time, the connection ends.
  subscribe_timer_.expires_after(options_.command_timeout);
  subscribe_timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (ec || self->unconfirmed_channels_ == 0) return;
    self->Abort(Status::Unavailable("redis: SUBSCRIBE unconfirmed after " +
                                    std::to_string(self->options_.command_timeout.count()) +
                                    " ms"));
  });
}

void RedisConnection::Close() {
  // Deferred: hiredis must not be freed from inside one of its own callbacks.
  net::post(io_, [self = shared_from_this()] {
    self->Abort(Status::Unavailable("redis: connection closed"));
  });
}

// ---------------------------------------------------------------------------------------------
// hiredis's event hooks: Asio waits on the socket hiredis owns.
// ---------------------------------------------------------------------------------------------

void RedisConnection::AddRead(void* privdata) {
  static_cast<RedisConnection*>(privdata)->Want(Direction::kRead, true);
}
void RedisConnection::DelRead(void* privdata) {
  static_cast<RedisConnection*>(privdata)->Want(Direction::kRead, false);
}
void RedisConnection::AddWrite(void* privdata) {
  static_cast<RedisConnection*>(privdata)->Want(Direction::kWrite, true);
}
void RedisConnection::DelWrite(void* privdata) {
  static_cast<RedisConnection*>(privdata)->Want(Direction::kWrite, false);
}

void RedisConnection::Cleanup(void* privdata) {
  // The context is being freed and closes its socket itself: stop waiting on it, let go.
  auto* self = static_cast<RedisConnection*>(privdata);
  self->ac_ = nullptr;
  self->read_.wanted = self->write_.wanted = false;
  if (self->socket_) {
    boost::system::error_code ec;
    self->socket_->cancel(ec);
    self->socket_->release();
  }
  self->connect_timer_.cancel();
  self->command_timer_.cancel();
  self->subscribe_timer_.cancel();
}

void RedisConnection::Want(Direction d, bool wanted) {
  (d == Direction::kRead ? read_ : write_).wanted = wanted;
  if (wanted) Arm(d);
}

void RedisConnection::Arm(Direction d) {
  Interest& interest = d == Direction::kRead ? read_ : write_;
  if (!interest.wanted || interest.armed || ac_ == nullptr) return;
  interest.armed = true;
  const auto wait = d == Direction::kRead ? net::posix::stream_descriptor::wait_read
                                          : net::posix::stream_descriptor::wait_write;
  socket_->async_wait(wait, [self = shared_from_this(), d](boost::system::error_code ec) {
    Interest& i = d == Direction::kRead ? self->read_ : self->write_;
    i.armed = false;
    if (ec || self->ac_ == nullptr || !i.wanted) return;
    // Either may end the connection (Cleanup), after which Arm does nothing.
    if (d == Direction::kRead) {
      redisAsyncHandleRead(self->ac_);
    } else {
      redisAsyncHandleWrite(self->ac_);
    }
    self->Arm(d);
  });
}

// ---------------------------------------------------------------------------------------------
// hiredis's callbacks. User callbacks are posted, never run inside hiredis.
// ---------------------------------------------------------------------------------------------

void RedisConnection::Connected(const redisAsyncContext* ac, int status) {
  RedisConnection* self = Self(ac);
  if (self == nullptr || self->state_ != State::kConnecting) return;
  if (status != REDIS_OK) {
    // hiredis frees the context right after this returns (no Disconnected: never connected).
    self->state_ = State::kEnded;
    self->connect_timer_.cancel();
    net::post(self->io_, [s = self->shared_from_this(),
                          why = Status::Unavailable(std::string("redis: ") + ac->errstr)] {
      s->on_connect_(why);
    });
    return;
  }
  // A peer gone without a word (a cut cable, a frozen host) ends a connection that is only
  // read from, as a subscription is, once TCP keepalive gives up on it.
  redisEnableKeepAlive(&self->ac_->c);
  self->state_ = State::kHandshake;
  self->Handshake();
}

void RedisConnection::Disconnected(const redisAsyncContext* ac, int status) {
  RedisConnection* self = Self(ac);
  if (self == nullptr) return;
  Status why = !self->end_reason_.ok() ? self->end_reason_
               : status == REDIS_OK    ? Status::Unavailable("redis: connection closed")
               : ac->errstr != nullptr ? Status::Unavailable(std::string("redis: ") + ac->errstr)
                                       : Status::Unavailable("redis: connection lost");
  self->Ended(std::move(why));
}

void RedisConnection::CommandReplied(redisAsyncContext* ac, void* reply, void*) {
  RedisConnection* self = Self(ac);
  if (self == nullptr || self->pending_.empty()) return;
  ReplyHandler done = std::move(self->pending_.front().done);
  self->pending_.pop_front();
  Result<Reply> result =
      reply != nullptr
          ? Result<Reply>(Copy(static_cast<redisReply*>(reply)))
          : Result<Reply>(self->end_reason_.ok() ? Status::Unavailable("redis: connection lost")
                                                 : self->end_reason_);
  net::post(self->io_, [done = std::move(done), result = std::move(result)]() mutable {
    done(std::move(result));
  });
}

void RedisConnection::SubscriptionReplied(redisAsyncContext* ac, void* reply, void*) {
  RedisConnection* self = Self(ac);
  if (self == nullptr || reply == nullptr) return;  // the connection is ending: OnClosed says so
  const auto* r = static_cast<redisReply*>(reply);
  if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
      r->element[0]->type != REDIS_REPLY_STRING) {
    return;
  }
  const std::string_view kind(r->element[0]->str, r->element[0]->len);
  auto s = self->shared_from_this();
  if (kind == "subscribe" && self->unconfirmed_channels_ > 0 &&
      --self->unconfirmed_channels_ == 0) {
    self->subscribe_timer_.cancel();
    net::post(self->io_, [s] { s->on_subscribed_(Status::Ok()); });
  } else if (kind == "message") {
    net::post(self->io_, [s, channel = std::string(r->element[1]->str, r->element[1]->len),
                          payload = std::string(r->element[2]->str, r->element[2]->len)] {
      s->on_message_(channel, payload);
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Ending
// ---------------------------------------------------------------------------------------------

void RedisConnection::Abort(Status why) {
  if (state_ == State::kEnded) return;
  end_reason_ = why;
  if (state_ == State::kConnecting) {
    // No TCP connection yet, so hiredis will not call Disconnected: answer Connect here.
    state_ = State::kEnded;
    connect_timer_.cancel();
    resolver_.cancel();
    net::post(io_, [self = shared_from_this(), why] { self->on_connect_(why); });
  }
  // Fails every pending command (CommandReplied with no reply), reports the end
  // (Disconnected) when connected, and frees the context (Cleanup).
  if (ac_ != nullptr) redisAsyncFree(ac_);
}

void RedisConnection::Ended(Status why) {
  const State was = state_;
  state_ = State::kEnded;
  connect_timer_.cancel();
  auto self = shared_from_this();
  if (was == State::kReady && on_closed_) {
    net::post(io_, [self, why = std::move(why)] { self->on_closed_(why); });
  } else if (was == State::kHandshake) {
    net::post(io_, [self, why = std::move(why)] { self->on_connect_(why); });
  }
}

void RedisConnection::ArmCommandDeadline() {
  if (command_timer_armed_ || pending_.empty() || ac_ == nullptr) return;
  command_timer_armed_ = true;
  command_timer_.expires_at(pending_.front().deadline);
  command_timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
    self->command_timer_armed_ = false;
    if (ec || self->pending_.empty()) return;
    if (std::chrono::steady_clock::now() >= self->pending_.front().deadline) {
      self->Abort(Status::Unavailable("redis: no reply within " +
                                      std::to_string(self->options_.command_timeout.count()) +
                                      " ms"));
    } else {
      self->ArmCommandDeadline();
    }
  });
}

}  // namespace mmchat::bus::redis
