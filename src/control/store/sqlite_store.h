#pragma once
// SqliteStore: the Store on one SQLite database file (the default, `weft server --data-dir`).
//
// Durability: WAL journal with synchronous=FULL, so a commit() has been fsynced to the WAL
// before it returns; a crash after that loses nothing. Atomicity: each commit() is one
// BEGIN IMMEDIATE transaction in which every precondition is checked before anything is
// written.
//
// Schema: versioned with PRAGMA user_version and an ordered list of migration steps (one per
// schema version, never edited once released). open() applies the missing steps in one
// transaction; a database whose version is newer than this build knows is refused rather than
// misread.
//
// Thread-safety: every method may be called from any thread; one connection is shared behind a
// mutex (the control plane's request rate is far below what one connection serves). Another
// process writing the same file waits on SQLite's lock (busy timeout 5 s).

#include <memory>
#include <mutex>
#include <string>

#include "control/store/store.h"

struct sqlite3;
struct sqlite3_stmt;

namespace weft::control {

class SqliteStore final : public Store {
 public:
  // The schema version this build writes (the number of migration steps it knows).
  static int schemaVersion();

  // Opens `path`, creating the file if it does not exist (its directory must exist and be
  // writable), and migrates it to schemaVersion(). Errors say what to fix: a missing or
  // unwritable directory, a file that is not a weft database, a database from a newer weft.
  static Result<std::unique_ptr<SqliteStore>> open(const std::string& path);

  ~SqliteStore() override;
  SqliteStore(const SqliteStore&) = delete;
  SqliteStore& operator=(const SqliteStore&) = delete;

  Result<std::optional<KeyValue>> get(std::string_view key) override;
  Result<std::vector<KeyValue>> list(std::string_view prefix, std::string_view start_after,
                                     size_t limit) override;
  Result<int64_t> commit(const std::vector<StoreOp>& ops) override;

  // The store-wide revision of the last commit (0 for an empty store).
  Result<int64_t> revision();
  const std::string& path() const { return path_; }

 private:
  SqliteStore(std::string path, sqlite3* db);
  Status prepareStatements();
  Result<int64_t> revisionLocked();
  Result<int64_t> keyRevisionLocked(std::string_view key);
  Status exec(const char* sql);
  Unexpected<Error> sqliteError(std::string_view what);

  std::string path_;
  std::mutex mu_;  // guards db_ and the statements
  sqlite3* db_;
  sqlite3_stmt* get_ = nullptr;
  sqlite3_stmt* list_ = nullptr;
  sqlite3_stmt* key_rev_ = nullptr;
  sqlite3_stmt* put_ = nullptr;
  sqlite3_stmt* del_ = nullptr;
  sqlite3_stmt* get_rev_ = nullptr;
  sqlite3_stmt* set_rev_ = nullptr;
};

}  // namespace weft::control
