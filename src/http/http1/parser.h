#pragma once
// weft's HTTP/1.1 message-head parser (RFC 9110, RFC 9112): strict, zero-copy, incremental.
//
// Usage (one parser per connection direction, used from one thread):
//
//   RequestParser parser(limits);
//   // on every read, with `buf` = all bytes received and not yet consumed:
//   ParseResult r = parser.parse(buf);
//   if (r.needMore()) read more;      // buf must keep its prefix; it may be moved/reallocated
//   if (r.failed())  answer r.error.status, close;
//   if (r.done())    use parser.head(); the body starts at buf[r.consumed].
//
// Zero copy: every string_view in the head (method, target, header names and values...) points
// into the `buf` of the call that returned kDone, so that buffer must stay unmodified for as long
// as the head is used. Nothing is allocated per header or per byte; the header vector keeps its
// capacity across messages.
//
// Incremental: across kNeedMore calls the parser remembers how far it scanned for the end of the
// head, so re-feeding a growing buffer costs O(new bytes), not O(buffer). The head itself is then
// validated in one pass once it is complete.
//
// Strictness: anything RFC 9112 lets a recipient reject and that could make two HTTP
// implementations disagree about message boundaries is rejected (see docs/http1.md): bare CR/LF,
// obs-fold, whitespace before the colon, conflicting Content-Length, Content-Length together with
// Transfer-Encoding, any transfer coding other than a single final "chunked", and so on.

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "http/headers.h"

namespace weft::http1 {

enum class Version : uint8_t { kHttp10, kHttp11 };

// Request methods with a meaning for framing or routing; kOther for any other (valid) token.
enum class Method : uint8_t {
  kOther,
  kGet,
  kHead,
  kPost,
  kPut,
  kDelete,
  kConnect,
  kOptions,
  kTrace,
  kPatch,
};

enum class BodyKind : uint8_t {
  kNone,           // no body follows the head
  kContentLength,  // exactly `content_length` bytes follow (possibly 0)
  kChunked,        // chunked coding follows; decode with ChunkedDecoder
  kUntilClose,     // responses only: the body ends when the server closes the connection
};

// RFC 9112 §3.2.
enum class TargetForm : uint8_t { kOrigin, kAbsolute, kAuthority, kAsterisk };

std::string_view versionString(Version v);  // "HTTP/1.1"
// Case-sensitive (methods are, RFC 9110 §9.1).
Method lookupMethod(std::string_view method);

struct ParseLimits {
  // Request/status line + header lines + the final CRLF (leading empty lines before a request
  // line count too). Exceeded: 431 for requests, 502 for responses.
  size_t max_head_bytes = 64 * 1024;
  // Header field lines. Exceeded: 431 for requests, 502 for responses.
  size_t max_headers = 100;
};

// `reason` is a static string that says what was wrong (for logs and the error response body).
struct ParseError {
  int status = 0;
  std::string_view reason;
};

enum class ParseStatus : uint8_t { kNeedMore, kDone, kError };

struct ParseResult {
  ParseStatus status = ParseStatus::kNeedMore;
  // kDone: bytes of the buffer that the head occupies, up to and including the final CRLFCRLF
  // (and, for requests, any empty lines skipped before the request line).
  size_t consumed = 0;
  ParseError error;  // kError only

  bool needMore() const { return status == ParseStatus::kNeedMore; }
  bool done() const { return status == ParseStatus::kDone; }
  bool failed() const { return status == ParseStatus::kError; }
};

// What requests and responses share. Views point into the parsed buffer.
struct MessageHead {
  Version version = Version::kHttp11;
  std::vector<http::HeaderField> headers;  // in received order
  BodyKind body_kind = BodyKind::kNone;
  // The (validated, deduplicated) Content-Length value. Set whenever the header was present,
  // also where it does not frame a body (a response to HEAD, a 304).
  bool has_content_length = false;
  uint64_t content_length = 0;
  // Whether the connection may carry another message after this one (RFC 9112 §9.3).
  bool keep_alive = true;
  bool connection_close = false;  // "close" was among the Connection options
  // Well-known fields nominated by the Connection header ("keep-alive", "upgrade", "te"...).
  // Host and Content-Length are never recorded here: letting a client make a proxy drop them
  // would be a smuggling vector (the proxy writes its own framing anyway).
  http::HeaderTokenSet connection_tokens;
  // Other nominated field names, as received (case-insensitive to compare).
  std::vector<std::string_view> connection_names;
  size_t head_bytes = 0;  // start line to final CRLF inclusive

  // First field with this token / this name (case-insensitive); nullptr if none.
  const http::HeaderField* find(http::HeaderToken token) const;
  const http::HeaderField* find(std::string_view name) const;
  // True if the Connection header nominated this field (so it is hop-by-hop).
  bool isConnectionNominated(const http::HeaderField& field) const;
  // kHopByHopHeaders or nominated by Connection: a proxy must not forward it.
  bool isHopByHop(const http::HeaderField& field) const;

  void clear();
};

struct RequestHead : MessageHead {
  std::string_view method;
  Method method_id = Method::kOther;
  std::string_view target;  // the request-target as received
  TargetForm target_form = TargetForm::kOrigin;
  std::string_view scheme;     // absolute-form only
  std::string_view authority;  // absolute-form and authority-form (CONNECT) only
  // Origin- and absolute-form: the path before '?' (empty in absolute-form without a path) and
  // the query after it (empty if none; has_query tells "/a?" from "/a").
  std::string_view path;
  std::string_view query;
  bool has_query = false;
  std::string_view host;  // the Host header value ("" if absent or empty)
  bool has_host = false;
  bool expect_100_continue = false;  // HTTP/1.1 only (RFC 9110 §10.1.1)
  // HTTP/1.1, an Upgrade header, and "upgrade" among the Connection options (RFC 9110 §7.8).
  bool upgrade = false;
  std::string_view upgrade_protocols;  // the Upgrade header value

  // The target as origin-form would carry it minus a leading "/" that absolute-form may lack:
  // for absolute-form "http://h/p?q" -> "/p?q", "http://h?q" -> "?q", "http://h" -> "".
  // For other forms, the target. A writer of origin-form prepends "/" when this is empty or
  // starts with '?'.
  std::string_view pathAndQuery() const;

  void clear();
};

struct ResponseHead : MessageHead {
  int status = 0;  // 100..599
  std::string_view reason;
  // 1xx other than 101: an interim response; the final response follows on the same stream.
  bool interim = false;
  // 101 Switching Protocols, or a 2xx answer to CONNECT: the connection becomes a tunnel after
  // this head.
  bool tunnel = false;

  void clear();
};

namespace detail {

// Finds the end of a message head ("\r\n\r\n") across calls without rescanning, rejecting bare LF
// as it goes. Lines are only delimited here; their content is validated once the head is
// complete.
class HeadScanner {
 public:
  // kDone: `consumed` is the offset just past the final CRLF and start() the first byte of the
  // start line. `error_status` is used for syntax errors, `limit_status` for exceeded limits.
  ParseResult scan(std::string_view buf, const ParseLimits& limits, bool skip_leading_empty_lines,
                   int error_status, int limit_status);
  size_t start() const { return start_; }
  // Offsets of the LF ending each non-empty line, start line first. Valid after kDone.
  const std::vector<size_t>& lineEnds() const { return line_ends_; }
  void reset();

 private:
  size_t scan_ = 0;                // next byte to search for LF
  size_t line_start_ = 0;          // first byte of the current (unfinished) line
  size_t start_ = 0;               // first byte of the start line
  std::vector<size_t> line_ends_;  // keeps its capacity across messages
};

}  // namespace detail

class RequestParser {
 public:
  explicit RequestParser(ParseLimits limits = {}) : limits_(limits) {}

  // See the file comment. After kDone or kError, the next call starts a new message: pass the
  // bytes after `consumed` (pipelining) once the previous head is no longer needed.
  ParseResult parse(std::string_view buf);
  // The last head parsed; valid after parse() returned kDone, until the next parse()/reset().
  const RequestHead& head() const { return head_; }
  void reset();

 private:
  ParseResult parseHead(const char* buf, size_t end);

  ParseLimits limits_;
  detail::HeadScanner scanner_;
  RequestHead head_;
  bool finished_ = false;  // the last call returned kDone or kError
};

class ResponseParser {
 public:
  explicit ResponseParser(ParseLimits limits = {}) : limits_(limits) {}

  // As RequestParser::parse. `request_method` is the method of the request this response
  // answers (HEAD and CONNECT change the body rules, RFC 9112 §6.3). Every error is a 502: the
  // proxy answers its client with Bad Gateway.
  ParseResult parse(std::string_view buf, Method request_method);
  const ResponseHead& head() const { return head_; }
  void reset();

 private:
  ParseResult parseHead(const char* buf, size_t end, Method request_method);

  ParseLimits limits_;
  detail::HeadScanner scanner_;
  ResponseHead head_;
  bool finished_ = false;
};

}  // namespace weft::http1
