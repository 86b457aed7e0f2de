// The PostgreSQL schema as a list of numbered migrations, applied in order, each in its own
// transaction, recorded in schema_migrations. Several processes may start at once: a
// session-level advisory lock lets one migrate while the others wait, then find nothing to do.
#pragma once

#include "common/status.h"
#include "store/postgres/pg_connection.h"

namespace mmchat::store::postgres {

int LatestSchemaVersion();

// Applies every pending migration; `applied` (when given) counts them. kUnavailable with a
// message naming both versions when the database's schema is newer than this binary.
Status Migrate(PgConnection& conn, int* applied = nullptr);

}  // namespace mmchat::store::postgres
