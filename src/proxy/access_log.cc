#include "proxy/access_log.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstring>
#include <ctime>
#include <system_error>

#include "common/json.h"
#include "common/log.h"
#include "weft/v1/config.pb.h"

namespace weft::proxy {

// ---------------------------------------------------------------------------------------------
// HeaderList.

namespace {

char asciiLower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool equalsIgnoreCase(std::string_view a, std::string_view lower) {
  if (a.size() != lower.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (asciiLower(a[i]) != lower[i]) return false;
  }
  return true;
}

std::string toLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = asciiLower(c);
  return out;
}

}  // namespace

HeaderList::HeaderList(
    std::initializer_list<std::pair<std::string_view, std::string_view>> headers) {
  for (const auto& [name, value] : headers) add(name, value);
}

void HeaderList::add(std::string_view name, std::string_view value) {
  headers_.emplace_back(std::string(name), std::string(value));
}

std::optional<std::string_view> HeaderList::get(std::string_view lower_name) const {
  for (const auto& [name, value] : headers_) {
    if (equalsIgnoreCase(name, lower_name)) return std::string_view(value);
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// Compiled format.

namespace {

enum class Op : uint8_t {
  kHostname,
  kStartTime,
  kReqHeader,
  kRespHeader,
  kMethod,
  kPath,
  kAuthority,
  kScheme,
  kStatus,  // RESP(:STATUS): missing when no response
  kProtocol,
  kResponseCode,
  kResponseFlags,
  kBytesReceived,
  kBytesSent,
  kDuration,
  kRequestDuration,
  kResponseDuration,
  kUpstreamServiceTime,
  kUpstreamHost,
  kUpstreamCluster,
  kUpstreamTransportFailureReason,
  kDownstreamRemoteAddress,
  kDownstreamRemoteAddressWithoutPort,
  kDownstreamLocalAddress,
  kDownstreamLocalAddressWithoutPort,
  kRouteName,
  kRequestedServerName,
  kDownstreamPeerUriSan,
};

// One part of a START_TIME format.
struct TimePart {
  enum Kind : uint8_t {
    kStrftime,         // `text` passed to strftime
    kFraction,         // %f / %Nf: the first `digits` fractional-second digits
    kSecondsFraction,  // %ENS: two-digit seconds, '.', `digits` fractional digits
    kEpochSeconds      // %s: seconds since the epoch (glibc's %s would read UTC as local time)
  };
  Kind kind;
  int digits = 0;
  std::string text;
};

}  // namespace

struct AccessLogFormatter::Source {
  Op op;
  std::string name;  // lowercase header name for k{Req,Resp}Header; the host name for kHostname
};

struct AccessLogFormatter::Piece {
  bool literal = false;
  std::string text;  // literal text
  Source primary{Op::kHostname, {}};
  std::optional<Source> fallback;
  size_t max_len = std::string::npos;
  bool default_time = true;  // START_TIME without an argument
  std::vector<TimePart> time;
};

struct AccessLogFormatter::Field {
  std::string key_prefix;  // JSON: `"key":` already escaped; text: empty
  std::vector<Piece> pieces;
};

AccessLogFormatter::AccessLogFormatter() = default;
AccessLogFormatter::AccessLogFormatter(AccessLogFormatter&&) noexcept = default;
AccessLogFormatter& AccessLogFormatter::operator=(AccessLogFormatter&&) noexcept = default;
AccessLogFormatter::~AccessLogFormatter() = default;

namespace {

using Piece = AccessLogFormatter::Piece;
using Source = AccessLogFormatter::Source;

struct CommandDef {
  std::string_view name;
  Op op;
};

constexpr CommandDef kSimpleCommands[] = {
    {"PROTOCOL", Op::kProtocol},
    {"RESPONSE_CODE", Op::kResponseCode},
    {"RESPONSE_FLAGS", Op::kResponseFlags},
    {"BYTES_RECEIVED", Op::kBytesReceived},
    {"BYTES_SENT", Op::kBytesSent},
    {"DURATION", Op::kDuration},
    {"REQUEST_DURATION", Op::kRequestDuration},
    {"RESPONSE_DURATION", Op::kResponseDuration},
    {"UPSTREAM_HOST", Op::kUpstreamHost},
    {"UPSTREAM_CLUSTER", Op::kUpstreamCluster},
    {"UPSTREAM_TRANSPORT_FAILURE_REASON", Op::kUpstreamTransportFailureReason},
    {"DOWNSTREAM_REMOTE_ADDRESS", Op::kDownstreamRemoteAddress},
    {"DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT", Op::kDownstreamRemoteAddressWithoutPort},
    {"DOWNSTREAM_LOCAL_ADDRESS", Op::kDownstreamLocalAddress},
    {"DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT", Op::kDownstreamLocalAddressWithoutPort},
    {"ROUTE_NAME", Op::kRouteName},
    {"REQUESTED_SERVER_NAME", Op::kRequestedServerName},
    {"DOWNSTREAM_PEER_URI_SAN", Op::kDownstreamPeerUriSan},
    {"HOSTNAME", Op::kHostname},
};

std::string hostName() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return {};
  return buf;
}

bool isTchar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// Resolves one header name of REQ(...) or RESP(...) to a Source.
Result<Source> headerSource(std::string_view raw, bool request, std::string_view command) {
  std::string name = toLower(raw);
  if (name.empty()) {
    return makeError("access log format: %" + std::string(command) + "(...)% needs a header name");
  }
  if (request) {
    if (name == ":method") return Source{Op::kMethod, {}};
    if (name == ":path") return Source{Op::kPath, {}};
    if (name == ":authority" || name == "host") return Source{Op::kAuthority, {}};
    if (name == ":scheme") return Source{Op::kScheme, {}};
    // Envoy records the pre-rewrite path in this header; weft's :PATH already is that path.
    if (name == "x-envoy-original-path" || name == "x-weft-original-path") {
      return Source{Op::kPath, {}};
    }
  } else {
    if (name == ":status") return Source{Op::kStatus, {}};
    if (name == "x-weft-upstream-service-time" || name == "x-envoy-upstream-service-time") {
      return Source{Op::kUpstreamServiceTime, {}};
    }
  }
  if (name[0] == ':') {
    return makeError("access log format: unknown pseudo-header " + std::string(raw) + " in %" +
                     std::string(command) + "(...)%");
  }
  for (char c : name) {
    if (!isTchar(c)) {
      return makeError("access log format: invalid header name \"" + std::string(raw) + "\" in %" +
                       std::string(command) + "(...)%");
    }
  }
  return Source{request ? Op::kReqHeader : Op::kRespHeader, std::move(name)};
}

// Splits a START_TIME argument into strftime runs and the fractional-second extensions.
std::vector<TimePart> compileTimeFormat(std::string_view fmt) {
  std::vector<TimePart> parts;
  std::string run;
  auto flush = [&] {
    if (!run.empty()) parts.push_back(TimePart{TimePart::kStrftime, 0, std::move(run)});
    run.clear();
  };
  for (size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] != '%' || i + 1 >= fmt.size()) {
      run += fmt[i];
      continue;
    }
    char n = fmt[i + 1];
    if (n == 'f') {
      flush();
      parts.push_back(TimePart{TimePart::kFraction, 9, {}});
      i += 1;
    } else if (n >= '1' && n <= '9' && i + 2 < fmt.size() && fmt[i + 2] == 'f') {
      flush();
      parts.push_back(TimePart{TimePart::kFraction, n - '0', {}});
      i += 2;
    } else if (n == 'E' && i + 3 < fmt.size() && fmt[i + 2] >= '1' && fmt[i + 2] <= '9' &&
               fmt[i + 3] == 'S') {
      flush();
      parts.push_back(TimePart{TimePart::kSecondsFraction, fmt[i + 2] - '0', {}});
      i += 3;
    } else if (n == 's') {
      flush();
      parts.push_back(TimePart{TimePart::kEpochSeconds, 0, {}});
      i += 1;
    } else {
      run += '%';
      run += n;
      i += 1;
    }
  }
  flush();
  return parts;
}

Result<Piece> compileCommand(std::string_view name, std::optional<std::string_view> arg,
                             size_t max_len, const std::string& hostname) {
  Piece piece;
  piece.max_len = max_len;
  std::string full = "%" + std::string(name) + (arg ? "(" + std::string(*arg) + ")" : "") + "%";
  auto no_arg = [&]() -> Result<Piece> {
    return makeError("access log format: command %" + std::string(name) +
                     "% takes no argument, got " + full);
  };
  if (name == "START_TIME") {
    piece.primary = Source{Op::kStartTime, {}};
    if (arg && !arg->empty()) {
      piece.default_time = false;
      piece.time = compileTimeFormat(*arg);
    }
    return piece;
  }
  if (name == "REQ" || name == "RESP") {
    bool request = name == "REQ";
    if (!arg) return makeError("access log format: %" + std::string(name) + "% needs (HEADER)");
    std::string_view a = *arg;
    size_t q = a.find('?');
    auto primary = headerSource(a.substr(0, q), request, name);
    if (!primary) return Unexpected<Error>{primary.error()};
    piece.primary = std::move(*primary);
    if (q != std::string_view::npos) {
      auto fallback = headerSource(a.substr(q + 1), request, name);
      if (!fallback) return Unexpected<Error>{fallback.error()};
      piece.fallback = std::move(*fallback);
    }
    return piece;
  }
  if (name == "REQUEST_ID") {
    if (arg) return no_arg();
    piece.primary = Source{Op::kReqHeader, "x-request-id"};
    return piece;
  }
  for (const auto& def : kSimpleCommands) {
    if (def.name == name) {
      if (arg) return no_arg();
      piece.primary = Source{def.op, def.op == Op::kHostname ? hostname : std::string()};
      return piece;
    }
  }
  return makeError("access log format: unknown command " + full);
}

bool isCommandChar(char c) { return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'; }

// Parses one format string (the whole text format, or one JSON value).
Result<std::vector<Piece>> compilePieces(std::string_view fmt, const std::string& hostname) {
  std::vector<Piece> pieces;
  std::string literal;
  auto flush_literal = [&] {
    if (literal.empty()) return;
    Piece p;
    p.literal = true;
    p.text = std::move(literal);
    pieces.push_back(std::move(p));
    literal.clear();
  };
  size_t i = 0;
  while (i < fmt.size()) {
    if (fmt[i] != '%') {
      literal += fmt[i++];
      continue;
    }
    if (i + 1 < fmt.size() && fmt[i + 1] == '%') {
      literal += '%';
      i += 2;
      continue;
    }
    size_t start = i;
    size_t p = i + 1;
    while (p < fmt.size() && isCommandChar(fmt[p])) ++p;
    std::string_view name = fmt.substr(i + 1, p - i - 1);
    if (name.empty()) {
      return makeError("access log format: '%' at position " + std::to_string(start) +
                       " does not start a command (write %% for a literal '%')");
    }
    std::optional<std::string_view> arg;
    if (p < fmt.size() && fmt[p] == '(') {
      size_t close = fmt.find(')', p + 1);
      if (close == std::string_view::npos) {
        return makeError("access log format: command %" + std::string(name) + " at position " +
                         std::to_string(start) + " has no closing ')'");
      }
      arg = fmt.substr(p + 1, close - p - 1);
      p = close + 1;
    }
    size_t max_len = std::string::npos;
    if (p < fmt.size() && fmt[p] == ':') {
      size_t digits_start = p + 1;
      size_t q = digits_start;
      while (q < fmt.size() && fmt[q] >= '0' && fmt[q] <= '9') ++q;
      size_t value = 0;
      auto r = std::from_chars(fmt.data() + digits_start, fmt.data() + q, value);
      if (q == digits_start || r.ec != std::errc()) {
        return makeError("access log format: command %" + std::string(name) + " at position " +
                         std::to_string(start) + " has ':' without a length");
      }
      max_len = value;
      p = q;
    }
    if (p >= fmt.size() || fmt[p] != '%') {
      return makeError("access log format: command %" + std::string(name) + " at position " +
                       std::to_string(start) + " is not closed by '%'");
    }
    auto piece = compileCommand(name, arg, max_len, hostname);
    if (!piece) return Unexpected<Error>{piece.error()};
    flush_literal();
    pieces.push_back(std::move(*piece));
    i = p + 1;
  }
  flush_literal();
  return pieces;
}

// ---- evaluation -------------------------------------------------------------------------------

struct Value {
  enum Kind : uint8_t { kMissing, kString, kNumber };
  Kind kind = kMissing;
  std::string_view str;
  uint64_t num = 0;
};

Value str(std::string_view s) {
  if (s.empty()) return {};
  return Value{Value::kString, s, 0};
}
Value num(uint64_t n) { return Value{Value::kNumber, {}, n}; }
Value ms(const std::optional<std::chrono::nanoseconds>& d) {
  if (!d) return {};
  auto v = std::chrono::duration_cast<std::chrono::milliseconds>(*d).count();
  return num(v < 0 ? 0 : static_cast<uint64_t>(v));
}

std::string_view withoutPort(std::string_view a) {
  if (!a.empty() && a[0] == '[') {
    size_t close = a.find(']');
    return close == std::string_view::npos ? a : a.substr(1, close - 1);
  }
  size_t colon = a.find(':');
  if (colon != std::string_view::npos && a.find(':', colon + 1) == std::string_view::npos) {
    return a.substr(0, colon);
  }
  return a;
}

void append2(std::string& out, int v) {
  out += static_cast<char>('0' + v / 10 % 10);
  out += static_cast<char>('0' + v % 10);
}

void appendUint(std::string& out, uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

// Appends the first `digits` digits of the 9-digit nanosecond fraction.
void appendFraction(std::string& out, long nanos, int digits) {
  char buf[10];
  for (int k = 8; k >= 0; --k) {
    buf[k] = static_cast<char>('0' + nanos % 10);
    nanos /= 10;
  }
  out.append(buf, static_cast<size_t>(digits));
}

void formatStartTime(const Piece& piece, std::chrono::system_clock::time_point t,
                     std::string& out) {
  auto since = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  int64_t secs = since / 1'000'000'000;
  long nanos = static_cast<long>(since % 1'000'000'000);
  if (nanos < 0) {
    nanos += 1'000'000'000;
    secs -= 1;
  }
  time_t tt = static_cast<time_t>(secs);
  tm tmv{};
  gmtime_r(&tt, &tmv);
  if (piece.default_time) {
    // Envoy's default: %Y-%m-%dT%H:%M:%E3SZ, e.g. 2026-01-02T03:04:05.678Z.
    appendUint(out, static_cast<uint64_t>(tmv.tm_year + 1900));
    out += '-';
    append2(out, tmv.tm_mon + 1);
    out += '-';
    append2(out, tmv.tm_mday);
    out += 'T';
    append2(out, tmv.tm_hour);
    out += ':';
    append2(out, tmv.tm_min);
    out += ':';
    append2(out, tmv.tm_sec);
    out += '.';
    appendFraction(out, nanos, 3);
    out += 'Z';
    return;
  }
  for (const TimePart& part : piece.time) {
    switch (part.kind) {
      case TimePart::kStrftime: {
        char buf[256];
        size_t n = strftime(buf, sizeof buf, part.text.c_str(), &tmv);
        out.append(buf, n);
        break;
      }
      case TimePart::kEpochSeconds:
        out += std::to_string(secs);
        break;
      case TimePart::kFraction:
        appendFraction(out, nanos, part.digits);
        break;
      case TimePart::kSecondsFraction:
        append2(out, tmv.tm_sec);
        out += '.';
        appendFraction(out, nanos, part.digits);
        break;
    }
  }
}

Value evalSource(const Piece& piece, const Source& src, const AccessLogEntry& e,
                 std::string& scratch) {
  switch (src.op) {
    case Op::kHostname:
      return str(src.name);
    case Op::kStartTime:
      scratch.clear();
      formatStartTime(piece, e.start_time, scratch);
      return str(scratch);
    case Op::kReqHeader:
      if (e.request_headers) {
        if (auto v = e.request_headers->get(src.name)) return str(*v);
      }
      return {};
    case Op::kRespHeader:
      if (e.response_headers) {
        if (auto v = e.response_headers->get(src.name)) return str(*v);
      }
      return {};
    case Op::kMethod:
      return str(e.method);
    case Op::kPath:
      return str(e.path);
    case Op::kAuthority:
      return str(e.authority);
    case Op::kScheme:
      return str(e.scheme);
    case Op::kStatus:
      return e.response_code > 0 ? num(static_cast<uint64_t>(e.response_code)) : Value{};
    case Op::kProtocol:
      return str(e.protocol);
    case Op::kResponseCode:
      return num(e.response_code > 0 ? static_cast<uint64_t>(e.response_code) : 0);
    case Op::kResponseFlags:
      return e.response_flags.empty() ? str("-") : str(e.response_flags);
    case Op::kBytesReceived:
      return num(e.bytes_received);
    case Op::kBytesSent:
      return num(e.bytes_sent);
    case Op::kDuration:
      return ms(e.duration);
    case Op::kRequestDuration:
      return ms(e.request_duration);
    case Op::kResponseDuration:
      return ms(e.response_duration);
    case Op::kUpstreamServiceTime:
      return ms(e.upstream_service_time);
    case Op::kUpstreamHost:
      return str(e.upstream_host);
    case Op::kUpstreamCluster:
      return str(e.upstream_cluster);
    case Op::kUpstreamTransportFailureReason:
      return str(e.upstream_transport_failure_reason);
    case Op::kDownstreamRemoteAddress:
      return str(e.downstream_remote_address);
    case Op::kDownstreamRemoteAddressWithoutPort:
      return str(withoutPort(e.downstream_remote_address));
    case Op::kDownstreamLocalAddress:
      return str(e.downstream_local_address);
    case Op::kDownstreamLocalAddressWithoutPort:
      return str(withoutPort(e.downstream_local_address));
    case Op::kRouteName:
      return str(e.route_name);
    case Op::kRequestedServerName:
      return str(e.requested_server_name);
    case Op::kDownstreamPeerUriSan:
      return str(e.downstream_peer_uri_san);
  }
  return {};
}

Value evalPiece(const Piece& piece, const AccessLogEntry& e, std::string& scratch) {
  Value v = evalSource(piece, piece.primary, e, scratch);
  if (v.kind == Value::kMissing && piece.fallback) {
    v = evalSource(piece, *piece.fallback, e, scratch);
  }
  if (v.kind == Value::kString && v.str.size() > piece.max_len)
    v.str = v.str.substr(0, piece.max_len);
  return v;
}

// Text output of a value: control bytes (other than tab) become \xHH so that hostile input can
// never split or forge a log line.
void appendTextValue(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  size_t clean = 0;
  while (clean < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[clean]);
    if ((c < 0x20 && c != '\t') || c == 0x7f) break;
    ++clean;
  }
  out.append(s.data(), clean);
  for (size_t i = clean; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if ((c < 0x20 && c != '\t') || c == 0x7f) {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    } else {
      out += static_cast<char>(c);
    }
  }
}

}  // namespace

Result<AccessLogFormatter> AccessLogFormatter::compileText(std::string_view format) {
  auto pieces = compilePieces(format, hostName());
  if (!pieces) return Unexpected<Error>{pieces.error()};
  AccessLogFormatter f;
  f.json_ = false;
  f.fields_.push_back(Field{{}, std::move(*pieces)});
  auto& ps = f.fields_.back().pieces;
  if (ps.empty() || !ps.back().literal) {
    Piece nl;
    nl.literal = true;
    nl.text = "\n";
    ps.push_back(std::move(nl));
  } else if (ps.back().text.back() != '\n') {
    ps.back().text += '\n';
  }
  return f;
}

Result<AccessLogFormatter> AccessLogFormatter::compileJson(
    const std::vector<std::pair<std::string, std::string>>& fields) {
  if (fields.empty()) return makeError("access log json_format has no fields");
  std::vector<std::pair<std::string, std::string>> sorted = fields;
  std::sort(sorted.begin(), sorted.end());
  std::string hostname = hostName();
  AccessLogFormatter f;
  f.json_ = true;
  for (size_t i = 0; i < sorted.size(); ++i) {
    const auto& [key, value] = sorted[i];
    if (i > 0 && sorted[i - 1].first == key) {
      return makeError("access log json_format: duplicate key \"" + key + "\"");
    }
    auto pieces = compilePieces(value, hostname);
    if (!pieces) {
      return makeError(pieces.error().message + " (json_format key \"" + key + "\")");
    }
    Field field;
    field.key_prefix = "\"";
    appendJsonEscaped(field.key_prefix, key);
    field.key_prefix += "\":";
    field.pieces = std::move(*pieces);
    f.fields_.push_back(std::move(field));
  }
  return f;
}

Result<AccessLogFormatter> AccessLogFormatter::fromConfig(const v1::AccessLog& config) {
  if (config.has_json_format()) {
    std::vector<std::pair<std::string, std::string>> fields(config.json_format().fields().begin(),
                                                            config.json_format().fields().end());
    return compileJson(fields);
  }
  if (!config.text_format().empty()) return compileText(config.text_format());
  return compileText(kDefaultAccessLogFormat);
}

void AccessLogFormatter::format(const AccessLogEntry& entry, std::string& out) const {
  thread_local std::string scratch;
  if (!json_) {
    for (const Piece& piece : fields_.front().pieces) {
      if (piece.literal) {
        out += piece.text;
        continue;
      }
      Value v = evalPiece(piece, entry, scratch);
      switch (v.kind) {
        case Value::kMissing:
          out += '-';
          break;
        case Value::kString:
          appendTextValue(out, v.str);
          break;
        case Value::kNumber:
          appendUint(out, v.num);
          break;
      }
    }
    return;
  }
  out += '{';
  bool first = true;
  for (const Field& field : fields_) {
    if (!first) out += ',';
    first = false;
    out += field.key_prefix;
    if (field.pieces.size() == 1 && !field.pieces[0].literal) {
      // A lone command keeps its type.
      Value v = evalPiece(field.pieces[0], entry, scratch);
      switch (v.kind) {
        case Value::kMissing:
          out += "null";
          break;
        case Value::kString:
          out += '"';
          appendJsonEscaped(out, v.str);
          out += '"';
          break;
        case Value::kNumber:
          appendUint(out, v.num);
          break;
      }
      continue;
    }
    out += '"';
    for (const Piece& piece : field.pieces) {
      if (piece.literal) {
        appendJsonEscaped(out, piece.text);
        continue;
      }
      Value v = evalPiece(piece, entry, scratch);
      switch (v.kind) {
        case Value::kMissing:
          out += '-';
          break;
        case Value::kString:
          appendJsonEscaped(out, v.str);
          break;
        case Value::kNumber:
          appendUint(out, v.num);
          break;
      }
    }
    out += '"';
  }
  out += "}\n";
}

namespace {
std::vector<std::string> headerNames(const std::vector<AccessLogFormatter::Field>& fields, Op op) {
  std::vector<std::string> names;
  for (const auto& field : fields) {
    for (const Piece& piece : field.pieces) {
      if (piece.literal) continue;
      if (piece.primary.op == op) names.push_back(piece.primary.name);
      if (piece.fallback && piece.fallback->op == op) names.push_back(piece.fallback->name);
    }
  }
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  return names;
}
}  // namespace

std::vector<std::string> AccessLogFormatter::requestHeaderNames() const {
  return headerNames(fields_, Op::kReqHeader);
}

std::vector<std::string> AccessLogFormatter::responseHeaderNames() const {
  return headerNames(fields_, Op::kRespHeader);
}

// ---------------------------------------------------------------------------------------------
// SpscByteRing.

namespace {
size_t roundUpPow2(size_t n) {
  size_t p = 64;
  while (p < n) p <<= 1;
  return p;
}
}  // namespace

SpscByteRing::SpscByteRing(size_t capacity)
    : mask_(roundUpPow2(capacity) - 1), buf_(new char[mask_ + 1]) {}

bool SpscByteRing::tryPush(std::string_view bytes) {
  const size_t cap = mask_ + 1;
  uint64_t head = head_.load(std::memory_order_relaxed);
  if (bytes.size() > cap - (head - cached_tail_)) {
    // Acquire pairs with the consumer's release in consume(): the bytes it released are no
    // longer being read, so they may be overwritten.
    cached_tail_ = tail_.load(std::memory_order_acquire);
    if (bytes.size() > cap - (head - cached_tail_)) return false;
  }
  size_t pos = static_cast<size_t>(head) & mask_;
  size_t first = std::min(bytes.size(), cap - pos);
  std::memcpy(buf_.get() + pos, bytes.data(), first);
  std::memcpy(buf_.get(), bytes.data() + first, bytes.size() - first);
  head_.store(head + bytes.size(), std::memory_order_release);
  return true;
}

SpscByteRing::Readable SpscByteRing::peek() const {
  const size_t cap = mask_ + 1;
  uint64_t tail = tail_.load(std::memory_order_relaxed);
  uint64_t head = head_.load(std::memory_order_acquire);  // pairs with tryPush's release
  size_t used = static_cast<size_t>(head - tail);
  size_t pos = static_cast<size_t>(tail) & mask_;
  size_t first = std::min(used, cap - pos);
  return Readable{std::string_view(buf_.get() + pos, first),
                  std::string_view(buf_.get(), used - first)};
}

void SpscByteRing::consume(size_t n) {
  tail_.store(tail_.load(std::memory_order_relaxed) + n, std::memory_order_release);
}

// ---------------------------------------------------------------------------------------------
// AccessLogWriter.

struct AccessLogWriter::Ring {
  explicit Ring(size_t capacity) : ring(capacity) {}
  SpscByteRing ring;
  // Set by the producer when it has woken the writer because the ring passed half full; cleared
  // by the writer after draining. Plain stores from both sides: a lost update costs at most one
  // extra or one late (flush_interval) wake-up.
  alignas(64) std::atomic<bool> kicked{false};
};

namespace {

constexpr std::string_view kStdout = "/dev/stdout";
constexpr std::string_view kStderr = "/dev/stderr";

int openLogFile(const std::string& path) {
  return ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

// Writes every byte of iov[0..count) to fd, retrying on EINTR, partial writes and EAGAIN (a
// non-blocking stdout). Returns 0 or the errno of the failure. The iovecs are modified.
int writeFully(int fd, iovec* iov, int count) {
  while (count > 0) {
    int batch = std::min(count, IOV_MAX);
    ssize_t n = ::writev(fd, iov, batch);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        pollfd p{fd, POLLOUT, 0};
        ::poll(&p, 1, 1000);
        continue;
      }
      return errno;
    }
    size_t left = static_cast<size_t>(n);
    while (count > 0 && left >= iov->iov_len) {
      left -= iov->iov_len;
      ++iov;
      --count;
    }
    if (count > 0 && left > 0) {
      iov->iov_base = static_cast<char*>(iov->iov_base) + left;
      iov->iov_len -= left;
    }
  }
  return 0;
}

}  // namespace

AccessLogWriter::AccessLogWriter(std::string path, uint32_t num_workers,
                                 AccessLogWriterOptions options,
                                 std::shared_ptr<stats::Counter> dropped,
                                 std::shared_ptr<stats::Counter> write_errors)
    : path_(std::move(path)),
      options_(options),
      dropped_(std::move(dropped)),
      write_errors_(std::move(write_errors)) {
  rings_.reserve(num_workers + 1);
  for (uint32_t i = 0; i < num_workers + 1; ++i) {
    rings_.push_back(std::make_unique<Ring>(options_.ring_bytes));
  }
}

Result<std::shared_ptr<AccessLogWriter>> AccessLogWriter::open(
    std::string path, uint32_t num_workers, AccessLogWriterOptions options,
    std::shared_ptr<stats::Counter> dropped, std::shared_ptr<stats::Counter> write_errors) {
  if (path.empty()) return makeError("access log: path is empty");
  std::shared_ptr<AccessLogWriter> w(new AccessLogWriter(
      std::move(path), num_workers, options, std::move(dropped), std::move(write_errors)));
  if (w->path_ == kStdout) {
    w->fd_ = 1;
  } else if (w->path_ == kStderr) {
    w->fd_ = 2;
  } else {
    w->fd_ = openLogFile(w->path_);
    if (w->fd_ < 0) {
      return makeError("access log " + w->path_ +
                       ": cannot open for appending: " + std::strerror(errno));
    }
    w->owns_fd_ = true;
  }
  w->wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (w->wake_fd_ < 0) {
    return makeError("access log " + w->path_ + ": eventfd: " + std::strerror(errno));
  }
  try {
    w->thread_ = std::thread([raw = w.get()] { raw->run(); });
  } catch (const std::system_error& e) {
    return makeError("access log " + w->path_ + ": cannot start writer thread: " + e.what());
  }
  return w;
}

AccessLogWriter::~AccessLogWriter() {
  stop();
  if (owns_fd_ && fd_ >= 0) ::close(fd_);
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void AccessLogWriter::countDrop() {
  if (dropped_) dropped_->inc();
}

void AccessLogWriter::kick() {
  uint64_t one = 1;
  ssize_t unused = ::write(wake_fd_, &one, sizeof one);  // EAGAIN only if already signalled
  (void)unused;
}

bool AccessLogWriter::write(std::string_view line) {
  if (stopped_.load(std::memory_order_acquire)) {
    countDrop();
    return false;
  }
  auto push = [&](Ring& r) {
    bool ok = r.ring.tryPush(line);
    if (!ok || r.ring.producerUsed() * 2 >= r.ring.capacity()) {
      if (!r.kicked.load(std::memory_order_relaxed)) {
        r.kicked.store(true, std::memory_order_relaxed);
        kick();
      }
    }
    if (!ok) countDrop();
    return ok;
  };
  int w = stats::currentWorker();
  if (w >= 0 && static_cast<size_t>(w) + 1 < rings_.size()) return push(*rings_[w + 1]);
  std::lock_guard<std::mutex> lock(shared_mu_);
  return push(*rings_[0]);
}

void AccessLogWriter::reopen() {
  reopen_requested_.store(true, std::memory_order_release);
  if (wake_fd_ >= 0) kick();
}

void AccessLogWriter::flush() {
  std::unique_lock<std::mutex> lock(flush_mu_);
  if (exited_ || !thread_.joinable()) return;
  uint64_t ticket = ++flush_requested_;
  kick();
  flush_cv_.wait(lock, [&] { return flush_done_ >= ticket || exited_; });
}

void AccessLogWriter::stop() {
  std::lock_guard<std::mutex> lock(stop_mu_);
  if (!thread_.joinable()) return;
  stopped_.store(true, std::memory_order_release);
  stopping_.store(true, std::memory_order_release);
  kick();
  thread_.join();
}

void AccessLogWriter::reopenFile() {
  if (!owns_fd_) return;
  int nfd = openLogFile(path_);
  if (nfd < 0) {
    if (write_errors_) write_errors_->inc();
    log::warn("access_log", "cannot reopen " + path_ + ": " + std::strerror(errno) +
                                "; still writing to the old file");
    return;
  }
  ::close(fd_);
  fd_ = nfd;
}

void AccessLogWriter::drainAll() {
  std::vector<iovec> iov;
  iov.reserve(rings_.size() * 2);
  std::vector<size_t> sizes(rings_.size(), 0);
  size_t total = 0;
  for (size_t i = 0; i < rings_.size(); ++i) {
    SpscByteRing::Readable r = rings_[i]->ring.peek();
    sizes[i] = r.size();
    total += r.size();
    for (std::string_view part : {r.first, r.second}) {
      if (!part.empty()) iov.push_back(iovec{const_cast<char*>(part.data()), part.size()});
    }
  }
  if (total > 0) {
    int err = writeFully(fd_, iov.data(), static_cast<int>(iov.size()));
    if (err != 0) {
      // The batch is dropped: retrying a failing disk would only stall every ring behind it.
      if (write_errors_) write_errors_->inc();
      if (!in_error_) {
        log::warn("access_log", "write to " + path_ + " failed: " + std::strerror(err) +
                                    "; dropping lines until writes succeed again");
      }
      in_error_ = true;
    } else if (in_error_) {
      log::info("access_log", "writes to " + path_ + " succeed again");
      in_error_ = false;
    }
  }
  for (size_t i = 0; i < rings_.size(); ++i) {
    if (sizes[i] > 0) rings_[i]->ring.consume(sizes[i]);
    rings_[i]->kicked.store(false, std::memory_order_relaxed);
  }
}

void AccessLogWriter::run() {
  // A write to a pipe whose reader has gone (`weft-proxy | head`) must fail with EPIPE and be
  // counted, not kill the process: SIGPIPE stays blocked (and harmlessly pending) in this thread.
  sigset_t pipe_set;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, nullptr);
  const int timeout_ms = static_cast<int>(std::max<int64_t>(1, options_.flush_interval.count()));
  for (;;) {
    uint64_t flush_target;
    {
      std::lock_guard<std::mutex> lock(flush_mu_);
      flush_target = flush_requested_;
    }
    bool stopping = stopping_.load(std::memory_order_acquire);
    drainAll();
    if (reopen_requested_.exchange(false, std::memory_order_acq_rel)) reopenFile();
    if (stopping) {
      // stopped_ was set before stopping_, so producers are winding down: drain until empty.
      for (int pass = 0; pass < 8; ++pass) {
        bool empty = true;
        for (const auto& r : rings_) empty = empty && r->ring.peek().size() == 0;
        if (empty) break;
        drainAll();
      }
    }
    {
      std::lock_guard<std::mutex> lock(flush_mu_);
      flush_done_ = flush_target;
    }
    flush_cv_.notify_all();
    if (stopping) break;
    pollfd p{wake_fd_, POLLIN, 0};
    int n = ::poll(&p, 1, timeout_ms);
    if (n > 0 && (p.revents & POLLIN)) {
      uint64_t v;
      ssize_t unused = ::read(wake_fd_, &v, sizeof v);
      (void)unused;
    }
  }
  {
    std::lock_guard<std::mutex> lock(flush_mu_);
    exited_ = true;
  }
  flush_cv_.notify_all();
}

// ---------------------------------------------------------------------------------------------
// AccessLogManager.

AccessLogManager::AccessLogManager(stats::Registry& registry, AccessLogWriterOptions options)
    : registry_(registry), options_(options) {}

AccessLogManager::~AccessLogManager() { stopAll(); }

Result<std::shared_ptr<AccessLogWriter>> AccessLogManager::writerFor(const std::string& path) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = writers_.find(path);
  if (it != writers_.end()) return it->second;
  stats::Labels labels = {{std::string(stats::names::kLabelPath), path}};
  auto writer =
      AccessLogWriter::open(path, registry_.numWorkers(), options_,
                            registry_.counter(stats::names::kAccessLogDropped, labels),
                            registry_.counter(stats::names::kAccessLogWriteErrors, labels));
  if (!writer) return Unexpected<Error>{writer.error()};
  writers_.emplace(path, *writer);
  return *writer;
}

void AccessLogManager::reopenAll() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [path, writer] : writers_) writer->reopen();
}

size_t AccessLogManager::releaseUnused() {
  std::vector<std::shared_ptr<AccessLogWriter>> released;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = writers_.begin(); it != writers_.end();) {
      // use_count() == 1 is stable under mu_: copies are only handed out by writerFor().
      if (it->second.use_count() == 1) {
        released.push_back(std::move(it->second));
        it = writers_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& w : released) w->stop();
  return released.size();
}

void AccessLogManager::stopAll() {
  std::map<std::string, std::shared_ptr<AccessLogWriter>> writers;
  {
    std::lock_guard<std::mutex> lock(mu_);
    writers.swap(writers_);
  }
  for (auto& [path, writer] : writers) writer->stop();
}

// ---------------------------------------------------------------------------------------------
// AccessLog.

AccessLog::AccessLog(AccessLogFormatter formatter, std::shared_ptr<AccessLogWriter> writer)
    : formatter_(std::move(formatter)), writer_(std::move(writer)) {}

Result<std::unique_ptr<AccessLog>> AccessLog::create(const v1::AccessLog& config,
                                                     AccessLogManager& manager) {
  if (config.path().empty()) return makeError("access log: path is empty");
  auto formatter = AccessLogFormatter::fromConfig(config);
  if (!formatter) {
    return makeError("access log " + config.path() + ": " + formatter.error().message);
  }
  auto writer = manager.writerFor(config.path());
  if (!writer) return Unexpected<Error>{writer.error()};
  return std::make_unique<AccessLog>(std::move(*formatter), std::move(*writer));
}

void AccessLog::log(const AccessLogEntry& entry) const {
  thread_local std::string line;
  line.clear();
  formatter_.format(entry, line);
  writer_->write(line);
}

}  // namespace weft::proxy
