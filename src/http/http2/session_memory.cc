#include "http/http2/session_memory.h"

#include <cstdlib>
#include <cstring>

namespace weft::http2 {
namespace {

constexpr size_t kClassBytes = 16;
constexpr size_t kClasses = kMaxPooled / kClassBytes;  // class c holds (c + 1) * 16 bytes

struct alignas(16) Header {
  size_t capacity;  // usable bytes after the header
};

struct FreeBlock {
  FreeBlock* next;
};

thread_local bool t_pool_gone = false;  // trivially destructible: readable to the very end

struct Pool {
  FreeBlock* heads[kClasses] = {};
  size_t counts[kClasses] = {};
  ~Pool() {
    t_pool_gone = true;  // blocks freed later on this thread (thread exit) go to free()
    for (FreeBlock* head : heads) {
      while (head != nullptr) {
        FreeBlock* next = head->next;
        std::free(reinterpret_cast<Header*>(head) - 1);
        head = next;
      }
    }
  }
};

thread_local Pool t_pool;

// This thread's pool; null once it was destroyed (at thread exit).
Pool* pool() { return t_pool_gone ? nullptr : &t_pool; }

Header* headerOf(void* p) { return static_cast<Header*>(p) - 1; }

void* allocate(size_t size) {
  if (size == 0) size = 1;
  size_t capacity = size;
  if (size <= kMaxPooled) {
    size_t c = (size - 1) / kClassBytes;
    Pool* pl = pool();
    if (FreeBlock* b = pl ? pl->heads[c] : nullptr; b != nullptr) {
      pl->heads[c] = b->next;
      --pl->counts[c];
      return b;
    }
    capacity = (c + 1) * kClassBytes;
  }
  auto* h = static_cast<Header*>(std::malloc(sizeof(Header) + capacity));
  if (h == nullptr) return nullptr;
  h->capacity = capacity;
  return h + 1;
}

void release(void* p) {
  if (p == nullptr) return;
  Header* h = headerOf(p);
  Pool* pl = pool();
  if (pl != nullptr && h->capacity <= kMaxPooled) {
    size_t c = h->capacity / kClassBytes - 1;
    if (pl->counts[c] < kMaxFreePerClass) {
      auto* b = static_cast<FreeBlock*>(p);
      b->next = pl->heads[c];
      pl->heads[c] = b;
      ++pl->counts[c];
      return;
    }
  }
  std::free(h);
}

void* memMalloc(size_t size, void*) { return allocate(size); }
void memFree(void* p, void*) { release(p); }
void* memCalloc(size_t n, size_t size, void*) {
  if (size != 0 && n > (SIZE_MAX - sizeof(Header)) / size) return nullptr;
  void* p = allocate(n * size);
  if (p != nullptr) std::memset(p, 0, n * size);
  return p;
}
void* memRealloc(void* p, size_t size, void*) {
  if (p == nullptr) return allocate(size);
  if (size == 0) {
    release(p);
    return nullptr;
  }
  size_t old = headerOf(p)->capacity;
  if (size <= old) return p;
  void* q = allocate(size);
  if (q == nullptr) return nullptr;  // p stays valid, as realloc's contract says
  std::memcpy(q, p, old);
  release(p);
  return q;
}

nghttp2_mem g_mem{nullptr, &memMalloc, &memFree, &memCalloc, &memRealloc};

}  // namespace

nghttp2_mem* sessionMemory() { return &g_mem; }

size_t pooledFreeBlocks() {
  size_t n = 0;
  if (Pool* pl = pool())
    for (size_t c : pl->counts) n += c;
  return n;
}

}  // namespace weft::http2
