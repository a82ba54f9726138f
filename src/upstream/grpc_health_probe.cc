#include "upstream/grpc_health_probe.h"

#include <unistd.h>

#include <array>

#include "http/http2/codec.h"
#include "net/socket.h"

namespace weft::upstream {

namespace {
uint32_t prefixLength(std::string_view m) {
  return (uint32_t(uint8_t(m[1])) << 24) | (uint32_t(uint8_t(m[2])) << 16) |
         (uint32_t(uint8_t(m[3])) << 8) | uint32_t(uint8_t(m[4]));
}
}  // namespace

std::string grpcFrame(std::string_view message) {
  std::string msg(5, '\0');  // not compressed, 4-byte big-endian length
  auto len = static_cast<uint32_t>(message.size());
  msg[1] = static_cast<char>(len >> 24);
  msg[2] = static_cast<char>(len >> 16);
  msg[3] = static_cast<char>(len >> 8);
  msg[4] = static_cast<char>(len);
  msg.append(message);
  return msg;
}

std::optional<std::string_view> grpcUnframe(std::string_view m) {
  if (m.size() < 5 || m[0] != 0) return std::nullopt;
  if (m.size() != 5 + size_t(prefixLength(m))) return std::nullopt;
  return m.substr(5);
}

Result<std::optional<std::string>> GrpcMessageReader::next() {
  if (buf_.size() < 5) return std::optional<std::string>();
  if (buf_[0] != 0) {
    return makeError(buf_[0] == 1 ? "compressed gRPC message (compression was not negotiated)"
                                  : "malformed gRPC message prefix");
  }
  size_t len = prefixLength(buf_);
  if (len > max_) {
    return makeError("gRPC message of " + std::to_string(len) + " bytes is over the limit of " +
                     std::to_string(max_));
  }
  if (buf_.size() < 5 + len) return std::optional<std::string>();
  std::string msg = buf_.substr(5, len);
  buf_.erase(0, 5 + len);
  return std::optional<std::string>(std::move(msg));
}

std::string grpcHealthRequest(std::string_view service) {
  // HealthCheckRequest { string service = 1; }: tag 0x0a, varint length, bytes.
  std::string pb;
  if (!service.empty()) {
    pb.push_back('\x0a');
    for (size_t n = service.size();; n >>= 7) {
      unsigned char b = n & 0x7f;
      if (n >> 7) b |= 0x80;
      pb.push_back(static_cast<char>(b));
      if (!(n >> 7)) break;
    }
    pb.append(service);
  }
  return grpcFrame(pb);
}

int grpcHealthStatus(std::string_view m) {
  std::optional<std::string_view> unframed = grpcUnframe(m);  // compressed: not expected here
  if (!unframed) return -1;
  std::string_view pb = *unframed;
  int status = 0;  // proto3: an absent field is its default, UNKNOWN
  size_t i = 0;
  auto varint = [&](uint64_t& v) {
    v = 0;
    for (int shift = 0; shift < 64 && i < pb.size(); shift += 7) {
      auto b = static_cast<uint8_t>(pb[i++]);
      v |= uint64_t(b & 0x7f) << shift;
      if (!(b & 0x80)) return true;
    }
    return false;
  };
  while (i < pb.size()) {
    uint64_t key = 0, v = 0;
    if (!varint(key)) return -1;
    switch (key & 7) {
      case 0:
        if (!varint(v)) return -1;
        if ((key >> 3) == 1) status = static_cast<int>(v);
        break;
      case 2:  // unknown length-delimited field: skip it
        if (!varint(v) || v > pb.size() - i) return -1;
        i += v;
        break;
      case 5:
        if (pb.size() - i < 4) return -1;
        i += 4;
        break;
      case 1:
        if (pb.size() - i < 8) return -1;
        i += 8;
        break;
      default:
        return -1;
    }
  }
  return status;
}

namespace {

constexpr std::string_view kStatusNames[] = {"UNKNOWN", "SERVING", "NOT_SERVING",
                                             "SERVICE_UNKNOWN"};

class H2Probe final : public HealthProbe, public net::ConnectionCallbacks, public http2::Callbacks {
 public:
  // A gRPC health check (`http` unset) or an HTTP GET over HTTP/2 (`http` set; `grpc` unused).
  // Members used by the initializers (http_) are declared before the ones they initialize.
  H2Probe(net::EventLoop& loop, const TimeSource& time, const Host& host,
          const GrpcProbeConfig& grpc, std::optional<HttpProbeConfig> http,
          TransportFactory transport, ProbeCallback done)
      : loop_(loop),
        time_(time),
        host_(host),
        http_(std::move(http)),
        target_(probePort(grpc) ? withPort(host.address(), probePort(grpc)) : host.address()),
        authority_(!authority(grpc).empty()   ? authority(grpc)
                   : !host.hostname().empty() ? host.hostname()
                                              : host.addressString()),
        scheme_((http_ ? http_->secure : grpc.secure) ? "https" : "http"),
        request_(http_ ? std::string() : grpcHealthRequest(grpc.service)),
        transport_(std::move(transport)),
        done_(std::move(done)),
        deferred_(loop.timers(), [this] { finish(false, deferred_detail_); }) {}

  ~H2Probe() override { dropConnection(); }

  void start() override {
    dropConnection();
    active_ = true;
    message_.clear();
    grpc_status_ = -1;
    http_status_ = 0;
    auto fd = net::connectTcp(target_);
    if (!fd) return failLater("connect failed: " + fd.error().message);
    std::unique_ptr<net::Transport> t =
        transport_ ? transport_(*fd, host_) : net::makePlainTransport(*fd);
    if (!t) {
      ::close(*fd);
      return failLater("cannot create the transport");
    }
    conn_ = std::make_unique<net::Connection>(loop_, *fd, std::move(t), this, true);
  }

  void cancel() override {
    active_ = false;
    deferred_.disarm();
    if (conn_) conn_->close(false);
  }

  // net::ConnectionCallbacks
  void onConnected(net::Connection& c) override {
    auto codec = http2::Codec::create(http2::Mode::kClient, {}, *this, c.output(), time_);
    if (!codec) return finish(false, "http2: " + codec.error().message);
    codec_ = std::move(*codec);
    std::array<http::HeaderField, 3> fields{{
        {"content-type", "application/grpc", http::HeaderToken::kContentType},
        {"te", "trailers", http::HeaderToken::kTe},
        {"user-agent", "weft-health-check", http::HeaderToken::kUserAgent},
    }};
    if (http_) {
      std::array<http::HeaderField, 1> get_fields{
          {{"user-agent", "weft-health-check", http::HeaderToken::kUserAgent}}};
      http2::RequestHeaders req{"GET", scheme_, authority_, http_->path, get_fields};
      auto id = codec_->submitRequest(req, true);
      if (!id) return finish(false, "http2: " + id.error().message);
      c.flush();
      return;
    }
    http2::RequestHeaders req{"POST", scheme_, authority_, "/grpc.health.v1.Health/Check", fields};
    auto id = codec_->submitRequest(req, false);
    if (!id) return finish(false, "http2: " + id.error().message);
    auto sent = codec_->sendData(*id, request_, true);
    if (!sent) return finish(false, "http2: " + sent.error().message);
    c.flush();
  }
  void onData(net::Connection& c) override {
    if (!codec_) {
      c.input().clear();
      return;
    }
    std::string in(c.input().view());
    c.input().clear();
    Status s = codec_->feed(in);
    if (active_ && conn_) conn_->flush();
    if (!s && active_) finish(false, "http2: " + s.error().message);
  }
  void onClose(net::Connection&, net::CloseReason reason, std::string_view detail) override {
    std::string why = reason == net::CloseReason::kConnectFailed     ? "connect failed: "
                      : reason == net::CloseReason::kHandshakeFailed ? "TLS handshake failed: "
                                                                     : "closed before the answer: ";
    finish(false, why + std::string(detail));
  }

  // http2::Callbacks
  void onHeaders(int32_t, const http2::HeaderBlock& b) override {
    if (b.kind == http2::HeadersKind::kResponse) http_status_ = b.status;
    for (const http::HeaderField& f : b.fields) {
      if (f.token == http::HeaderToken::kGrpcStatus) {
        int v = 0;
        for (char ch : f.value)
          v = (ch >= '0' && ch <= '9' && v < 1000) ? v * 10 + (ch - '0') : 1000;
        grpc_status_ = v;
      }
    }
  }
  void onData(int32_t id, std::string_view data) override {
    if (!http_ && message_.size() + data.size() <= kMaxMessage) message_.append(data);
    codec_->consume(id, data.size());
  }
  void onStreamEnd(int32_t) override {}
  void onStreamClose(int32_t, http2::CloseCause cause, uint32_t code) override {
    if (cause != http2::CloseCause::kComplete)
      return finish(false, "stream reset (HTTP/2 error " + std::to_string(code) + ")");
    if (http_) {
      bool ok = http_status_ >= http_->expected_min && http_status_ <= http_->expected_max;
      return finish(ok, "HTTP status " + std::to_string(http_status_));
    }
    if (http_status_ != 200) return finish(false, "HTTP status " + std::to_string(http_status_));
    if (grpc_status_ != 0) return finish(false, "grpc-status " + std::to_string(grpc_status_));
    int st = grpcHealthStatus(message_);
    if (st < 0) return finish(false, "malformed HealthCheckResponse");
    std::string_view name = st < 4 ? kStatusNames[st] : std::string_view("status ?");
    finish(st == 1, name);
  }

 private:
  static constexpr size_t kMaxMessage = 4096;

  uint16_t probePort(const GrpcProbeConfig& grpc) const { return http_ ? http_->port : grpc.port; }
  const std::string& authority(const GrpcProbeConfig& grpc) const {
    return http_ ? http_->authority : grpc.authority;
  }

  void failLater(std::string detail) {
    deferred_detail_ = std::move(detail);
    deferred_.arm(Duration(0));
  }
  void finish(bool healthy, std::string_view detail) {
    if (!active_) return;
    active_ = false;
    if (conn_) conn_->close(false);
    done_(healthy, detail);
  }
  // The codec writes into the connection's output: it goes first. Both may be mid-dispatch (a
  // callback up the stack), so the loop frees them.
  void dropConnection() {
    if (!conn_ && !codec_) return;
    if (conn_) conn_->close(false);
    struct Holder : net::Deferrable {
      std::unique_ptr<http2::Codec> codec;
      std::unique_ptr<net::Connection> conn;
    };
    auto h = std::make_unique<Holder>();
    h->codec = std::move(codec_);
    h->conn = std::move(conn_);
    loop_.deferDelete(std::move(h));
  }

  net::EventLoop& loop_;
  const TimeSource& time_;
  const Host host_;
  const std::optional<HttpProbeConfig> http_;
  const net::Address target_;
  const std::string authority_;
  const std::string_view scheme_;
  const std::string request_;
  TransportFactory transport_;
  ProbeCallback done_;
  std::unique_ptr<net::Connection> conn_;
  std::unique_ptr<http2::Codec> codec_;
  bool active_ = false;
  int http_status_ = 0;
  int grpc_status_ = -1;
  std::string message_;
  std::string deferred_detail_;
  Timer deferred_;
};

}  // namespace

GrpcHealthProbeFactory::GrpcHealthProbeFactory(net::EventLoop& loop, const TimeSource& time,
                                               GrpcProbeConfig config, TransportFactory transport)
    : loop_(loop), time_(time), config_(std::move(config)), transport_(std::move(transport)) {}

std::unique_ptr<HealthProbe> GrpcHealthProbeFactory::create(const Host& host, ProbeCallback done) {
  return std::make_unique<H2Probe>(loop_, time_, host, config_, std::nullopt, transport_,
                                   std::move(done));
}

Http2ProbeFactory::Http2ProbeFactory(net::EventLoop& loop, const TimeSource& time,
                                     HttpProbeConfig config, TransportFactory transport)
    : loop_(loop), time_(time), config_(std::move(config)), transport_(std::move(transport)) {}

std::unique_ptr<HealthProbe> Http2ProbeFactory::create(const Host& host, ProbeCallback done) {
  return std::make_unique<H2Probe>(loop_, time_, host, GrpcProbeConfig{}, config_, transport_,
                                   std::move(done));
}

}  // namespace weft::upstream
