#pragma once
// Test helpers for the HTTP/2 codec (used by *_test.cc and the fuzz target only): a recording
// Callbacks implementation, a codec with its output buffer, an in-memory pump between two codecs,
// and a raw frame writer/reader for hand-built (hostile) peers.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/buffer.h"
#include "common/time.h"
#include "http/http2/codec.h"

namespace weft::http2::testing {

// What one stream saw, copied out of the callbacks.
struct StreamLog {
  bool begun = false;
  std::vector<HeadersKind> kinds;
  std::string method, scheme, authority, path;
  std::vector<int> statuses;
  std::vector<std::pair<std::string, std::string>> fields;    // of the request/final response
  std::vector<std::pair<std::string, std::string>> trailers;  // names and values
  std::string body;
  size_t data_events = 0;
  bool ended = false;
  bool closed = false;
  CloseCause cause = CloseCause::kComplete;
  uint32_t error_code = 0;

  std::string field(std::string_view name) const {
    for (auto& [n, v] : fields)
      if (n == name) return v;
    return "<absent>";
  }
};

class Recorder : public Callbacks {
 public:
  // false: onData does not consume; the test calls consumeAll() (a slow reader).
  bool auto_consume = true;
  Codec* codec = nullptr;
  std::map<int32_t, StreamLog> streams;
  std::vector<int32_t> writable;
  int goaways = 0;
  int32_t goaway_last_stream = -1;
  uint32_t goaway_code = 0;
  size_t unconsumed = 0;  // bytes delivered and not yet consumed (auto_consume = false)
  std::map<int32_t, size_t> unconsumed_by_stream;
  // Optional hooks run after recording.
  std::function<void(int32_t, const HeaderBlock&)> on_headers;
  std::function<void(int32_t)> on_end;

  void onStreamBegin(int32_t id) override { streams[id].begun = true; }
  void onHeaders(int32_t id, const HeaderBlock& b) override {
    StreamLog& s = streams[id];
    s.kinds.push_back(b.kind);
    if (b.kind == HeadersKind::kRequest) {
      s.method = b.method;
      s.scheme = b.scheme;
      s.authority = b.authority;
      s.path = b.path;
    }
    if (b.status != 0) s.statuses.push_back(b.status);
    auto& dest = b.kind == HeadersKind::kTrailers ? s.trailers : s.fields;
    for (const http::HeaderField& f : b.fields) dest.emplace_back(f.name, f.value);
    if (on_headers) on_headers(id, b);
  }
  void onData(int32_t id, std::string_view data) override {
    StreamLog& s = streams[id];
    s.body.append(data);
    ++s.data_events;
    if (auto_consume) {
      codec->consume(id, data.size());
    } else {
      unconsumed += data.size();
      unconsumed_by_stream[id] += data.size();
    }
  }
  void onStreamEnd(int32_t id) override {
    streams[id].ended = true;
    if (on_end) on_end(id);
  }
  void onStreamClose(int32_t id, CloseCause cause, uint32_t code) override {
    StreamLog& s = streams[id];
    s.closed = true;
    s.cause = cause;
    s.error_code = code;
  }
  void onGoaway(int32_t last, uint32_t code) override {
    ++goaways;
    goaway_last_stream = last;
    goaway_code = code;
  }
  void onStreamWritable(int32_t id) override { writable.push_back(id); }

  void consumeAll() {
    auto pending = std::move(unconsumed_by_stream);
    unconsumed_by_stream.clear();
    unconsumed = 0;
    for (auto& [id, n] : pending) codec->consume(id, n);
  }
};

struct Peer {
  explicit Peer(Mode mode, Options options = {}, Stats stats = {}) {
    auto c = Codec::create(mode, options, rec, out, time, std::move(stats));
    if (c) codec = std::move(*c);
    rec.codec = codec.get();
  }
  SimTimeSource time;
  Buffer out;
  Recorder rec;
  std::unique_ptr<Codec> codec;
  std::vector<Error> errors;  // from feed()
};

// Moves bytes both ways until neither side has output (or `max_rounds`). Feed errors are recorded
// in the receiving Peer. Returns the number of rounds that moved bytes.
inline int pump(Peer& a, Peer& b, int max_rounds = 10000) {
  int rounds = 0;
  for (; rounds < max_rounds; ++rounds) {
    bool moved = false;
    for (auto [from, to] : {std::pair{&a, &b}, std::pair{&b, &a}}) {
      if (from->out.empty()) continue;
      std::string bytes(from->out.view());
      from->out.clear();
      from->codec->flush();  // the "socket" drained
      Status s = to->codec->feed(bytes);
      if (!s) to->errors.push_back(s.error());
      moved = true;
    }
    if (!moved) break;
  }
  return rounds;
}

// ---- Raw frames ----

enum FrameType : uint8_t {
  kData = 0,
  kHeaders = 1,
  kPriority = 2,
  kRstStream = 3,
  kSettings = 4,
  kPushPromise = 5,
  kPing = 6,
  kGoaway = 7,
  kWindowUpdate = 8,
  kContinuation = 9,
};
enum FrameFlags : uint8_t {
  kEndStream = 0x1,
  kAck = 0x1,
  kEndHeaders = 0x4,
  kPadded = 0x8,
};

inline std::string frame(uint8_t type, uint8_t flags, uint32_t stream, std::string_view payload) {
  std::string f;
  size_t n = payload.size();
  f.push_back(static_cast<char>(n >> 16));
  f.push_back(static_cast<char>(n >> 8));
  f.push_back(static_cast<char>(n));
  f.push_back(static_cast<char>(type));
  f.push_back(static_cast<char>(flags));
  f.push_back(static_cast<char>((stream >> 24) & 0x7f));
  f.push_back(static_cast<char>(stream >> 16));
  f.push_back(static_cast<char>(stream >> 8));
  f.push_back(static_cast<char>(stream));
  f.append(payload);
  return f;
}

inline std::string be32(uint32_t v) {
  std::string s(4, '\0');
  s[0] = static_cast<char>(v >> 24);
  s[1] = static_cast<char>(v >> 16);
  s[2] = static_cast<char>(v >> 8);
  s[3] = static_cast<char>(v);
  return s;
}

// HPACK for a minimal GET: ":method GET" (static 2), ":scheme http" (6), ":path /" (4), and
// ":authority <host>" as a literal without indexing (name index 1).
inline std::string hpackGet(std::string_view authority = "example.com") {
  std::string b = "\x82\x86\x84";
  b.push_back('\x01');
  b.push_back(static_cast<char>(authority.size()));
  b.append(authority);
  return b;
}
// A literal header field without indexing with a new name (RFC 7541 §6.2.2); short strings only.
inline std::string hpackLiteral(std::string_view name, std::string_view value) {
  std::string b;
  b.push_back('\x00');
  b.push_back(static_cast<char>(name.size()));
  b.append(name);
  b.push_back(static_cast<char>(value.size()));
  b.append(value);
  return b;
}

inline std::string clientStart() {
  return std::string(kClientPreface) + frame(kSettings, 0, 0, "");
}

struct RawFrame {
  uint8_t type;
  uint8_t flags;
  uint32_t stream;
  std::string payload;
};

// Splits `bytes` into frames (skipping a leading client preface). Stops at a truncated frame.
inline std::vector<RawFrame> parseFrames(std::string_view bytes) {
  if (bytes.substr(0, kClientPreface.size()) == kClientPreface)
    bytes.remove_prefix(kClientPreface.size());
  std::vector<RawFrame> frames;
  auto u8 = [](char c) { return static_cast<uint32_t>(static_cast<uint8_t>(c)); };
  while (bytes.size() >= 9) {
    uint32_t len = u8(bytes[0]) << 16 | u8(bytes[1]) << 8 | u8(bytes[2]);
    if (bytes.size() < 9 + len) break;
    RawFrame f;
    f.type = static_cast<uint8_t>(bytes[3]);
    f.flags = static_cast<uint8_t>(bytes[4]);
    f.stream = (u8(bytes[5]) & 0x7f) << 24 | u8(bytes[6]) << 16 | u8(bytes[7]) << 8 | u8(bytes[8]);
    f.payload = std::string(bytes.substr(9, len));
    frames.push_back(std::move(f));
    bytes.remove_prefix(9 + len);
  }
  return frames;
}

// The error code of the last GOAWAY in `bytes`, or -1 if there is none.
inline int64_t lastGoawayCode(std::string_view bytes) {
  int64_t code = -1;
  for (const RawFrame& f : parseFrames(bytes)) {
    if (f.type != kGoaway || f.payload.size() < 8) continue;
    auto u8 = [&](size_t i) { return static_cast<uint32_t>(static_cast<uint8_t>(f.payload[i])); };
    code = u8(4) << 24 | u8(5) << 16 | u8(6) << 8 | u8(7);
  }
  return code;
}

}  // namespace weft::http2::testing
