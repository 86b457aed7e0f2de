// `mmchat backup FILE` and `mmchat restore FILE`: a consistent copy of the live SQLite database
// (SQLITE_DSN) while a server keeps serving it, and bringing such a copy back while no server
// uses the database. PostgreSQL has its own tools (pg_dump, pg_restore; README, "Backups").
#pragma once

#include <string>

#include "app/config.h"

namespace mmchat::app {

struct BackupOptions {
  std::string file;    // where the copy goes
  bool force = false;  // replace `file` when it exists
};

// Copies SQLITE_DSN's database to `file`: written under a temporary name beside it, checked
// with `PRAGMA integrity_check`, synced and only then renamed to `file`. Prints what it did on
// success and one line naming the problem otherwise. Returns the process exit code: 0, 1 on a
// failure, 2 when the configured store is PostgreSQL.
int RunBackup(const Config& config, const BackupOptions& options);

struct RestoreOptions {
  std::string file;  // a backup made by RunBackup (or any sound MmChat SQLite database)
};

// Replaces the contents of SQLITE_DSN's database (created when missing) with `file`'s, after
// checking `file` with `PRAGMA integrity_check`. Refuses while any process (a server) has the
// database open. Migrations of a backup from an older build run at the next start. Returns the
// process exit code: 0, 1 on a failure or refusal, 2 when the configured store is PostgreSQL.
int RunRestore(const Config& config, const RestoreOptions& options);

}  // namespace mmchat::app
