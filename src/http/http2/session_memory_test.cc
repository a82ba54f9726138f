#include "http/http2/session_memory.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

namespace weft::http2 {
namespace {

TEST(SessionMemory, ReusesFreedBlocksOfTheSameClassAndKeepsData) {
  nghttp2_mem* m = sessionMemory();
  size_t before = pooledFreeBlocks();
  void* a = m->malloc(40, m->mem_user_data);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a) % 16, 0u) << "16-byte aligned";
  std::memset(a, 0xab, 40);
  m->free(a, m->mem_user_data);
  EXPECT_EQ(pooledFreeBlocks(), before + 1);
  void* b = m->malloc(33, m->mem_user_data);  // same 48-byte class
  EXPECT_EQ(b, a) << "a freed block of the class is handed out again";
  EXPECT_EQ(pooledFreeBlocks(), before);

  void* c = m->calloc(3, 10, m->mem_user_data);
  ASSERT_NE(c, nullptr);
  for (int i = 0; i < 30; ++i) EXPECT_EQ(static_cast<unsigned char*>(c)[i], 0) << i;

  std::memcpy(b, "0123456789", 10);
  void* grown = m->realloc(b, 4000, m->mem_user_data);  // beyond the pooled sizes
  ASSERT_NE(grown, nullptr);
  EXPECT_EQ(std::memcmp(grown, "0123456789", 10), 0) << "realloc keeps the contents";
  void* same = m->realloc(grown, 100, m->mem_user_data);
  EXPECT_EQ(same, grown) << "shrinking keeps the block";
  m->free(same, m->mem_user_data);
  m->free(c, m->mem_user_data);
  m->free(nullptr, m->mem_user_data);
  void* fresh = m->realloc(nullptr, 0, m->mem_user_data);
  EXPECT_NE(fresh, nullptr) << "realloc(null, n) allocates";
  m->free(fresh, m->mem_user_data);
}

TEST(SessionMemory, FreeListsAreBoundedAndPerThread) {
  nghttp2_mem* m = sessionMemory();
  std::vector<void*> blocks;
  for (size_t i = 0; i < kMaxFreePerClass + 50; ++i) blocks.push_back(m->malloc(500, nullptr));
  size_t before = pooledFreeBlocks();
  for (void* p : blocks) m->free(p, nullptr);
  EXPECT_LE(pooledFreeBlocks() - before, kMaxFreePerClass) << "a class keeps at most its bound";
  // Another thread frees a block of this one: it lands on that thread's list.
  void* p = m->malloc(64, nullptr);
  size_t there = 0;
  std::thread t([&] {
    m->free(p, nullptr);
    there = pooledFreeBlocks();
  });
  t.join();
  EXPECT_EQ(there, 1u);
  EXPECT_EQ(m->calloc(SIZE_MAX / 2, 4, nullptr), nullptr) << "an overflowing calloc fails";
}

}  // namespace
}  // namespace weft::http2
