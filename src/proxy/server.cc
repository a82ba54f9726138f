#include "proxy/server.h"

#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>

#include "common/log.h"
#include "net/socket.h"
#include "net/tls/tls_context.h"
#include "proxy/access_log.h"
#include "proxy/admin.h"
#include "proxy/config_defaults.h"
#include "proxy/config_loader.h"
#include "proxy/worker.h"

namespace weft::proxy {

namespace sn = stats::names;

namespace {
sigset_t handledSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGUSR1);
  return set;
}

}  // namespace

// SIGHUP, SIGTERM, SIGINT through a signalfd read on the main loop (no async-signal handlers).
class Server::Signals final : public net::IoHandler {
 public:
  explicit Signals(Server& s) : server_(s) {
    sigset_t set = handledSignals();
    fd_ = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    server_.loop_.add(fd_, EPOLLIN, this);
  }
  ~Signals() {
    server_.loop_.remove(fd_);
    ::close(fd_);
  }
  void onIoEvents(uint32_t) override {
    signalfd_siginfo si;
    while (::read(fd_, &si, sizeof si) == sizeof si) {
      if (si.ssi_signo == SIGHUP && server_.options_.config_path.empty()) {
        log::info("server", "SIGHUP ignored: the config comes from the control plane");
      } else if (si.ssi_signo == SIGHUP) {
        log::info("server", "SIGHUP: reloading " + server_.options_.config_path);
        Status st = server_.reload();
        if (!st)
          log::error("server",
                     "reload refused, keeping the running config:\n" + st.error().message);
      } else if (si.ssi_signo == SIGUSR1) {
        for (auto& [path, w] : server_.log_writers_) w->reopen();
      } else {
        log::info("server",
                  std::string(si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT") + ": draining");
        server_.beginDrain();
      }
    }
  }

 private:
  Server& server_;
  int fd_;
};

ListenSocket::~ListenSocket() {
  if (fd_ >= 0) ::close(fd_);
}

Server::Server(ServerOptions options) : options_(std::move(options)) {
  // Every thread started from here on inherits this mask, so the signals reach only the main
  // loop's signalfd (a worker or log-writer thread taking SIGTERM would kill the process).
  sigset_t set = handledSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  if (options_.concurrency == 0) options_.concurrency = 1;
  registry_ = std::make_unique<stats::Registry>(options_.concurrency);
  reload_ok_ = registry_->counter(sn::kServerConfigUpdateSuccess);
  reload_rejected_ = registry_->counter(sn::kServerConfigUpdateRejected);
  registry_->gauge(sn::kServerConcurrency)->set(options_.concurrency);
}

Server::~Server() {
  for (auto& w : workers_) w->stopAndJoin();
  workers_.clear();
  for (auto& [p, w] : log_writers_) w->stop();
}

Status Server::start() {
  started_ = std::chrono::steady_clock::now();
  if (!options_.config_path.empty()) {
    auto cfg = loadConfigFile(options_.config_path);
    if (!cfg) return makeError(cfg.error().message);
    auto admin = AdminServer::create(*this, loop_, options_.admin ? *options_.admin : cfg->admin());
    if (!admin) return makeError(admin.error().message);
    admin_ = std::move(*admin);
    Status st = applyConfig(*cfg);
    if (!st) return st;
    signals_ = std::make_unique<Signals>(*this);
    return {};
  }
  if (!options_.control_plane) return makeError("no config file and no control plane given");

  // Agent mode.
  auto resource = meshconfig::parseProxyResource(options_.agent.resource);
  if (!resource) return makeError(resource.error().message);
  registry_->setConstantLabels(resourceLabels(*resource));
  auto admin = AdminServer::create(*this, loop_, options_.admin.value_or(v1::Admin{}));
  if (!admin) return makeError(admin.error().message);
  admin_ = std::move(*admin);
  signals_ = std::make_unique<Signals>(*this);
  agent_ = std::make_unique<Agent>(
      loop_, options_.agent, [this](const v1::ProxyConfig& c) { return applyConfig(c); },
      *registry_);
  agent_->setHealthSource([this] { return appHealth(); });
  if (auto stored = agent_->loadStored()) {
    Status st = applyConfig(*stored);
    if (st) {
      agent_->setRunning(*stored);
      log::info("server", "serving the stored config from " + options_.agent.state_dir +
                              " until the control plane sends one");
    } else {
      log::warn("server", "the stored config in " + options_.agent.state_dir +
                              " cannot be applied, waiting for the control plane:\n" +
                              st.error().message);
    }
  }
  if (!snapshot_) {
    writePortsFile();
    log::info("server", "admin on " + admin_->address().toString() +
                            ", waiting for the first config from the control plane (" +
                            options_.agent.addresses.front() + ")");
  }
  agent_->start();
  return {};
}

Status Server::applyConfig(const v1::ProxyConfig& config) {
  if (draining_) return makeError("the proxy is draining; no new config is applied");
  // A pushed config leaves admin unset: check it against the admin this proxy really runs
  // (--admin), not the default address.
  Status valid = [&] {
    if (!options_.control_plane) return validateConfig(config);
    v1::ProxyConfig checked = config;
    *checked.mutable_admin() = options_.admin.value_or(v1::Admin{});
    return validateConfig(checked);
  }();
  if (!valid) {
    reload_rejected_->inc();
    return valid;
  }
  auto snap = build(config);
  if (!snap) {
    reload_rejected_->inc();
    return makeError(snap.error().message);
  }
  if (!options_.control_plane) {
    // File mode: the labels follow the config's node when it names an App Mesh resource.
    auto res = meshconfig::parseProxyResource(config.node());
    registry_->setConstantLabels(res ? resourceLabels(*res) : stats::Labels{});
  }
  const bool first = !snapshot_;
  if (first) {
    snapshot_ = *snap;
    for (uint32_t i = 0; i < options_.concurrency; ++i) {
      workers_.push_back(std::make_unique<Worker>(i, upstream::FastRandom::seedFromEntropy() + i));
      workers_.back()->start(snapshot_);
    }
    cert_timer_ = std::make_unique<Timer>(loop_.timers(), [this] { pollCertificates(); });
    cert_timer_->arm(seconds(1));
  } else {
    publish(*snap);
    reload_ok_->inc();
  }
  // Forget refreshers of clusters that are gone or no longer DNS, so none overwrites their hosts.
  for (auto it = dns_.begin(); it != dns_.end();) {
    bool keep = false;
    for (const auto& c : snapshot_->config.clusters())
      if (c.name() == it->first && c.type() == v1::Cluster::DNS) keep = true;
    it = keep ? std::next(it) : dns_.erase(it);
  }
  cert_fingerprint_ = certificateFingerprint(snapshot_->config);
  if (first) {
    for (auto& l : snapshot_->listeners) {
      log::info("server",
                "listener " + l->name + " on " + net::localAddress(l->socket->fd()).toString() +
                    (l->tls.mode == ListenerTlsSeam::Mode::kStrict       ? " (TLS STRICT)"
                     : l->tls.mode == ListenerTlsSeam::Mode::kPermissive ? " (TLS PERMISSIVE)"
                                                                         : ""));
    }
    log::info("server", "admin on " + admin_->address().toString() + ", " +
                            std::to_string(options_.concurrency) + " worker(s), ready");
  } else {
    log::info("server", "config version " + std::to_string(snapshot_->version) + " active");
  }
  writePortsFile();
  return {};
}

int Server::run() {
  loop_.run();
  return 0;
}

void Server::writePortsFile() {
  if (options_.ports_file.empty() || !admin_) return;
  std::string json =
      "{\"admin\": " + std::to_string(admin_->address().port()) + ", \"listeners\": {";
  bool first = true;
  static const std::vector<std::shared_ptr<const ListenerInfo>> kNone;
  for (auto& l : snapshot_ ? snapshot_->listeners : kNone) {
    if (!first) json += ", ";
    first = false;
    json += "\"" + l->name + "\": " + std::to_string(net::localAddress(l->socket->fd()).port());
  }
  json += "}}\n";
  std::string tmp = options_.ports_file + ".tmp";
  {
    std::ofstream f(tmp);
    f << json;
  }
  std::rename(tmp.c_str(), options_.ports_file.c_str());
}

Status Server::reload() {
  if (options_.config_path.empty())
    return makeError("no config file to reload: the config comes from the control plane");
  auto cfg = loadConfigFile(options_.config_path);
  if (!cfg) {
    reload_rejected_->inc();
    return makeError(cfg.error().message);
  }
  return applyConfig(*cfg);
}

void Server::publish(SnapshotPtr s) {
  // Health checkers of clusters that are gone (or no longer checked) stop. Never called from a
  // checker callback for that checker's own cluster (it is still in the snapshot then).
  for (auto it = health_.begin(); it != health_.end();) {
    const ClusterInfo* ci = s->cluster(it->first);
    if (!ci || !ci->config.has_health_check()) {
      it = health_.erase(it);
    } else {
      ++it;
    }
  }
  snapshot_ = std::move(s);
  for (auto& w : workers_) w->post(snapshot_);
  registry_->prune();
}

// mtime/size/inode of every certificate, key and bundle file the config names.
std::string Server::certificateFingerprint(const v1::ProxyConfig& c) const {
  std::string fp;
  auto add = [&](const std::string& path) {
    if (path.empty()) return;
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) {
      fp += path + ":missing;";
      return;
    }
    fp += path + ":" + std::to_string(st.st_ino) + ":" + std::to_string(st.st_size) + ":" +
          std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec) + ";";
  };
  for (auto& l : c.listeners())
    for (const auto& f : net::tls::filesOf(l.tls())) add(f);
  for (auto& cl : c.clusters())
    for (const auto& f : net::tls::filesOf(cl.tls())) add(f);
  return fp;
}

// Certificates rotate by replacing files: rebuild the snapshot from the running config when any
// of them changes. A half-written file fails to load and the old contexts stay.
void Server::pollCertificates() {
  cert_timer_->arm(seconds(1));
  if (draining_ || !snapshot_) return;
  std::string fp = certificateFingerprint(snapshot_->config);
  if (fp == cert_fingerprint_) return;
  auto snap = build(snapshot_->config);
  if (!snap) {
    log::warn("tls", "certificate files changed but cannot be loaded (keeping the old ones): " +
                         snap.error().message);
    return;
  }
  cert_fingerprint_ = fp;
  publish(*snap);
  log::info("tls", "certificates reloaded");
}

Result<SnapshotPtr> Server::build(const v1::ProxyConfig& config) {
  auto s = std::make_shared<Snapshot>();
  s->version = ++version_;
  s->config = config;
  std::string errors;
  for (const auto& c : config.clusters()) {
    auto ci = buildCluster(c);
    if (!ci) {
      errors += ci.error().message + "\n";
      continue;
    }
    s->clusters.emplace(c.name(), *ci);
  }
  if (!errors.empty()) return makeError(errors);
  bool need_passthrough = false;
  for (const auto& l : config.listeners()) {
    need_passthrough |=
        l.has_interception() && (l.interception().direction() == v1::Interception::INBOUND ||
                                 l.interception().egress_filter() == v1::Interception::ALLOW_ALL);
  }
  if (need_passthrough && !s->clusters.count(kPassthroughCluster)) {
    // Relays to each connection's own destination; its pool gives limits, timeouts and counters.
    v1::Cluster pc;
    pc.set_name(kPassthroughCluster);
    auto ci = buildCluster(pc);
    if (!ci) return makeError(ci.error().message);
    s->clusters.emplace(kPassthroughCluster, *ci);
  }
  for (const auto& l : config.listeners()) {
    auto li = buildListener(l, *s, nullptr);
    if (!li) {
      errors += li.error().message + "\n";
      continue;
    }
    s->listeners.push_back(*li);
  }
  if (!errors.empty()) return makeError(errors);
  return SnapshotPtr(std::move(s));
}

Result<std::shared_ptr<const ListenerInfo>> Server::buildListener(
    const v1::Listener& l, const Snapshot& building, std::shared_ptr<ListenSocket> shared_socket,
    bool passthrough_unrouted) {
  auto li = std::make_shared<ListenerInfo>();
  li->name = l.name();
  li->passthrough_unrouted = passthrough_unrouted;
  li->config = l;
  const std::string where = "listeners[" + l.name() + "]";
  li->socket = std::move(shared_socket);  // a filter chain shares its listener's socket

  // Reuse the socket of a running listener with the same name, address and port (port 0 keeps
  // the port it got), so reloads never drop the listening socket.
  if (snapshot_ && !li->socket) {
    for (auto& old : snapshot_->listeners) {
      if (old->name == l.name() && old->config.address() == l.address() &&
          old->config.port() == l.port()) {
        li->socket = old->socket;
      }
    }
  }
  if (!li->socket) {
    auto addr = net::parseAddress(listenerAddress(l), static_cast<uint16_t>(l.port()));
    if (!addr) return makeError(where + ".address: " + addr.error().message);
    auto fd = net::listenTcp(*addr);
    if (!fd) return makeError(where + ": " + fd.error().message);
    li->socket = std::make_shared<ListenSocket>(*fd);
  }

  auto router = http::Router::compile(
      l.route_config(),
      [&](std::string_view name) { return building.clusters.count(std::string(name)) > 0; },
      where + ".route_config");
  if (!router) return makeError(router.error().message);
  li->router = std::move(*router);
  // Retry policies in RouteEntry::index() order: virtual_hosts[0]'s routes first, then [1]...
  for (const auto& vh : l.route_config().virtual_hosts()) {
    for (const auto& route : vh.routes()) {
      upstream::RetryPolicy policy;
      if (route.has_route() && route.route().has_retry_policy()) {
        auto compiled = upstream::RetryPolicy::compile(retryConfig(route.route().retry_policy()));
        if (!compiled) return makeError(where + ".route_config: " + compiled.error().message);
        policy = std::move(*compiled);
      }
      li->retry_policies.push_back(std::move(policy));
    }
  }

  if (l.has_tcp_proxy()) {
    li->tcp_cluster = l.tcp_proxy().cluster();
    li->tcp_idle_timeout = tcpIdleTimeout(l.tcp_proxy());
  }
  if (l.has_interception()) {
    const v1::Interception& ic = l.interception();
    li->interception = ic.direction() == v1::Interception::INBOUND
                           ? ListenerInfo::Interception::kInbound
                           : ListenerInfo::Interception::kOutbound;
    li->allow_all_egress = ic.egress_filter() == v1::Interception::ALLOW_ALL;
    // Chains and the passthrough are listeners of their own (stats labelled
    // "<listener>/<chain>") that share this socket; only this listener is accepted on.
    auto child = [&](const std::string& suffix) {
      v1::Listener c = l;
      c.clear_interception();
      c.clear_filter_chains();
      c.clear_route_config();
      c.clear_tcp_proxy();
      c.set_name(l.name() + "/" + suffix);
      return c;
    };
    for (const v1::FilterChain& fc : l.filter_chains()) {
      v1::Listener c = child(fc.name());
      *c.mutable_route_config() = fc.route_config();
      if (fc.has_tcp_proxy()) *c.mutable_tcp_proxy() = fc.tcp_proxy();
      bool unrouted_out = !fc.has_tcp_proxy() &&
                          li->interception == ListenerInfo::Interception::kOutbound &&
                          li->allow_all_egress;
      auto ci = buildListener(c, building, li->socket, unrouted_out);
      if (!ci) return makeError(ci.error().message);
      FilterChainInfo chain;
      for (uint32_t p : fc.destination_ports()) chain.ports.push_back(static_cast<uint16_t>(p));
      for (const std::string& cidr : fc.destination_cidrs()) {
        auto parsed = net::parseCidr(cidr);
        if (!parsed) return makeError(where + ".filter_chains: " + parsed.error().message);
        chain.cidrs.push_back(*parsed);
      }
      chain.listener = *ci;
      li->chains.push_back(std::move(chain));
    }
    if (li->interception == ListenerInfo::Interception::kInbound || li->allow_all_egress) {
      v1::Listener c = child("passthrough");
      c.mutable_tcp_proxy()->set_cluster(kPassthroughCluster);
      auto ci = buildListener(c, building, li->socket);
      if (!ci) return makeError(ci.error().message);
      li->passthrough = *ci;
    }
  }

  const v1::HttpOptions& h = l.http();
  li->request_timeout = requestTimeout(h);
  li->idle_timeout = idleTimeout(h);
  li->max_head_bytes = maxRequestHeadersBytes(h);
  li->max_body_bytes = h.max_request_body_bytes();
  li->server_name = serverName(h);
  li->preserve_upstream_server = h.preserve_upstream_server();

  if (l.tls().mode() != v1::ListenerTls::DISABLED) {
    // A rebuilt context inherits its predecessor's ticket key: resumption survives rotation.
    const net::tls::ServerContext* previous = nullptr;
    if (snapshot_) {
      if (const ListenerInfo* old = snapshot_->listener(l.name()))
        previous = old->tls_context.get();
    }
    v1::ListenerTls tls_cfg = l.tls();
    if (tls_cfg.alpn().empty()) {
      for (const std::string& p : listenerAlpn(l)) tls_cfg.add_alpn(p);  // h2, http/1.1
    }
    net::tls::ContextCounters counters;
    counters.crl_expired = registry_->counter(names::kListenerSslCrlExpired,
                                              {{std::string(sn::kLabelListener), l.name()}});
    auto ctx =
        net::tls::ServerContext::create(tls_cfg, where + ".tls", previous, std::move(counters));
    if (!ctx) return makeError(ctx.error().message);
    std::shared_ptr<const net::tls::ServerContext> sc = *ctx;
    li->tls_context = sc;
    li->tls.mode = l.tls().mode() == v1::ListenerTls::STRICT ? ListenerTlsSeam::Mode::kStrict
                                                             : ListenerTlsSeam::Mode::kPermissive;
    li->tls.make_tls = [sc](int fd) { return sc->newTransport(fd); };
    li->secure = l.tls().mode() == v1::ListenerTls::STRICT;
  }

  if (l.has_authorization()) {
    auto rules = net::tls::sanRulesFrom(l.authorization().allowed(), where + ".authorization");
    if (!rules) return makeError(rules.error().message);
    li->authorized_peers = std::move(*rules);
  }

  for (const auto& al : l.access_logs()) {
    auto fmt = AccessLogFormatter::fromConfig(al);
    if (!fmt) return makeError(where + ".access_logs: " + fmt.error().message);
    std::string path = al.path().empty() ? "/dev/stdout" : al.path();
    auto& writer = log_writers_[path];
    if (!writer) {
      stats::Labels lbl{{std::string(sn::kLabelPath), path}};
      auto w = AccessLogWriter::open(path, options_.concurrency, {},
                                     registry_->counter(sn::kAccessLogDropped, lbl),
                                     registry_->counter(sn::kAccessLogWriteErrors, lbl));
      if (!w) {
        log_writers_.erase(path);
        return makeError(where + ".access_logs: " + w.error().message);
      }
      writer = *w;
    }
    auto merge = [](std::vector<std::string>& into, const std::vector<std::string>& names) {
      for (const auto& n : names)
        if (std::find(into.begin(), into.end(), n) == into.end()) into.push_back(n);
    };
    merge(li->log_request_headers, fmt->requestHeaderNames());
    merge(li->log_response_headers, fmt->responseHeaderNames());
    li->access_logs.push_back(std::make_shared<AccessLogSink>(std::move(*fmt), writer));
  }

  // Stats.
  auto& r = *registry_;
  stats::Labels lb{{std::string(sn::kLabelListener), l.name()}};
  ListenerStats& st = li->stats;
  st.cx_total = r.counter(sn::kListenerDownstreamCxTotal, lb);
  st.cx_active = r.gauge(sn::kListenerDownstreamCxActive, lb);
  st.rx_bytes = r.counter(sn::kListenerDownstreamCxRxBytes, lb);
  st.tx_bytes = r.counter(sn::kListenerDownstreamCxTxBytes, lb);
  st.protocol_error = r.counter(sn::kListenerDownstreamCxProtocolError, lb);
  st.idle_timeout = r.counter(sn::kListenerDownstreamCxIdleTimeout, lb);
  st.upgrades_total = r.counter(names::kListenerDownstreamCxUpgrades, lb);
  st.upgrades_active = r.gauge(names::kListenerDownstreamCxUpgradesActive, lb);
  st.rq_total = r.counter(sn::kListenerDownstreamRqTotal, lb);
  st.rq_active = r.gauge(sn::kListenerDownstreamRqActive, lb);
  st.rq_timeout = r.counter(sn::kListenerDownstreamRqTimeout, lb);
  st.rq_too_large = r.counter(sn::kListenerDownstreamRqTooLarge, lb);
  st.rq_time = r.histogram(sn::kListenerDownstreamRqTime, lb);
  st.no_route = r.counter(sn::kListenerNoRoute, lb);
  li->cx_refused = r.counter(sn::kListenerEgressRefused, lb);
  li->authz_denied = r.counter("weft_listener_authz_denied_total", lb);
  st.ssl_handshake = r.counter(sn::kListenerSslHandshake, lb);
  st.ssl_error = r.counter(sn::kListenerSslConnectionError, lb);
  st.ssl_no_cert = r.counter(sn::kListenerSslFailVerifyNoCert, lb);
  st.ssl_verify_error = r.counter(sn::kListenerSslFailVerifyError, lb);
  st.ssl_san = r.counter(sn::kListenerSslFailVerifySan, lb);
  st.ssl_no_certificate = r.counter(names::kListenerSslNoCertificate, lb);
  st.ssl_crl_expired = r.counter(names::kListenerSslCrlExpired, lb);
  if (li->tls_context) {
    st.ssl_cert_expiry = r.gauge("weft_listener_ssl_certificate_expiry_timestamp_seconds", lb);
    st.ssl_cert_expiry->set(li->tls_context->certificateNotAfter());
  }
  li->http2_stats = http2::makeStats(r, sn::kListenerHttp2Prefix, lb);
  for (int i = 0; i < 5; ++i) {
    stats::Labels lc = lb;
    lc.emplace_back(std::string(sn::kLabelResponseCodeClass), std::to_string(i + 1) + "xx");
    st.rq_xx[i] = r.counter(sn::kListenerDownstreamRqXx, lc);
  }
  for (const http::RouteEntry& re : li->router->routes()) {
    stats::Labels rl{{std::string(sn::kLabelListener), l.name()},
                     {std::string(sn::kLabelVirtualHost), re.virtualHostName()},
                     {std::string(sn::kLabelRoute),
                      re.name().empty() ? "route_" + std::to_string(re.index()) : re.name()}};
    RouteStats rs;
    rs.rq_total = r.counter(sn::kRouteUpstreamRqTotal, rl);
    rs.rq_timeout = r.counter(sn::kRouteUpstreamRqTimeout, rl);
    rs.rq_time = r.histogram(sn::kRouteUpstreamRqTime, rl);
    for (int i = 0; i < 5; ++i) {
      stats::Labels lc = rl;
      lc.emplace_back(std::string(sn::kLabelResponseCodeClass), std::to_string(i + 1) + "xx");
      rs.rq_xx[i] = r.counter(sn::kRouteUpstreamRqXx, lc);
    }
    li->route_stats.push_back(std::move(rs));
  }
  return std::shared_ptr<const ListenerInfo>(std::move(li));
}

Result<std::shared_ptr<const ClusterInfo>> Server::buildCluster(const v1::Cluster& c) {
  auto ci = std::make_shared<ClusterInfo>();
  ci->name = c.name();
  ci->config = c;
  ci->config_key = c.SerializeAsString();
  const std::string where = "clusters[" + c.name() + "]";
  ci->lb_policy = c.lb_policy() == v1::Cluster::LEAST_REQUEST ? upstream::LbPolicy::kLeastRequest
                                                              : upstream::LbPolicy::kRoundRobin;
  ci->limits.max_connections = maxConnections(c);
  ci->limits.max_pending = maxPendingRequests(c);
  ci->limits.connect_timeout = connectTimeout(c);
  ci->limits.idle_timeout = clusterIdleTimeout(c);

  if (c.type() == v1::Cluster::DNS) {
    // Resolved asynchronously; until the first answer the set is empty (503 no healthy upstream).
    ensureDns(c);
    ci->hosts = dns_[c.name()].hosts;
    if (!ci->hosts)
      ci->hosts = std::make_shared<const upstream::HostSet>(std::vector<upstream::Host>{});
  } else {
    std::vector<upstream::Host> hosts;
    for (const auto& e : c.endpoints()) {
      auto addr = net::parseAddress(e.address(), static_cast<uint16_t>(e.port()));
      if (!addr) return makeError(where + ".endpoints: " + addr.error().message);
      hosts.emplace_back(*addr);
    }
    ci->hosts = std::make_shared<const upstream::HostSet>(std::move(hosts));
  }

  ci->breaker_limits = breakerLimits(c);
  if (c.has_outlier_detection()) ci->outlier = outlierConfig(c.outlier_detection());
  ci->panic_threshold_percent = panicThresholdPercent(c);
  ci->http2 = c.protocol() == v1::Cluster::HTTP2;

  int64_t client_cert_expiry = 0;
  if (c.has_tls()) {
    v1::UpstreamTls tls_cfg = c.tls();
    if (ci->http2 && tls_cfg.alpn().empty()) tls_cfg.add_alpn("h2");
    net::tls::ContextCounters counters;
    counters.crl_expired = registry_->counter(names::kClusterSslCrlExpired,
                                              {{std::string(sn::kLabelCluster), c.name()}});
    auto ctx = net::tls::ClientContext::create(tls_cfg, where + ".tls", std::move(counters));
    if (!ctx) return makeError(ctx.error().message);
    std::shared_ptr<const net::tls::ClientContext> cc = *ctx;
    client_cert_expiry = cc->certificateNotAfter();
    ci->transport_factory = [cc](int fd, const upstream::Host& h) {
      return cc->newTransport(fd, h.hostname());
    };
  } else {
    ci->transport_factory = [](int fd, const upstream::Host&) {
      return net::makePlainTransport(fd);
    };
  }

  auto& r = *registry_;
  stats::Labels lb{{std::string(sn::kLabelCluster), c.name()}};
  ClusterStats& st = ci->stats;
  st.cx_total = r.counter(sn::kClusterUpstreamCxTotal, lb);
  st.cx_active = r.gauge(sn::kClusterUpstreamCxActive, lb);
  st.cx_connect_fail = r.counter(sn::kClusterUpstreamCxConnectFail, lb);
  st.cx_connect_timeout = r.counter(sn::kClusterUpstreamCxConnectTimeout, lb);
  st.cx_overflow = r.counter(sn::kClusterUpstreamCxOverflow, lb);
  st.rx_bytes = r.counter(sn::kClusterUpstreamCxRxBytes, lb);
  st.tx_bytes = r.counter(sn::kClusterUpstreamCxTxBytes, lb);
  st.rq_total = r.counter(sn::kClusterUpstreamRqTotal, lb);
  st.rq_active = r.gauge(sn::kClusterUpstreamRqActive, lb);
  st.rq_pending_active = r.gauge(sn::kClusterUpstreamRqPendingActive, lb);
  st.rq_pending_overflow = r.counter(sn::kClusterUpstreamRqPendingOverflow, lb);
  st.rq_timeout = r.counter(sn::kClusterUpstreamRqTimeout, lb);
  st.rq_time = r.histogram(sn::kClusterUpstreamRqTime, lb);
  st.connect_ms = r.histogram(sn::kClusterUpstreamCxConnectMs, lb);
  st.ssl_handshake = r.counter(sn::kClusterSslHandshake, lb);
  st.ssl_error = r.counter(sn::kClusterSslConnectionError, lb);
  st.ssl_verify_error = r.counter(sn::kClusterSslFailVerifyError, lb);
  st.ssl_san = r.counter(sn::kClusterSslFailVerifySan, lb);
  st.ssl_crl_expired = r.counter(names::kClusterSslCrlExpired, lb);
  if (client_cert_expiry > 0) {
    st.ssl_cert_expiry = r.gauge("weft_cluster_ssl_certificate_expiry_timestamp_seconds", lb);
    st.ssl_cert_expiry->set(client_cert_expiry);
  }
  st.rq_retry = r.counter(sn::kClusterUpstreamRqRetry, lb);
  st.rq_retry_success = r.counter(sn::kClusterUpstreamRqRetrySuccess, lb);
  st.breaker.cx_overflow = st.cx_overflow;
  st.breaker.rq_pending_overflow = st.rq_pending_overflow;
  st.breaker.rq_overflow = r.counter(sn::kClusterUpstreamRqOverflow, lb);
  st.breaker.rq_retry_overflow = r.counter(sn::kClusterUpstreamRqRetryOverflow, lb);
  st.outlier.ejections_active = r.gauge(sn::kClusterOutlierEjectionsActive, lb);
  st.outlier.ejections_enforced = r.counter(sn::kClusterOutlierEjectionsEnforced, lb);
  st.outlier.ejections_overflow = r.counter(sn::kClusterOutlierEjectionsOverflow, lb);
  st.membership = r.gauge(sn::kClusterMembershipEndpoints, lb);
  if (ci->http2) st.http2 = http2::makeStats(r, names::kClusterHttp2Prefix, lb);
  st.membership->set(static_cast<int64_t>(ci->hosts->size()));
  if (c.has_health_check()) {
    // Probed on this (the main) thread; workers see the result as Host::healthy() in the
    // published set.
    HealthCluster& hc = ensureHealth(c, *ci, lb);
    hc.base = ci->hosts;
    hc.checker->update(*hc.base);
    ci->hosts = hc.checker->withHealth(*hc.base);
  }
  if (ci->outlier)
    ci->outlier_board = std::make_shared<upstream::OutlierBoard>(ci->hosts, concurrency());
  for (int i = 0; i < 5; ++i) {
    stats::Labels lc = lb;
    lc.emplace_back(std::string(sn::kLabelResponseCodeClass), std::to_string(i + 1) + "xx");
    st.rq_xx[i] = r.counter(sn::kClusterUpstreamRqXx, lc);
  }
  return std::shared_ptr<const ClusterInfo>(std::move(ci));
}

void Server::ensureDns(const v1::Cluster& c) {
  std::string key;
  std::vector<upstream::DnsEndpoint> eps;
  for (const auto& e : c.endpoints()) {
    key += e.address() + ":" + std::to_string(e.port()) + ";";
    eps.push_back({e.address(), static_cast<uint16_t>(e.port())});
  }
  key += std::to_string(dnsMinRefresh(c).count()) + ";" + std::to_string(c.dns_family()) + ";" +
         std::to_string(c.dns_lookup());
  DnsCluster& d = dns_[c.name()];
  if (d.refresher && d.endpoints_key == key) return;
  if (!resolver_) {
    auto r = upstream::DnsResolver::create(loop_);
    if (!r) {
      log::error("dns", "cannot start the resolver: " + r.error().message);
      return;
    }
    resolver_ = std::move(*r);
  }
  upstream::DnsRefresherOptions opts;
  opts.min_refresh = dnsMinRefresh(c);
  switch (c.dns_family()) {
    case v1::Cluster::V4_ONLY:
      opts.family = upstream::DnsFamily::kV4Only;
      break;
    case v1::Cluster::V6_ONLY:
      opts.family = upstream::DnsFamily::kV6Only;
      break;
    case v1::Cluster::V6_PREFERRED:
      opts.family = upstream::DnsFamily::kV6Preferred;
      break;
    default:
      opts.family = upstream::DnsFamily::kV4Preferred;
  }
  opts.first_address_only = c.dns_lookup() == v1::Cluster::FIRST_ADDRESS;
  d.endpoints_key = key;
  d.hosts = nullptr;
  std::string name = c.name();
  d.refresher = std::make_unique<upstream::DnsRefresher>(
      *resolver_, loop_.timers(), std::move(eps), opts,
      [this, name](const std::vector<upstream::ResolvedEndpoint>& list) {
        onDnsUpdate(name, upstream::makeHostSet(list));
      });
  d.refresher->start();
}

// A DNS answer changed a cluster's hosts: publish a snapshot that differs only in that cluster.
void Server::onDnsUpdate(const std::string& cluster, upstream::HostSetPtr hosts) {
  dns_[cluster].hosts = hosts;
  if (!snapshot_) return;  // the first build picks it up
  if (!snapshot_->cluster(cluster)) return;
  log::info("dns", "cluster " + cluster + ": " + std::to_string(hosts->size()) + " endpoint(s)");
  auto hc = health_.find(cluster);
  if (hc != health_.end()) {
    hc->second.base = hosts;
    hc->second.checker->update(*hosts);
    hosts = hc->second.checker->withHealth(*hosts);
  }
  republishHosts(cluster, std::move(hosts));
}

void Server::republishHosts(const std::string& cluster, upstream::HostSetPtr hosts) {
  const ClusterInfo* old = snapshot_ ? snapshot_->cluster(cluster) : nullptr;
  if (!old) return;
  auto ci = std::make_shared<ClusterInfo>(*old);
  ci->hosts = std::move(hosts);
  if (ci->outlier)
    ci->outlier_board = std::make_shared<upstream::OutlierBoard>(ci->hosts, concurrency());
  ci->stats.membership->set(static_cast<int64_t>(ci->hosts->size()));
  auto s = std::make_shared<Snapshot>(*snapshot_);
  s->version = ++version_;
  s->clusters[cluster] = std::move(ci);
  publish(std::move(s));
}

Server::HealthCluster& Server::ensureHealth(const v1::Cluster& c, const ClusterInfo& ci,
                                            const stats::Labels& labels) {
  const v1::HealthCheck& h = c.health_check();
  // A new probe setup (or TLS setting) restarts checking; anything else keeps the state.
  std::string key = h.SerializeAsString() + (c.has_tls() ? c.tls().SerializeAsString() : "") +
                    std::to_string(c.protocol());
  HealthCluster& hc = health_[c.name()];
  if (hc.checker && hc.key == key) return hc;
  hc.key = key;
  hc.checker.reset();
  auto port = static_cast<uint16_t>(h.port());
  if (h.protocol() == v1::HealthCheck::HTTP) {
    upstream::HttpProbeConfig pc;
    pc.path = h.path();
    pc.port = port;
    pc.secure = c.has_tls();
    if (c.protocol() == v1::Cluster::HTTP2)  // an h2-only endpoint may not speak HTTP/1.1
      hc.factory = std::make_unique<upstream::Http2ProbeFactory>(loop_, loop_.time(), pc,
                                                                 ci.transport_factory);
    else
      hc.factory = std::make_unique<upstream::HttpProbeFactory>(loop_, pc, ci.transport_factory);
  } else if (h.protocol() == v1::HealthCheck::GRPC) {
    upstream::GrpcProbeConfig gc;
    gc.service = h.path();
    gc.port = port;
    gc.secure = c.has_tls();
    hc.factory = std::make_unique<upstream::GrpcHealthProbeFactory>(loop_, loop_.time(), gc,
                                                                    ci.transport_factory);
  } else {
    hc.factory = std::make_unique<upstream::TcpProbeFactory>(loop_, ci.transport_factory, port);
  }
  auto& r = *registry_;
  upstream::HealthCheckStats st{r.counter(sn::kClusterHealthCheckAttempt, labels),
                                r.counter(sn::kClusterHealthCheckFailure, labels),
                                r.gauge(sn::kClusterMembershipHealthy, labels)};
  std::string name = c.name();
  upstream::HealthCheckCallbacks cb;
  cb.on_host_changed = [name](const net::Address& a, bool healthy, std::string_view detail) {
    log::info("health", "cluster " + name + ": " + a.toString() +
                            (healthy ? " is healthy" : " is unhealthy: " + std::string(detail)));
  };
  cb.on_set_changed = [this, name] {
    auto it = health_.find(name);
    if (it == health_.end() || !it->second.base) return;
    republishHosts(name, it->second.checker->withHealth(*it->second.base));
    if (agent_) agent_->healthChanged();
  };
  hc.checker = std::make_unique<upstream::HealthChecker>(healthCheckConfig(h), *hc.factory,
                                                         loop_.timers(), std::move(cb), st);
  return hc;
}

std::vector<std::pair<uint32_t, AppHealth>> Server::appHealth() const {
  std::vector<std::pair<uint32_t, AppHealth>> out;
  if (!snapshot_) return out;
  for (const v1::Cluster& c : snapshot_->config.clusters()) {
    if (c.name().rfind("cds_ingress_", 0) != 0 || c.endpoints_size() == 0) continue;
    const v1::Endpoint& e = c.endpoints(0);
    AppHealth state = AppHealth::kUnknown;
    auto hc = health_.find(c.name());
    auto address = net::parseAddress(e.address(), static_cast<uint16_t>(e.port()));
    if (hc != health_.end() && hc->second.checker && address &&
        !hc->second.checker->pending(*address))
      state = hc->second.checker->healthy(*address) ? AppHealth::kHealthy : AppHealth::kUnhealthy;
    out.emplace_back(e.port(), state);
  }
  return out;
}

void Server::beginDrain() {
  if (draining_) return;
  draining_ = true;
  if (agent_) agent_->stop();
  if (workers_.empty()) {
    log::info("server", "no config was ever active; exiting");
    loop_.post([this] { loop_.stop(); });
    return;
  }
  auto drain_for = drainTime(snapshot_->config);
  log::info("server", "draining for up to " + std::to_string(drain_for.count()) + " ms");
  for (auto& w : workers_) {
    w->drain([this] {
      loop_.post([this] {
        if (++workers_drained_ == workers_.size()) {
          log::info("server", "drained, exiting");
          loop_.stop();
        }
      });
    });
  }
  // Stop accepting: new connections are refused from now on (shutdown of a listening socket).
  for (auto& l : snapshot_->listeners) ::shutdown(l->socket->fd(), SHUT_RD);
  drain_timer_ = std::make_unique<Timer>(loop_.timers(), [this] {
    log::warn("server", "drain time elapsed with requests in flight; exiting");
    loop_.stop();
  });
  drain_timer_->arm(drain_for);
}

}  // namespace weft::proxy
