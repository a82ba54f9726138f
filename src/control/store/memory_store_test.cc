#include "control/store/memory_store.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace weft::control {
namespace {

TEST(MemoryStoreTest, PutGetDeleteWithRevisions) {
  MemoryStore s;
  auto r1 = s.commit({StoreOp::put("a", "1", StoreOp::kAbsent)});
  ASSERT_TRUE(r1.has_value());
  EXPECT_EQ(*r1, 1);
  auto got = s.get("a");
  ASSERT_TRUE(got.has_value() && got->has_value());
  EXPECT_EQ((*got)->value, "1");
  EXPECT_EQ((*got)->revision, 1);
  auto r2 = s.commit({StoreOp::put("a", "2", 1)});
  ASSERT_TRUE(r2.has_value());
  EXPECT_EQ((*s.get("a"))->revision, 2);
  ASSERT_TRUE(s.commit({StoreOp::remove("a", 2)}).has_value());
  EXPECT_FALSE(s.get("a")->has_value());
  EXPECT_EQ(s.revision(), 3);
}

// Review item 8: a batch of only checks writes nothing and, as in SqliteStore, takes no revision.
TEST(MemoryStoreTest, CheckOnlyCommitDoesNotAdvanceTheRevision) {
  MemoryStore s;
  ASSERT_TRUE(s.commit({StoreOp::put("a", "1", StoreOp::kAbsent)}).has_value());
  auto r = s.commit({StoreOp::check("a", 1)});
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(*r, 1) << "a check-only commit answers the current revision";
  EXPECT_EQ(s.revision(), 1);
  auto next = s.commit({StoreOp::put("b", "2", StoreOp::kAbsent)});
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(*next, 2);
}

TEST(MemoryStoreTest, FailedPreconditionWritesNothing) {
  MemoryStore s;
  ASSERT_TRUE(s.commit({StoreOp::put("a", "1", StoreOp::kAbsent)}).has_value());
  auto bad = s.commit(
      {StoreOp::put("b", "x", StoreOp::kAbsent), StoreOp::put("a", "2", StoreOp::kAbsent)});
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code, kStoreConflict);
  EXPECT_FALSE(s.get("b")->has_value()) << "a batch is all or nothing";
  EXPECT_EQ((*s.get("a"))->value, "1");
  EXPECT_EQ(s.commit({StoreOp::check("a", 7)}).error().code, kStoreConflict);
  EXPECT_EQ(s.commit({StoreOp::remove("missing", 3)}).error().code, kStoreConflict);
  EXPECT_TRUE(s.commit({StoreOp::remove("missing", StoreOp::kAnyRevision)}).has_value());
  EXPECT_TRUE(s.commit({StoreOp::check("a", 1)}).has_value());
}

TEST(MemoryStoreTest, ListByPrefixAfterKeyWithLimit) {
  MemoryStore s;
  for (const char* k : {"p/a", "p/b", "p/c", "q/a", "p"})
    ASSERT_TRUE(s.commit({StoreOp::put(k, k, StoreOp::kAnyRevision)}).has_value());
  auto all = s.list("p/", "", 0);
  ASSERT_TRUE(all.has_value());
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[0].key, "p/a");
  auto after = s.list("p/", "p/a", 1);
  ASSERT_EQ(after->size(), 1u);
  EXPECT_EQ((*after)[0].key, "p/b");
  EXPECT_TRUE(s.list("p/", "p/c", 0)->empty());
  EXPECT_EQ(s.list("", "", 0)->size(), 5u);
}

TEST(MemoryStoreTest, ConcurrentIncrementsNeverLoseAnUpdate) {
  MemoryStore s;
  ASSERT_TRUE(s.commit({StoreOp::put("n", "0", StoreOp::kAbsent)}).has_value());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) {
        while (true) {
          auto kv = s.get("n");
          int v = std::stoi((*kv)->value);
          if (s.commit({StoreOp::put("n", std::to_string(v + 1), (*kv)->revision)}).has_value())
            break;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ((*s.get("n"))->value, "800");
}

}  // namespace
}  // namespace weft::control
