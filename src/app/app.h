// Wires the server together from a Config: store, crypto, mail, domain services, HTTP.
// Owns start-up (migrations, JWT secret, listening) and graceful shutdown.
#pragma once

#include <memory>

#include "app/config.h"
#include "common/status.h"

namespace mmchat::app {

// Opens the database, applies pending migrations and returns. For `mmchat --migrate`.
Status MigrateOnly(const Config& config);

// Serves until SIGINT or SIGTERM, then stops accepting, finishes requests in flight and closes
// the database. Returns the process exit code.
int Serve(const Config& config);

}  // namespace mmchat::app
