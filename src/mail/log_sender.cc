#include "mail/log_sender.h"

#include <spdlog/spdlog.h>

#include "common/utf8.h"

namespace mmchat::mail {

Status LogSender::Send(const domain::OutgoingMail& mail) {
  // One line per code: the body's line breaks become spaces. The address is the client's
  // text; validation upstream allows only printable ASCII, and LogSafe keeps it so here too.
  std::string body;
  for (char c : mail.body) {
    if (c == '\r') continue;
    body += c == '\n' ? ' ' : c;
  }
  spdlog::info("otp: to={} subject=\"{}\" body=\"{}\"", LogSafe(mail.to), mail.subject, body);
  return Status::Ok();
}

}  // namespace mmchat::mail
