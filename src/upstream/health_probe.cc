#include "upstream/health_probe.h"

#include <arpa/inet.h>
#include <unistd.h>

#include "net/socket.h"

namespace weft::upstream {

int parseStatusLine(std::string_view data) {
  // "HTTP/1.1 200 OK\r\n": a version, one space, three digits, then a space or the line end.
  constexpr std::string_view kPrefix = "HTTP/1.";
  size_t n = std::min(data.size(), kPrefix.size());
  if (data.substr(0, n) != kPrefix.substr(0, n)) return -1;
  if (data.size() < 13) return 0;
  if (data[7] < '0' || data[7] > '9' || data[8] != ' ') return -1;
  int code = 0;
  for (size_t i = 9; i < 12; ++i) {
    if (data[i] < '0' || data[i] > '9') return -1;
    code = code * 10 + (data[i] - '0');
  }
  if (data[12] != ' ' && data[12] != '\r' && data[12] != '\n') return -1;
  return code < 100 ? -1 : code;
}

net::Address withPort(net::Address a, uint16_t port) {
  if (a.family() == AF_INET) {
    reinterpret_cast<sockaddr_in*>(&a.storage)->sin_port = htons(port);
  } else if (a.family() == AF_INET6) {
    reinterpret_cast<sockaddr_in6*>(&a.storage)->sin6_port = htons(port);
  }
  return a;
}

namespace {

// One probe over one connection at a time. `request_` empty: a TCP probe (connected = healthy);
// otherwise an HTTP/1 probe that writes it and judges the status line.
class ConnectionProbe final : public HealthProbe, public net::ConnectionCallbacks {
 public:
  ConnectionProbe(net::EventLoop& loop, const Host& host, uint16_t port, TransportFactory transport,
                  ProbeCallback done, std::string request, int expected_min, int expected_max)
      : loop_(loop),
        host_(host),
        target_(port ? withPort(host.address(), port) : host.address()),
        transport_(std::move(transport)),
        done_(std::move(done)),
        request_(std::move(request)),
        expected_min_(expected_min),
        expected_max_(expected_max),
        deferred_(loop.timers(), [this] { finish(false, deferred_detail_); }) {}

  ~ConnectionProbe() override {
    // A connection may be mid-dispatch (its callback up the stack): let the loop free it.
    if (conn_) {
      conn_->close(false);
      struct Holder : net::Deferrable {
        std::unique_ptr<net::Connection> conn;
      };
      auto h = std::make_unique<Holder>();
      h->conn = std::move(conn_);
      loop_.deferDelete(std::move(h));
    }
  }

  void start() override {
    // The previous check's connection is closed; start() never runs inside its callbacks.
    conn_.reset();
    active_ = true;
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

  void onConnected(net::Connection& c) override {
    if (request_.empty()) return finish(true, "connected");
    c.write(request_);
  }

  void onData(net::Connection& c) override {
    if (request_.empty()) {
      c.input().clear();
      return;
    }
    std::string_view in = c.input().view();
    int code = parseStatusLine(in);
    if (code == 0) return;  // need more
    if (code < 0) return finish(false, "not an HTTP/1 response");
    char buf[32];
    int len = std::snprintf(buf, sizeof buf, "status %d", code);
    finish(code >= expected_min_ && code <= expected_max_, std::string_view(buf, size_t(len)));
  }

  void onClose(net::Connection&, net::CloseReason reason, std::string_view detail) override {
    std::string why;
    switch (reason) {
      case net::CloseReason::kConnectFailed:
        why = "connect failed: ";
        break;
      case net::CloseReason::kHandshakeFailed:
        why = "TLS handshake failed: ";
        break;
      default:
        why = request_.empty() ? "closed: " : "closed before the status line: ";
        break;
    }
    why += detail;
    finish(false, why);
  }

 private:
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

  net::EventLoop& loop_;
  const Host host_;            // for the transport (TLS SNI from its DNS name)
  const net::Address target_;  // where to connect: the host, or its health-check port
  TransportFactory transport_;
  ProbeCallback done_;
  const std::string request_;
  const int expected_min_, expected_max_;
  std::unique_ptr<net::Connection> conn_;  // the current (or last, closed) check's connection
  bool active_ = false;
  std::string deferred_detail_;
  Timer deferred_;  // delivers failures found inside start() on the next loop turn
};

}  // namespace

TcpProbeFactory::TcpProbeFactory(net::EventLoop& loop, TransportFactory transport, uint16_t port)
    : loop_(loop), transport_(std::move(transport)), port_(port) {}

std::unique_ptr<HealthProbe> TcpProbeFactory::create(const Host& host, ProbeCallback done) {
  return std::make_unique<ConnectionProbe>(loop_, host, port_, transport_, std::move(done),
                                           std::string(), 0, 0);
}

HttpProbeFactory::HttpProbeFactory(net::EventLoop& loop, HttpProbeConfig config,
                                   TransportFactory transport)
    : loop_(loop), config_(std::move(config)), transport_(std::move(transport)) {
  if (config_.path.empty() || config_.path[0] != '/') config_.path.insert(0, "/");
}

std::unique_ptr<HealthProbe> HttpProbeFactory::create(const Host& host, ProbeCallback done) {
  const std::string& authority = !config_.authority.empty() ? config_.authority
                                 : !host.hostname().empty() ? host.hostname()
                                                            : host.addressString();
  std::string request = "GET " + config_.path + " HTTP/1.1\r\nhost: " + authority +
                        "\r\nuser-agent: weft-health-check\r\nconnection: close\r\n\r\n";
  return std::make_unique<ConnectionProbe>(loop_, host, config_.port, transport_, std::move(done),
                                           std::move(request), config_.expected_min,
                                           config_.expected_max);
}

}  // namespace weft::upstream
