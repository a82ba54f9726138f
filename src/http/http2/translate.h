#pragma once
// HTTP/1.1 <-> HTTP/2 message-head translation (RFC 9113 §8.2.2, §8.3; RFC 9110 §7.6.1). Pure
// functions, no I/O; used where a request or response crosses between an HTTP/1 connection and
// an HTTP/2 stream.
//
// Views: the results hold string_views into their input (the parsed HTTP/1 head, or the
// HeaderBlock of an onHeaders callback, which is valid only during the callback) plus small
// owned storage inside the result. Use them before the input goes away.
//
// Received HTTP/2 heads are already validated by nghttp2 (pseudo-headers present and well
// formed, lower-case names, no connection-specific fields, TE only "trailers", Content-Length
// matching the body); received HTTP/1 heads by weft's HTTP/1 parser. These functions only do what
// is left: move fields between pseudo-headers and regular fields, drop hop-by-hop fields, and
// refuse what has no translation.

#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "http/headers.h"
#include "http/http1/parser.h"
#include "http/http2/codec.h"

namespace weft::http2 {

// An HTTP/2 request head built from an HTTP/1 one.
struct TranslatedRequest {
  std::string_view method;
  std::string_view scheme;     // empty for CONNECT
  std::string_view authority;  // from the absolute-form target, CONNECT's target, or Host
  std::string_view path;       // empty for CONNECT, and when built_path is used
  // A :path that had to be built ("/" prepended to "?q"); when non-empty it is the :path.
  // Owned, so the result can be moved; read the path through view().
  std::string built_path;
  // Regular fields: the HTTP/1 fields minus Host (now :authority), hop-by-hop fields
  // (Connection, Keep-Alive, Proxy-Connection, Transfer-Encoding, Upgrade, HTTP2-Settings, and
  // every field Connection nominates), and TE unless it lists "trailers" (then "te: trailers").
  std::vector<http::HeaderField> fields;

  // For Codec::submitRequest; valid while this object is unchanged.
  RequestHeaders view() const {
    return RequestHeaders{method, scheme, authority,
                          built_path.empty() ? path : std::string_view(built_path), fields};
  }
};

// `scheme` is the scheme of the connection the request arrived on ("http" or "https"); an
// absolute-form target's own scheme wins. Fails for a request without any authority (HTTP/1.0
// without Host, origin-form): HTTP/2 needs :authority or Host to route, so answer 400.
// An Upgrade request (WebSocket) cannot be carried this way: the Upgrade is dropped, so the
// caller should not send `head.upgrade` requests to an HTTP/2 upstream.
Result<TranslatedRequest> requestFromHttp1(const http1::RequestHead& head, std::string_view scheme);

// An HTTP/1.1 request head built from a received HTTP/2 request block (HeadersKind::kRequest),
// shaped like a parsed one so the HTTP/1 serializer (http1::appendRequestHead) and the proxy's
// rewrites apply: version 1.1, the request line from :method and :path (CONNECT: :authority),
// a Host field first with :authority (replacing any Host field), then the other fields with
// multiple Cookie fields joined by "; " into one (RFC 9113 §8.2.3).
// body_kind: kContentLength when content-length is present, kNone when the block ended the
// stream, else kChunked: the caller writes "transfer-encoding: chunked" (rw.extra) and
// chunk-encodes the DATA it forwards.
// `arena` receives the joined Cookie value; it must not change while the head is used.
// Fails (answer 400) without :authority and Host, or with a Content-Length that is not a number.
Result<http1::RequestHead> requestToHttp1(const HeaderBlock& block, std::string& arena);

// An HTTP/2 response head built from an HTTP/1 one: the status, and the fields minus hop-by-hop
// fields (as for requests; TE is dropped too). 1xx heads map to submitInformational (not 101).
struct TranslatedResponse {
  int status = 0;
  std::vector<http::HeaderField> fields;
};
TranslatedResponse responseFromHttp1(const http1::ResponseHead& head);

// An HTTP/1.1 response head from a received HTTP/2 response block (kResponse or
// kInformational): status line with the standard reason phrase, the fields as received.
// body_kind as for requestToHttp1 (the caller knows HEAD/204/304 need no body framing).
http1::ResponseHead responseToHttp1(const HeaderBlock& block);

}  // namespace weft::http2
