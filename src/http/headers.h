#pragma once
// Header types shared by the HTTP codecs (HTTP/1 parser, HTTP/2 adapter) and the proxy.
//
// A HeaderField is a pair of views; it owns nothing. Whoever produced it (a parser over a read
// buffer, an arena) defines how long the bytes stay valid. Well-known names carry a HeaderToken so
// the hot path compares one byte instead of a case-insensitive string.

#include <cstdint>
#include <initializer_list>
#include <string_view>

namespace weft::http {

// Well-known header names. kOther means "not in this list"; it is never a member of a
// HeaderTokenSet. The order is not significant and may change; do not persist the numbers.
enum class HeaderToken : uint8_t {
  kOther = 0,
  // Framing and connection management (RFC 9110 §7.6.1, RFC 9112 §6, §9).
  kHost,
  kContentLength,
  kTransferEncoding,
  kConnection,
  kKeepAlive,
  kProxyConnection,
  kUpgrade,
  kTe,
  kTrailer,
  kExpect,
  kHttp2Settings,
  // Proxying and tracing.
  kVia,
  kForwarded,
  kXForwardedFor,
  kXForwardedProto,
  kXForwardedHost,
  kXRequestId,
  kTraceparent,
  kTracestate,
  kProxyAuthenticate,
  kProxyAuthorization,
  // Common end-to-end fields.
  kAuthorization,
  kServer,
  kDate,
  kContentType,
  kContentEncoding,
  kCookie,
  kSetCookie,
  kUserAgent,
  kAccept,
  kAcceptEncoding,
  kLocation,
  kCacheControl,
  kRetryAfter,
  kAltSvc,
  kGrpcStatus,
  kGrpcMessage,
  kGrpcTimeout,
  kCount,
};

// A set of HeaderTokens in one word. Cheap to copy and to test; constexpr-constructible.
class HeaderTokenSet {
 public:
  constexpr HeaderTokenSet() = default;
  constexpr HeaderTokenSet(std::initializer_list<HeaderToken> tokens) {
    for (HeaderToken t : tokens) add(t);
  }
  constexpr void add(HeaderToken t) { bits_ |= bit(t); }
  constexpr void remove(HeaderToken t) { bits_ &= ~bit(t); }
  constexpr bool contains(HeaderToken t) const { return (bits_ & bit(t)) != 0; }
  constexpr bool empty() const { return bits_ == 0; }
  constexpr void clear() { bits_ = 0; }
  constexpr HeaderTokenSet operator|(HeaderTokenSet o) const { return fromBits(bits_ | o.bits_); }
  constexpr bool operator==(const HeaderTokenSet&) const = default;

 private:
  static constexpr uint64_t bit(HeaderToken t) {
    return t == HeaderToken::kOther ? 0 : uint64_t{1} << static_cast<unsigned>(t);
  }
  static constexpr HeaderTokenSet fromBits(uint64_t b) {
    HeaderTokenSet s;
    s.bits_ = b;
    return s;
  }
  uint64_t bits_ = 0;
};
static_assert(static_cast<unsigned>(HeaderToken::kCount) <= 64, "HeaderTokenSet is one word");

// The hop-by-hop fields of RFC 9110 §7.6.1 (plus HTTP2-Settings, RFC 7540 §3.2.1): a proxy
// removes them, and every field the Connection header nominates, before forwarding.
inline constexpr HeaderTokenSet kHopByHopHeaders{
    HeaderToken::kConnection,    HeaderToken::kKeepAlive, HeaderToken::kProxyConnection,
    HeaderToken::kUpgrade,       HeaderToken::kTe,        HeaderToken::kTransferEncoding,
    HeaderToken::kHttp2Settings,
};

// One field line. `name` keeps the case it was received with; `value` has no leading or
// trailing whitespace. `token` is lookupHeaderToken(name).
struct HeaderField {
  std::string_view name;
  std::string_view value;
  HeaderToken token = HeaderToken::kOther;
};

// Case-insensitive lookup of a well-known name; kOther when the name is not well known.
// Allocation-free; any byte string is accepted.
HeaderToken lookupHeaderToken(std::string_view name);

// The canonical lower-case name of a token ("content-length"); empty for kOther.
std::string_view headerTokenName(HeaderToken token);

// ASCII case-insensitive equality (bytes >= 0x80 compare exactly).
bool equalsIgnoreCase(std::string_view a, std::string_view b);

}  // namespace weft::http
