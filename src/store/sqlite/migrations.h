// Versioned schema migrations compiled into the binary. Each runs once, in its own
// transaction, recorded in schema_migrations; a database from a newer build is refused.
#pragma once

#include "common/status.h"
#include "store/sqlite/connection.h"

namespace mmchat::store::sqlite {

// The newest schema version this build knows.
int LatestSchemaVersion();

// Applies every pending migration. Returns how many ran through `applied` (may be null).
Status Migrate(Connection* conn, int* applied);

}  // namespace mmchat::store::sqlite
