#pragma once
// Time sources. Everything time-dependent takes a TimeSource& so tests can drive a SimTimeSource.

#include <chrono>
#include <cstdint>

namespace weft {

using MonoTime = std::chrono::steady_clock::time_point;
using Duration = std::chrono::nanoseconds;
using std::chrono::milliseconds;
using std::chrono::seconds;

class TimeSource {
 public:
  virtual ~TimeSource() = default;
  virtual MonoTime monotonicNow() const = 0;
  // Wall clock, for logs and access logs.
  virtual std::chrono::system_clock::time_point systemNow() const = 0;
};

class RealTimeSource final : public TimeSource {
 public:
  MonoTime monotonicNow() const override { return std::chrono::steady_clock::now(); }
  std::chrono::system_clock::time_point systemNow() const override {
    return std::chrono::system_clock::now();
  }
  static RealTimeSource& instance() {
    static RealTimeSource s;
    return s;
  }
};

// Starts at an arbitrary fixed point; moves only when advance() is called. Not thread-safe.
class SimTimeSource final : public TimeSource {
 public:
  MonoTime monotonicNow() const override { return mono_; }
  std::chrono::system_clock::time_point systemNow() const override { return sys_; }
  void advance(Duration d) {
    mono_ += d;
    sys_ += std::chrono::duration_cast<std::chrono::system_clock::duration>(d);
  }

 private:
  MonoTime mono_{std::chrono::hours(1000)};
  std::chrono::system_clock::time_point sys_{std::chrono::seconds(1'800'000'000)};
};

}  // namespace weft
