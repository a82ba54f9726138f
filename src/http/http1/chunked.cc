#include "http/http1/chunked.h"

#include <cstring>

#include "http/http1/char_class.h"

namespace weft::http1 {

using namespace detail;

namespace {
constexpr uint64_t kMaxChunkSize = static_cast<uint64_t>(INT64_MAX);  // 2^63 - 1
}  // namespace

void ChunkedDecoder::reset() {
  state_ = State::kSize;
  size_ = 0;
  digits_ = 0;
  line_bytes_ = 0;
  remaining_ = 0;
  body_bytes_ = 0;
  trailer_lines_ = 0;
  trailer_.clear();
  trailers_.clear();
  error_ = {};
}

ChunkedDecoder::Step ChunkedDecoder::fail(Step s, std::string_view reason) {
  state_ = State::kError;
  error_ = ParseError{400, reason};
  s.error = error_;
  s.data = {};
  return s;
}

ChunkedDecoder::Step ChunkedDecoder::next(std::string_view in) {
  Step s;
  if (state_ == State::kError) {
    s.error = error_;
    return s;
  }
  if (state_ == State::kDone) {
    s.done = true;
    return s;
  }
  const char* const begin = in.data();
  const char* p = begin;
  const char* const end = begin + in.size();
  auto consumedTo = [&](const char* q) {
    s.consumed = static_cast<size_t>(q - begin);
    return s;
  };

  while (p < end) {
    switch (state_) {
      case State::kSize: {
        while (p < end && is(*p, kHexDigit)) {
          if (size_ > (kMaxChunkSize >> 4)) return fail(consumedTo(p), "chunk size too large");
          size_ = (size_ << 4) | hexValue(*p);
          ++digits_;
          ++p;
          if (++line_bytes_ > limits_.max_chunk_line_bytes)
            return fail(consumedTo(p), "chunk line too long");
        }
        if (p == end) break;
        char c = *p;
        if (digits_ == 0) return fail(consumedTo(p), "invalid chunk size");
        if (c == '\r') {
          state_ = State::kSizeLf;
        } else if (c == ';') {
          state_ = State::kExtension;
        } else if (isWs(c)) {
          state_ = State::kSizeWs;
        } else if (c == '\n') {
          return fail(consumedTo(p), "bare LF in chunk line");
        } else {
          return fail(consumedTo(p), "invalid chunk size");
        }
        ++p;
        if (++line_bytes_ > limits_.max_chunk_line_bytes)
          return fail(consumedTo(p), "chunk line too long");
        break;
      }
      case State::kSizeWs: {
        // chunk-ext = *( BWS ";" ... ): whitespace after the size must lead to an extension.
        char c = *p;
        if (c == ';') {
          state_ = State::kExtension;
        } else if (!isWs(c)) {
          return fail(consumedTo(p), "whitespace after chunk size");
        }
        ++p;
        if (++line_bytes_ > limits_.max_chunk_line_bytes)
          return fail(consumedTo(p), "chunk line too long");
        break;
      }
      case State::kExtension: {
        while (p < end && *p != '\r') {
          if (!is(*p, kFieldVchar)) {
            return fail(consumedTo(p), *p == '\n' ? "bare LF in chunk line"
                                                  : "invalid character in chunk extension");
          }
          ++p;
          if (++line_bytes_ > limits_.max_chunk_line_bytes)
            return fail(consumedTo(p), "chunk line too long");
        }
        if (p == end) break;
        state_ = State::kSizeLf;
        ++p;
        break;
      }
      case State::kSizeLf: {
        if (*p != '\n') return fail(consumedTo(p), "CR without LF in chunk line");
        ++p;
        if (size_ == 0) {
          state_ = State::kTrailerStart;
        } else {
          remaining_ = size_;
          state_ = State::kData;
        }
        size_ = 0;
        digits_ = 0;
        line_bytes_ = 0;
        break;
      }
      case State::kData: {
        size_t avail = static_cast<size_t>(end - p);
        size_t n = remaining_ < avail ? static_cast<size_t>(remaining_) : avail;
        s.data = std::string_view(p, n);
        p += n;
        remaining_ -= n;
        body_bytes_ += n;
        if (remaining_ == 0) state_ = State::kDataCr;
        return consumedTo(p);
      }
      case State::kDataCr:
        if (*p != '\r') return fail(consumedTo(p), "chunk data not followed by CRLF");
        state_ = State::kDataLf;
        ++p;
        break;
      case State::kDataLf:
        if (*p != '\n') return fail(consumedTo(p), "chunk data not followed by CRLF");
        state_ = State::kSize;
        ++p;
        break;
      case State::kTrailerStart: {
        char c = *p;
        if (c == '\r') {
          state_ = State::kFinalLf;
          ++p;
        } else if (c == '\n') {
          return fail(consumedTo(p), "bare LF in trailer section");
        } else if (isWs(c)) {
          return fail(consumedTo(p), "obsolete line folding in trailer section");
        } else {
          if (++trailer_lines_ > limits_.max_trailer_fields)
            return fail(consumedTo(p), "too many trailer fields");
          state_ = State::kTrailerLine;
        }
        break;
      }
      case State::kTrailerLine: {
        const char* lf =
            static_cast<const char*>(std::memchr(p, '\n', static_cast<size_t>(end - p)));
        const char* stop = lf != nullptr ? lf : end;
        size_t n = static_cast<size_t>(stop - p);
        if (trailer_.size() + n + 1 > limits_.max_trailer_bytes)
          return fail(consumedTo(p), "trailer section too large");
        trailer_.append(p, n);
        p = stop;
        if (lf == nullptr) break;
        if (trailer_.empty() || trailer_.back() != '\r')
          return fail(consumedTo(p), "bare LF in trailer section");
        trailer_.push_back('\n');
        ++p;
        state_ = State::kTrailerStart;
        break;
      }
      case State::kFinalLf: {
        if (*p != '\n') return fail(consumedTo(p), "CR without LF in trailer section");
        ++p;
        if (!parseTrailers()) return fail(consumedTo(p), error_.reason);
        state_ = State::kDone;
        s.done = true;
        return consumedTo(p);
      }
      case State::kDone:
      case State::kError:
        return consumedTo(p);  // unreachable: handled before the loop
    }
  }
  return consumedTo(p);
}

// Every LF in trailer_ is preceded by CR (checked while copying), so lines split on LF.
bool ChunkedDecoder::parseTrailers() {
  trailers_.clear();
  const char* p = trailer_.data();
  const char* end = p + trailer_.size();
  while (p < end) {
    const char* lf = static_cast<const char*>(std::memchr(p, '\n', static_cast<size_t>(end - p)));
    FieldLine line = parseFieldLine(p, lf - 1);
    if (!line.error.empty()) {
      error_.reason = line.error;
      return false;
    }
    trailers_.push_back(line.field);
    p = lf + 1;
  }
  return true;
}

// ---- encoding ----

ChunkHeader chunkHeader(uint64_t size) {
  static constexpr char kHex[] = "0123456789abcdef";
  ChunkHeader h;
  char digits[16];
  int n = 0;
  do {
    digits[n++] = kHex[size & 0xf];
    size >>= 4;
  } while (size != 0);
  for (int i = 0; i < n; ++i) h.bytes[i] = digits[n - 1 - i];
  h.bytes[n] = '\r';
  h.bytes[n + 1] = '\n';
  h.size = static_cast<uint8_t>(n + 2);
  return h;
}

void appendChunk(std::string& out, std::string_view data) {
  if (data.empty()) return;
  ChunkHeader h = chunkHeader(data.size());
  out.reserve(out.size() + h.size + data.size() + 2);
  out.append(h.view());
  out.append(data);
  out.append(kChunkDataEnd);
}

void appendLastChunk(std::string& out, std::span<const http::HeaderField> trailers) {
  if (trailers.empty()) {
    out.append(kLastChunk);
    return;
  }
  size_t n = 5;
  for (const http::HeaderField& f : trailers) n += f.name.size() + f.value.size() + 4;
  out.reserve(out.size() + n);
  out.append("0\r\n");
  for (const http::HeaderField& f : trailers) {
    out.append(f.name);
    out.append(": ");
    out.append(f.value);
    out.append("\r\n");
  }
  out.append("\r\n");
}

}  // namespace weft::http1
