// Fuzz target for the HTTP/1 codec. The input is treated as a byte stream from a peer and run
// through: pipelined request parsing (with bodies skipped by Content-Length or decoded as
// chunked), response parsing for several request methods, and chunked decoding on its own.
// Besides crashes and sanitizer reports, it checks properties and aborts when one fails:
//  - feeding the bytes incrementally (growing prefix, buffer moved before the final call) gives
//    the same result as one call with the whole message;
//  - a parsed head written back out by the serializer parses to the same head;
//  - chunked decoding gives the same body, trailers and outcome however the input is split, and
//    re-encoding the decoded body decodes to the same body and trailers.

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "http/http1/chunked.h"
#include "http/http1/parser.h"
#include "http/http1/serializer.h"

namespace {

using namespace weft::http1;
using weft::http::HeaderField;

#define FUZZ_CHECK(cond)                                                               \
  do {                                                                                 \
    if (!(cond)) {                                                                     \
      std::fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                    \
    }                                                                                  \
  } while (0)

// Small limits so that the fuzzer reaches them.
ParseLimits fuzzLimits() {
  ParseLimits l;
  l.max_head_bytes = 2048;
  l.max_headers = 24;
  return l;
}

bool sameResult(const ParseResult& a, const ParseResult& b) {
  return a.status == b.status && a.consumed == b.consumed && a.error.status == b.error.status &&
         a.error.reason == b.error.reason;
}

bool sameFields(const MessageHead& a, const MessageHead& b) {
  if (a.headers.size() != b.headers.size()) return false;
  for (size_t i = 0; i < a.headers.size(); ++i) {
    if (a.headers[i].name != b.headers[i].name || a.headers[i].value != b.headers[i].value ||
        a.headers[i].token != b.headers[i].token)
      return false;
  }
  return a.version == b.version && a.body_kind == b.body_kind &&
         a.content_length == b.content_length && a.keep_alive == b.keep_alive;
}

// Parses `buf` by feeding ever longer prefixes (step sizes from `seed`), the last call with a
// moved copy of the bytes; returns the final result.
template <class Parse>
ParseResult parseIncrementally(std::string_view buf, uint32_t seed, Parse&& parse) {
  size_t k = 0;
  while (true) {
    seed = seed * 1103515245u + 12345u;
    k += 1 + (seed >> 16) % 7;
    if (k >= buf.size()) break;
    ParseResult r = parse(buf.substr(0, k));
    if (!r.needMore()) return r;  // an early error (bare LF, limits) is fine if one-shot agrees
  }
  return ParseResult{};  // the caller finishes with the full buffer
}

// Decodes `in` split at pseudo-random points. Returns the body; fills trailers/done/error.
struct ChunkedOutcome {
  std::string body;
  std::vector<std::pair<std::string, std::string>> trailers;
  size_t consumed = 0;
  bool done = false;
  std::string_view error;
};

ChunkedOutcome decodeChunked(std::string_view in, uint32_t seed, bool split) {
  ChunkedLimits limits;
  limits.max_chunk_line_bytes = 64;
  limits.max_trailer_bytes = 512;
  limits.max_trailer_fields = 8;
  ChunkedDecoder d(limits);
  ChunkedOutcome out;
  size_t pos = 0;
  while (pos < in.size()) {
    size_t n = in.size() - pos;
    if (split) {
      seed = seed * 1103515245u + 12345u;
      n = std::min(n, size_t{1} + (seed >> 16) % 13);
    }
    std::string piece(in.substr(pos, n));  // own buffer: spans must not outlive it
    ChunkedDecoder::Step s = d.decode(piece, [&](std::string_view data) {
      FUZZ_CHECK(data.data() >= piece.data() && data.data() + data.size() <= piece.data() + n);
      out.body += data;
    });
    FUZZ_CHECK(s.consumed <= n);
    out.consumed += s.consumed;
    if (s.failed()) {
      out.error = s.error.reason;
      FUZZ_CHECK(!out.error.empty() && s.error.status == 400);
      return out;
    }
    if (s.done) {
      out.done = true;
      for (const HeaderField& f : d.trailers()) out.trailers.emplace_back(f.name, f.value);
      FUZZ_CHECK(d.bodyBytes() == out.body.size());
      return out;
    }
    FUZZ_CHECK(s.consumed == n);
    pos += n;
  }
  return out;
}

void fuzzChunked(std::string_view in, uint32_t seed) {
  ChunkedOutcome whole = decodeChunked(in, seed, false);
  ChunkedOutcome split = decodeChunked(in, seed, true);
  FUZZ_CHECK(whole.body == split.body);
  FUZZ_CHECK(whole.done == split.done);
  FUZZ_CHECK(whole.error == split.error);
  FUZZ_CHECK(whole.trailers == split.trailers);
  if (whole.done) {
    FUZZ_CHECK(whole.consumed == split.consumed);
    // Re-encode and decode again.
    std::string encoded;
    appendChunk(encoded, whole.body);
    std::vector<HeaderField> trailers;
    for (auto& [name, value] : whole.trailers) trailers.push_back({name, value});
    appendLastChunk(encoded, trailers);
    ChunkedDecoder d;
    std::string body;
    ChunkedDecoder::Step s = d.decode(encoded, [&](std::string_view x) { body += x; });
    FUZZ_CHECK(s.done && s.consumed == encoded.size());
    FUZZ_CHECK(body == whole.body);
    FUZZ_CHECK(d.trailers().size() == whole.trailers.size());
  }
}

void checkRequestRoundTrip(const RequestHead& h) {
  HeadRewrite keep_all;
  keep_all.drop.clear();
  keep_all.drop_connection_nominated = false;
  keep_all.normalize_content_length = false;
  std::string out;
  appendRequestHead(out, h, keep_all);
  ParseLimits big;
  big.max_head_bytes = 1 << 20;
  big.max_headers = 1000;
  RequestParser again(big);
  ParseResult r = again.parse(out);
  FUZZ_CHECK(r.done() && r.consumed == out.size());
  FUZZ_CHECK(sameFields(h, again.head()));
  FUZZ_CHECK(again.head().method == h.method && again.head().target == h.target);
  FUZZ_CHECK(again.head().path == h.path && again.head().query == h.query);

  // The forwarding rewrite must also produce a parseable head with the same framing.
  HeadRewrite fwd;
  fwd.origin_form = true;
  fwd.version = Version::kHttp11;
  HeaderField host{"Host", "fuzz.example"};
  if (!h.has_host) fwd.extra = std::span<const HeaderField>(&host, 1);
  out.clear();
  appendRequestHead(out, h, fwd);
  r = again.parse(out);
  FUZZ_CHECK(r.done() && r.consumed == out.size());
  if (h.body_kind != BodyKind::kChunked) {  // Transfer-Encoding is hop-by-hop and was dropped
    FUZZ_CHECK(again.head().body_kind == h.body_kind);
    FUZZ_CHECK(again.head().content_length == h.content_length);
  }
}

void fuzzRequests(std::string_view in, uint32_t seed) {
  std::string_view rest = in;
  for (int messages = 0; messages < 16 && !rest.empty(); ++messages) {
    RequestParser one(fuzzLimits());
    ParseResult r = one.parse(rest);

    RequestParser inc(fuzzLimits());
    auto parse = [&inc](std::string_view b) { return inc.parse(b); };
    ParseResult early = parseIncrementally(rest, seed + messages, parse);
    if (!early.needMore()) {
      FUZZ_CHECK(sameResult(early, r));
    } else {
      std::string moved(rest);
      ParseResult last = inc.parse(moved);
      FUZZ_CHECK(sameResult(last, r));
      if (last.done()) FUZZ_CHECK(sameFields(inc.head(), one.head()));
    }
    if (!r.done()) return;
    FUZZ_CHECK(r.consumed <= rest.size() && r.consumed >= one.head().head_bytes);
    FUZZ_CHECK(one.head().headers.size() <= fuzzLimits().max_headers);
    for (const HeaderField& f : one.head().headers) {
      FUZZ_CHECK(one.head().find(f.name) != nullptr);
      if (one.head().isConnectionNominated(f)) FUZZ_CHECK(one.head().isHopByHop(f));
    }
    checkRequestRoundTrip(one.head());
    rest.remove_prefix(r.consumed);

    const RequestHead& h = one.head();
    if (h.body_kind == BodyKind::kContentLength) {
      if (h.content_length >= rest.size()) return;
      rest.remove_prefix(h.content_length);
    } else if (h.body_kind == BodyKind::kChunked) {
      ChunkedDecoder d;
      ChunkedDecoder::Step s = d.decode(rest, [](std::string_view) {});
      if (!s.done) return;
      rest.remove_prefix(s.consumed);
    }
  }
}

void fuzzResponses(std::string_view in, uint32_t seed) {
  for (Method m : {Method::kGet, Method::kHead, Method::kConnect}) {
    std::string_view rest = in;
    for (int messages = 0; messages < 8 && !rest.empty(); ++messages) {
      ResponseParser one(fuzzLimits());
      ParseResult r = one.parse(rest, m);
      ResponseParser inc(fuzzLimits());
      auto parse = [&inc, m](std::string_view b) { return inc.parse(b, m); };
      ParseResult early = parseIncrementally(rest, seed ^ messages, parse);
      if (!early.needMore()) {
        FUZZ_CHECK(sameResult(early, r));
      } else {
        std::string moved(rest);
        FUZZ_CHECK(sameResult(inc.parse(moved, m), r));
      }
      if (!r.done()) break;
      const ResponseHead& h = one.head();
      FUZZ_CHECK(h.status >= 100 && h.status <= 599);
      FUZZ_CHECK(!(m == Method::kHead && h.body_kind != BodyKind::kNone));

      // Round trip through the serializer.
      HeadRewrite keep_all;
      keep_all.drop.clear();
      keep_all.drop_connection_nominated = false;
      keep_all.normalize_content_length = false;
      std::string out;
      appendResponseHead(out, h, keep_all);
      ParseLimits big;
      big.max_head_bytes = 1 << 20;
      big.max_headers = 1000;
      ResponseParser again(big);
      ParseResult r2 = again.parse(out, m);
      FUZZ_CHECK(r2.done() && r2.consumed == out.size());
      FUZZ_CHECK(sameFields(h, again.head()) && again.head().status == h.status);
      FUZZ_CHECK(again.head().reason == h.reason);

      rest.remove_prefix(r.consumed);
      if (h.body_kind == BodyKind::kContentLength) {
        if (h.content_length >= rest.size()) break;
        rest.remove_prefix(h.content_length);
      } else if (h.body_kind == BodyKind::kChunked) {
        ChunkedDecoder d;
        ChunkedDecoder::Step s = d.decode(rest, [](std::string_view) {});
        if (!s.done) break;
        rest.remove_prefix(s.consumed);
      } else if (h.body_kind == BodyKind::kUntilClose || h.tunnel) {
        break;
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  uint32_t seed = static_cast<uint32_t>(size) * 2654435761u;
  for (size_t i = 0; i < size && i < 8; ++i) seed = seed * 31 + data[i];
  fuzzRequests(in, seed);
  fuzzResponses(in, seed);
  fuzzChunked(in, seed);
  return 0;
}
