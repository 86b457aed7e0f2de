#include "ws/frame_handler.h"

#include <boost/asio/post.hpp>
#include <thread>

#include "wire/views.h"

namespace mmchat::ws {

namespace net = boost::asio;

FrameHandler::FrameHandler(domain::MessageService* messages, net::any_io_executor workers,
                           Typing& typing)
    : messages_(messages),
      workers_(std::move(workers)),
      typing_(typing),
      pong_(MakeFrame("pong", Json::object())) {}

void FrameHandler::Drain() {
  draining_ = true;
  // A frame being handled may have looked at draining_ before it was set: once these are
  // done, every message that will ever be appended has been handed to the store.
  while (frames_in_hand_.load() > 0) std::this_thread::yield();
}

void FrameHandler::Answer(const std::shared_ptr<Connection>& c,
                          const std::optional<std::string>& ref, const Result<RawJson>& outcome) {
  if (Frame f = AnswerFrame(ref, outcome)) c->Send({std::move(f)});
}

void FrameHandler::OnFrame(const std::shared_ptr<Connection>& c, std::string_view text,
                           bool is_text) {
  ++frames_in_hand_;  // before draining_ is read (see Drain)
  struct Release {
    std::atomic<int>& n;
    ~Release() { --n; }
  } release{frames_in_hand_};
  if (!is_text) return Answer(c, std::nullopt, Status::InvalidRequest("frames must be JSON text"));
  const ClientFrame f = ParseClientFrame(text);
  if (!f.error.ok()) return Answer(c, f.ref, f.error);
  if (draining_ && f.type != "ping") {
    return Answer(c, f.ref, Status::Unavailable("the server is shutting down"));
  }
  if (f.type == "message") return HandleMessage(c, f);
  if (f.type == "read") return HandleRead(c, f);
  if (f.type == "typing_start" || f.type == "typing_stop") {
    auto conversation = wire::RequiredId(f.body, "conversation_id");
    if (!conversation.ok()) return Answer(c, f.ref, conversation.status());
    Status s = typing_.Change(c.get(), *conversation, f.type == "typing_start");
    if (!s.ok()) return Answer(c, f.ref, s);
    return Answer(c, f.ref, RawJson{});
  }
  if (f.type == "ping") {
    c->Send({pong_});
    return Answer(c, f.ref, RawJson{});
  }
  Answer(c, f.ref, Status::InvalidRequest("unknown frame type"));
}

void FrameHandler::HandleMessage(const std::shared_ptr<Connection>& c, const ClientFrame& f) {
  auto input = wire::ReadSendInput(f.body);
  if (!input.ok()) return Answer(c, f.ref, input.status());
  // Acked from the store's answer thread, after the commit.
  c->BeginWork();
  messages_->Send(c->user_id(), std::move(input).value(),
                  [c, ref = f.ref](Result<domain::AppendResult> r) {
                    if (!r.ok()) {
                      Answer(c, ref, r.status());
                    } else {
                      Answer(c, ref, wire::MessageText(r->message));
                    }
                    c->EndWork();
                  });
}

void FrameHandler::HandleRead(const std::shared_ptr<Connection>& c, const ClientFrame& f) {
  auto conversation = wire::RequiredId(f.body, "conversation_id");
  if (!conversation.ok()) return Answer(c, f.ref, conversation.status());
  auto message = wire::RequiredId(f.body, "message_id");
  if (!message.ok()) return Answer(c, f.ref, message.status());
  c->BeginWork();
  net::post(workers_, [this, c, ref = f.ref, conversation = *conversation, message = *message] {
    auto mark = messages_->MarkRead(c->user_id(), conversation, message);
    if (!mark.ok()) {
      Answer(c, ref, mark.status());
    } else {
      Answer(c, ref, wire::ToRaw(wire::ReadMarkJson(*mark)));
    }
    c->EndWork();
  });
}

}  // namespace mmchat::ws
