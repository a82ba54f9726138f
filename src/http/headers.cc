#include "http/headers.h"

#include <array>
#include <bit>
#include <cstddef>
#include <cstring>

namespace weft::http {
namespace {

constexpr size_t kTokenCount = static_cast<size_t>(HeaderToken::kCount);

// Indexed by HeaderToken; lower case.
constexpr std::array<std::string_view, kTokenCount> kNames = {
    "",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "upgrade",
    "te",
    "trailer",
    "expect",
    "http2-settings",
    "via",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-request-id",
    "traceparent",
    "tracestate",
    "proxy-authenticate",
    "proxy-authorization",
    "authorization",
    "server",
    "date",
    "content-type",
    "content-encoding",
    "cookie",
    "set-cookie",
    "user-agent",
    "accept",
    "accept-encoding",
    "location",
    "cache-control",
    "retry-after",
    "alt-svc",
    "grpc-status",
    "grpc-message",
    "grpc-timeout",
};

constexpr std::array<uint8_t, 256> makeLower() {
  std::array<uint8_t, 256> t{};
  for (int c = 0; c < 256; ++c) t[c] = (c >= 'A' && c <= 'Z') ? c + 32 : c;
  return t;
}
constexpr std::array<uint8_t, 256> kLower = makeLower();

// Lookup: names are bucketed by length; within a bucket each candidate is compared as one to
// three 64-bit words, lower-cased eight bytes at a time (exactly: only 'A'..'Z' change).
//   len < 8:   one word built from two overlapping loads (4+4, 2+2 or 1 byte)
//   len >= 8:  the first eight bytes, the last eight bytes and, when len > 16, bytes 8..15.
constexpr size_t kMaxNameLen = 24;
constexpr size_t kMaxPerLength = 6;

constexpr uint64_t kOnes = 0x0101010101010101ull;

constexpr uint64_t lowerWord(uint64_t x) {
  uint64_t heptets = x & (0x7f * kOnes);
  uint64_t ge_a = heptets + (0x80 - 'A') * kOnes;      // bit 7 set where byte >= 'A'
  uint64_t gt_z = heptets + (0x80 - 'Z' - 1) * kOnes;  // bit 7 set where byte > 'Z'
  uint64_t upper = ge_a & ~gt_z & ~x & (0x80 * kOnes);
  return x | (upper >> 2);
}

// Little-endian value of n <= 8 bytes (constexpr twin of the runtime loads below).
constexpr uint64_t bytesValue(std::string_view s, size_t pos, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v |= uint64_t{static_cast<uint8_t>(s[pos + i])} << (8 * i);
  return v;
}

struct Key {
  uint64_t first = 0;
  uint64_t last = 0;
  uint64_t mid = 0;
};

constexpr Key keyOf(std::string_view s) {
  size_t n = s.size();
  Key k;
  if (n >= 8) {
    k.first = bytesValue(s, 0, 8);
    k.last = bytesValue(s, n - 8, 8);
    if (n > 16) k.mid = bytesValue(s, 8, 8);
  } else if (n >= 4) {
    k.first = bytesValue(s, 0, 4) | (bytesValue(s, n - 4, 4) << 32);
  } else if (n >= 2) {
    k.first = bytesValue(s, 0, 2) | (bytesValue(s, n - 2, 2) << 16);
  } else if (n == 1) {
    k.first = bytesValue(s, 0, 1);
  }
  return k;
}

template <class T>
T load(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  if constexpr (std::endian::native == std::endian::big) {
    if constexpr (sizeof(T) == 8) v = __builtin_bswap64(v);
    if constexpr (sizeof(T) == 4) v = __builtin_bswap32(v);
    if constexpr (sizeof(T) == 2) v = __builtin_bswap16(v);
  }
  return v;
}

// Runtime twin of keyOf, lower-cased.
inline Key lowerKeyOf(const char* p, size_t n) {
  Key k;
  if (n >= 8) {
    k.first = lowerWord(load<uint64_t>(p));
    k.last = lowerWord(load<uint64_t>(p + n - 8));
    if (n > 16) k.mid = lowerWord(load<uint64_t>(p + 8));
  } else if (n >= 4) {
    k.first = lowerWord(load<uint32_t>(p) | (uint64_t{load<uint32_t>(p + n - 4)} << 32));
  } else if (n >= 2) {
    k.first = lowerWord(load<uint16_t>(p) | (uint64_t{load<uint16_t>(p + n - 2)} << 16));
  } else {
    k.first = lowerWord(static_cast<uint8_t>(*p));
  }
  return k;
}

struct LengthBuckets {
  std::array<std::array<Key, kMaxPerLength>, kMaxNameLen + 1> keys{};
  std::array<std::array<uint8_t, kMaxPerLength>, kMaxNameLen + 1> tokens{};
  std::array<uint8_t, kMaxNameLen + 1> count{};
};

constexpr LengthBuckets makeBuckets() {
  LengthBuckets b;
  for (size_t t = 1; t < kTokenCount; ++t) {
    size_t len = kNames[t].size();
    if (len == 0 || len > kMaxNameLen) throw "header name too long for the lookup table";
    if (b.count[len] == kMaxPerLength) throw "too many header names of one length";
    b.keys[len][b.count[len]] = keyOf(kNames[t]);
    b.tokens[len][b.count[len]++] = static_cast<uint8_t>(t);
  }
  return b;
}
constexpr LengthBuckets kBuckets = makeBuckets();

constexpr bool namesAreLowerCase() {
  for (auto n : kNames)
    for (char c : n)
      if (c >= 'A' && c <= 'Z') return false;
  return true;
}
static_assert(namesAreLowerCase());
static_assert(kNames.back() == "grpc-timeout", "kNames must follow the HeaderToken order");
static_assert(lowerWord(0x5a41405b7a61607bull) == 0x7a61405b7a61607bull, "A..Z only");
static_assert(lowerWord(0xc1dac1da00000000ull) == 0xc1dac1da00000000ull, "bytes >= 0x80 kept");

}  // namespace

HeaderToken lookupHeaderToken(std::string_view name) {
  size_t len = name.size();
  if (len == 0 || len > kMaxNameLen) return HeaderToken::kOther;
  size_t count = kBuckets.count[len];
  if (count == 0) return HeaderToken::kOther;
  Key k = lowerKeyOf(name.data(), len);
  const std::array<Key, kMaxPerLength>& keys = kBuckets.keys[len];
  for (size_t i = 0; i < count; ++i) {
    if (keys[i].first == k.first && keys[i].last == k.last && keys[i].mid == k.mid)
      return static_cast<HeaderToken>(kBuckets.tokens[len][i]);
  }
  return HeaderToken::kOther;
}

std::string_view headerTokenName(HeaderToken token) {
  auto i = static_cast<size_t>(token);
  return i < kTokenCount ? kNames[i] : std::string_view();
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (kLower[static_cast<uint8_t>(a[i])] != kLower[static_cast<uint8_t>(b[i])]) return false;
  return true;
}

}  // namespace weft::http
