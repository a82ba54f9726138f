#include "control/store/notifying_store.h"

#include <gtest/gtest.h>

#include "control/store/memory_store.h"

namespace weft::control {
namespace {

class NotifyingStoreTest : public ::testing::Test {
 protected:
  NotifyingStoreTest() {
    store_.setListener([this](const std::vector<std::string>& keys) {
      reported_.insert(reported_.end(), keys.begin(), keys.end());
    });
  }
  int64_t revisionOf(const std::string& key) {
    auto kv = store_.get(key);
    return kv && *kv ? (**kv).revision : 0;
  }
  MemoryStore inner_;
  NotifyingStore store_{inner_};
  std::vector<std::string> reported_;
};

TEST_F(NotifyingStoreTest, ReportsWritesAndDeletesAfterTheCommit) {
  ASSERT_TRUE(store_.commit({StoreOp::put("a", "1", StoreOp::kAbsent)}));
  ASSERT_TRUE(store_.commit({StoreOp::put("a", "2", revisionOf("a")), StoreOp::check("b", 0)}));
  ASSERT_TRUE(store_.commit({StoreOp::remove("a", StoreOp::kAnyRevision)}));
  EXPECT_EQ(reported_, (std::vector<std::string>{"a", "a", "a"}));
}

TEST_F(NotifyingStoreTest, AnUnchangedRewriteUnderAPreconditionIsNotAChange) {
  ASSERT_TRUE(store_.commit({StoreOp::put("mesh", "{}", StoreOp::kAbsent)}));
  reported_.clear();
  // The model's parent bump: same bytes, guarded by the revision it read.
  ASSERT_TRUE(store_.commit({StoreOp::put("mesh", "{}", revisionOf("mesh")),
                             StoreOp::put("mesh/child", "x", StoreOp::kAbsent)}));
  EXPECT_EQ(reported_, std::vector<std::string>{"mesh/child"});
}

TEST_F(NotifyingStoreTest, AFailedCommitReportsNothing) {
  ASSERT_TRUE(store_.commit({StoreOp::put("a", "1", StoreOp::kAbsent)}));
  reported_.clear();
  auto r = store_.commit({StoreOp::put("a", "2", StoreOp::kAbsent)});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, kStoreConflict);
  EXPECT_TRUE(reported_.empty());
}

}  // namespace
}  // namespace weft::control
