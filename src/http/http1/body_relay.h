#pragma once
// BodyRelay: moves one HTTP/1 message body from the bytes received on one connection to the
// output of another, re-framing it for the receiver. The same machine serves requests (client to
// upstream) and responses (upstream to client).
//
//   input framing       output
//   none / length 0     nothing
//   content-length N    the same N bytes, copied through
//   chunked             decoded (the decoder rejects bad framing) and re-encoded as chunks
//                       when chunk_output, else the bare data (an HTTP/1.0 receiver)
//   until close         copied, as chunks when chunk_output; endAtClose() ends it
//
// Zero copy on input: data is appended to the output straight from the input buffer. Not
// thread-safe; one relay per direction of one exchange.

#include <cstdint>

#include "common/buffer.h"
#include "http/http1/chunked.h"
#include "http/http1/parser.h"

namespace weft::http1 {

class BodyRelay {
 public:
  enum class State : uint8_t { kNone, kLength, kChunked, kUntilClose, kDone };

  // Starts a body framed as the parsed head says. `chunk_output` applies to chunked and
  // close-delimited inputs (a length-delimited body keeps its length).
  void start(BodyKind kind, uint64_t content_length, bool chunk_output);
  // Back to "no body" (cheap: the chunk decoder is reset by the next chunked start()).
  void reset();

  struct Step {
    ParseError error;  // status != 0: the input's chunked framing is broken (error.reason says how)
    bool failed() const { return error.status != 0; }
  };
  // Relays what `in` holds of the body (consuming it) into `out`. Bytes after the body's end stay
  // in `in` (the next message).
  Step relay(Buffer& in, Buffer& out);
  // The sender closed cleanly: a close-delimited body ends here (writes the last chunk if any).
  void endAtClose(Buffer& out);

  State state() const { return state_; }
  // There was never a body, or all of it has been relayed.
  bool finished() const { return state_ == State::kNone || state_ == State::kDone; }
  bool chunkedOutput() const { return chunk_output_; }
  // kLength: bytes still to come (the whole length before the first relay()).
  uint64_t remaining() const { return remaining_; }
  // Body bytes relayed so far (payload only, no chunk framing).
  uint64_t bytes() const { return bytes_; }

 private:
  void appendChunk(Buffer& out, std::string_view data);

  State state_ = State::kNone;
  bool chunk_output_ = false;
  uint64_t remaining_ = 0;
  uint64_t bytes_ = 0;
  ChunkedDecoder chunks_;
};

}  // namespace weft::http1
