// Fuzz target for the HTTP/2 frame path. The input is what a peer sends after the connection
// preface; it is fed, in pieces whose sizes come from the input's first byte, to
//  - a server-mode codec (after the client preface) whose caller answers every request with
//    headers, a body and trailers, and consumes all data;
//  - a client-mode codec with one POST open on stream 1 (body still streaming), whose caller
//    consumes data and resets every stream that gets trailers.
// Besides crashes, leaks and sanitizer reports it checks: a feed() that fails has written a
// GOAWAY, and a failed codec stays failed.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "http/http2/codec.h"
#include "http/http2/test_peer.h"

namespace {

using namespace weft;
using namespace weft::http2;

#define FUZZ_CHECK(cond)                                                   \
  do {                                                                     \
    if (!(cond)) {                                                         \
      std::fprintf(stderr, "http2_frame_fuzz: check failed: %s\n", #cond); \
      std::abort();                                                        \
    }                                                                      \
  } while (0)

Options fuzzOptions() {
  Options o;
  o.initial_stream_window = 65535;
  o.initial_connection_window = 65535;
  o.max_header_list_bytes = 4096;
  o.max_header_fields = 32;
  o.output_high_watermark = 64 * 1024;
  o.stream_send_high_watermark = 16 * 1024;
  o.reset_burst = 10;
  o.max_outbound_ack = 50;
  return o;
}

void run(Mode mode, std::string_view input, size_t piece) {
  testing::Peer peer(mode, fuzzOptions());
  FUZZ_CHECK(peer.codec != nullptr);
  Codec& codec = *peer.codec;
  peer.rec.on_headers = [&](int32_t id, const HeaderBlock& b) {
    if (mode == Mode::kServer && b.kind == HeadersKind::kRequest) {
      http::HeaderField f[] = {{"content-type", "text/plain"}};
      (void)codec.submitResponse(id, 200, f, false);
      (void)codec.sendData(id, std::string(3000, 'r'), false);
      http::HeaderField t[] = {{"grpc-status", "0"}};
      (void)codec.submitTrailers(id, t);
    } else if (mode == Mode::kClient && b.kind == HeadersKind::kTrailers) {
      (void)codec.resetStream(id, kCancel);
    }
  };
  if (mode == Mode::kServer) {
    FUZZ_CHECK(codec.feed(kClientPreface));
  } else {
    RequestHeaders r;
    r.method = "POST";
    r.scheme = "https";
    r.authority = "fuzz";
    r.path = "/";
    auto id = codec.submitRequest(r, false);
    FUZZ_CHECK(id && *id == 1);
    (void)codec.sendData(*id, std::string(100'000, 'q'), false);
  }
  bool failed = false;
  while (!input.empty()) {
    size_t n = std::min(piece, input.size());
    Status s = codec.feed(input.substr(0, n));
    input.remove_prefix(n);
    if (!s) {
      FUZZ_CHECK(testing::lastGoawayCode(peer.out.view()) >= 0);
      failed = true;
      break;
    }
    peer.out.clear();  // the socket took everything
    codec.flush();
  }
  if (failed) {
    FUZZ_CHECK(!codec.feed("x"));
    FUZZ_CHECK(codec.done());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  size_t piece = in.empty() ? 1 : static_cast<uint8_t>(in[0]) % 64 + 1;
  run(Mode::kServer, in, in.size() + 1);  // all at once
  run(Mode::kServer, in, piece);
  run(Mode::kClient, in, in.size() + 1);
  run(Mode::kClient, in, piece);
  return 0;
}
