#include "app/backup.h"

#include <fcntl.h>
#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "store/sqlite/migrations.h"

// How the copy is taken: SQLite's online backup API (sqlite3_backup_init/step/finish), not
// `VACUUM INTO`. Both read one consistent snapshot; the backup API copies pages as they are,
// where VACUUM INTO re-inserts every row and rebuilds every index (the full-text index
// included), several times the work on a large database, and shows no progress. The copy
// goes in steps of kPagesPerStep pages inside one read transaction that the source connection
// holds from the first step to the last:
// - With WAL (the server's mode) a reader never blocks the writer, so the server keeps
//   committing while the copy runs; the only cost is that a checkpoint cannot go past our
//   snapshot, so the WAL grows by what is written meanwhile and shrinks again afterwards.
// - Without that held transaction, every step would start a new read and the backup API would
//   start over whenever another process had committed since the last step: under a steady
//   stream of messages it might never finish. Held, every step reads the same snapshot.
// - Steps keep each call short and bounded in memory, and let SQLITE_BUSY/SQLITE_LOCKED (a
//   WAL recovery by another process, say) be retried instead of failing the backup.
//
// Why not the wrappers of store/sqlite/connection.h: Connection::Open creates a missing file
// and puts it in WAL mode with the server's pragmas, and its errors are the generic ones meant
// for API clients. Here a missing database must stay missing and be named, the backup file is
// a plain rollback-journal file, and every error is for an administrator to read.

namespace mmchat::app {
namespace {

constexpr int kPagesPerStep = 256;  // 1 MiB of 4 KiB pages per sqlite3_backup_step
constexpr auto kBusyPause = std::chrono::milliseconds(20);
constexpr auto kBusyGiveUp = std::chrono::seconds(60);  // of SQLITE_BUSY/LOCKED in a row

struct CloseDb {
  void operator()(sqlite3* db) const { sqlite3_close(db); }
};
using Db = std::unique_ptr<sqlite3, CloseDb>;

Status Failure(const std::string& what, sqlite3* db) {
  return Status::Unavailable(what + ": " + (db ? sqlite3_errmsg(db) : "out of memory"));
}

Result<Db> OpenDb(const std::string& name, int flags) {
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(name.c_str(), &raw, flags | SQLITE_OPEN_NOMUTEX, nullptr);
  Db db(raw);
  if (rc != SQLITE_OK) {
    return Status::Unavailable("cannot open " + name + ": " +
                               (raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)));
  }
  sqlite3_extended_result_codes(db.get(), 1);
  return db;
}

Status Exec(sqlite3* db, const std::string& sql, const std::string& what) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    const std::string msg = err ? err : sqlite3_errmsg(db);
    sqlite3_free(err);
    return Status::Unavailable(what + ": " + msg);
  }
  return Status::Ok();
}

// The first column of every row of `sql`, as text.
Result<std::vector<std::string>> Column(sqlite3* db, const std::string& sql,
                                        const std::string& what) {
  sqlite3_stmt* raw = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &raw, nullptr) != SQLITE_OK) {
    return Failure(what, db);
  }
  std::unique_ptr<sqlite3_stmt, decltype(&sqlite3_finalize)> stmt(raw, &sqlite3_finalize);
  std::vector<std::string> out;
  int rc = 0;
  while ((rc = sqlite3_step(raw)) == SQLITE_ROW) {
    const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(raw, 0));
    out.emplace_back(text ? text : "");
  }
  if (rc != SQLITE_DONE) return Failure(what, db);
  return out;
}

// `pragma` is integrity_check or quick_check: Ok when SQLite answers "ok", else the first
// problems it names.
Status CheckIntegrity(sqlite3* db, const std::string& pragma, const std::string& name) {
  auto rows = Column(db, "PRAGMA " + pragma, pragma + " of " + name);
  if (!rows.ok()) return rows.status();
  if (rows->size() == 1 && (*rows)[0] == "ok") return Status::Ok();
  std::string problems;
  for (size_t i = 0; i < rows->size() && i < 5; ++i) problems += "; " + (*rows)[i];
  if (rows->size() > 5) problems += "; ...";
  return Status::Unavailable(name + " fails " + pragma + problems);
}

// The schema version MmChat recorded in the database (schema_migrations); an error when the
// database is not one of MmChat's.
Result<int> SchemaVersion(sqlite3* db, const std::string& name) {
  auto tables = Column(db,
                       "SELECT name FROM sqlite_schema WHERE type = 'table' AND "
                       "name = 'schema_migrations'",
                       "read the schema of " + name);
  if (!tables.ok()) return tables.status();
  if (tables->empty()) {
    return Status::InvalidRequest(name + " is not an MmChat database (no schema_migrations table)");
  }
  auto version = Column(db, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                        "read the schema version of " + name);
  if (!version.ok()) return version.status();
  return std::stoi(version->at(0));
}

// The database's main file, as SQLite resolved it ("" for an in-memory database).
std::filesystem::path MainFile(sqlite3* db) {
  const char* f = sqlite3_db_filename(db, "main");
  return f ? std::filesystem::path(f) : std::filesystem::path();
}

bool SameFile(const std::filesystem::path& a, const std::filesystem::path& b) {
  std::error_code ec;
  return !a.empty() && !b.empty() && std::filesystem::equivalent(a, b, ec);
}

// Copies all of `src` into `dest` in steps, retrying while either is busy or locked. Returns
// the number of steps and the pages copied.
Status CopyPages(sqlite3* src, sqlite3* dest, int pages_per_step, int* steps, int* pages) {
  sqlite3_backup* backup = sqlite3_backup_init(dest, "main", src, "main");
  if (backup == nullptr) return Failure("start the copy", dest);
  std::optional<std::chrono::steady_clock::time_point> busy_since;
  int rc = SQLITE_OK;
  *steps = 0;
  for (;;) {
    rc = sqlite3_backup_step(backup, pages_per_step);
    ++*steps;
    if (rc == SQLITE_OK) {
      busy_since.reset();
      continue;
    }
    const int primary = rc & 0xff;
    if (primary != SQLITE_BUSY && primary != SQLITE_LOCKED) break;  // SQLITE_DONE or an error
    const auto now = std::chrono::steady_clock::now();
    if (!busy_since) busy_since = now;
    if (now - *busy_since > kBusyGiveUp) break;
    std::this_thread::sleep_for(kBusyPause);
  }
  *pages = sqlite3_backup_pagecount(backup);
  sqlite3_backup_finish(backup);  // its code repeats the last step's, checked below
  if (rc == SQLITE_DONE) return Status::Ok();
  const int primary = rc & 0xff;
  if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED) {
    return Status::Unavailable("the database stayed locked for " +
                               std::to_string(kBusyGiveUp.count()) + " s; try again");
  }
  return Status::Unavailable(std::string("copy failed: ") + sqlite3_errstr(rc));
}

// Flushes a file (or a directory's entries) to the disk.
Status Sync(const std::filesystem::path& path, bool directory) {
  const int fd = ::open(path.c_str(), (directory ? O_DIRECTORY : 0) | O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::Unavailable("cannot open " + path.string() + ": " + strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return Status::Unavailable("cannot sync " + path.string() + ": " + strerror(err));
  return Status::Ok();
}

void RemoveWithSidecars(const std::string& path) {
  std::error_code ec;
  for (const char* suffix : {"", "-journal", "-wal", "-shm"}) {
    std::filesystem::remove(path + suffix, ec);
  }
}

// Gives `from` the name `to`: atomically replacing it with `replace`, else failing when `to`
// exists (also when it appeared since the check at the start).
Status Publish(const std::string& from, const std::string& to, bool replace) {
  if (replace) {
    if (::rename(from.c_str(), to.c_str()) != 0) {
      return Status::Unavailable("cannot rename " + from + " to " + to + ": " + strerror(errno));
    }
    return Status::Ok();
  }
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) {
    return Status::Ok();
  }
  int err = errno;
  if (err == EINVAL || err == ENOSYS) {  // a file system without RENAME_NOREPLACE
    if (::link(from.c_str(), to.c_str()) == 0) {
      ::unlink(from.c_str());
      return Status::Ok();
    }
    err = errno;
  }
  if (err == EEXIST) return Status::Conflict(to + " exists; give --force to replace it");
  return Status::Unavailable("cannot rename " + from + " to " + to + ": " + strerror(err));
}

std::string Seconds(std::chrono::steady_clock::duration d) {
  return fmt::format("{:.3f} s", std::chrono::duration<double>(d).count());
}

Status Backup(const Config& config, const BackupOptions& options, std::string* summary) {
  const auto started = std::chrono::steady_clock::now();
  const std::filesystem::path target(options.file);
  std::error_code ec;
  const auto target_status = std::filesystem::symlink_status(target, ec);
  if (std::filesystem::is_directory(target_status)) {
    return Status::InvalidRequest(options.file + " is a directory; name the backup file");
  }
  if (std::filesystem::exists(target_status) && !options.force) {
    return Status::Conflict(options.file + " exists; give --force to replace it");
  }
  const std::filesystem::path dir = target.has_parent_path() ? target.parent_path() : ".";
  if (!std::filesystem::is_directory(dir, ec)) {
    return Status::InvalidRequest("no directory " + dir.string() + " for " + options.file);
  }

  // The live database: opened read-write if the file allows (a WAL reader may need to write
  // the -shm index), never created, and never written (query_only).
  auto src = OpenDb(config.sqlite_dsn, SQLITE_OPEN_READWRITE | SQLITE_OPEN_URI);
  if (!src.ok()) {
    return Status::NotFound("no database to back up at SQLITE_DSN=" + config.sqlite_dsn + " (" +
                            src.status().message() + ")");
  }
  if (SameFile(MainFile(src->get()), target)) {
    return Status::InvalidRequest(options.file + " is the database itself");
  }
  if (Status s = Exec(src->get(), "PRAGMA busy_timeout=5000; PRAGMA query_only=ON",
                      "configure the connection to " + config.sqlite_dsn);
      !s.ok()) {
    return s;
  }
  // One read transaction, and with it one snapshot, for the whole copy (see the top).
  if (Status s = Exec(src->get(), "BEGIN", "begin reading"); !s.ok()) return s;
  auto version = SchemaVersion(src->get(), config.sqlite_dsn);
  if (!version.ok()) return version.status();

  const std::string temp = options.file + ".tmp-" + std::to_string(::getpid());
  RemoveWithSidecars(temp);
  struct Cleanup {
    const std::string& path;
    bool keep = false;
    ~Cleanup() {
      if (!keep) RemoveWithSidecars(path);
    }
  } cleanup{temp};
  int steps = 0;
  int pages = 0;
  std::chrono::steady_clock::duration copying{};
  {
    // Not a URI: a backup's file name is taken as it is.
    auto dest = OpenDb(temp, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    if (!dest.ok()) return dest.status();
    // The temporary file is thrown away on any failure and synced before the rename: no
    // journal and no syncs while it is written.
    if (Status s = Exec(dest->get(), "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF",
                        "configure " + temp);
        !s.ok()) {
      return s;
    }
    const auto copy_started = std::chrono::steady_clock::now();
    if (Status s = CopyPages(src->get(), dest->get(), kPagesPerStep, &steps, &pages); !s.ok()) {
      return s;
    }
    copying = std::chrono::steady_clock::now() - copy_started;
    Exec(src->get(), "COMMIT", "end reading");  // a read: nothing to fail
    src->reset();                               // the snapshot is released at once
    // The copied header says WAL, as the live database's does: make the backup one
    // self-contained file that opens without -wal and -shm.
    auto mode = Column(dest->get(), "PRAGMA journal_mode=DELETE", "set the journal mode");
    if (!mode.ok()) return mode.status();
    if (mode->size() != 1 || (*mode)[0] != "delete") {
      return Status::Unavailable("cannot make " + temp + " a rollback-journal database");
    }
    if (Status s = CheckIntegrity(dest->get(), "integrity_check", "the copy " + temp); !s.ok()) {
      return s;
    }
    if (sqlite3_close(dest->release()) != SQLITE_OK) {
      return Status::Unavailable("cannot close " + temp);
    }
  }
  if (Status s = Sync(temp, false); !s.ok()) return s;
  if (Status s = Publish(temp, options.file, options.force); !s.ok()) return s;
  cleanup.keep = true;  // it has the final name now
  if (Status s = Sync(dir, true); !s.ok()) return s;
  const auto size = std::filesystem::file_size(target, ec);
  *summary = fmt::format(
      "backup of {} (schema version {}) written to {}: {} pages, {} bytes, in {} ({} copying, "
      "{} steps); integrity_check ok",
      config.sqlite_dsn, *version, options.file, pages, ec ? 0 : size,
      Seconds(std::chrono::steady_clock::now() - started), Seconds(copying), steps);
  return Status::Ok();
}

Status Restore(const Config& config, const RestoreOptions& options, std::string* summary) {
  const auto started = std::chrono::steady_clock::now();
  std::error_code ec;
  if (!std::filesystem::is_regular_file(options.file, ec)) {
    return Status::NotFound("no backup file " + options.file);
  }
  auto src = OpenDb(options.file, SQLITE_OPEN_READONLY);
  if (!src.ok()) return src.status();
  if (Status s = CheckIntegrity(src->get(), "integrity_check", options.file); !s.ok()) return s;
  auto version = SchemaVersion(src->get(), options.file);
  if (!version.ok()) return version.status();
  const int latest = store::sqlite::LatestSchemaVersion();
  if (*version > latest) {
    return Status::InvalidRequest(fmt::format(
        "{} has schema version {}, newer than this mmchat supports ({}); upgrade mmchat first",
        options.file, *version, latest));
  }

  auto dest =
      OpenDb(config.sqlite_dsn, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI);
  if (!dest.ok()) return dest.status();
  if (SameFile(MainFile(dest->get()), options.file)) {
    return Status::InvalidRequest(options.file + " is the database itself");
  }
  // Keep every other process out until the restore is over. A process with the database open
  // in WAL mode (a server, even an idle one) holds a shared lock on it for as long as it is
  // open, so the exclusive lock cannot be had while one runs; and once had, it is kept
  // (locking_mode=EXCLUSIVE) until this connection closes, so a server starting meanwhile
  // fails to open it ("database is locked") instead of reading a half-restored file.
  if (Status s = Exec(dest->get(), "PRAGMA busy_timeout=2000; PRAGMA locking_mode=EXCLUSIVE",
                      "configure the connection to " + config.sqlite_dsn);
      !s.ok()) {
    return s;
  }
  if (sqlite3_exec(dest->get(), "BEGIN EXCLUSIVE; COMMIT", nullptr, nullptr, nullptr) !=
      SQLITE_OK) {
    const int code = sqlite3_errcode(dest->get());
    if (code == SQLITE_BUSY || code == SQLITE_LOCKED) {
      return Status::Conflict("the database " + config.sqlite_dsn +
                              " is in use by another process (a running mmchat server?): stop "
                              "it, then restore");
    }
    return Failure("lock " + config.sqlite_dsn, dest->get());
  }
  // Fold any WAL left by a server that was killed into the file and leave WAL mode, so that
  // the file alone is what the copy replaces (atomically, through the rollback journal), and
  // a page size other than the backup's is no obstacle.
  if (Status s = Exec(dest->get(), "PRAGMA journal_mode=DELETE", "leave WAL mode"); !s.ok()) {
    return s;
  }
  int steps = 0;
  int pages = 0;
  if (Status s = CopyPages(src->get(), dest->get(), -1, &steps, &pages); !s.ok()) return s;
  src->reset();
  // Back to the server's journal mode. The copied header may already say WAL (a backup taken
  // by copying a stopped server's file), so the pager is first told DELETE again: the switch
  // to WAL then really happens, and removes the rollback journal that exclusive locking mode
  // would otherwise leave behind (emptied) after the last commit.
  if (Status s = Exec(dest->get(), "PRAGMA journal_mode=DELETE; PRAGMA journal_mode=WAL",
                      "enter WAL mode");
      !s.ok()) {
    return s;
  }
  // The source passed integrity_check and the copy is page for page: a quick check suffices.
  if (Status s = CheckIntegrity(dest->get(), "quick_check", config.sqlite_dsn); !s.ok()) return s;
  if (sqlite3_close(dest->release()) != SQLITE_OK) {
    return Status::Unavailable("cannot close " + config.sqlite_dsn);
  }
  *summary = fmt::format(
      "restored {} (schema version {}) into {}: {} pages in {}; quick_check ok{}", options.file,
      *version, config.sqlite_dsn, pages, Seconds(std::chrono::steady_clock::now() - started),
      *version < latest ? fmt::format("; the next start migrates it to schema version {}", latest)
                        : "");
  return Status::Ok();
}

constexpr const char* kPostgresBackup =
    "the store is PostgreSQL (DATABASE_URL is set): back it up with pg_dump -Fc and bring it "
    "back with pg_restore, as the README's \"Backups\" section shows";

}  // namespace

int RunBackup(const Config& config, const BackupOptions& options) {
  if (!config.database_url.empty()) {
    std::cerr << "mmchat backup: " << kPostgresBackup << "\n";
    return 2;
  }
  std::string summary;
  if (Status s = Backup(config, options, &summary); !s.ok()) {
    std::cerr << "mmchat backup: " << s.message() << "\n";
    return 1;
  }
  spdlog::info("{}", summary);
  return 0;
}

int RunRestore(const Config& config, const RestoreOptions& options) {
  if (!config.database_url.empty()) {
    std::cerr << "mmchat restore: " << kPostgresBackup << "\n";
    return 2;
  }
  std::string summary;
  if (Status s = Restore(config, options, &summary); !s.ok()) {
    std::cerr << "mmchat restore: " << s.message() << "\n";
    return 1;
  }
  spdlog::info("{}", summary);
  return 0;
}

}  // namespace mmchat::app
