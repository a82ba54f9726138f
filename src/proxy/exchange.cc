#include "proxy/exchange.h"

#include <cctype>
#include <charconv>

#include "proxy/access_log.h"
#include "proxy/config_defaults.h"
#include "proxy/worker.h"

namespace weft::proxy {

namespace {

void appendUint(std::string& out, uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

int statusClass(int status) { return status >= 100 && status < 600 ? status / 100 - 1 : -1; }

}  // namespace

// No formatting library on the request path: 36 characters from two random words.
void makeRequestId(upstream::Random& r, std::string& out) {
  static constexpr char kHex[] = "0123456789abcdef";
  uint64_t a = r.next(), b = r.next();
  a = (a & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;  // version 4
  b = (b & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;  // variant 10
  char s[36];
  int k = 0;
  for (int i = 15; i >= 0; --i) {
    s[k++] = kHex[(a >> (i * 4)) & 0xf];
    if (k == 8 || k == 13) s[k++] = '-';
  }
  s[k++] = '-';
  for (int i = 15; i >= 0; --i) {
    s[k++] = kHex[(b >> (i * 4)) & 0xf];
    if (k == 23) s[k++] = '-';
  }
  out.assign(s, 36);
}

void ExchangeCore::begin(const ListenerInfo& li, const http1::RequestHead* h,
                         std::string_view proto) {
  active = true;
  protocol = proto;
  start = worker.loop().now();
  start_wall = worker.loop().time().systemNow();
  li.stats.rq_total->inc();
  li.stats.rq_active->add();
  if (!h) return;
  method.assign(h->method);
  method_id = h->method_id;
  path.assign(h->target);
  authority.assign(h->host);
  if (auto* f = h->find(http::HeaderToken::kXRequestId)) request_id.assign(f->value);
  for (const std::string& name : li.log_request_headers) {
    if (auto* f = h->find(name)) logged_request_headers.emplace_back(name, std::string(f->value));
  }
  if (request_id.empty()) makeRequestId(worker.random(), request_id);
  if (auto* ct = h->find(http::HeaderToken::kContentType)) grpc = isGrpcContentType(ct->value);
}

std::optional<LocalReply> ExchangeCore::route(const ListenerInfo& li, const http1::RequestHead& h,
                                              const std::optional<net::Address>& original_dst) {
  http::RequestView view;
  view.method = h.method;
  view.path = h.path;
  view.query = h.query;
  view.host = h.host;
  std::span<const http::HeaderField> fields(h.headers.data(), h.headers.size());
  view.headers = http::HeaderLookup(fields);
  route_entry = li.router ? li.router->route(view) : nullptr;
  if (!route_entry) {
    if (li.passthrough_unrouted && original_dst) return routePassthrough(li, *original_dst);
    li.stats.no_route->inc();
    return LocalReply{404, "no route matched this request", "NR"};
  }
  if (route_entry->kind() == http::RouteEntry::Kind::kDirectResponse) {
    return LocalReply{static_cast<int>(route_entry->directStatus()),
                      std::string(route_entry->directBody()), "-", false};
  }
  timeout = route_entry->timeout().value_or(li.request_timeout);
  stream_idle_timeout = route_entry->idleTimeout().value_or(Duration(0));
  if (grpc) {
    // The caller's deadline bounds the request, within the route's own timeout.
    if (auto* t = h.find(http::HeaderToken::kGrpcTimeout)) {
      if (auto d = parseGrpcTimeout(t->value)) {
        if (timeout.count() == 0 || *d < timeout) timeout = std::max(*d, Duration(1));
      }
    }
  }
  std::string_view cluster_name = route_entry->pickCluster(worker.random().next());
  cluster_rt = worker.cluster(cluster_name);
  if (!cluster_rt) return LocalReply{503, "no cluster named " + std::string(cluster_name), "NC"};
  cluster = cluster_rt->info;
  host_set = cluster->hosts;
  cluster->stats.rq_total->inc();
  cluster->stats.rq_active->add();
  rq_guard = cluster_rt->breaker->acquire(upstream::Resource::kRequests);
  if (!rq_guard) {
    return LocalReply{
        503, std::string(upstream::CircuitBreaker::overflowMessage(upstream::Resource::kRequests)),
        upstream::CircuitBreaker::kOverflowFlag.data()};
  }
  if (route_entry->index() < li.retry_policies.size() &&
      li.retry_policies[route_entry->index()].enabled())
    retry_policy = &li.retry_policies[route_entry->index()];
  host = cluster_rt->lb->pick();
  if (!host) return LocalReply{503, "no healthy upstream", "UH"};
  cluster_rt->lb->onRequestStart(*host);
  upstream_host = host->addressString();
  return std::nullopt;
}

std::optional<LocalReply> ExchangeCore::routePassthrough(const ListenerInfo& li,
                                                         const net::Address& dst) {
  timeout = li.request_timeout;
  cluster_rt = worker.cluster(kPassthroughCluster);
  if (!cluster_rt) return LocalReply{503, "no cluster named passthrough", "NC"};
  cluster = cluster_rt->info;
  cluster->stats.rq_total->inc();
  cluster->stats.rq_active->add();
  rq_guard = cluster_rt->breaker->acquire(upstream::Resource::kRequests);
  if (!rq_guard) {
    return LocalReply{
        503, std::string(upstream::CircuitBreaker::overflowMessage(upstream::Resource::kRequests)),
        upstream::CircuitBreaker::kOverflowFlag.data()};
  }
  fixed_host.emplace(dst);
  host = &*fixed_host;
  upstream_host = host->addressString();
  return std::nullopt;
}

void ExchangeCore::appendUpstreamHead(std::string& out, const ListenerInfo& li,
                                      const http1::RequestHead& h, UpstreamBody body,
                                      uint64_t length, std::string_view upgrade) const {
  out.append(h.method).push_back(' ');
  std::string_view pq = h.pathAndQuery();
  std::string rewritten;
  if (route_entry && !route_entry->prefixRewrite().empty()) {
    rewritten = route_entry->rewritePath(pq);
    pq = rewritten;
  }
  if (pq.empty() || pq[0] == '?') out.push_back('/');
  out.append(pq).append(" HTTP/1.1\r\n");
  bool have_request_id = false;
  for (const http::HeaderField& f : h.headers) {
    if (h.isHopByHop(f)) continue;
    switch (f.token) {
      case http::HeaderToken::kHost:
      case http::HeaderToken::kContentLength:
      case http::HeaderToken::kExpect:
      case http::HeaderToken::kXForwardedProto:
        continue;
      case http::HeaderToken::kXRequestId:
        have_request_id = true;
        break;
      default:
        break;
    }
    out.append(f.name).append(": ").append(f.value).append("\r\n");
  }
  out.append("host: ");
  out.append(!route_entry || route_entry->hostRewrite().empty()
                 ? std::string_view(h.host)
                 : std::string_view(route_entry->hostRewrite()));
  out.append("\r\n");
  if (!have_request_id) out.append("x-request-id: ").append(request_id).append("\r\n");
  out.append(li.secure ? "x-forwarded-proto: https\r\n" : "x-forwarded-proto: http\r\n");
  if (!upgrade.empty())
    out.append("connection: upgrade\r\nupgrade: ").append(upgrade).append("\r\n");
  switch (body) {
    case UpstreamBody::kLength:
      out.append("content-length: ");
      appendUint(out, length);
      out.append("\r\n");
      break;
    case UpstreamBody::kChunked:
      out.append("transfer-encoding: chunked\r\n");
      break;
    case UpstreamBody::kEmptyLength:
      out.append("content-length: 0\r\n");
      break;
    case UpstreamBody::kNone:
      break;
  }
  out.append("\r\n");
}

http2::RequestHeaders UpstreamH2Request::view() {
  views_.clear();
  views_.reserve(fields.size());
  for (const Field& f : fields) views_.push_back({f.name, f.value, f.token});
  return http2::RequestHeaders{method, scheme, authority, path, views_};
}

void ExchangeCore::buildUpstreamH2Request(UpstreamH2Request& out, const ListenerInfo& li,
                                          const http1::RequestHead& h, bool secure) const {
  out.method.assign(h.method);
  out.scheme = secure ? "https" : "http";
  std::string_view pq = h.pathAndQuery();
  std::string rewritten;
  if (route_entry && !route_entry->prefixRewrite().empty()) {
    rewritten = route_entry->rewritePath(pq);
    pq = rewritten;
  }
  out.path.clear();
  if (pq.empty() || pq[0] == '?') out.path.push_back('/');
  out.path.append(pq);
  out.authority.assign(!route_entry || route_entry->hostRewrite().empty()
                           ? std::string_view(h.host)
                           : std::string_view(route_entry->hostRewrite()));
  out.fields.clear();
  bool have_request_id = false;
  for (const http::HeaderField& f : h.headers) {
    if (f.token == http::HeaderToken::kTe) {
      // RFC 9113 §8.2.2: only "trailers" may cross (gRPC servers require it).
      bool trailers = http::equalsIgnoreCase(f.value, "trailers");
      if (!trailers) {
        std::string v(f.value);
        for (char& c : v) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
        trailers = v.find("trailers") != std::string::npos;
      }
      if (trailers) out.fields.push_back({"te", "trailers", http::HeaderToken::kTe});
      continue;
    }
    if (h.isHopByHop(f)) continue;
    switch (f.token) {
      case http::HeaderToken::kHost:
      case http::HeaderToken::kExpect:
      case http::HeaderToken::kXForwardedProto:
        continue;
      case http::HeaderToken::kXRequestId:
        have_request_id = true;
        break;
      default:
        break;
    }
    std::string name(f.name);  // HTTP/2 clients send lower case; HTTP/1 ones may not
    for (char& c : name)
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
    out.fields.push_back({std::move(name), std::string(f.value), f.token});
  }
  if (!have_request_id)
    out.fields.push_back({"x-request-id", request_id, http::HeaderToken::kXRequestId});
  out.fields.push_back(
      {"x-forwarded-proto", li.secure ? "https" : "http", http::HeaderToken::kXForwardedProto});
}

bool ExchangeCore::startRetry(const upstream::AttemptOutcome& outcome, bool replayable) {
  if (!retry_policy || !replayable) return false;
  if (retry_policy->decide(outcome, retries_done) != upstream::RetryDecision::kRetry) return false;
  if (!retry_guard) {
    retry_guard = cluster_rt->breaker->acquire(upstream::Resource::kRetries);
    if (!retry_guard) return false;  // the retry budget is spent (counted)
  }
  if (host) {
    tried.push_back(host->address());
    releaseHost();
  }
  ++retries_done;
  cluster->stats.rq_retry->inc();
  return true;
}

Duration ExchangeCore::backoff() { return retry_policy->backoff(retries_done, worker.random()); }

const upstream::Host* ExchangeCore::pickRetryHost() {
  host_set = cluster_rt->info->hosts;
  host = upstream::pickForRetry(*cluster_rt->lb, tried);
  if (!host) return nullptr;
  cluster_rt->lb->onRequestStart(*host);
  upstream_host = host->addressString();
  return host;
}

upstream::ConnPool::Acquire ExchangeCore::acquire(upstream::PoolUser& user,
                                                  upstream::PooledConnection*& ready,
                                                  std::string& error, bool fresh) {
  upstream::ConnPool::Acquire a = cluster_rt->pool->acquire(*host, user, ready, error, fresh);
  switch (a) {
    case upstream::ConnPool::Acquire::kReady:
      break;
    case upstream::ConnPool::Acquire::kPending:
      cluster->stats.rq_pending_active->add();
      break;
    case upstream::ConnPool::Acquire::kOverflow:
      cluster->stats.rq_pending_overflow->inc();
      break;
    case upstream::ConnPool::Acquire::kFailed:
      cluster->stats.cx_connect_fail->inc();
      noteLocalFailure();
      break;
  }
  return a;
}

upstream::ConnPool::Acquire ExchangeCore::acquireH2(upstream::Http2StreamUser& user,
                                                    upstream::Http2Connection*& ready,
                                                    std::string& error) {
  upstream::ConnPool::Acquire a = cluster_rt->h2pool->acquire(*host, user, ready, error);
  switch (a) {
    case upstream::ConnPool::Acquire::kReady:
      break;
    case upstream::ConnPool::Acquire::kPending:
      cluster->stats.rq_pending_active->add();
      break;
    case upstream::ConnPool::Acquire::kOverflow:
      cluster->stats.rq_pending_overflow->inc();
      break;
    case upstream::ConnPool::Acquire::kFailed:
      cluster->stats.cx_connect_fail->inc();
      noteLocalFailure();
      break;
  }
  return a;
}

void ExchangeCore::keepResponseHeaders(const ListenerInfo& li,
                                       std::span<const http::HeaderField> fields) {
  for (const std::string& name : li.log_response_headers) {
    for (const http::HeaderField& f : fields) {
      if (http::equalsIgnoreCase(f.name, name)) {
        logged_response_headers.emplace_back(name, std::string(f.value));
        break;
      }
    }
  }
}

void ExchangeCore::releaseHost() {
  if (host && cluster_rt && !fixed_host) cluster_rt->lb->onRequestEnd(*host);
  host = nullptr;
}

void ExchangeCore::noteLocalFailure() {
  if (cluster_rt && cluster_rt->outlier && host && !fixed_host)
    cluster_rt->outlier->onLocalFailure(*host);
}

void ExchangeCore::noteResponse(int http_status) {
  if (cluster_rt && cluster_rt->outlier && host && !fixed_host)
    cluster_rt->outlier->onResponse(*host, http_status);
}

void ExchangeCore::keepResponseHeaders(const ListenerInfo& li, const http1::MessageHead& h) {
  for (const std::string& name : li.log_response_headers) {
    if (auto* f = h.find(name)) logged_response_headers.emplace_back(name, std::string(f->value));
  }
}

void ExchangeCore::logAndCount(const ListenerInfo& li, const net::Connection& conn,
                               uint64_t bytes_received, uint64_t bytes_sent) {
  if (!active) return;
  MonoTime now = worker.loop().now();
  Duration elapsed = now - start;
  int cls = statusClass(status);
  li.stats.rq_active->sub();
  if (cls >= 0) li.stats.rq_xx[cls]->inc();
  li.stats.rq_time->record(elapsed);
  if (cluster && (upstream_sent >= start)) {
    if (cls >= 0) cluster->stats.rq_xx[cls]->inc();
    cluster->stats.rq_time->record(now - upstream_sent);
  }
  if (cluster) cluster->stats.rq_active->sub();
  if (route_entry && route_entry->index() < li.route_stats.size()) {
    const RouteStats& rs = li.route_stats[route_entry->index()];
    rs.rq_total->inc();
    if (cls >= 0) rs.rq_xx[cls]->inc();
    rs.rq_time->record(elapsed);
  }
  releaseHost();
  if (!li.access_logs.empty()) {
    // The headers an access log may ask for, from the copies kept for it.
    struct Kept final : HeaderSource {
      const std::vector<std::pair<std::string_view, std::string>>& list;
      const std::string* request_id;  // the id we generated counts as a request header
      Kept(const std::vector<std::pair<std::string_view, std::string>>& l, const std::string* id)
          : list(l), request_id(id) {}
      std::optional<std::string_view> get(std::string_view name) const override {
        for (const auto& [n, v] : list)
          if (n == name) return std::string_view(v);
        if (request_id && name == "x-request-id" && !request_id->empty())
          return std::string_view(*request_id);
        return std::nullopt;
      }
    } kept_request(logged_request_headers, &request_id),
        kept_response(logged_response_headers, nullptr);
    std::string remote = conn.remoteAddress().toString();
    std::string local = conn.localAddr().toString();
    AccessLogEntry e;
    e.start_time = start_wall;
    e.duration = elapsed;
    e.method = method;
    e.path = path;
    e.authority = authority;
    e.scheme = li.secure ? "https" : "http";
    e.protocol = protocol;
    e.response_code = status;
    e.response_flags = std::string_view(flags) == "-" ? std::string_view() : flags;
    e.bytes_received = bytes_received;
    e.bytes_sent = bytes_sent;
    e.upstream_host = upstream_host;
    if (cluster) e.upstream_cluster = cluster->name;
    if (route_entry) e.route_name = route_entry->name();
    e.downstream_remote_address = remote;
    e.downstream_local_address = local;
    e.requested_server_name = conn.peer().sni;
    e.downstream_peer_uri_san = conn.peer().peer_uri_san;
    if (upstream_sent >= start && upstream_sent != MonoTime{})
      e.upstream_service_time = now - upstream_sent;
    e.request_headers = &kept_request;
    e.response_headers = &kept_response;
    for (auto& sink : li.access_logs) sink->log(e);
  }
  active = false;
}

void ExchangeCore::reset() {
  active = false;
  route_entry = nullptr;
  cluster.reset();
  cluster_rt = nullptr;
  host_set.reset();
  host = nullptr;
  fixed_host.reset();
  status = 0;
  flags = "-";
  method_id = http1::Method::kOther;
  request_id.clear();
  logged_request_headers.clear();
  logged_response_headers.clear();
  upstream_host.clear();
  upstream_sent = MonoTime{};
  rq_guard.reset();
  retry_guard.reset();
  retry_policy = nullptr;
  retries_done = 0;
  tried.clear();
  timeout = Duration(0);
  stream_idle_timeout = Duration(0);
  grpc = false;
}

std::string_view upgradeToForward(const http1::RequestHead& h) {
  if (!h.upgrade || h.method_id == http1::Method::kConnect) return {};
  if (h.body_kind == http1::BodyKind::kChunked ||
      (h.body_kind == http1::BodyKind::kContentLength && h.content_length > 0))
    return {};
  const http::HeaderField* u = h.find(http::HeaderToken::kUpgrade);
  if (!u || u->value.empty() || http::equalsIgnoreCase(u->value, "h2c")) return {};
  return u->value;
}

int grpcStatusForHttp(int status) {
  // Envoy's Grpc::Utility::httpToGrpcStatus.
  switch (status) {
    case 400:
      return 13;  // INTERNAL
    case 401:
      return 16;  // UNAUTHENTICATED
    case 403:
      return 7;  // PERMISSION_DENIED
    case 404:
      return 12;  // UNIMPLEMENTED
    case 429:
    case 502:
    case 503:
    case 504:
      return status == 504 ? 4 : 14;  // DEADLINE_EXCEEDED / UNAVAILABLE
    default:
      return 2;  // UNKNOWN
  }
}

int parseGrpcStatus(std::string_view value) {
  int v = 0;
  auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
  if (ec != std::errc() || p != value.data() + value.size() || v < 0 || v > 1000) return -1;
  return v;
}

std::optional<Duration> parseGrpcTimeout(std::string_view value) {
  if (value.size() < 2 || value.size() > 9) return std::nullopt;
  std::string_view digits = value.substr(0, value.size() - 1);
  uint64_t n = 0;
  auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
  if (ec != std::errc() || p != digits.data() + digits.size()) return std::nullopt;
  using std::chrono::duration_cast;
  switch (value.back()) {
    case 'H':
      return duration_cast<Duration>(std::chrono::hours(n));
    case 'M':
      return duration_cast<Duration>(std::chrono::minutes(n));
    case 'S':
      return duration_cast<Duration>(std::chrono::seconds(n));
    case 'm':
      return duration_cast<Duration>(std::chrono::milliseconds(n));
    case 'u':
      return duration_cast<Duration>(std::chrono::microseconds(n));
    case 'n':
      return duration_cast<Duration>(std::chrono::nanoseconds(n));
    default:
      return std::nullopt;
  }
}

bool isGrpcContentType(std::string_view v) {
  constexpr std::string_view kGrpc = "application/grpc";
  if (v.size() < kGrpc.size() || !http::equalsIgnoreCase(v.substr(0, kGrpc.size()), kGrpc))
    return false;
  return v.size() == kGrpc.size() || v[kGrpc.size()] == '+' || v[kGrpc.size()] == ';';
}

}  // namespace weft::proxy
