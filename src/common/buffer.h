#pragma once
// Buffer: a contiguous byte queue (read from the front, append at the back) with one growable
// allocation that is compacted instead of reallocated when possible. Used for connection input
// and output. Not thread-safe.

#include <cstddef>
#include <cstring>
#include <memory>
#include <string_view>

namespace weft {

class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(size_t reserve) { ensureTail(reserve); }

  size_t size() const { return end_ - begin_; }
  bool empty() const { return end_ == begin_; }
  const char* data() const { return data_.get() + begin_; }
  std::string_view view() const { return {data(), size()}; }

  void append(std::string_view s) { append(s.data(), s.size()); }
  void append(const char* p, size_t n) {
    if (n == 0) return;
    ensureTail(n);
    std::memcpy(data_.get() + end_, p, n);
    end_ += n;
  }
  // Writable space of at least `min` bytes at the back; call commit(n) after writing n bytes.
  char* prepare(size_t min) {
    ensureTail(min);
    return data_.get() + end_;
  }
  size_t tailroom() const { return cap_ - end_; }
  void commit(size_t n) { end_ += n; }
  void consume(size_t n) {
    begin_ += n;
    if (begin_ == end_) begin_ = end_ = 0;
  }
  void clear() { begin_ = end_ = 0; }
  size_t capacity() const { return cap_; }
  // Frees the allocation if empty (idle connections hold no buffer memory).
  void shrinkIfEmpty() {
    if (empty() && cap_ > 0) {
      data_.reset();
      cap_ = begin_ = end_ = 0;
    }
  }

 private:
  void ensureTail(size_t n) {
    if (cap_ - end_ >= n) return;
    size_t used = size();
    if (begin_ > 0 && cap_ - used >= n && used <= cap_ / 2) {
      std::memmove(data_.get(), data_.get() + begin_, used);
      begin_ = 0;
      end_ = used;
      return;
    }
    size_t cap = cap_ ? cap_ : 4096;
    while (cap - used < n) cap *= 2;
    std::unique_ptr<char[]> d(new char[cap]);
    if (used) std::memcpy(d.get(), data_.get() + begin_, used);
    data_ = std::move(d);
    cap_ = cap;
    begin_ = 0;
    end_ = used;
  }
  std::unique_ptr<char[]> data_;
  size_t cap_ = 0, begin_ = 0, end_ = 0;
};

}  // namespace weft
