#include "control/store/sqlite_store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <thread>

namespace weft::control {
namespace {

namespace fs = std::filesystem;

class SqliteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/weft-sqlite-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/weft.db";
  }
  void TearDown() override {
    ::chmod(dir_.c_str(), 0700);
    fs::remove_all(dir_);
  }
  std::unique_ptr<SqliteStore> openOrDie() {
    auto s = SqliteStore::open(path_);
    EXPECT_TRUE(s) << "expected " << path_ << " to open, got: " << s.error().message;
    return s ? std::move(*s) : nullptr;
  }
  std::string dir_;
  std::string path_;
};

TEST_F(SqliteStoreTest, PutGetListDelete) {
  auto store = openOrDie();
  ASSERT_TRUE(store);
  auto r = store->commit({StoreOp::put("appmesh/meshes/a", "A", StoreOp::kAbsent),
                          StoreOp::put("appmesh/meshes/b", "B", StoreOp::kAbsent),
                          StoreOp::put("appmesh/meshesX", "X", StoreOp::kAnyRevision),
                          StoreOp::put("other/c", std::string("C\0D", 3), StoreOp::kAnyRevision)});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*r, 1);
  auto a = store->get("appmesh/meshes/a");
  ASSERT_TRUE(a);
  ASSERT_TRUE(a->has_value());
  EXPECT_EQ((*a)->value, "A");
  EXPECT_EQ((*a)->revision, 1);
  auto c = store->get("other/c");
  ASSERT_TRUE(c && c->has_value());
  EXPECT_EQ((*c)->value, std::string("C\0D", 3)) << "values are bytes, NULs included";
  auto missing = store->get("appmesh/meshes/zz");
  ASSERT_TRUE(missing);
  EXPECT_FALSE(missing->has_value());

  auto l = store->list("appmesh/meshes/", "", 0);
  ASSERT_TRUE(l);
  ASSERT_EQ(l->size(), 2u) << "prefix must not match appmesh/meshesX";
  EXPECT_EQ((*l)[0].key, "appmesh/meshes/a");
  EXPECT_EQ((*l)[1].key, "appmesh/meshes/b");

  auto page = store->list("appmesh/meshes/", "appmesh/meshes/a", 1);
  ASSERT_TRUE(page);
  ASSERT_EQ(page->size(), 1u);
  EXPECT_EQ((*page)[0].key, "appmesh/meshes/b");
  auto all = store->list("", "", 0);
  ASSERT_TRUE(all);
  EXPECT_EQ(all->size(), 4u);

  auto d = store->commit({StoreOp::remove("appmesh/meshes/a", 1)});
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(*d, 2);
  auto gone = store->get("appmesh/meshes/a");
  ASSERT_TRUE(gone);
  EXPECT_FALSE(gone->has_value());
  auto rev = store->revision();
  ASSERT_TRUE(rev);
  EXPECT_EQ(*rev, 2);
}

TEST_F(SqliteStoreTest, RevisionsIncreasePerCommit) {
  auto store = openOrDie();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->commit({StoreOp::put("k", "1", StoreOp::kAbsent)}));
  ASSERT_TRUE(store->commit({StoreOp::put("j", "1", StoreOp::kAbsent)}));
  auto r = store->commit({StoreOp::put("k", "2", 1)});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*r, 3);
  auto k = store->get("k");
  EXPECT_EQ((*k)->revision, 3);
  EXPECT_EQ((*store->get("j"))->revision, 2);
}

TEST_F(SqliteStoreTest, ConflictsWriteNothing) {
  auto store = openOrDie();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->commit({StoreOp::put("k", "v1", StoreOp::kAbsent)}));
  struct Case {
    const char* what;
    std::vector<StoreOp> ops;
  };
  std::vector<Case> cases = {
      {"create over an existing key",
       {StoreOp::put("new", "x", StoreOp::kAbsent), StoreOp::put("k", "v2", StoreOp::kAbsent)}},
      {"stale revision", {StoreOp::put("new", "x", StoreOp::kAbsent), StoreOp::put("k", "v2", 7)}},
      {"check of an absent key", {StoreOp::put("new", "x", 0), StoreOp::check("nope", 1)}},
      {"delete with stale revision", {StoreOp::remove("k", 5)}},
      {"check of a present key expected absent",
       {StoreOp::check("k", StoreOp::kAbsent), StoreOp::put("new", "x", StoreOp::kAnyRevision)}},
  };
  for (const Case& c : cases) {
    auto r = store->commit(c.ops);
    ASSERT_FALSE(r) << c.what << ": expected a conflict";
    EXPECT_EQ(r.error().code, kStoreConflict) << c.what << ": " << r.error().message;
    auto n = store->get("new");
    ASSERT_TRUE(n);
    EXPECT_FALSE(n->has_value()) << c.what << ": nothing of a failed batch may be written";
    EXPECT_EQ((*store->get("k"))->value, "v1") << c.what;
    EXPECT_EQ(*store->revision(), 1) << c.what;
  }
  // A check that holds, with a write: applied.
  auto ok = store->commit({StoreOp::check("k", 1), StoreOp::put("new", "x", StoreOp::kAbsent)});
  ASSERT_TRUE(ok) << ok.error().message;
  // A batch of only checks writes nothing and answers the current revision.
  auto checks = store->commit({StoreOp::check("k", 1)});
  ASSERT_TRUE(checks);
  EXPECT_EQ(*checks, 2);
}

TEST_F(SqliteStoreTest, ReopenKeepsCommittedData) {
  {
    auto store = openOrDie();
    ASSERT_TRUE(store);
    for (int i = 0; i < 20; ++i)
      ASSERT_TRUE(store->commit(
          {StoreOp::put("k" + std::to_string(i), "v" + std::to_string(i), StoreOp::kAbsent)}));
    ASSERT_TRUE(store->commit({StoreOp::remove("k3", StoreOp::kAnyRevision)}));
  }
  auto store = openOrDie();
  ASSERT_TRUE(store);
  EXPECT_EQ(*store->revision(), 21);
  auto l = store->list("k", "", 0);
  ASSERT_TRUE(l);
  EXPECT_EQ(l->size(), 19u);
  EXPECT_EQ((*store->get("k7"))->value, "v7");
  EXPECT_EQ((*store->get("k7"))->revision, 8);
  EXPECT_FALSE(store->get("k3")->has_value());
  // And it stays writable, continuing the revision sequence.
  auto r = store->commit({StoreOp::put("k7", "again", 8)});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*r, 22);
}

TEST_F(SqliteStoreTest, DataVisibleToAnotherConnectionRightAfterCommit) {
  // What a second process (or a crash-restart) sees: the committed WAL, read by a separate
  // connection while the writer is still open.
  auto store = openOrDie();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->commit({StoreOp::put("durable", "yes", StoreOp::kAbsent)}));
  auto other = SqliteStore::open(path_);
  ASSERT_TRUE(other) << other.error().message;
  auto v = (*other)->get("durable");
  ASSERT_TRUE(v && v->has_value());
  EXPECT_EQ((*v)->value, "yes");
}

TEST_F(SqliteStoreTest, UsesWalAndRecordsSchemaVersion) {
  auto store = openOrDie();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->commit({StoreOp::put("k", "v", StoreOp::kAbsent)}));
  EXPECT_TRUE(fs::exists(path_ + "-wal")) << "expected a WAL file beside " << path_;
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(s), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(s, 0), SqliteStore::schemaVersion());
  sqlite3_finalize(s);
  sqlite3_close(db);
}

TEST_F(SqliteStoreTest, ConcurrentIncrementsNeverLoseUpdates) {
  auto store = openOrDie();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->commit({StoreOp::put("counter", "0", StoreOp::kAbsent)}));
  constexpr int kThreads = 4, kPerThread = 25;
  std::vector<std::thread> threads;
  std::atomic<int> conflicts{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread;) {
        auto cur = store->get("counter");
        ASSERT_TRUE(cur && cur->has_value());
        int n = std::stoi((*cur)->value);
        auto r = store->commit({StoreOp::put("counter", std::to_string(n + 1), (*cur)->revision)});
        if (r) {
          ++i;
        } else {
          ASSERT_EQ(r.error().code, kStoreConflict) << r.error().message;
          ++conflicts;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ((*store->get("counter"))->value, std::to_string(kThreads * kPerThread))
      << "optimistic retries must not lose an increment (" << conflicts << " conflicts seen)";
}

TEST_F(SqliteStoreTest, OpenErrorsSayWhatToFix) {
  auto r = SqliteStore::open(dir_ + "/missing/weft.db");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("does not exist"), std::string::npos) << r.error().message;

  // A file that is not a database.
  {
    FILE* f = std::fopen(path_.c_str(), "w");
    ASSERT_TRUE(f);
    std::fputs("this is not a database, just some text that is long enough to fill a header\n", f);
    for (int i = 0; i < 100; ++i) std::fputs("more text more text more text\n", f);
    std::fclose(f);
    auto bad = SqliteStore::open(path_);
    ASSERT_FALSE(bad);
    EXPECT_NE(bad.error().message.find("not a SQLite database"), std::string::npos)
        << bad.error().message;
    fs::remove(path_);
  }

  // A database written by a newer weft.
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version=999", nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(db);
    auto newer = SqliteStore::open(path_);
    ASSERT_FALSE(newer);
    EXPECT_NE(newer.error().message.find("newer weft"), std::string::npos) << newer.error().message;
    fs::remove(path_);
  }

  // Some other application's database.
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "CREATE TABLE t(x)", nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(db);
    auto foreign = SqliteStore::open(path_);
    ASSERT_FALSE(foreign);
    EXPECT_NE(foreign.error().message.find("did not create"), std::string::npos)
        << foreign.error().message;
    fs::remove(path_);
  }

  // An unwritable directory (root ignores permissions: skip that part).
  if (::geteuid() != 0) {
    ::chmod(dir_.c_str(), 0500);
    auto ro = SqliteStore::open(path_);
    ::chmod(dir_.c_str(), 0700);
    ASSERT_FALSE(ro);
    EXPECT_NE(ro.error().message.find("not writable"), std::string::npos) << ro.error().message;
  }
}

}  // namespace
}  // namespace weft::control
