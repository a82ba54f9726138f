#include "http/http1/parser.h"

#include <cstring>

#include "http/http1/char_class.h"

namespace weft::http1 {

using http::HeaderField;
using http::HeaderToken;
using namespace detail;

namespace {

constexpr uint64_t kMaxContentLength = static_cast<uint64_t>(INT64_MAX);

ParseResult makeError(int status, std::string_view reason) {
  ParseResult r;
  r.status = ParseStatus::kError;
  r.error = ParseError{status, reason};
  return r;
}

ParseResult makeDone(size_t consumed) {
  ParseResult r;
  r.status = ParseStatus::kDone;
  r.consumed = consumed;
  return r;
}

// Calls f(element) for every non-empty element of a comma-separated list (RFC 9110 §5.6.1),
// trimmed of OWS. Empty elements are ignored, as §5.6.1.2 requires of recipients. Stops early and
// returns false when f does.
template <class F>
bool forEachListElement(std::string_view value, F&& f) {
  while (true) {
    size_t comma = value.find(',');
    std::string_view element = trimWs(value.substr(0, comma));
    if (!element.empty() && !f(element)) return false;
    if (comma == std::string_view::npos) return true;
    value.remove_prefix(comma + 1);
  }
}

// Accepts "HTTP/1.0" and "HTTP/1.1". Any other syntactically valid version is unsupported.
enum class VersionCheck { kOk, kUnsupported, kInvalid };
VersionCheck parseVersion(std::string_view v, Version& out) {
  if (v.size() != 8 || std::memcmp(v.data(), "HTTP/", 5) != 0 || !is(v[5], kDigit) || v[6] != '.' ||
      !is(v[7], kDigit))
    return VersionCheck::kInvalid;
  if (v[5] != '1' || (v[7] != '0' && v[7] != '1')) return VersionCheck::kUnsupported;
  out = v[7] == '1' ? Version::kHttp11 : Version::kHttp10;
  return VersionCheck::kOk;
}

// uri-host [ ":" port ] (RFC 9110 §7.2, RFC 3986 §3.2.2) with a non-empty host. Userinfo
// ("user@") is rejected (RFC 9110 §4.2.4). A Host header may be empty as a whole; the caller
// handles that case.
bool validAuthority(std::string_view a, bool port_required) {
  size_t i = 0;
  if (!a.empty() && a[0] == '[') {
    // IP-literal: IPv6address or IPvFuture; checked for its character set only.
    size_t close = a.find(']');
    if (close == std::string_view::npos || close == 1) return false;
    for (i = 1; i < close; ++i) {
      char c = a[i];
      if (!is(c, kHostChar) || c == '[' || c == '%') return false;
    }
    i = close + 1;
  } else {
    while (i < a.size()) {
      if (is(a[i], kRegName)) {
        ++i;
      } else if (a[i] == '%') {
        if (a.size() - i < 3 || !is(a[i + 1], kHexDigit) || !is(a[i + 2], kHexDigit)) return false;
        i += 3;
      } else if (a[i] == ':') {
        break;
      } else {
        return false;
      }
    }
    if (i == 0) return false;  // empty host
  }
  if (i == a.size()) return !port_required;
  if (a[i] != ':') return false;
  std::string_view port = a.substr(i + 1);
  if (port.empty()) return !port_required;  // "host:" is allowed by RFC 3986 (port = *DIGIT)
  if (port.size() > 5) return false;
  unsigned value = 0;
  for (char c : port) {
    if (!is(c, kDigit)) return false;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  return value <= 65535;
}

// State gathered from the header fields that decide framing and connection handling. One
// instance per head; error() is set on the first violation.
class FieldAnalysis {
 public:
  explicit FieldAnalysis(MessageHead& head, bool is_request) : head_(head), request_(is_request) {}

  // Returns false (with error() set) if the field makes the message invalid.
  bool add(const HeaderField& f) {
    switch (f.token) {
      case HeaderToken::kContentLength:
        return addContentLength(f.value);
      case HeaderToken::kTransferEncoding:
        return addTransferEncoding(f.value);
      case HeaderToken::kConnection:
        return addConnection(f.value);
      case HeaderToken::kHost:
        if (has_host) return fail("multiple Host headers");
        has_host = true;
        host = f.value;
        // RFC 9112 §3.2: a Host with an invalid value is a 400 (responses carry no Host rule).
        if (request_ && !f.value.empty() && !validAuthority(f.value, false))
          return fail("invalid Host header");
        return true;
      case HeaderToken::kUpgrade:
        if (!has_upgrade) upgrade = f.value;
        has_upgrade = true;
        return true;
      case HeaderToken::kExpect:
        forEachListElement(f.value, [this](std::string_view e) {
          if (http::equalsIgnoreCase(e, "100-continue")) expect_continue = true;
          return true;
        });
        return true;
      default:
        return true;
    }
  }

  std::string_view error() const { return error_; }

  // What the fields said; read once every field has been added.

  bool has_cl = false;
  uint64_t cl = 0;
  bool has_te = false;
  bool te_chunked = false;  // "chunked" is the final coding seen so far
  bool te_other = false;    // a coding other than chunked was seen
  bool has_host = false;
  std::string_view host;
  bool has_upgrade = false;
  std::string_view upgrade;
  bool expect_continue = false;

 private:
  bool fail(std::string_view reason) {
    error_ = reason;
    return false;
  }

  // RFC 9110 §8.6 / RFC 9112 §6.3: Content-Length = 1*DIGIT. A list of identical values (from one
  // line "5, 5" or repeated lines) may be accepted as that value; anything else is invalid.
  bool addContentLength(std::string_view value) {
    while (true) {
      size_t comma = value.find(',');
      std::string_view e = trimWs(value.substr(0, comma));
      if (e.empty()) return fail("invalid Content-Length");
      uint64_t n = 0;
      for (char c : e) {
        if (!is(c, kDigit)) return fail("invalid Content-Length");
        unsigned d = static_cast<unsigned>(c - '0');
        if (n > (kMaxContentLength - d) / 10) return fail("Content-Length too large");
        n = n * 10 + d;
      }
      if (has_cl && n != cl) return fail("conflicting Content-Length values");
      has_cl = true;
      cl = n;
      if (comma == std::string_view::npos) return true;
      value.remove_prefix(comma + 1);
    }
  }

  // Only a single "chunked" is supported. RFC 9112 §6.3: chunked not final -> 400. A coding we do
  // not implement before a final chunked ("gzip, chunked") -> 501 (RFC 9112 §6.1: "A server
  // that receives a request message with a transfer coding it does not understand SHOULD respond
  // with 501"); decided in finish() once every TE line has been seen.
  bool addTransferEncoding(std::string_view value) {
    has_te = true;
    return forEachListElement(value, [this](std::string_view e) {
      if (te_chunked) return fail("chunked is not the final transfer coding");
      if (!isToken(e)) return fail("invalid Transfer-Encoding");
      if (http::equalsIgnoreCase(e, "chunked")) {
        te_chunked = true;
      } else {
        te_other = true;
      }
      return true;
    });
  }

  // RFC 9110 §7.6.1: Connection = #connection-option; connection-option = token.
  bool addConnection(std::string_view value) {
    return forEachListElement(value, [this](std::string_view e) {
      if (!isToken(e)) return fail("invalid Connection header");
      if (http::equalsIgnoreCase(e, "close")) {
        head_.connection_close = true;
        return true;
      }
      HeaderToken t = http::lookupHeaderToken(e);
      if (t == HeaderToken::kHost || t == HeaderToken::kContentLength) return true;
      if (t != HeaderToken::kOther) {
        head_.connection_tokens.add(t);
      } else {
        head_.connection_names.push_back(e);
      }
      return true;
    });
  }

  MessageHead& head_;
  bool request_;
  std::string_view error_;
};

bool keepAlive(const MessageHead& h) {
  if (h.connection_close) return false;
  return h.version == Version::kHttp11 || h.connection_tokens.contains(HeaderToken::kKeepAlive);
}

// Parses the header lines: line_ends[1..] are the offsets in `buf` of the LF ending each field
// line (each LF is preceded by CR; HeadScanner checked); line_ends[0] ends the start line.
struct FieldsOutcome {
  std::string_view error;
  int status = 0;  // 0: the caller's syntax status
};
FieldsOutcome parseFields(const char* buf, const std::vector<size_t>& line_ends,
                          const ParseLimits& limits, MessageHead& head, FieldAnalysis& analysis,
                          int limit_status) {
  const char* p = buf + line_ends[0] + 1;
  for (size_t i = 1; i < line_ends.size(); ++i) {
    const char* lf = buf + line_ends[i];
    FieldLine line = parseFieldLine(p, lf - 1);
    if (!line.error.empty()) return {line.error, 0};
    if (head.headers.size() >= limits.max_headers) return {"too many header fields", limit_status};
    head.headers.push_back(line.field);
    if (!analysis.add(line.field)) return {analysis.error(), 0};
    p = lf + 1;
  }
  return {};
}

}  // namespace

std::string_view versionString(Version v) {
  return v == Version::kHttp11 ? "HTTP/1.1" : "HTTP/1.0";
}

Method lookupMethod(std::string_view m) {
  switch (m.size()) {
    case 3:
      if (m == "GET") return Method::kGet;
      if (m == "PUT") return Method::kPut;
      break;
    case 4:
      if (m == "POST") return Method::kPost;
      if (m == "HEAD") return Method::kHead;
      break;
    case 5:
      if (m == "PATCH") return Method::kPatch;
      if (m == "TRACE") return Method::kTrace;
      break;
    case 6:
      if (m == "DELETE") return Method::kDelete;
      break;
    case 7:
      if (m == "OPTIONS") return Method::kOptions;
      if (m == "CONNECT") return Method::kConnect;
      break;
  }
  return Method::kOther;
}

// ---- MessageHead ----

const HeaderField* MessageHead::find(HeaderToken token) const {
  for (const HeaderField& f : headers)
    if (f.token == token) return &f;
  return nullptr;
}

const HeaderField* MessageHead::find(std::string_view name) const {
  HeaderToken t = http::lookupHeaderToken(name);
  if (t != HeaderToken::kOther) return find(t);
  for (const HeaderField& f : headers)
    if (f.token == HeaderToken::kOther && http::equalsIgnoreCase(f.name, name)) return &f;
  return nullptr;
}

bool MessageHead::isConnectionNominated(const HeaderField& field) const {
  if (field.token != HeaderToken::kOther) return connection_tokens.contains(field.token);
  for (std::string_view n : connection_names)
    if (http::equalsIgnoreCase(n, field.name)) return true;
  return false;
}

bool MessageHead::isHopByHop(const HeaderField& field) const {
  return http::kHopByHopHeaders.contains(field.token) || isConnectionNominated(field);
}

void MessageHead::clear() {
  version = Version::kHttp11;
  headers.clear();
  body_kind = BodyKind::kNone;
  has_content_length = false;
  content_length = 0;
  keep_alive = true;
  connection_close = false;
  connection_tokens.clear();
  connection_names.clear();
  head_bytes = 0;
}

void RequestHead::clear() {
  MessageHead::clear();
  method = {};
  method_id = Method::kOther;
  target = {};
  target_form = TargetForm::kOrigin;
  scheme = {};
  authority = {};
  path = {};
  query = {};
  has_query = false;
  host = {};
  has_host = false;
  expect_100_continue = false;
  upgrade = false;
  upgrade_protocols = {};
}

std::string_view RequestHead::pathAndQuery() const {
  if (target_form != TargetForm::kAbsolute) return target;
  size_t offset = static_cast<size_t>(authority.data() + authority.size() - target.data());
  return target.substr(offset);
}

void ResponseHead::clear() {
  MessageHead::clear();
  status = 0;
  reason = {};
  interim = false;
  tunnel = false;
}

// ---- HeadScanner ----

void detail::HeadScanner::reset() {
  scan_ = 0;
  line_start_ = 0;
  start_ = 0;
  line_ends_.clear();
}

ParseResult detail::HeadScanner::scan(std::string_view buf, const ParseLimits& limits,
                                      bool skip_leading_empty_lines, int error_status,
                                      int limit_status) {
  const char* base = buf.data();
  // The whole head, final LF included, must lie within the first max_head_bytes bytes.
  size_t window = buf.size() < limits.max_head_bytes ? buf.size() : limits.max_head_bytes;
  while (scan_ < window) {
    const void* hit = std::memchr(base + scan_, '\n', window - scan_);
    if (hit == nullptr) {
      scan_ = window;
      break;
    }
    size_t lf = static_cast<size_t>(static_cast<const char*>(hit) - base);
    if (lf == 0 || base[lf - 1] != '\r') return makeError(error_status, "bare LF in message head");
    size_t cr = lf - 1;
    scan_ = lf + 1;
    if (cr == line_start_) {  // empty line
      if (!line_ends_.empty()) return makeDone(scan_);
      // RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request-line.
      if (!skip_leading_empty_lines) return makeError(error_status, "empty line before the head");
      line_start_ = start_ = scan_;
      continue;
    }
    if (line_ends_.size() > limits.max_headers)  // the start line plus max_headers fields
      return makeError(limit_status, "too many header fields");
    line_ends_.push_back(lf);
    line_start_ = scan_;
  }
  if (buf.size() >= limits.max_head_bytes)
    return makeError(limit_status, "message head exceeds the size limit");
  return ParseResult{};
}

// ---- RequestParser ----

void RequestParser::reset() {
  scanner_.reset();
  head_.clear();
  finished_ = false;
}

ParseResult RequestParser::parse(std::string_view buf) {
  if (finished_) reset();
  ParseResult r = scanner_.scan(buf, limits_, /*skip_leading_empty_lines=*/true, 400, 431);
  if (r.done()) {
    ParseResult h = parseHead(buf.data(), r.consumed);
    if (h.failed()) r = h;
  }
  finished_ = !r.needMore();
  return r;
}

// The head is buf[scanner_.start(), end), from the request line to the final CRLF inclusive.
ParseResult RequestParser::parseHead(const char* buf, size_t end) {
  RequestHead& h = head_;
  h.clear();
  h.head_bytes = end - scanner_.start();
  const char* start = buf + scanner_.start();
  const char* line_end = buf + scanner_.lineEnds()[0] - 1;  // the CR

  // request-line = method SP request-target SP HTTP-version (RFC 9112 §3), single SPs only.
  const char* p = start;
  while (p < line_end && is(*p, kTchar)) ++p;
  if (p == start) return makeError(400, "invalid method");
  if (p == line_end || *p != ' ') return makeError(400, "invalid character in method");
  h.method = std::string_view(start, static_cast<size_t>(p - start));
  h.method_id = lookupMethod(h.method);

  const char* t = ++p;
  while (p < line_end) {
    char c = *p;
    if (!is(c, kTargetChar)) break;
    if (c == '%') {
      if (line_end - p < 3 || !is(p[1], kHexDigit) || !is(p[2], kHexDigit))
        return makeError(400, "invalid percent-encoding in request-target");
      p += 2;
    }
    ++p;
  }
  if (p == t) return makeError(400, "empty request-target");
  if (p == line_end) return makeError(400, "missing HTTP version");
  if (*p != ' ') return makeError(400, "invalid character in request-target");
  h.target = std::string_view(t, static_cast<size_t>(p - t));

  ++p;
  switch (parseVersion(std::string_view(p, static_cast<size_t>(line_end - p)), h.version)) {
    case VersionCheck::kOk:
      break;
    case VersionCheck::kUnsupported:
      return makeError(505, "unsupported HTTP version");
    case VersionCheck::kInvalid:
      return makeError(400, "invalid HTTP version");
  }

  // request-target forms (RFC 9112 §3.2).
  std::string_view target = h.target;
  auto splitQuery = [&h](std::string_view pq) {
    size_t q = pq.find('?');
    h.path = pq.substr(0, q);
    if (q != std::string_view::npos) {
      h.query = pq.substr(q + 1);
      h.has_query = true;
    }
  };
  if (h.method_id == Method::kConnect) {
    if (!validAuthority(target, /*port_required=*/true))
      return makeError(400, "CONNECT requires an authority-form target (host:port)");
    h.target_form = TargetForm::kAuthority;
    h.authority = target;
  } else if (target[0] == '/') {
    h.target_form = TargetForm::kOrigin;
    splitQuery(target);
  } else if (target == "*") {
    if (h.method_id != Method::kOptions)
      return makeError(400, "asterisk-form target is only allowed with OPTIONS");
    h.target_form = TargetForm::kAsterisk;
  } else {
    // absolute-form: scheme "://" authority path-abempty [ "?" query ]
    size_t i = 0;
    if (!((target[0] | 0x20) >= 'a' && (target[0] | 0x20) <= 'z'))
      return makeError(400, "invalid request-target");
    while (i < target.size() && is(target[i], kSchemeChar)) ++i;
    if (target.substr(i, 3) != "://") return makeError(400, "invalid request-target");
    h.scheme = target.substr(0, i);
    size_t a = i + 3;
    size_t a_end = target.find_first_of("/?", a);
    if (a_end == std::string_view::npos) a_end = target.size();
    h.authority = target.substr(a, a_end - a);
    if (!validAuthority(h.authority, false))
      return makeError(400, "invalid authority in absolute-form request-target");
    h.target_form = TargetForm::kAbsolute;
    splitQuery(target.substr(a_end));
  }

  FieldAnalysis fa(h, /*is_request=*/true);
  FieldsOutcome fo = parseFields(buf, scanner_.lineEnds(), limits_, h, fa, 431);
  if (!fo.error.empty()) return makeError(fo.status != 0 ? fo.status : 400, fo.error);

  // RFC 9112 §3.2: an HTTP/1.1 request without Host, or with more than one, is a 400.
  if (!fa.has_host && h.version == Version::kHttp11) return makeError(400, "missing Host header");
  h.has_host = fa.has_host;
  h.host = fa.host;

  // Framing (RFC 9112 §6.1, §6.3). Stricter than required where the RFC allows either.
  if (fa.has_te) {
    if (fa.has_cl) return makeError(400, "both Content-Length and Transfer-Encoding");
    if (h.version == Version::kHttp10)
      return makeError(400, "Transfer-Encoding in an HTTP/1.0 request");
    if (!fa.te_chunked) return makeError(400, "chunked is not the final transfer coding");
    if (fa.te_other) return makeError(501, "unsupported transfer coding");
    h.body_kind = BodyKind::kChunked;
  } else if (fa.has_cl) {
    h.body_kind = BodyKind::kContentLength;
  } else {
    h.body_kind = BodyKind::kNone;  // §6.3 rule 7: a request without either has no body
  }

  h.has_content_length = fa.has_cl;
  h.content_length = fa.cl;
  h.keep_alive = keepAlive(h);
  bool v11 = h.version == Version::kHttp11;
  h.expect_100_continue = v11 && fa.expect_continue;  // RFC 9110 §10.1.1: ignore in 1.0
  h.upgrade_protocols = fa.upgrade;
  h.upgrade = v11 && fa.has_upgrade && h.connection_tokens.contains(HeaderToken::kUpgrade);
  return ParseResult{};
}

// ---- ResponseParser ----

void ResponseParser::reset() {
  scanner_.reset();
  head_.clear();
  finished_ = false;
}

ParseResult ResponseParser::parse(std::string_view buf, Method request_method) {
  if (finished_) reset();
  ParseResult r = scanner_.scan(buf, limits_, /*skip_leading_empty_lines=*/false, 502, 502);
  if (r.done()) {
    ParseResult h = parseHead(buf.data(), r.consumed, request_method);
    if (h.failed()) r = h;
  }
  finished_ = !r.needMore();
  return r;
}

ParseResult ResponseParser::parseHead(const char* buf, size_t end, Method request_method) {
  ResponseHead& h = head_;
  h.clear();
  h.head_bytes = end - scanner_.start();
  const char* start = buf + scanner_.start();
  const char* line_end = buf + scanner_.lineEnds()[0] - 1;  // the CR
  std::string_view line(start, static_cast<size_t>(line_end - start));

  // status-line = HTTP-version SP status-code SP [ reason-phrase ] (RFC 9112 §4). A missing SP
  // after the status code is tolerated (common, and harmless for framing).
  if (line.size() < 12 || line[8] != ' ') return makeError(502, "invalid status line");
  switch (parseVersion(line.substr(0, 8), h.version)) {
    case VersionCheck::kOk:
      break;
    case VersionCheck::kUnsupported:
      return makeError(502, "unsupported HTTP version in response");
    case VersionCheck::kInvalid:
      return makeError(502, "invalid HTTP version in response");
  }
  if (!is(line[9], kDigit) || !is(line[10], kDigit) || !is(line[11], kDigit))
    return makeError(502, "invalid status code");
  h.status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
  if (h.status < 100 || h.status > 599) return makeError(502, "status code out of range");
  if (line.size() > 12) {
    if (line[12] != ' ') return makeError(502, "invalid status line");
    h.reason = line.substr(13);
    for (char c : h.reason)
      if (!is(c, kFieldVchar)) return makeError(502, "invalid character in reason phrase");
  }

  FieldAnalysis fa(h, /*is_request=*/false);
  FieldsOutcome fo = parseFields(buf, scanner_.lineEnds(), limits_, h, fa, 502);
  if (!fo.error.empty()) return makeError(502, fo.error);

  // Framing (RFC 9112 §6.3). Syntax of Content-Length/Transfer-Encoding is checked even where
  // they do not decide the body, so a bad message never gets through.
  if (fa.has_te) {
    if (fa.has_cl) return makeError(502, "both Content-Length and Transfer-Encoding in response");
    if (h.version == Version::kHttp10)
      return makeError(502, "Transfer-Encoding in an HTTP/1.0 response");
    // RFC 9112 §6.3 would read a response whose final coding is not chunked until close; weft
    // only relays "chunked", so anything else is a bad gateway.
    if (!fa.te_chunked || fa.te_other)
      return makeError(502, "unsupported transfer coding in response");
  }

  h.has_content_length = fa.has_cl;
  h.content_length = fa.cl;
  h.keep_alive = keepAlive(h);
  int s = h.status;
  if (s < 200) {
    h.body_kind = BodyKind::kNone;
    h.interim = s != 101;
    h.tunnel = s == 101;
  } else if (request_method == Method::kConnect && s < 300) {
    h.body_kind = BodyKind::kNone;
    h.tunnel = true;
  } else if (request_method == Method::kHead || s == 204 || s == 304) {
    h.body_kind = BodyKind::kNone;
  } else if (fa.has_te) {
    h.body_kind = BodyKind::kChunked;
  } else if (fa.has_cl) {
    h.body_kind = BodyKind::kContentLength;
  } else {
    h.body_kind = BodyKind::kUntilClose;
    h.keep_alive = false;
  }
  return ParseResult{};
}

}  // namespace weft::http1
