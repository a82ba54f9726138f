#pragma once
// Internal to the HTTP/1 codec: table-driven character classes (RFC 9110 §5.6.2, RFC 3986 §2)
// and the field-line parser shared by the head parsers and the chunked trailer parser.

#include <array>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "http/headers.h"

namespace weft::http1::detail {

enum CharClass : uint8_t {
  kTchar = 1 << 0,       // token characters (RFC 9110 §5.6.2)
  kFieldVchar = 1 << 1,  // VCHAR / obs-text / SP / HTAB: allowed inside a field value
  kTargetChar = 1 << 2,  // request-target (RFC 3986 unreserved, sub-delims, ":@/?%[]")
  kHostChar = 1 << 3,    // Host value / authority: reg-name, IP-literal, port ("%" for pct)
  kHexDigit = 1 << 4,
  kDigit = 1 << 5,
  kSchemeChar = 1 << 6,  // ALPHA DIGIT "+-."
  kRegName = 1 << 7,     // reg-name / IPv4address without pct-encoding: unreserved, sub-delims
};

constexpr std::array<uint8_t, 256> makeClasses() {
  std::array<uint8_t, 256> t{};
  auto add = [&t](std::string_view chars, uint8_t cls) {
    for (char c : chars) t[static_cast<uint8_t>(c)] |= cls;
  };
  constexpr std::string_view kAlpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  constexpr std::string_view kDigits = "0123456789";
  add(kAlpha, kTchar | kTargetChar | kHostChar | kSchemeChar);
  add(kDigits, kTchar | kTargetChar | kHostChar | kSchemeChar | kDigit | kHexDigit);
  add("abcdefABCDEF", kHexDigit);
  add("!#$%&'*+-.^_`|~", kTchar);
  add("-._~!$&'()*+,;=:@/?%[]", kTargetChar);
  add("-._~!$&'()*+,;=:[]%", kHostChar);
  add("+-.", kSchemeChar);
  add(kAlpha, kRegName);
  add(kDigits, kRegName);
  add("-._~!$&'()*+,;=", kRegName);
  for (int c = 0x21; c <= 0x7e; ++c) t[c] |= kFieldVchar;
  for (int c = 0x80; c <= 0xff; ++c) t[c] |= kFieldVchar;
  t[' '] |= kFieldVchar;
  t['\t'] |= kFieldVchar;
  return t;
}
inline constexpr std::array<uint8_t, 256> kClasses = makeClasses();

inline bool is(char c, uint8_t cls) { return (kClasses[static_cast<uint8_t>(c)] & cls) != 0; }
inline bool isWs(char c) { return c == ' ' || c == '\t'; }

inline unsigned hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  return (static_cast<unsigned>(c) | 0x20) - 'a' + 10;  // caller checked kHexDigit
}

inline std::string_view trimWs(std::string_view s) {
  while (!s.empty() && isWs(s.front())) s.remove_prefix(1);
  while (!s.empty() && isWs(s.back())) s.remove_suffix(1);
  return s;
}

// Is `s` a non-empty token?
inline bool isToken(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!is(c, kTchar)) return false;
  return true;
}

// Are all bytes of [p, e) allowed in a field value (VCHAR, obs-text, SP, HTAB)? Eight bytes at a
// time: a word without a byte < 0x20 or == 0x7f is valid as a whole; only a word with one (which
// may just be an HTAB) is checked byte by byte.
inline bool validFieldValue(const char* p, const char* e) {
  constexpr uint64_t kOnes = 0x0101010101010101ull;
  constexpr uint64_t kHigh = 0x8080808080808080ull;
  auto wordOk = [](const char* w) {
    uint64_t x;
    std::memcpy(&x, w, 8);
    uint64_t below_space = (x - kOnes * 0x20) & ~x & kHigh;
    uint64_t d = x ^ (kOnes * 0x7f);
    uint64_t del = (d - kOnes) & ~d & kHigh;
    if ((below_space | del) == 0) return true;
    for (int i = 0; i < 8; ++i)
      if (!is(w[i], kFieldVchar)) return false;
    return true;
  };
  if (e - p < 8) {
    for (; p < e; ++p)
      if (!is(*p, kFieldVchar)) return false;
    return true;
  }
  for (; e - p > 8; p += 8)
    if (!wordOk(p)) return false;
  return wordOk(e - 8);  // the last (possibly overlapping) word
}

struct FieldLine {
  http::HeaderField field;
  std::string_view error;  // empty on success; a static string otherwise
};

// Parses one field line (RFC 9112 §5): [p, e) is the line without its CRLF, and *e (the CR) must
// be readable: it stops the name scan without a bounds check.
//   field-line = field-name ":" OWS field-value OWS
// Rejects obs-fold (a line starting with SP/HTAB), whitespace before the colon, a name that is
// not a token, and any control character other than HTAB (so also a bare CR) or DEL in the value.
inline FieldLine parseFieldLine(const char* p, const char* e) {
  FieldLine out;
  if (p == e) {
    out.error = "empty header line";
    return out;
  }
  if (isWs(*p)) {
    out.error = "obsolete line folding (line starts with whitespace)";
    return out;
  }
  // The name ends at the first non-tchar; *e is CR, so the scan stops by e at the latest. A byte
  // is only read when all bytes before it were tchars.
  const char* n = p;
  while (true) {
    if (!is(n[0], kTchar)) break;
    if (!is(n[1], kTchar)) {
      n += 1;
      break;
    }
    if (!is(n[2], kTchar)) {
      n += 2;
      break;
    }
    if (!is(n[3], kTchar)) {
      n += 3;
      break;
    }
    n += 4;
  }
  if (n == e) {
    out.error = "header line without a colon";
    return out;
  }
  if (*n != ':') {
    out.error =
        isWs(*n) ? "whitespace between header name and colon" : "invalid character in header name";
    return out;
  }
  if (n == p) {
    out.error = "empty header name";
    return out;
  }
  const char* v = n + 1;
  while (v != e && isWs(*v)) ++v;
  if (!validFieldValue(v, e)) {
    out.error = "invalid character in header value";
    return out;
  }
  const char* ve = e;
  while (ve != v && isWs(ve[-1])) --ve;
  out.field.name = std::string_view(p, static_cast<size_t>(n - p));
  out.field.value = std::string_view(v, static_cast<size_t>(ve - v));
  out.field.token = http::lookupHeaderToken(out.field.name);
  return out;
}

}  // namespace weft::http1::detail
