// Client frames: parses what a connection read and answers it (`ack`, or `error`). `message`
// goes to MessageService::Send and is acked after the commit; `read` runs on the workers;
// typing frames change the typing states (ws/typing.h); `ping` gets a `pong`. Once draining,
// every frame but `ping` is answered `unavailable`.
//
// Thread-safe: OnFrame runs on the connection's strand; answers come from any thread.
#pragma once

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "domain/message_service.h"
#include "ws/connection.h"
#include "ws/frames.h"
#include "ws/typing.h"

namespace mmchat::ws {

class FrameHandler {
 public:
  // `workers`: for calls that touch the database.
  FrameHandler(domain::MessageService* messages, boost::asio::any_io_executor workers,
               Typing& typing);

  void OnFrame(const std::shared_ptr<Connection>& c, std::string_view text, bool is_text);
  // Frames other than `ping` are answered with `unavailable` from now on; returns once the
  // frames being handled are done.
  void Drain();

 private:
  static void Answer(const std::shared_ptr<Connection>& c, const std::optional<std::string>& ref,
                     const Result<RawJson>& outcome);
  void HandleMessage(const std::shared_ptr<Connection>& c, const ClientFrame& f);
  void HandleRead(const std::shared_ptr<Connection>& c, const ClientFrame& f);

  domain::MessageService* const messages_;
  const boost::asio::any_io_executor workers_;
  Typing& typing_;
  const Frame pong_;
  std::atomic<bool> draining_{false};
  std::atomic<int> frames_in_hand_{0};  // OnFrame calls running now (Drain waits for them)
};

}  // namespace mmchat::ws
