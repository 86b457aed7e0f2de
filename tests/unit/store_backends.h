// The store backends the conformance suite runs against, each on a database of its own:
// SQLite on a temporary file, PostgreSQL in a fresh database on the server that
// scripts/with-postgres.sh started (MMCHAT_TEST_DATABASE_URL). Each can open the store again
// on the same database (a restart, or a second process), look behind the store's back with
// raw SQL, and hold the lock the message writer needs so that appends pile up behind it.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "common/status.h"
#include "fakes.h"
#include "store/common/store.h"
#include "test_postgres.h"

namespace mmchat::test {

// Holds what the store's message writer must take first, until Release() or destruction.
class WriterBlock {
 public:
  virtual ~WriterBlock() = default;
  virtual void Release() = 0;
};

class StoreBackend {
 public:
  virtual ~StoreBackend() = default;
  // A name for test output ("Sqlite", "Postgres").
  virtual std::string Name() const = 0;
  // Opens (and migrates) the store on this backend's database; again for a restart.
  virtual Result<std::unique_ptr<store::Store>> Open() = 0;
  // The first column of the first row of `sql`, as text ("NULL" for NULL, "" for no row).
  virtual std::string QueryOne(const std::string& sql) = 0;
  virtual void Exec(const std::string& sql) = 0;
  virtual std::unique_ptr<WriterBlock> BlockWriter() = 0;
};

class SqliteBackend final : public StoreBackend {
 public:
  std::string Name() const override { return "Sqlite"; }
  Result<std::unique_ptr<store::Store>> Open() override;
  std::string QueryOne(const std::string& sql) override;
  void Exec(const std::string& sql) override;
  std::unique_ptr<WriterBlock> BlockWriter() override;
  std::string path() const { return path_; }

 private:
  TempDir dir_;
  const std::string path_ = dir_.File("store.db");
};

// A fresh database on the test server; a test failure when there is none.
class PostgresBackend final : public StoreBackend {
 public:
  std::string Name() const override { return "Postgres"; }
  Result<std::unique_ptr<store::Store>> Open() override;
  std::string QueryOne(const std::string& sql) override { return db_.QueryOne(sql); }
  void Exec(const std::string& sql) override { db_.Query(sql); }
  std::unique_ptr<WriterBlock> BlockWriter() override;
  const std::string& url() const { return db_.url(); }

 private:
  TestDatabase db_;
};

}  // namespace mmchat::test
