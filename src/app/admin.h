// Administration from a shell: `mmchat user list|show|disable|enable|delete|set-password` and
// `mmchat conversation list --user U` (README, "Administration"). Each opens the store the
// configuration names, as the server does, commits its change, and then tells the server
// running here through ADMIN_SOCKET (app/admin_socket.h), so that it acts at once.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>

#include "app/config.h"

namespace mmchat::app {

struct AdminCommand {
  enum class Kind {
    kNone,
    kUserList,
    kUserShow,
    kUserDisable,
    kUserEnable,
    kUserDelete,
    kUserSetPassword,
    kConversationList,
  };
  Kind kind = Kind::kNone;
  std::string user;  // a username, an email or a numeric id
  int64_t limit = 100;
  int64_t offset = 0;
  std::string search;                   // user list: a username prefix
  bool json = false;                    // JSON lines instead of text
  std::optional<std::string> password;  // set-password; otherwise one line of `in`
};

// Runs the command: results to `out`, errors to `err` (one line each), the new password read
// from `in`. Returns the exit code: 0 done, 1 refused (an unknown user, an invalid password,
// a deleted account) or failed.
int RunAdmin(const Config& config, const AdminCommand& command, std::istream& in, std::ostream& out,
             std::ostream& err);

}  // namespace mmchat::app
