// Development code sender: writes the code to the server log instead of mailing it.
// Thread-safe.
#pragma once

#include "domain/auth_ports.h"

namespace mmchat::mail {

class LogSender final : public domain::CodeSender {
 public:
  Status Send(const domain::OutgoingMail& mail) override;
};

}  // namespace mmchat::mail
