#include "proxy/agent.h"

#include <arpa/inet.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <openssl/sha.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include "common/file_util.h"
#include "common/hex.h"
#include "common/log.h"
#include "common/percent_encoding.h"
#include "common/timer.h"
#include "http/http2/codec.h"
#include "net/connection.h"
#include "net/socket.h"
#include "net/tls/identity.h"
#include "net/tls/ssl_util.h"
#include "net/tls/tls_context.h"
#include "proxy/config_loader.h"
#include "upstream/dns_resolver.h"
#include "upstream/grpc_health_probe.h"
#include "weft/v1/stream.pb.h"

namespace weft::proxy {

namespace sn = stats::names;

namespace {

constexpr std::string_view kComponent = "agent";
constexpr std::string_view kStreamPath = "/weft.v1.ConfigStream/Stream";
// A pushed config is one message; a large mesh node's config stays far below this.
constexpr size_t kMaxMessage = 64u << 20;
// How many distinct failure reasons are remembered for log-once (then the set starts over).
constexpr size_t kMaxRemembered = 64;

// Mesh identity metrics (docs/security.md, "Mesh identities").
constexpr std::string_view kIdentityExpiry = "weft_identity_certificate_expiry_timestamp_seconds";
constexpr std::string_view kIdentityExpiring = "weft_identity_certificate_expiring";
constexpr std::string_view kIdentityRenewals = "weft_identity_certificate_renewals_total";
constexpr std::string_view kIdentityRenewalFailures =
    "weft_identity_certificate_renewal_failures_total";

constexpr std::array<std::string_view, 17> kGrpcCodeNames = {
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
};

std::string grpcCodeName(int code) {
  if (code >= 0 && code < static_cast<int>(kGrpcCodeNames.size()))
    return std::string(kGrpcCodeNames[code]);
  return "status " + std::to_string(code);
}

struct HostPort {
  std::string host;  // without brackets
  uint16_t port = 0;
};

Result<HostPort> splitHostPort(std::string_view text) {
  auto bad = [&] {
    return makeError("control-plane address '" + std::string(text) +
                     "' is not HOST:PORT (IPv6 as [ADDR]:PORT)");
  };
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return bad();
  std::string_view host = text.substr(0, colon);
  std::string_view port = text.substr(colon + 1);
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') return bad();
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string_view::npos) {
    return bad();
  }
  if (port.empty() || port.size() > 5) return bad();
  uint32_t p = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return bad();
    p = p * 10 + static_cast<uint32_t>(c - '0');
  }
  if (p == 0 || p > 65535) return bad();
  return HostPort{std::string(host), static_cast<uint16_t>(p)};
}

std::string authorityOf(const HostPort& hp) {
  bool v6 = hp.host.find(':') != std::string::npos;
  return (v6 ? "[" + hp.host + "]" : hp.host) + ":" + std::to_string(hp.port);
}

Status makeDirs(const std::string& dir) {
  if (dir.empty()) return makeError("no state directory");
  std::string path;
  size_t pos = 0;
  while (pos != std::string::npos) {
    size_t next = dir.find('/', pos + 1);
    path = dir.substr(0, next);
    pos = next;
    if (path.empty() || path == "/") continue;
    struct stat st;
    if (::stat(path.c_str(), &st) == 0) {
      if (!S_ISDIR(st.st_mode)) return makeError(path + " exists and is not a directory");
      continue;
    }
    if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST)
      return makeError("cannot create " + path + ": " + std::strerror(errno));
  }
  return {};
}

std::string storedPath(const std::string& state_dir) {
  return state_dir + "/" + std::string(kStoredConfigName);
}

std::string identityPath(const std::string& state_dir) {
  return state_dir + "/" + std::string(kStoredIdentityName);
}

std::string formatUnix(int64_t t) {
  std::time_t tt = static_cast<std::time_t>(t);
  struct tm tm {};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// The sections of the stored identity file: "# chain", "# key", "# trust" lines start them;
// other comment lines ("# spiffe X", "# expiry-warning N") are key-value headers.
struct IdentityFile {
  std::string chain, key, trust, spiffe;
  int64_t expiry_warning = 0;
};

IdentityFile parseIdentityFile(std::string_view text) {
  IdentityFile f;
  std::string* section = nullptr;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    if (line == "# chain") {
      section = &f.chain;
    } else if (line == "# key") {
      section = &f.key;
    } else if (line == "# trust") {
      section = &f.trust;
    } else if (line.substr(0, 9) == "# spiffe ") {
      f.spiffe = std::string(line.substr(9));
    } else if (line.substr(0, 17) == "# expiry-warning ") {
      f.expiry_warning = std::strtoll(std::string(line.substr(17)).c_str(), nullptr, 10);
    } else if (!line.empty() && line[0] == '#') {
      continue;
    } else if (section != nullptr) {
      section->append(line).push_back('\n');
    }
  }
  return f;
}

}  // namespace

// ------------------------------------------------------------------------------------------------
// Free functions.

stats::Labels resourceLabels(const meshconfig::ProxyResource& r) {
  return {{std::string(sn::kLabelAppMeshMesh), r.mesh},
          {std::string(r.gateway ? sn::kLabelAppMeshVirtualGateway : sn::kLabelAppMeshVirtualNode),
           r.name}};
}

std::vector<std::string> hostAddresses() {
  std::vector<std::string> v4, v6;
  struct ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return {};
  for (struct ifaddrs* i = list; i; i = i->ifa_next) {
    if (!i->ifa_addr || (i->ifa_flags & IFF_LOOPBACK) || !(i->ifa_flags & IFF_UP)) continue;
    char buf[INET6_ADDRSTRLEN] = {};
    if (i->ifa_addr->sa_family == AF_INET) {
      auto* a = reinterpret_cast<const sockaddr_in*>(i->ifa_addr);
      if ((ntohl(a->sin_addr.s_addr) >> 24) == 127) continue;
      if (inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf)) v4.emplace_back(buf);
    } else if (i->ifa_addr->sa_family == AF_INET6) {
      auto* a = reinterpret_cast<const sockaddr_in6*>(i->ifa_addr);
      if (IN6_IS_ADDR_LINKLOCAL(&a->sin6_addr) || IN6_IS_ADDR_LOOPBACK(&a->sin6_addr)) continue;
      if (inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof buf)) v6.emplace_back(buf);
    }
  }
  ::freeifaddrs(list);
  std::vector<std::string> out;
  for (auto* l : {&v4, &v6})
    for (auto& a : *l)
      if (std::find(out.begin(), out.end(), a) == out.end()) out.push_back(a);
  return out;
}

bool usesMeshIdentity(const v1::ProxyConfig& config) {
  for (const v1::Listener& l : config.listeners())
    if (l.tls().certificate().mesh_identity()) return true;
  for (const v1::Cluster& c : config.clusters())
    if (c.tls().certificate().mesh_identity()) return true;
  return false;
}

v1::ProxyConfig withMeshIdentity(const v1::ProxyConfig& config, const std::string& chain_pem,
                                 const std::string& key_pem) {
  v1::ProxyConfig out = config;
  auto fill = [&](v1::TlsCertificate* c) {
    if (!c->mesh_identity()) return;
    c->set_certificate_chain_pem(chain_pem);
    c->set_private_key_pem(key_pem);
  };
  for (v1::Listener& l : *out.mutable_listeners())
    if (l.has_tls() && l.tls().has_certificate()) fill(l.mutable_tls()->mutable_certificate());
  for (v1::Cluster& c : *out.mutable_clusters())
    if (c.has_tls() && c.tls().has_certificate()) fill(c.mutable_tls()->mutable_certificate());
  return out;
}

// ------------------------------------------------------------------------------------------------
// Impl.

class Agent::Impl final : public net::ConnectionCallbacks, public http2::Callbacks {
  // Mesh identity.
  struct Identity {
    net::tls::EvpPkeyPtr key;
    std::string key_pem;  // unencrypted PKCS#8: what the TLS contexts are built from
    std::string chain_pem, trust_pem, spiffe;
    net::tls::IdentityTimes times;
  };
  // A config that uses the identity, received before the first certificate.
  struct Deferred {
    uint64_t version = 0;
    v1::ProxyConfig config;
    std::string hash;
  };

 public:
  Impl(net::EventLoop& loop, AgentOptions options, ApplyFn apply, stats::Registry& registry)
      : loop_(loop),
        options_(std::move(options)),
        apply_(std::move(apply)),
        connected_gauge_(registry.gauge(sn::kControlPlaneConnected)),
        success_(registry.counter(sn::kControlPlaneUpdateSuccess)),
        rejected_(registry.counter(sn::kControlPlaneUpdateRejected)),
        rng_(std::random_device{}()),
        reconnect_timer_(loop.timers(), [this] { connectNext(); }),
        keepalive_timer_(loop.timers(), [this] { onKeepalive(); }),
        teardown_timer_(loop.timers(), [this] { teardown(); }),
        health_timer_(loop.timers(), [this] { reportHealth(false); }),
        linger_timer_(loop.timers(),
                      [this] {
                        for (auto& c : closing_)
                          if (!c->closed()) c->close(true);
                      }),
        identity_expiry_(registry.gauge(kIdentityExpiry)),
        identity_expiring_(registry.gauge(kIdentityExpiring)),
        identity_renewals_(registry.counter(kIdentityRenewals)),
        identity_failures_(registry.counter(kIdentityRenewalFailures)),
        renewal_(loop.timers(),
                 net::tls::IdentityRenewal::Callbacks{
                     [this] { requestIdentity(); }, [this](bool on) { identityExpiring(on); },
                     [this] {
                       log::error(kComponent,
                                  "the mesh identity certificate " + identitySpiffe() +
                                      " expired unrenewed; peers will refuse it (still asking "
                                      "the control plane for a new one)");
                     }},
                 options_.identity_renewal) {
    keepalive_interval_ = options_.keepalive_interval;
    connected_gauge_->set(0);
    identity_expiry_->set(0);
    identity_expiring_->set(0);
    if (auto r = meshconfig::parseProxyResource(options_.resource); r.has_value())
      spiffe_id_ =
          "spiffe://" + r->mesh + (r->gateway ? "/virtualGateway/" : "/virtualNode/") + r->name;
  }

  ~Impl() {
    stopped_ = true;
    if (resolver_ && query_) resolver_->cancel(query_);
    dropConnection();
    connected_gauge_->set(0);
  }

  // -- public API -------------------------------------------------------------------------------

  std::optional<v1::ProxyConfig> loadStored() {
    if (options_.state_dir.empty()) return std::nullopt;
    std::string path = storedPath(options_.state_dir);
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      if (errno != ENOENT)
        log::warn(kComponent, "cannot read the stored config " + path + ": " +
                                  std::strerror(errno) + "; starting without it");
      return std::nullopt;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    std::string text = ss.str();
    std::string recorded_hash;
    size_t pos = 0;
    while (pos < text.size() && text[pos] == '#') {
      size_t eol = text.find('\n', pos);
      if (eol == std::string::npos) eol = text.size();
      std::string_view line(text.data() + pos, eol - pos);
      if (line.substr(0, 9) == "# sha256 ") recorded_hash = std::string(line.substr(9));
      pos = eol + 1;
    }
    std::string_view body = pos < text.size() ? std::string_view(text).substr(pos) : "";
    auto cfg = parseConfig(body, Format::kJson, path);
    if (!cfg) {
      log::warn(kComponent,
                "the stored config " + path + " is corrupt, ignoring it: " + cfg.error().message);
      return std::nullopt;
    }
    if (recorded_hash.empty() || meshconfig::configHash(*cfg) != recorded_hash) {
      log::warn(kComponent, "the stored config " + path +
                                " does not match its recorded sha256 (corrupt or edited), "
                                "ignoring it");
      return std::nullopt;
    }
    if (!usesMeshIdentity(*cfg)) return std::move(*cfg);
    // The stored config names the mesh identity: serve it with the stored identity, if any.
    loadIdentity();
    if (!identity_) {
      log::warn(kComponent, "the stored config " + path +
                                " needs the mesh identity, and no valid one is stored; waiting "
                                "for the control plane");
      return std::nullopt;
    }
    stored_compiled_ = *cfg;
    stored_compiled_hash_ = recorded_hash;
    v1::ProxyConfig filled = withMeshIdentity(*cfg, identity_->chain_pem, identity_->key_pem);
    stored_filled_hash_ = meshconfig::configHash(filled);
    return filled;
  }

  void setRunning(const v1::ProxyConfig& config) {
    std::string hash = meshconfig::configHash(config);
    if (!stored_filled_hash_.empty() && hash == stored_filled_hash_) {
      // loadStored()'s config with the identity filled in: what runs is the stored compiled one.
      running_hash_ = stored_compiled_hash_;
      running_config_ = stored_compiled_;
    } else {
      running_hash_ = hash;
      running_config_ = config;
    }
    have_running_config_ = true;
  }

  void start() {
    loadIdentity();
    stopped_ = false;
    if (options_.addresses.empty()) {
      recordFailure("no control-plane address");
      return;
    }
    connectNext();
  }

  void stop() {
    if (stopped_) return;
    stopped_ = true;
    reconnect_timer_.disarm();
    keepalive_timer_.disarm();
    teardown_timer_.disarm();
    health_timer_.disarm();
    if (resolver_ && query_) resolver_->cancel(query_);
    query_ = 0;
    if (codec_ && conn_) {
      if (stream_id_ > 0 && !ending_) {
        // Going away on purpose: the control plane deregisters our instance at once.
        v1::ProxyMessage bye;
        bye.mutable_goodbye();
        (void)codec_->sendData(stream_id_, upstream::grpcFrame(bye.SerializeAsString()), false);
      }
      if (stream_id_ > 0) (void)codec_->sendData(stream_id_, "", true);  // half-close
      codec_->terminate(http2::kNoError);                                // GOAWAY
      conn_->flush();
    }
    setConnected(false);
    if (conn_ && !conn_->closed()) {
      // The Goodbye and GOAWAY go out while the proxy drains. The connection stays open, its
      // input read and dropped, until the server closes it or kStopLinger passes: closing a
      // socket with unread input resets it, and a reset can make the server drop the Goodbye
      // unread. Freed with the agent at the latest.
      closing_.push_back(std::move(conn_));
      closing_codecs_.push_back(std::move(codec_));
      linger_timer_.arm(kStopLinger);
    }
    dropConnection();
    log::info(kComponent, "config stream closed (shutting down)");
  }

  void setHealthSource(HealthSource source) {
    health_source_ = std::move(source);
    healthChanged();
  }

  void healthChanged() {
    if (codec_ && stream_id_ > 0 && !ending_ && !stopped_) reportHealth(false);
  }

  bool connected() const { return connected_; }
  uint64_t lastAppliedVersion() const { return applied_version_; }
  const std::string& lastError() const { return last_error_; }
  const AgentOptions& options() const { return options_; }
  std::string identitySpiffe() const { return identity_ ? identity_->spiffe : std::string(); }
  int64_t identityExpiresAt() const { return identity_ ? identity_->times.not_after : 0; }

  // -- net::ConnectionCallbacks -----------------------------------------------------------------

  void onConnected(net::Connection& c) override {
    if (!options_.insecure && c.peer().alpn != "h2") {
      return fail("the server at " + target_ + " did not negotiate HTTP/2 (ALPN h2) over TLS");
    }
    auto codec = http2::Codec::create(http2::Mode::kClient, {}, *this, c.output(), loop_.time());
    if (!codec) return fail("http2: " + codec.error().message);
    codec_ = std::move(*codec);
    const std::string user_agent = "weft-proxy/" WEFT_VERSION;
    std::array<http::HeaderField, 3> fields{{
        {"content-type", "application/grpc", http::HeaderToken::kContentType},
        {"te", "trailers", http::HeaderToken::kTe},
        {"user-agent", user_agent, http::HeaderToken::kUserAgent},
    }};
    http2::RequestHeaders req{"POST", options_.insecure ? "http" : "https", authority_, kStreamPath,
                              fields};
    auto id = codec_->submitRequest(req, false);
    if (!id) return fail("http2: " + id.error().message);
    stream_id_ = *id;

    v1::ProxyMessage m;
    v1::Hello* h = m.mutable_hello();
    h->set_resource(options_.resource);
    h->set_token(options_.token);
    h->set_host(options_.host);
    h->set_network(options_.network);
    h->set_proxy_version(WEFT_VERSION);
    h->set_running_hash(running_hash_);
    for (const std::string& a :
         options_.app_addresses.empty() ? hostAddresses() : options_.app_addresses)
      h->add_addresses(a);
    if (!send(m)) return;
    last_rx_ = loop_.now();
    ping_outstanding_ = false;
    keepalive_timer_.arm(keepalive_interval_);
    setConnected(true);
    reportHealth(true);
    renewal_.connected();
    log::info(kComponent, "connected to the control plane at " + target_ + " as " +
                              options_.resource +
                              (running_hash_.empty() ? "" : " (running a config)"));
  }

  void onData(net::Connection& c) override {
    last_rx_ = loop_.now();
    if (ping_outstanding_) {
      // Alive: the next PING is due keepalive_interval from now, not when the timeout was.
      ping_outstanding_ = false;
      keepalive_timer_.arm(keepalive_interval_);
    }
    if (!codec_) {
      c.input().clear();
      return;
    }
    std::string in(c.input().view());
    c.input().clear();
    Status s = codec_->feed(in);
    if (conn_) conn_->flush();
    if (!s) fail("http2: " + s.error().message);
  }

  void onWriteDrained(net::Connection&) override {
    if (codec_) codec_->flush();
  }

  void onClose(net::Connection&, net::CloseReason reason, std::string_view detail) override {
    if (stopped_) {
      // A lingering connection after stop(): the server closed it; close ours.
      linger_timer_.arm(Duration(0));
      return;
    }
    std::string why = reason == net::CloseReason::kConnectFailed     ? "cannot connect to "
                      : reason == net::CloseReason::kHandshakeFailed ? "TLS handshake with "
                                                                     : "connection lost to ";
    why += target_;
    if (reason == net::CloseReason::kHandshakeFailed) why += " failed";
    if (!detail.empty()) why += ": " + std::string(detail);
    fail(why);
  }

  // -- http2::Callbacks -------------------------------------------------------------------------

  void onHeaders(int32_t id, const http2::HeaderBlock& b) override {
    if (id != stream_id_) return;
    if (b.kind == http2::HeadersKind::kResponse) http_status_ = b.status;
    for (const http::HeaderField& f : b.fields) {
      if (f.token == http::HeaderToken::kGrpcStatus) {
        int v = 0;
        for (char ch : f.value)
          v = (ch >= '0' && ch <= '9' && v < 1000) ? v * 10 + (ch - '0') : 1000;
        grpc_status_ = v;
      } else if (f.token == http::HeaderToken::kGrpcMessage) {
        auto decoded = percentDecode(f.value);
        grpc_message_ = decoded ? *decoded : std::string(f.value);
      }
    }
  }

  void onData(int32_t id, std::string_view data) override {
    codec_->consume(id, data.size());
    if (id != stream_id_ || ending_) return;
    reader_.append(data);
    for (;;) {
      auto next = reader_.next();
      if (!next) return fail("bad message from the server: " + next.error().message);
      if (!*next) return;
      v1::ServerMessage msg;
      if (!msg.ParseFromString(**next))
        return fail("bad message from the server: not a weft.v1.ServerMessage");
      handle(msg);
      if (ending_ || !codec_) return;
    }
  }

  void onStreamEnd(int32_t) override {}

  void onStreamClose(int32_t id, http2::CloseCause cause, uint32_t code) override {
    if (id != stream_id_) return;
    stream_id_ = 0;
    std::string why;
    if (grpc_status_ >= 0) {
      // The refusals of a Hello (docs/config-push.md); other codes end a stream for other reasons
      // (server shutdown: UNAVAILABLE).
      bool refused = grpc_status_ == 3 || grpc_status_ == 5 || grpc_status_ == 7 ||
                     grpc_status_ == 16;  // INVALID_ARGUMENT NOT_FOUND PERMISSION_DENIED UNAUTH.
      if (grpc_status_ == 0) {
        why = "the control plane at " + target_ + " ended the stream";
      } else {
        why = "the control plane at " + target_ + (refused ? " refused" : " ended") +
              " the stream: " + grpcCodeName(grpc_status_) +
              (grpc_message_.empty() ? "" : ": " + grpc_message_);
      }
    } else if (cause != http2::CloseCause::kComplete) {
      why = "the control plane at " + target_ + " reset the stream (HTTP/2 error " +
            std::to_string(code) + ")";
    } else if (http_status_ != 200) {
      why = "the server at " + target_ + " answered HTTP status " + std::to_string(http_status_) +
            " (not a weft config stream?)";
    } else {
      why = "the control plane at " + target_ + " ended the stream without a status";
    }
    fail(why);
  }

  void onGoaway(int32_t, uint32_t error_code) override {
    log::debug(kComponent, "GOAWAY from " + target_ + " (code " + std::to_string(error_code) + ")");
    if (error_code == http2::kEnhanceYourCalm && keepalive_interval_ < kMaxKeepalive) {
      // gRPC servers answer PINGs more frequent than they allow with GOAWAY(ENHANCE_YOUR_CALM,
      // "too_many_pings"); as gRPC clients do, ping half as often from now on.
      keepalive_interval_ = std::min<Duration>(keepalive_interval_ * 2, kMaxKeepalive);
      log::warn(kComponent,
                "the control plane at " + target_ +
                    " refuses PINGs this frequent; keepalive interval now " +
                    std::to_string(
                        std::chrono::duration_cast<milliseconds>(keepalive_interval_).count()) +
                    " ms");
    }
  }

 private:
  // -- connecting -------------------------------------------------------------------------------

  void connectNext() {
    if (stopped_ || conn_) return;
    const std::string& address = options_.addresses[next_address_ % options_.addresses.size()];
    ++next_address_;
    target_ = address;
    auto hp = splitHostPort(address);
    if (!hp) return retry(hp.error().message);
    host_ = *hp;
    authority_ = authorityOf(host_);
    auto ip = net::parseAddress(host_.host, host_.port);
    if (ip) return connectTo(*ip);
    // A name: resolve it (c-ares, on this loop; /etc/hosts first).
    if (!resolver_) {
      auto r = upstream::DnsResolver::create(loop_);
      if (!r) return retry("cannot start the DNS resolver: " + r.error().message);
      resolver_ = std::move(*r);
    }
    query_ = resolver_->resolve(host_.host, upstream::DnsFamily::kV4Preferred,
                                [this](Result<upstream::DnsAnswer> answer) {
                                  query_ = 0;
                                  if (stopped_) return;
                                  if (!answer || answer->addresses.empty()) {
                                    return retry("cannot resolve " + host_.host + ": " +
                                                 (answer ? "no address" : answer.error().message));
                                  }
                                  net::Address a = answer->addresses.front();
                                  auto withPort = net::parseAddress(a.ip(), host_.port);
                                  if (!withPort) return retry(withPort.error().message);
                                  connectTo(*withPort);
                                });
  }

  void connectTo(const net::Address& addr) {
    auto fd = net::connectTcp(addr);
    if (!fd) return retry("cannot connect to " + target_ + ": " + fd.error().message);
    std::unique_ptr<net::Transport> transport;
    if (options_.insecure) {
      transport = net::makePlainTransport(*fd);
    } else {
      v1::UpstreamTls tls;
      tls.mutable_validation()->set_trust_bundle_file(options_.ca_file);
      tls.add_alpn("h2");
      auto ctx = net::tls::ClientContext::create(tls, "control plane tls (--ca-file)");
      if (!ctx) {
        ::close(*fd);
        return retry(ctx.error().message);
      }
      transport = (*ctx)->newTransport(*fd, host_.host);
    }
    http_status_ = 0;
    grpc_status_ = -1;
    grpc_message_.clear();
    reader_.clear();
    delivered_ = false;
    ending_ = false;
    conn_ = std::make_unique<net::Connection>(loop_, *fd, std::move(transport), this, true);
  }

  // -- the stream -------------------------------------------------------------------------------

  bool send(const v1::ProxyMessage& m) {
    if (!codec_ || stream_id_ <= 0) return false;
    auto r = codec_->sendData(stream_id_, upstream::grpcFrame(m.SerializeAsString()), false);
    if (!r) {
      fail("http2: " + r.error().message);
      return false;
    }
    if (conn_) conn_->flush();
    return true;
  }

  void ack(uint64_t version) {
    v1::ProxyMessage m;
    m.mutable_ack()->set_version(version);
    send(m);
  }

  void nack(uint64_t version, const std::string& reason) {
    rejected_->inc();
    last_error_ = "version " + std::to_string(version) + " rejected: " + reason;
    log::warn(kComponent, "rejecting config version " + std::to_string(version) + " from " +
                              target_ + " (the running config stays): " + reason);
    v1::ProxyMessage m;
    m.mutable_nack()->set_version(version);
    m.mutable_nack()->set_reason(reason);
    send(m);
  }

  void handle(const v1::ServerMessage& msg) {
    if (msg.has_config()) {
      const v1::ConfigUpdate& u = msg.config();
      std::string hash = u.hash().empty() ? meshconfig::configHash(u.config()) : u.hash();
      last_received_ = u.config();
      last_received_hash_ = hash;
      last_received_version_ = u.version();
      have_received_ = true;
      activate(u.version(), u.config(), hash);
    } else if (msg.has_endpoints()) {
      const v1::EndpointsUpdate& u = msg.endpoints();
      if (!have_received_) {
        return nack(u.version(),
                    "endpoints delta before any full config on this stream; send a full config");
      }
      v1::ProxyConfig next = last_received_;
      if (auto st = meshconfig::applyEndpoints(next, u); !st) {
        return nack(u.version(), st.error().message + " (version " +
                                     std::to_string(last_received_version_) +
                                     "); send a full config");
      }
      std::string hash = meshconfig::configHash(next);
      if (!u.hash().empty() && hash != u.hash()) {
        return nack(u.version(), "endpoints delta does not apply to version " +
                                     std::to_string(last_received_version_) +
                                     "; send a full config");
      }
      last_received_ = next;
      last_received_hash_ = hash;
      last_received_version_ = u.version();
      activate(u.version(), next, hash);
    } else if (msg.has_identity()) {
      onIdentity(msg.identity());
    } else {
      log::debug(kComponent, "ignoring an empty or unknown message from " + target_);
    }
  }

  void activate(uint64_t version, const v1::ProxyConfig& config, const std::string& hash) {
    delivered_ = true;
    deferred_.reset();
    if (!running_hash_.empty() && hash == running_hash_) {
      log::info(kComponent, "config version " + std::to_string(version) +
                                " is the running config; acknowledged without a rebuild");
    } else {
      const bool needs_identity = usesMeshIdentity(config);
      if (needs_identity && !identity_) {
        // Applied (and acknowledged) once the identity certificate arrives.
        deferred_ = Deferred{version, config, hash};
        log::info(kComponent, "config version " + std::to_string(version) +
                                  " uses the mesh identity; waiting for its certificate");
        if (!identity_error_.empty())
          nack(version, "no mesh identity certificate yet: " + identity_error_);
        return;
      }
      Status st =
          apply_(needs_identity ? withMeshIdentity(config, identity_->chain_pem, identity_->key_pem)
                                : config);
      if (!st) return nack(version, st.error().message);
      running_hash_ = hash;
      running_config_ = config;
      have_running_config_ = true;
      store(version, config, hash);
      log::info(kComponent, "config version " + std::to_string(version) + " from " + target_ +
                                " applied (sha256 " + hash.substr(0, 12) + ")");
    }
    applied_version_ = version;
    last_error_.clear();
    logged_.clear();
    success_->inc();
    ack(version);
  }

  void store(uint64_t version, const v1::ProxyConfig& config, const std::string& hash) {
    if (options_.state_dir.empty()) return;
    Status dir = makeDirs(options_.state_dir);
    std::string path = storedPath(options_.state_dir);
    if (dir) {
      std::string text =
          "# weft-proxy: the last config applied from the control plane (written by the agent; "
          "do not edit)\n# sha256 " +
          hash + "\n# version " + std::to_string(version) + "\n" + configToJson(config, false);
      if (text.back() != '\n') text.push_back('\n');
      dir = writeFileAtomically(path, text, 0600);
    }
    if (!dir)
      log::warn(kComponent, "cannot store the applied config in " + path + ": " +
                                dir.error().message + " (a restart cannot start from it)");
  }

  // -- health reports ---------------------------------------------------------------------------

  // Sends the health source's answer when it changed since the last report on this stream, when
  // the report interval has passed, or when `force`d (right after Hello); re-arms the poll.
  void reportHealth(bool force) {
    if (!codec_ || stream_id_ <= 0 || ending_ || stopped_) return;
    std::vector<std::pair<uint32_t, AppHealth>> now;
    if (health_source_) now = health_source_();
    std::sort(now.begin(), now.end());
    const MonoTime t = loop_.now();
    if (force || now != last_health_ || t - last_health_sent_ >= options_.health_report_interval) {
      v1::ProxyMessage m;
      for (const auto& [port, state] : now) {
        v1::PortHealth* p = m.mutable_health()->add_ports();
        p->set_port(port);
        p->set_state(state == AppHealth::kHealthy     ? v1::PortHealth::HEALTHY
                     : state == AppHealth::kUnhealthy ? v1::PortHealth::UNHEALTHY
                                                      : v1::PortHealth::UNKNOWN);
      }
      m.mutable_health();  // an empty report still counts as a sign of life
      if (!send(m)) return;
      last_health_ = std::move(now);
      last_health_sent_ = t;
    }
    health_timer_.arm(options_.health_poll_interval);
  }

  // -- failure, teardown, reconnect -------------------------------------------------------------

  // Ends the current connection (from any callback: the work happens on a fresh timer tick so no
  // codec or connection is destroyed under its own callback) and schedules a reconnect.
  void fail(const std::string& why) {
    if (ending_ || stopped_) return;
    ending_ = true;
    pending_reason_ = why;
    teardown_timer_.arm(Duration(0));
  }

  void teardown() {
    keepalive_timer_.disarm();
    if (codec_ && conn_ && !conn_->closed()) {
      codec_->terminate(http2::kNoError);
      conn_->flush();
    }
    dropConnection();
    setConnected(false);
    if (delivered_) attempt_ = 0;  // the backoff starts over after a useful stream
    delivered_ = false;
    retry(pending_reason_);
  }

  void retry(const std::string& why) {
    if (stopped_) return;
    recordFailure(why);
    uint32_t exp = std::min<uint32_t>(attempt_, 20);
    ++attempt_;
    auto ceiling = std::min<int64_t>(options_.backoff_cap.count(),
                                     options_.backoff_base.count() * (int64_t{1} << exp));
    std::uniform_int_distribution<int64_t> dist(0, std::max<int64_t>(ceiling, 0));
    auto delay = std::chrono::milliseconds(dist(rng_));
    log::debug(kComponent, "reconnecting in " + std::to_string(delay.count()) + " ms");
    reconnect_timer_.arm(delay);
  }

  void recordFailure(const std::string& why) {
    last_error_ = why;
    if (logged_.size() >= kMaxRemembered) logged_.clear();
    if (logged_.insert(why).second) {
      log::warn(kComponent, why + " (retrying with backoff; further occurrences are not logged)");
    } else {
      log::debug(kComponent, why);
    }
  }

  void dropConnection() {
    stream_id_ = 0;
    if (!conn_ && !codec_) return;
    if (conn_) conn_->close(false);
    struct Holder : net::Deferrable {
      std::unique_ptr<http2::Codec> codec;  // writes into conn's output: destroyed first
      std::unique_ptr<net::Connection> conn;
    };
    auto h = std::make_unique<Holder>();
    h->codec = std::move(codec_);
    h->conn = std::move(conn_);
    loop_.deferDelete(std::move(h));
  }

  void setConnected(bool c) {
    connected_ = c;
    connected_gauge_->set(c ? 1 : 0);
    if (!c) renewal_.disconnected();
  }

  // -- mesh identity ----------------------------------------------------------------------------

  // The renewal schedule wants a certificate: a fresh key, and a CSR for it on the stream.
  void requestIdentity() {
    auto key = net::tls::generateIdentityKey();
    if (!key) {
      log::error(kComponent, "cannot make a mesh identity key: " + key.error().message);
      renewal_.requestFailed();
      return;
    }
    auto csr = net::tls::makeIdentityCsr(key->get(), spiffe_id_);
    if (!csr) {
      log::error(kComponent, csr.error().message);
      renewal_.requestFailed();
      return;
    }
    pending_key_ = std::move(*key);
    v1::ProxyMessage m;
    m.mutable_certificate_request()->set_csr_pem(*csr);
    log::debug(kComponent, "asking " + target_ + " for the mesh identity " + spiffe_id_);
    send(m);  // a failure ends the stream, and the schedule asks again on the next one
  }

  void onIdentity(const v1::IdentityUpdate& u) {
    std::string problem = u.error();
    std::optional<net::tls::IdentityCertificate> info;
    if (problem.empty()) {
      auto inspected =
          net::tls::inspectIdentityCertificate(u.certificate_chain_pem(), pending_key_.get());
      if (!pending_key_)
        problem = "an identity certificate came without a request";
      else if (!inspected)
        problem = inspected.error().message;
      else
        info = *inspected;
    }
    if (!problem.empty()) {
      identity_failures_->inc();
      if (identity_error_ != problem)
        log::warn(kComponent, "no mesh identity certificate from " + target_ + ": " + problem +
                                  " (asking again later)");
      identity_error_ = problem;
      renewal_.requestFailed();
      if (deferred_) nack(deferred_->version, "no mesh identity certificate yet: " + problem);
      return;
    }
    Identity id;
    id.key_pem = net::tls::identityKeyPem(pending_key_.get());
    id.key = std::move(pending_key_);
    id.chain_pem = u.certificate_chain_pem();
    id.trust_pem = u.trust_bundle_pem();
    id.spiffe = u.spiffe_id().empty() ? info->uri_san : u.spiffe_id();
    id.times = {info->not_before, info->not_after, u.expiry_warning_seconds()};
    installIdentity(std::move(id), true);
  }

  // Makes `id` the proxy's identity: stored (when `fresh`), scheduled, and put to use.
  void installIdentity(Identity id, bool fresh) {
    identity_ = std::move(id);
    identity_error_.clear();
    identity_expiry_->set(identity_->times.not_after);
    renewal_.certificateArrived(identity_->times);
    if (!fresh) return;
    identity_renewals_->inc();
    storeIdentity();
    log::info(kComponent, "mesh identity " + identity_->spiffe + " valid until " +
                              formatUnix(identity_->times.not_after) + " (renewal at " +
                              formatUnix(identity_->times.renewAt()) + ")");
    if (deferred_) {
      Deferred d = std::move(*deferred_);
      deferred_.reset();
      activate(d.version, d.config, d.hash);
      return;
    }
    if (have_running_config_ && usesMeshIdentity(running_config_)) {
      // New connections use the new certificate; open ones keep theirs.
      Status st =
          apply_(withMeshIdentity(running_config_, identity_->chain_pem, identity_->key_pem));
      if (!st)
        log::warn(kComponent,
                  "cannot use the new mesh identity certificate (the previous one "
                  "stays): " +
                      st.error().message);
    }
  }

  void identityExpiring(bool on) {
    identity_expiring_->set(on ? 1 : 0);
    if (on)
      log::warn(kComponent, "the mesh identity certificate " + identitySpiffe() + " expires at " +
                                formatUnix(identityExpiresAt()) +
                                " and is not renewed yet (control plane " +
                                (connected_ ? "connected" : "unreachable") + ")");
  }

  void storeIdentity() {
    if (options_.state_dir.empty() || !identity_) return;
    std::string path = identityPath(options_.state_dir);
    Status st = makeDirs(options_.state_dir);
    if (st) {
      std::string text =
          "# weft-proxy: the mesh identity (written by the agent; do not edit; it holds the "
          "private key)\n# spiffe " +
          identity_->spiffe + "\n# expiry-warning " + std::to_string(identity_->times.warn_before) +
          "\n# chain\n" + identity_->chain_pem + "# key\n" + identity_->key_pem + "# trust\n" +
          identity_->trust_pem;
      st = writeFileAtomically(path, text, 0600);
      OPENSSL_cleanse(text.data(), text.size());
    }
    if (!st)
      log::warn(kComponent, "cannot store the mesh identity in " + path + ": " +
                                st.error().message + " (a restart must ask for a new one)");
  }

  // The identity stored by a previous run, if readable, for this proxy's key and still valid.
  void loadIdentity() {
    if (identity_loaded_ || options_.state_dir.empty()) return;
    identity_loaded_ = true;
    std::string path = identityPath(options_.state_dir);
    std::ifstream in(path, std::ios::binary);
    if (!in) return;
    std::stringstream ss;
    ss << in.rdbuf();
    std::string text = ss.str();
    IdentityFile f = parseIdentityFile(text);
    OPENSSL_cleanse(text.data(), text.size());
    auto key = net::tls::parsePrivateKey(f.key, "stored identity key");
    auto info = key ? net::tls::inspectIdentityCertificate(f.chain, key->get())
                    : Result<net::tls::IdentityCertificate>(Unexpected<Error>{key.error()});
    if (!info) {
      log::warn(kComponent,
                "ignoring the stored mesh identity " + path + ": " + info.error().message);
      return;
    }
    if (info->not_after <= std::chrono::duration_cast<std::chrono::seconds>(
                               loop_.time().systemNow().time_since_epoch())
                               .count()) {
      log::info(kComponent, "the stored mesh identity " + path + " expired at " +
                                formatUnix(info->not_after) + "; asking for a new one");
      return;
    }
    Identity id;
    id.key = std::move(*key);
    id.key_pem = std::move(f.key);
    id.chain_pem = std::move(f.chain);
    id.trust_pem = std::move(f.trust);
    id.spiffe = f.spiffe.empty() ? info->uri_san : f.spiffe;
    id.times = {info->not_before, info->not_after, f.expiry_warning};
    installIdentity(std::move(id), false);
    log::info(kComponent, "using the stored mesh identity " + identity_->spiffe + " (valid until " +
                              formatUnix(identity_->times.not_after) + ")");
  }

  // -- keepalive --------------------------------------------------------------------------------

  void onKeepalive() {
    if (!conn_ || !codec_ || ending_) return;
    MonoTime now = loop_.now();
    if (ping_outstanding_) {
      return fail("no frame from the control plane at " + target_ + " for " +
                  std::to_string(options_.keepalive_timeout.count()) +
                  " ms after a PING; the connection is dead");
    }
    Duration idle = now - last_rx_;
    if (idle < keepalive_interval_) {
      keepalive_timer_.arm(keepalive_interval_ - idle);
      return;
    }
    // The codec has no PING call: write the frame between whole frames, i.e. when nothing the
    // codec produced is still queued (nghttp2 answers our PING's ACK as an unsolicited ACK,
    // which it ignores).
    codec_->flush();
    if (conn_->output().size() == 0) {
      static constexpr char kPing[] = {0,   0,   8,   6,   0,   0,   0,   0,  0,
                                       'w', 'e', 'f', 't', 'p', 'i', 'n', 'g'};
      conn_->write(std::string_view(kPing, sizeof kPing));
    }
    ping_outstanding_ = true;
    keepalive_timer_.arm(options_.keepalive_timeout);
  }

  net::EventLoop& loop_;
  AgentOptions options_;
  ApplyFn apply_;
  std::shared_ptr<stats::Gauge> connected_gauge_;
  std::shared_ptr<stats::Counter> success_, rejected_;
  std::mt19937_64 rng_;

  // Connection state (one at a time).
  std::unique_ptr<net::Connection> conn_;
  std::unique_ptr<http2::Codec> codec_;
  std::vector<std::unique_ptr<net::Connection>> closing_;  // after stop(): GOAWAY being written
  std::vector<std::unique_ptr<http2::Codec>> closing_codecs_;
  int32_t stream_id_ = 0;
  std::string target_;  // the address being used, as configured
  HostPort host_;
  std::string authority_;
  int http_status_ = 0;
  int grpc_status_ = -1;
  std::string grpc_message_;
  upstream::GrpcMessageReader reader_{kMaxMessage};
  bool ending_ = false;     // fail() was called; teardown pending
  bool delivered_ = false;  // this stream delivered a config
  std::string pending_reason_;
  std::unique_ptr<upstream::DnsResolver> resolver_;
  upstream::Resolver::QueryId query_ = 0;

  // Versions and configs.
  std::string running_hash_;        // what the proxy runs ("" before the first config)
  v1::ProxyConfig last_received_;   // base of endpoint deltas (per stream: a new stream starts
  std::string last_received_hash_;  // with a full config)
  uint64_t last_received_version_ = 0;
  bool have_received_ = false;
  uint64_t applied_version_ = 0;

  // Status.
  bool connected_ = false;
  bool stopped_ = true;
  std::string last_error_;
  std::set<std::string> logged_;

  // Reconnect.
  size_t next_address_ = 0;
  uint32_t attempt_ = 0;
  MonoTime last_rx_{};
  bool ping_outstanding_ = false;
  Duration keepalive_interval_;  // options_.keepalive_interval, doubled on "too many pings"
  // Past gRPC-core's default minimum (5 minutes), so even a default server stops complaining.
  static constexpr Duration kMaxKeepalive = std::chrono::minutes(6);
  Timer reconnect_timer_;
  Timer keepalive_timer_;
  Timer teardown_timer_;

  // Health reports.
  HealthSource health_source_;
  std::vector<std::pair<uint32_t, AppHealth>> last_health_;  // last sent on this stream
  MonoTime last_health_sent_{};
  Timer health_timer_;
  // After stop(): closes the connections kept open for the server's close (see stop()).
  Timer linger_timer_;
  static constexpr Duration kStopLinger = std::chrono::seconds(2);

  // Mesh identity.
  std::string spiffe_id_;  // what this proxy's identity is (from --resource)
  std::optional<Identity> identity_;
  bool identity_loaded_ = false;      // the stored identity was read (or found missing)
  net::tls::EvpPkeyPtr pending_key_;  // the key of the CSR in flight
  std::string identity_error_;        // the last refusal, "" once a certificate came
  std::optional<Deferred> deferred_;
  v1::ProxyConfig running_config_;  // the compiled config running (no identity filled in)
  bool have_running_config_ = false;
  v1::ProxyConfig stored_compiled_;  // loadStored()'s config before filling in the identity
  std::string stored_compiled_hash_, stored_filled_hash_;
  std::shared_ptr<stats::Gauge> identity_expiry_, identity_expiring_;
  std::shared_ptr<stats::Counter> identity_renewals_, identity_failures_;
  net::tls::IdentityRenewal renewal_;
};

// ------------------------------------------------------------------------------------------------

Agent::Agent(net::EventLoop& loop, AgentOptions options, ApplyFn apply, stats::Registry& registry)
    : impl_(std::make_unique<Impl>(loop, std::move(options), std::move(apply), registry)) {}
Agent::~Agent() = default;
std::optional<v1::ProxyConfig> Agent::loadStored() const { return impl_->loadStored(); }
void Agent::setRunning(const v1::ProxyConfig& config) { impl_->setRunning(config); }
void Agent::start() { impl_->start(); }
void Agent::stop() { impl_->stop(); }
void Agent::setHealthSource(HealthSource source) { impl_->setHealthSource(std::move(source)); }
void Agent::healthChanged() { impl_->healthChanged(); }
bool Agent::connected() const { return impl_->connected(); }
uint64_t Agent::lastAppliedVersion() const { return impl_->lastAppliedVersion(); }
const std::string& Agent::lastError() const { return impl_->lastError(); }
const AgentOptions& Agent::options() const { return impl_->options(); }
std::string Agent::identity() const { return impl_->identitySpiffe(); }
int64_t Agent::identityExpiresAt() const { return impl_->identityExpiresAt(); }

}  // namespace weft::proxy
