#pragma once
// Chunked transfer coding (RFC 9112 §7.1): an incremental zero-copy decoder and encoder helpers.

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "http/headers.h"
#include "http/http1/parser.h"

namespace weft::http1 {

struct ChunkedLimits {
  // One chunk line: chunk-size, whitespace and extensions, without the CRLF.
  size_t max_chunk_line_bytes = 4096;
  // The trailer section without its final CRLF (field lines are copied; see trailerSection()).
  size_t max_trailer_bytes = 16 * 1024;
  size_t max_trailer_fields = 64;
};

// Decodes one chunked body fed as arbitrary slices of the byte stream (each byte exactly once, in
// order). Body data is returned as views into the slice passed in (zero copy); only trailer field
// lines, which are rare and bounded, are copied. Chunk extensions are validated (no controls
// other than HTAB, bounded length) and skipped.
//
// Rejected (error.status 400; a proxy decoding a response maps it to 502): a chunk size that is
// empty, not hex, followed by anything but BWS ";" extensions or CRLF, or >= 2^63; bare LF or
// CR without LF anywhere; chunk data not followed by CRLF; obs-fold or an invalid field line in
// the trailer section; exceeded limits. Errors are sticky.
//
// One instance per message, used from one thread; reset() for the next message.
class ChunkedDecoder {
 public:
  explicit ChunkedDecoder(ChunkedLimits limits = {}) : limits_(limits) {}

  struct Step {
    // Bytes of the input used by this call. Bytes after `consumed` were not looked at.
    size_t consumed = 0;
    // Body data: a view of the input ending at input[consumed]; may be empty.
    std::string_view data;
    // The last chunk, trailer section and final CRLF have been consumed; input after
    // `consumed` belongs to the next message.
    bool done = false;
    ParseError error;  // status != 0 on failure
    bool failed() const { return error.status != 0; }
  };

  // Decodes from the start of `in` until it has a data span to hand out, the message ends, the
  // input is exhausted or an error occurs. Call again with the unconsumed rest of the input.
  Step next(std::string_view in);

  // Runs next() over all of `in`, calling on_data(std::string_view) for every data span. The
  // returned Step has the total `consumed` and no data.
  template <class OnData>
  Step decode(std::string_view in, OnData&& on_data) {
    Step total;
    while (true) {
      Step s = next(in.substr(total.consumed));
      total.consumed += s.consumed;
      if (!s.data.empty()) on_data(s.data);
      if (s.done || s.failed()) {
        total.done = s.done;
        total.error = s.error;
        return total;
      }
      if (total.consumed == in.size()) return total;
    }
  }

  bool done() const { return state_ == State::kDone; }
  bool failed() const { return state_ == State::kError; }
  uint64_t bodyBytes() const { return body_bytes_; }
  // The trailer field lines as received, each ending in CRLF, without the final empty line.
  // Complete once done().
  std::string_view trailerSection() const { return trailer_; }
  // The parsed trailer fields (views into trailerSection()); set once done(), valid until
  // reset() or destruction.
  const std::vector<http::HeaderField>& trailers() const { return trailers_; }

  void reset();

 private:
  enum class State : uint8_t {
    kSize,       // chunk-size hex digits
    kSizeWs,     // BWS after the size: only ";" may follow
    kExtension,  // chunk-ext, skipped up to CR
    kSizeLf,     // LF ending the chunk line
    kData,       // `remaining_` data bytes
    kDataCr,     // CRLF after chunk data
    kDataLf,
    kTrailerStart,  // start of a trailer line, or the final CRLF
    kTrailerLine,   // inside a trailer field line (copied)
    kFinalLf,       // LF of the final CRLF
    kDone,
    kError,
  };

  Step fail(Step s, std::string_view reason);
  bool parseTrailers();

  ChunkedLimits limits_;
  State state_ = State::kSize;
  uint64_t size_ = 0;       // chunk size being parsed
  size_t digits_ = 0;       // hex digits of the current chunk size
  size_t line_bytes_ = 0;   // bytes of the current chunk line
  uint64_t remaining_ = 0;  // data bytes left in the current chunk
  uint64_t body_bytes_ = 0;
  size_t trailer_lines_ = 0;
  std::string trailer_;
  std::vector<http::HeaderField> trailers_;
  ParseError error_;
};

// ---- encoding ----

// "<hex size>\r\n", the line that starts a chunk. For writev-style output without copying data.
struct ChunkHeader {
  std::array<char, 18> bytes{};  // 16 hex digits + CRLF
  uint8_t size = 0;
  std::string_view view() const { return std::string_view(bytes.data(), size); }
};
ChunkHeader chunkHeader(uint64_t size);

inline constexpr std::string_view kChunkDataEnd = "\r\n";    // follows each chunk's data
inline constexpr std::string_view kLastChunk = "0\r\n\r\n";  // last-chunk without trailers

// Appends one chunk (size line, data, CRLF). Empty data appends nothing: a zero-size chunk would
// end the body.
void appendChunk(std::string& out, std::string_view data);
// Appends the last chunk, the trailer fields (name ": " value CRLF each) and the final CRLF.
void appendLastChunk(std::string& out, std::span<const http::HeaderField> trailers = {});

}  // namespace weft::http1
