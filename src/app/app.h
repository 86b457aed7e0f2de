// Wires the server together from a Config: store, crypto, mail, domain services, HTTP.
// Owns start-up (migrations, JWT secret, listening) and graceful shutdown.
#pragma once

#include <memory>
#include <string>

#include "app/config.h"
#include "common/status.h"

namespace mmchat::app {

// Opens the database, applies pending migrations and returns. For `mmchat --migrate`.
Status MigrateOnly(const Config& config);

// `mmchat user add`: one account (username and email given) or `count` accounts named
// <prefix>_<n> with emails <prefix>_<n>@<email_domain>, all with one password. Writes
// "id username token" lines to `tokens_path` ("-" for standard output; empty: none).
struct AddUsersOptions {
  std::string username;
  std::string email;
  int64_t count = 0;
  std::string prefix = "user";
  std::string email_domain = "example.com";
  std::string password;
  std::string tokens_path;
};
Status AddUsers(const Config& config, const AddUsersOptions& options);

// Serves until SIGINT or SIGTERM, then stops accepting, finishes requests in flight and closes
// the database. Returns the process exit code.
int Serve(const Config& config);

}  // namespace mmchat::app
