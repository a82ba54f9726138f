#include "control/store/sqlite_store.h"

#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace weft::control {
namespace {

// One entry per schema version, in order: kMigrations[i] takes a database from version i to
// i + 1. Released steps are never edited; a schema change is a new step at the end.
constexpr const char* kMigrations[] = {
    // 1: the key-value table (keys compared as bytes) and the store-wide revision counter.
    "CREATE TABLE kv ("
    "  key BLOB PRIMARY KEY NOT NULL,"
    "  value BLOB NOT NULL,"
    "  revision INTEGER NOT NULL"
    ") WITHOUT ROWID;"
    "CREATE TABLE store_meta ("
    "  name TEXT PRIMARY KEY NOT NULL,"
    "  value INTEGER NOT NULL"
    ");"
    "INSERT INTO store_meta(name, value) VALUES ('revision', 0);",
};
constexpr int kSchemaVersion = static_cast<int>(std::size(kMigrations));

// Resets a statement on scope exit so the next user finds it clean.
class StmtGuard {
 public:
  explicit StmtGuard(sqlite3_stmt* s) : s_(s) {}
  ~StmtGuard() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  StmtGuard(const StmtGuard&) = delete;
  StmtGuard& operator=(const StmtGuard&) = delete;

 private:
  sqlite3_stmt* s_;
};

void bindBlob(sqlite3_stmt* s, int i, std::string_view v) {
  // An empty blob must still bind as a blob, not NULL: pass a non-null pointer.
  static const char kEmpty = 0;
  sqlite3_bind_blob64(s, i, v.empty() ? &kEmpty : v.data(), v.size(), SQLITE_TRANSIENT);
}

std::string columnBlob(sqlite3_stmt* s, int i) {
  const void* p = sqlite3_column_blob(s, i);
  int n = sqlite3_column_bytes(s, i);
  return p ? std::string(static_cast<const char*>(p), static_cast<size_t>(n)) : std::string();
}

// The smallest byte string greater than every string that starts with `prefix`, or nullopt
// when there is none (the prefix is empty or all 0xff).
std::optional<std::string> prefixEnd(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    auto last = static_cast<unsigned char>(end.back());
    if (last != 0xff) {
      end.back() = static_cast<char>(last + 1);
      return end;
    }
    end.pop_back();
  }
  return std::nullopt;
}

std::string dirOf(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

int SqliteStore::schemaVersion() { return kSchemaVersion; }

Result<std::unique_ptr<SqliteStore>> SqliteStore::open(const std::string& path) {
  std::string dir = dirOf(path);
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0)
    return makeError("store: directory " + dir + " does not exist (" + std::strerror(errno) +
                     "); create it or choose another --data-dir");
  if (!S_ISDIR(st.st_mode)) return makeError("store: " + dir + " is not a directory");
  if (::access(dir.c_str(), W_OK | X_OK) != 0)
    return makeError("store: directory " + dir + " is not writable by this user (" +
                     std::strerror(errno) + "); fix its permissions or choose another --data-dir");
  if (::stat(path.c_str(), &st) == 0 && ::access(path.c_str(), R_OK | W_OK) != 0)
    return makeError("store: " + path + " is not readable and writable by this user (" +
                     std::strerror(errno) + "); fix its owner or permissions");

  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(
      path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close(db);
    return makeError("store: cannot open " + path + ": " + msg);
  }
  std::unique_ptr<SqliteStore> store(new SqliteStore(path, db));
  sqlite3_busy_timeout(db, 5000);
  sqlite3_extended_result_codes(db, 1);

  // journal_mode answers a row; a file that is not a database fails here first.
  sqlite3_stmt* s = nullptr;
  rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &s, nullptr);
  if (rc == SQLITE_OK) rc = sqlite3_step(s);
  std::string mode = rc == SQLITE_ROW ? columnBlob(s, 0) : "";
  sqlite3_finalize(s);
  if (rc != SQLITE_ROW) {
    if ((rc & 0xff) == SQLITE_NOTADB)
      return makeError("store: " + path +
                       " is not a SQLite database (is --data-dir pointing at the right "
                       "directory?)");
    return store->sqliteError("cannot switch " + path + " to WAL mode");
  }
  if (mode != "wal")
    return makeError("store: " + path + " stays in journal mode '" + mode +
                     "' instead of WAL (is the file on a filesystem without shared memory?)");
  if (auto st2 = store->exec("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"); !st2)
    return Unexpected<Error>{st2.error()};

  // Migrations, in one transaction.
  if (auto st2 = store->exec("BEGIN IMMEDIATE"); !st2) return Unexpected<Error>{st2.error()};
  int version = 0;
  rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, nullptr);
  if (rc == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW) version = sqlite3_column_int(s, 0);
  sqlite3_finalize(s);
  if (version > kSchemaVersion) {
    (void)store->exec("ROLLBACK");
    return makeError("store: " + path + " has schema version " + std::to_string(version) +
                     ", written by a newer weft; this build knows versions up to " +
                     std::to_string(kSchemaVersion) + ". Run the newer weft (or restore a backup)");
  }
  if (version == 0) {
    // A fresh file must be empty: refuse to adopt some other application's database.
    rc = sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master", -1, &s, nullptr);
    int tables = (rc == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW) ? sqlite3_column_int(s, 0) : 0;
    sqlite3_finalize(s);
    if (tables > 0) {
      (void)store->exec("ROLLBACK");
      return makeError("store: " + path +
                       " is a SQLite database that weft did not create (it has tables but no "
                       "weft schema version); choose another --data-dir");
    }
  }
  for (int v = version; v < kSchemaVersion; ++v) {
    if (auto st2 = store->exec(kMigrations[v]); !st2) {
      (void)store->exec("ROLLBACK");
      return makeError("store: migrating " + path + " to schema version " + std::to_string(v + 1) +
                       " failed: " + st2.error().message);
    }
  }
  if (version != kSchemaVersion) {
    std::string set = "PRAGMA user_version=" + std::to_string(kSchemaVersion);
    if (auto st2 = store->exec(set.c_str()); !st2) {
      (void)store->exec("ROLLBACK");
      return Unexpected<Error>{st2.error()};
    }
  }
  if (auto st2 = store->exec("COMMIT"); !st2) return Unexpected<Error>{st2.error()};
  if (auto st2 = store->prepareStatements(); !st2) return Unexpected<Error>{st2.error()};
  return store;
}

SqliteStore::SqliteStore(std::string path, sqlite3* db) : path_(std::move(path)), db_(db) {}

SqliteStore::~SqliteStore() {
  for (sqlite3_stmt* s : {get_, list_, key_rev_, put_, del_, get_rev_, set_rev_})
    sqlite3_finalize(s);
  sqlite3_close(db_);
}

Unexpected<Error> SqliteStore::sqliteError(std::string_view what) {
  return makeError("store: " + std::string(what) + ": " + sqlite3_errmsg(db_));
}

Status SqliteStore::exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errmsg(db_);
    sqlite3_free(err);
    return makeError("store: " + path_ + ": " + msg);
  }
  return {};
}

Status SqliteStore::prepareStatements() {
  struct {
    sqlite3_stmt** stmt;
    const char* sql;
  } const stmts[] = {
      {&get_, "SELECT value, revision FROM kv WHERE key = ?1"},
      {&list_,
       "SELECT key, value, revision FROM kv WHERE key >= ?1 AND (?2 IS NULL OR key < ?2) "
       "AND key > ?3 ORDER BY key LIMIT ?4"},
      {&key_rev_, "SELECT revision FROM kv WHERE key = ?1"},
      {&put_,
       "INSERT INTO kv(key, value, revision) VALUES (?1, ?2, ?3) ON CONFLICT(key) DO UPDATE "
       "SET value = excluded.value, revision = excluded.revision"},
      {&del_, "DELETE FROM kv WHERE key = ?1"},
      {&get_rev_, "SELECT value FROM store_meta WHERE name = 'revision'"},
      {&set_rev_, "UPDATE store_meta SET value = ?1 WHERE name = 'revision'"},
  };
  for (const auto& s : stmts) {
    if (sqlite3_prepare_v3(db_, s.sql, -1, SQLITE_PREPARE_PERSISTENT, s.stmt, nullptr) != SQLITE_OK)
      return sqliteError(std::string("preparing '") + s.sql + "'");
  }
  return {};
}

Result<std::optional<KeyValue>> SqliteStore::get(std::string_view key) {
  std::lock_guard lock(mu_);
  StmtGuard g(get_);
  bindBlob(get_, 1, key);
  int rc = sqlite3_step(get_);
  if (rc == SQLITE_DONE) return std::optional<KeyValue>();
  if (rc != SQLITE_ROW) return sqliteError("get");
  return std::optional<KeyValue>(
      KeyValue{std::string(key), columnBlob(get_, 0), sqlite3_column_int64(get_, 1)});
}

Result<std::vector<KeyValue>> SqliteStore::list(std::string_view prefix,
                                                std::string_view start_after, size_t limit) {
  std::lock_guard lock(mu_);
  StmtGuard g(list_);
  bindBlob(list_, 1, prefix);
  std::optional<std::string> end = prefixEnd(prefix);
  if (end)
    bindBlob(list_, 2, *end);
  else
    sqlite3_bind_null(list_, 2);
  bindBlob(list_, 3, start_after);
  sqlite3_bind_int64(list_, 4, limit == 0 ? -1 : static_cast<sqlite3_int64>(limit));
  std::vector<KeyValue> out;
  int rc;
  while ((rc = sqlite3_step(list_)) == SQLITE_ROW) {
    out.push_back(
        KeyValue{columnBlob(list_, 0), columnBlob(list_, 1), sqlite3_column_int64(list_, 2)});
  }
  if (rc != SQLITE_DONE) return sqliteError("list");
  return out;
}

Result<int64_t> SqliteStore::revisionLocked() {
  StmtGuard g(get_rev_);
  if (sqlite3_step(get_rev_) != SQLITE_ROW) return sqliteError("reading the store revision");
  return static_cast<int64_t>(sqlite3_column_int64(get_rev_, 0));
}

Result<int64_t> SqliteStore::revision() {
  std::lock_guard lock(mu_);
  return revisionLocked();
}

Result<int64_t> SqliteStore::keyRevisionLocked(std::string_view key) {
  StmtGuard g(key_rev_);
  bindBlob(key_rev_, 1, key);
  int rc = sqlite3_step(key_rev_);
  if (rc == SQLITE_DONE) return int64_t{0};
  if (rc != SQLITE_ROW) return sqliteError("reading a key's revision");
  return static_cast<int64_t>(sqlite3_column_int64(key_rev_, 0));
}

Result<int64_t> SqliteStore::commit(const std::vector<StoreOp>& ops) {
  std::lock_guard lock(mu_);
  if (auto st = exec("BEGIN IMMEDIATE"); !st) return Unexpected<Error>{st.error()};
  // Everything below either COMMITs or rolls back.
  auto rollback = [this](Unexpected<Error> e) -> Result<int64_t> {
    (void)exec("ROLLBACK");
    return e;
  };
  for (const StoreOp& op : ops) {
    if (op.expected_revision == StoreOp::kAnyRevision) continue;
    auto current = keyRevisionLocked(op.key);
    if (!current) return rollback(Unexpected<Error>{current.error()});
    if (*current != op.expected_revision) {
      std::string want = op.expected_revision == StoreOp::kAbsent
                             ? std::string("absent")
                             : "at revision " + std::to_string(op.expected_revision);
      std::string got =
          *current == 0 ? std::string("absent") : "at revision " + std::to_string(*current);
      return rollback(
          makeError("store: conflict on " + op.key + ": expected " + want + ", it is " + got,
                    kStoreConflict));
    }
  }
  auto rev = revisionLocked();
  if (!rev) return rollback(Unexpected<Error>{rev.error()});
  bool writes = false;
  for (const StoreOp& op : ops) writes |= op.kind != StoreOp::Kind::kCheck;
  if (!writes) {
    (void)exec("ROLLBACK");
    return *rev;
  }
  int64_t next = *rev + 1;
  for (const StoreOp& op : ops) {
    if (op.kind == StoreOp::Kind::kPut) {
      StmtGuard g(put_);
      bindBlob(put_, 1, op.key);
      bindBlob(put_, 2, op.value);
      sqlite3_bind_int64(put_, 3, next);
      if (sqlite3_step(put_) != SQLITE_DONE) return rollback(sqliteError("put " + op.key));
    } else if (op.kind == StoreOp::Kind::kDelete) {
      StmtGuard g(del_);
      bindBlob(del_, 1, op.key);
      if (sqlite3_step(del_) != SQLITE_DONE) return rollback(sqliteError("delete " + op.key));
    }
  }
  {
    StmtGuard g(set_rev_);
    sqlite3_bind_int64(set_rev_, 1, next);
    if (sqlite3_step(set_rev_) != SQLITE_DONE)
      return rollback(sqliteError("updating the store revision"));
  }
  if (auto st = exec("COMMIT"); !st) return rollback(Unexpected<Error>{st.error()});
  return next;
}

}  // namespace weft::control
