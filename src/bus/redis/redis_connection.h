// One Redis connection driven by an Asio io_context: hiredis's async API (its protocol codec
// and reply parser) with Asio waiting on its socket in place of an event library. hiredis has
// no timeouts and no reconnect of its own; this class adds both deadlines (connect, and the
// oldest unanswered command) and reports the end of the connection once, so the owner can
// make a new one. Reconnecting is the owner's choice (the bus resubscribes and repairs).
//
// Not thread-safe, like hiredis: create it, call it and receive every callback on the one
// thread that runs `io`.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

struct redisAsyncContext;

namespace mmchat::bus::redis {

// A reply, copied out of hiredis's (which is freed when its callback returns).
struct Reply {
  enum class Type { kString, kStatus, kError, kInteger, kNil, kArray };
  Type type = Type::kNil;
  std::string str;  // kString, kStatus, kError
  long long integer = 0;
  std::vector<Reply> elements;  // kArray
};

class RedisConnection : public std::enable_shared_from_this<RedisConnection> {
 public:
  struct Options {
    std::string host;  // a name (resolved by Asio: hiredis would block on it) or an address
    int port = 6379;
    std::string username;  // with `password`: AUTH before anything else
    std::string password;
    int db = 0;  // SELECTed when not 0
    // Covers the name, the TCP connection, AUTH and SELECT.
    std::chrono::milliseconds connect_timeout{2000};
    std::chrono::milliseconds command_timeout{2000};
  };
  using ReplyHandler = std::function<void(Result<Reply>)>;
  // (channel, payload) of each published message.
  using MessageHandler = std::function<void(std::string_view, std::string_view)>;

  static std::shared_ptr<RedisConnection> Create(boost::asio::io_context& io, Options options);
  ~RedisConnection();
  RedisConnection(const RedisConnection&) = delete;
  RedisConnection& operator=(const RedisConnection&) = delete;

  // Connects (and authenticates, and selects the database); `done` gets Ok, or Unavailable
  // saying why (unknown name, refused, AUTH refused, no answer in time).
  void Connect(std::function<void(Status)> done);
  // Called once, with the reason, when a connection that was made ends for any reason
  // (the server went away, a deadline passed, Close).
  void OnClosed(std::function<void(Status)> closed) { on_closed_ = std::move(closed); }

  // Sends a command. `done` gets the reply (a Redis error is a reply of type kError), or
  // Unavailable when the connection ends first. A command unanswered after command_timeout
  // ends the connection: a late reply would be taken for the next command's.
  void Command(std::vector<std::string> args, ReplyHandler done);

  // SUBSCRIBE, once per connection: after it the connection runs nothing else (Command is
  // refused). `subscribed` is called once every channel is confirmed (unconfirmed after
  // command_timeout, the connection ends); `on_message` for each message after that. A
  // subscription that silently stops delivering is the owner's to notice (a probe it
  // publishes to itself); TCP keepalive ends one whose peer vanished.
  void Subscribe(std::vector<std::string> channels, MessageHandler on_message,
                 std::function<void(Status)> subscribed);

  // Ends the connection; pending commands get Unavailable. Safe from any of its callbacks.
  void Close();
  bool connected() const { return state_ == State::kReady; }

 private:
  RedisConnection(boost::asio::io_context& io, Options options);

  // hiredis's hooks and callbacks; `privdata`/`ac->data` is this connection.
  static void AddRead(void* privdata);
  static void DelRead(void* privdata);
  static void AddWrite(void* privdata);
  static void DelWrite(void* privdata);
  static void Cleanup(void* privdata);
  static void Connected(const redisAsyncContext* ac, int status);
  static void Disconnected(const redisAsyncContext* ac, int status);
  static void CommandReplied(redisAsyncContext* ac, void* reply, void* privdata);
  static void SubscriptionReplied(redisAsyncContext* ac, void* reply, void* privdata);

  void Open(const std::string& address);
  // Queues one command with hiredis (binary-safe); false when the context refuses it.
  bool Send(const std::vector<std::string>& args,
            void (*replied)(redisAsyncContext*, void*, void*));
  void Handshake();
  // hiredis wants to read (or write) while `wanted`; one wait at a time is `armed`.
  struct Interest {
    bool wanted = false;
    bool armed = false;
  };
  enum class Direction { kRead, kWrite };
  void Want(Direction d, bool wanted);
  void Arm(Direction d);
  // Frees the hiredis context (failing what is pending) outside of hiredis's own callbacks.
  void Abort(Status why);
  void Ended(Status why);
  void ArmCommandDeadline();

  boost::asio::io_context& io_;
  Options options_;
  redisAsyncContext* ac_ = nullptr;
  std::unique_ptr<boost::asio::posix::stream_descriptor> socket_;
  Interest read_, write_;
  // kConnecting: resolving or connecting; kHandshake: AUTH and SELECT on their way, answered
  // to Connect when they come back; kEnded: for good (a connection is made once).
  enum class State { kIdle, kConnecting, kHandshake, kReady, kEnded };
  State state_ = State::kIdle;
  Status end_reason_;

  std::function<void(Status)> on_connect_;
  std::function<void(Status)> on_closed_;
  boost::asio::steady_timer connect_timer_;
  boost::asio::ip::tcp::resolver resolver_;

  struct Pending {
    ReplyHandler done;
    std::chrono::steady_clock::time_point deadline;
  };
  std::deque<Pending> pending_;  // replies come back in the order the commands went out
  boost::asio::steady_timer command_timer_;
  bool command_timer_armed_ = false;

  bool subscribed_ = false;
  MessageHandler on_message_;
  std::function<void(Status)> on_subscribed_;
  size_t unconfirmed_channels_ = 0;
  boost::asio::steady_timer subscribe_timer_;
};

}  // namespace mmchat::bus::redis
