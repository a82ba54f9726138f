#include "http/http1/body_relay.h"

#include <algorithm>
#include <charconv>

namespace weft::http1 {

void BodyRelay::start(BodyKind kind, uint64_t content_length, bool chunk_output) {
  state_ = State::kNone;
  chunk_output_ = false;
  remaining_ = bytes_ = 0;
  switch (kind) {
    case BodyKind::kContentLength:
      state_ = content_length ? State::kLength : State::kNone;
      remaining_ = content_length;
      break;
    case BodyKind::kChunked:
      state_ = State::kChunked;
      chunk_output_ = chunk_output;
      chunks_.reset();  // only here: most messages never use the decoder
      break;
    case BodyKind::kUntilClose:
      state_ = State::kUntilClose;
      chunk_output_ = chunk_output;
      break;
    case BodyKind::kNone:
      state_ = State::kNone;
      break;
  }
}

void BodyRelay::reset() {
  state_ = State::kNone;
  chunk_output_ = false;
  remaining_ = bytes_ = 0;
}

void BodyRelay::appendChunk(Buffer& out, std::string_view data) {
  char line[20];
  auto r = std::to_chars(line, line + 16, data.size(), 16);
  r.ptr[0] = '\r';
  r.ptr[1] = '\n';
  out.append(line, static_cast<size_t>(r.ptr + 2 - line));
  out.append(data);
  out.append("\r\n", 2);
}

BodyRelay::Step BodyRelay::relay(Buffer& in, Buffer& out) {
  Step step;
  switch (state_) {
    case State::kLength: {
      size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, in.size()));
      out.append(in.data(), n);
      in.consume(n);
      remaining_ -= n;
      bytes_ += n;
      if (remaining_ == 0) state_ = State::kDone;
      break;
    }
    case State::kChunked: {
      auto s = chunks_.decode(in.view(), [&](std::string_view data) {
        bytes_ += data.size();
        if (chunk_output_) {
          appendChunk(out, data);
        } else {
          out.append(data);
        }
      });
      in.consume(s.consumed);
      if (s.failed()) {
        step.error = s.error;
        break;
      }
      if (s.done) {
        if (chunk_output_) {
          out.append("0\r\n", 3);
          out.append(chunks_.trailerSection());
          out.append("\r\n", 2);
        }
        state_ = State::kDone;
      }
      break;
    }
    case State::kUntilClose:
      if (!in.empty()) {
        bytes_ += in.size();
        if (chunk_output_) {
          appendChunk(out, in.view());
        } else {
          out.append(in.view());
        }
        in.clear();
      }
      break;
    case State::kNone:
    case State::kDone:
      break;
  }
  return step;
}

void BodyRelay::endAtClose(Buffer& out) {
  if (state_ != State::kUntilClose) return;
  if (chunk_output_) out.append("0\r\n\r\n", 5);
  state_ = State::kDone;
}

}  // namespace weft::http1
