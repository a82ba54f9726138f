#include "http/http2/translate.h"

#include <cstdint>

#include "http/status.h"

namespace weft::http2 {
namespace {

using http::HeaderField;
using http::HeaderToken;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Whether a TE value lists the "trailers" member (RFC 9110 §10.1.4).
bool teHasTrailers(std::string_view value) {
  while (!value.empty()) {
    size_t comma = value.find(',');
    std::string_view item = value.substr(0, comma);
    item = trim(item.substr(0, item.find(';')));
    if (http::equalsIgnoreCase(item, "trailers")) return true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

// Fields kept when an HTTP/1 head becomes HTTP/2: not hop-by-hop, not Host; TE -> te: trailers.
void keepFields(const http1::MessageHead& head, std::vector<HeaderField>& out, bool request) {
  out.reserve(head.headers.size());
  bool te_trailers = false;
  for (const HeaderField& f : head.headers) {
    if (f.token == HeaderToken::kTe) {
      te_trailers = te_trailers || (request && teHasTrailers(f.value));
      continue;
    }
    if (f.token == HeaderToken::kHost || head.isHopByHop(f)) continue;
    out.push_back(f);
  }
  if (te_trailers) out.push_back({"te", "trailers", HeaderToken::kTe});
}

Result<uint64_t> parseLength(std::string_view v) {
  if (v.empty() || v.size() > 18) return makeError("invalid content-length");
  uint64_t n = 0;
  for (char c : v) {
    if (c < '0' || c > '9') return makeError("invalid content-length");
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  return n;
}

}  // namespace

Result<TranslatedRequest> requestFromHttp1(const http1::RequestHead& head,
                                           std::string_view scheme) {
  TranslatedRequest r;
  r.method = head.method;
  switch (head.target_form) {
    case http1::TargetForm::kAuthority:  // CONNECT host:port
      r.authority = head.authority;
      break;
    case http1::TargetForm::kAbsolute: {
      r.scheme = head.scheme;
      r.authority = head.authority;
      std::string_view pq = head.pathAndQuery();
      if (pq.empty()) {
        r.path = head.method_id == http1::Method::kOptions ? "*" : "/";
      } else if (pq.front() == '?') {
        r.built_path = "/";
        r.built_path += pq;
      } else {
        r.path = pq;
      }
      break;
    }
    case http1::TargetForm::kAsterisk:
    case http1::TargetForm::kOrigin:
      r.scheme = scheme;
      r.authority = head.host;
      r.path = head.target;
      break;
  }
  if (r.authority.empty()) {
    return makeError("request has no authority (Host) to put in :authority",
                     static_cast<int>(ErrorCode::kInvalidArgument));
  }
  keepFields(head, r.fields, true);
  return r;
}

Result<http1::RequestHead> requestToHttp1(const HeaderBlock& block, std::string& arena) {
  http1::RequestHead h;
  h.version = http1::Version::kHttp11;
  h.method = block.method;
  h.method_id = http1::lookupMethod(block.method);

  std::string_view authority = block.authority;
  if (authority.empty()) {
    for (const HeaderField& f : block.fields)
      if (f.token == HeaderToken::kHost) {
        authority = f.value;
        break;
      }
  }
  if (authority.empty()) {
    return makeError("HTTP/2 request has neither :authority nor host",
                     static_cast<int>(ErrorCode::kInvalidArgument));
  }
  h.host = authority;
  h.has_host = true;

  if (h.method_id == http1::Method::kConnect) {
    h.target = authority;
    h.target_form = http1::TargetForm::kAuthority;
    h.authority = authority;
  } else {
    h.target = block.path;
    if (block.path == "*") {
      h.target_form = http1::TargetForm::kAsterisk;
    } else {
      h.target_form = http1::TargetForm::kOrigin;
      size_t q = block.path.find('?');
      h.path = block.path.substr(0, q);
      if (q != std::string_view::npos) {
        h.query = block.path.substr(q + 1);
        h.has_query = true;
      }
    }
  }

  // Cookies first, into the arena, so its buffer is final before views into it are taken.
  size_t cookies = 0;
  arena.clear();
  for (const HeaderField& f : block.fields) {
    if (f.token != HeaderToken::kCookie) continue;
    if (cookies++ > 0) arena += "; ";
    arena += f.value;
  }

  h.headers.reserve(block.fields.size() + 1);
  h.headers.push_back({"host", authority, HeaderToken::kHost});
  bool cookie_written = false;
  for (const HeaderField& f : block.fields) {
    switch (f.token) {
      case HeaderToken::kHost:
        continue;
      case HeaderToken::kCookie:
        if (cookies > 1) {
          if (!cookie_written) h.headers.push_back({"cookie", arena, HeaderToken::kCookie});
          cookie_written = true;
          continue;
        }
        break;
      case HeaderToken::kContentLength: {
        auto n = parseLength(f.value);
        if (!n) {
          return makeError("HTTP/2 request has an invalid content-length",
                           static_cast<int>(ErrorCode::kInvalidArgument));
        }
        h.has_content_length = true;
        h.content_length = *n;
        break;
      }
      default:
        break;
    }
    h.headers.push_back(f);
  }
  if (h.has_content_length) {
    h.body_kind = http1::BodyKind::kContentLength;
  } else {
    h.body_kind = block.end_stream ? http1::BodyKind::kNone : http1::BodyKind::kChunked;
  }
  return h;
}

TranslatedResponse responseFromHttp1(const http1::ResponseHead& head) {
  TranslatedResponse r;
  r.status = head.status;
  keepFields(head, r.fields, false);
  return r;
}

http1::ResponseHead responseToHttp1(const HeaderBlock& block) {
  http1::ResponseHead h;
  h.version = http1::Version::kHttp11;
  h.status = block.status;
  h.reason = http::reasonPhrase(block.status);
  h.interim = block.status >= 100 && block.status < 200;
  h.headers.assign(block.fields.begin(), block.fields.end());
  for (const HeaderField& f : block.fields) {
    if (f.token != HeaderToken::kContentLength) continue;
    if (auto n = parseLength(f.value)) {
      h.has_content_length = true;
      h.content_length = *n;
    }
    break;
  }
  if (h.has_content_length) {
    h.body_kind = http1::BodyKind::kContentLength;
  } else if (h.interim || (block.end_stream && (block.status == 204 || block.status == 304))) {
    h.body_kind = http1::BodyKind::kNone;  // never a body, so no framing
  } else if (block.end_stream) {
    // END_STREAM on the HEADERS: an empty body, which HTTP/1 must frame (content-length: 0),
    // else the client cannot tell where it ends. (A HEAD response is the caller's to mark kNone.)
    h.body_kind = http1::BodyKind::kContentLength;
    h.content_length = 0;
  } else {
    h.body_kind = http1::BodyKind::kChunked;
  }
  return h;
}

}  // namespace weft::http2
