#pragma once
// Writes HTTP/1.1 message heads: the forwarding path of the proxy (a parsed head minus hop-by-hop
// fields plus the proxy's own) and heads built from scratch. Appends to a caller-owned
// std::string with one size computation and at most one reallocation per head.

#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "http/headers.h"
#include "http/http1/parser.h"

namespace weft::http1 {

// How a parsed head is rewritten when it is written out.
struct HeadRewrite {
  // Fields dropped by token.
  http::HeaderTokenSet drop = http::kHopByHopHeaders;
  // Also drop every field the message's Connection header nominated (RFC 9110 §7.6.1).
  bool drop_connection_nominated = true;
  // Write Content-Length as one canonical decimal value ("5, 5" or repeated lines become one
  // line) in place of the first received one, so the next hop cannot read it differently.
  bool normalize_content_length = true;
  // Appended after the kept fields, in order; `token` is ignored. Written as given: the caller
  // guarantees valid names and values (no CR/LF), or it would inject header lines.
  std::span<const http::HeaderField> extra;
  // Requests: write the target in origin-form (absolute-form "http://h/p?q" -> "/p?q"). Other
  // forms are written as received.
  bool origin_form = false;
  // Write this version instead of the received one.
  std::optional<Version> version;
};

// "METHOD SP target SP HTTP/1.x CRLF"
void appendRequestLine(std::string& out, std::string_view method, std::string_view target,
                       Version version);
// "HTTP/1.x SP ddd SP reason CRLF"; `status` must be 100..999.
void appendStatusLine(std::string& out, Version version, int status, std::string_view reason);
// Field lines ("name: value" CRLF each) and the final CRLF.
void appendFields(std::string& out, std::span<const http::HeaderField> fields);

// The kept fields of `head` (see HeadRewrite), rw.extra, and the final CRLF.
void appendFields(std::string& out, const MessageHead& head, const HeadRewrite& rw);
// Request line + appendFields(head, rw).
void appendRequestHead(std::string& out, const RequestHead& head, const HeadRewrite& rw = {});
// Status line + appendFields(head, rw).
void appendResponseHead(std::string& out, const ResponseHead& head, const HeadRewrite& rw = {});

}  // namespace weft::http1
