#pragma once
// The allocator nghttp2 sessions use (nghttp2_mem). nghttp2 allocates for every frame, stream
// and received header field — about fifty times per proxied gRPC call — so plain malloc/free
// was ~18 % of the proxy's instructions on that path. Blocks of up to kMaxPooled bytes come from
// per-thread free lists, one per 16-byte size class, with no locks: a worker's sessions live on
// its thread (one event loop per worker). Larger blocks go straight to malloc.
//
// Contract: every block is one malloc'ed piece with a 16-byte header holding its capacity, so
// any thread may free any block (it joins that thread's list, or is freed when the list is
// full); a thread's lists are freed when the thread ends. Results are 16-byte aligned, as
// malloc's on x86-64. Each list keeps at most kMaxFreePerClass blocks, which bounds what a
// thread keeps after a burst (at most ~2 MiB).

#include <nghttp2/nghttp2.h>

#include <cstddef>

namespace weft::http2 {

inline constexpr size_t kMaxPooled = 512;
inline constexpr size_t kMaxFreePerClass = 256;

// The nghttp2_mem to pass to nghttp2_session_*_new3 (static storage; thread-safe).
nghttp2_mem* sessionMemory();

// For tests: blocks on the calling thread's free lists.
size_t pooledFreeBlocks();

}  // namespace weft::http2
