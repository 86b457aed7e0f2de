// A WebSocket test client on Beast: connects and upgrades over a real socket, reads frames on
// its own thread into a queue, and lets a test wait for the next frame, a frame of one type,
// or the close. A client made with `read = false` does not read (nor answer pings) until
// StartReading(): the slow consumer of the back-pressure tests.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "harness.h"

namespace mmchat::test {

struct WsOptions {
  bool token_in_header = false;  // Authorization: Bearer instead of ?token=
  bool read = true;              // start the read loop at once
  int receive_buffer = 0;        // SO_RCVBUF before connecting (0: the system's default)
  std::string target;            // overrides "/api/ws?token=..." when not empty
  std::map<std::string, std::string> headers;  // more headers of the upgrade request
};

class WsClient {
 public:
  // Connects; when the server refuses the upgrade, connected() is false and refusal() holds
  // the HTTP answer.
  WsClient(uint16_t port, const std::string& token, WsOptions options = {});
  ~WsClient();

  bool connected() const;
  const HttpResult& refusal() const;
  // The server's answer to the upgrade request: the 101, or the refusal.
  const HttpResult& handshake() const;

  void Send(const Json& frame);
  void SendText(const std::string& text);
  void SendBinary(const std::string& data);

  // The next frame, parsed; null after `timeout` or when the connection ended.
  Json Next(std::chrono::milliseconds timeout = std::chrono::seconds(5));
  // The next frame for which `want` holds, discarding the others (`want` sees each one);
  // null after `timeout` or when the connection ended.
  Json NextWhere(const std::function<bool(Json&)>& want,
                 std::chrono::milliseconds timeout = std::chrono::seconds(5));
  // The next frame of `type`, discarding frames of other types before it.
  Json NextOfType(const std::string& type,
                  std::chrono::milliseconds timeout = std::chrono::seconds(5));
  // Frames received and not yet taken.
  size_t Pending() const;

  // Waits for the end of the connection; the close code the server sent, 0 when it ended
  // without a close frame, -1 on timeout.
  int WaitClosed(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  void StartReading();
  int PingsReceived() const;
  // Sends a close frame (1000) and waits for the server's.
  void Close();

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace mmchat::test
