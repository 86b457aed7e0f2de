// Mails verification codes through libcurl's SMTP client to SMTP_URL (smtp:// or smtps://,
// with user:password in the URL for authentication). Thread-safe: each Send uses its own curl
// handle. Blocks for the whole SMTP dialogue: run it off io threads.
#pragma once

#include <string>

#include "domain/auth_ports.h"

namespace mmchat::mail {

class SmtpSender final : public domain::CodeSender {
 public:
  SmtpSender(std::string url, std::string from);
  Status Send(const domain::OutgoingMail& mail) override;

 private:
  const std::string url_;
  const std::string from_;
};

// The RFC 5322 message (headers, blank line, body) that Send uploads. Exposed for tests.
std::string FormatMessage(const std::string& from, const domain::OutgoingMail& mail,
                          long long unix_seconds);

}  // namespace mmchat::mail
