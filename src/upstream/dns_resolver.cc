#include "upstream/dns_resolver.h"

#include <ares.h>
#include <arpa/inet.h>
#include <sys/epoll.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <limits>
#include <mutex>
#include <optional>
#include <type_traits>

#include "common/log.h"
#include "upstream/host_set.h"

namespace weft::upstream {

static_assert(std::is_same_v<ares_socket_t, int>, "socketStateThunk assumes ares_socket_t is int");

struct DnsResolver::Query {
  QueryId id;
  std::string hostname;
  DnsFamily family;
  Callback callback;
  DnsResolver* owner;
  bool cancelled = false;
  bool tried_fallback = false;  // k*Preferred: the other family's lookup has been started
};

// One c-ares socket registered with the loop. After close() the object only waits to be freed
// (through deferDelete) and ignores any event still queued for it.
class DnsResolver::Socket final : public net::IoHandler, public net::Deferrable {
 public:
  Socket(DnsResolver& owner, int fd) : owner_(&owner), fd_(fd) {}
  void onIoEvents(uint32_t events) override {
    if (owner_ != nullptr) owner_->processFd(fd_, events);  // may close() this socket
  }
  void close() { owner_ = nullptr; }

 private:
  DnsResolver* owner_;
  int fd_;
};

namespace {

const char* familyName(DnsFamily f) {
  switch (f) {
    case DnsFamily::kV4Preferred:
      return "A, else AAAA";
    case DnsFamily::kV6Preferred:
      return "AAAA, else A";
    case DnsFamily::kV4Only:
      return "A";
    case DnsFamily::kV6Only:
      return "AAAA";
    case DnsFamily::kBoth:
      return "A and AAAA";
  }
  return "?";
}

int errorCode(int ares_status) {
  switch (ares_status) {
    case ARES_ENOTFOUND:
    case ARES_ENODATA:
    case ARES_ENONAME:
      return kDnsNotFound;
    case ARES_ETIMEOUT:
      return kDnsTimeout;
    case ARES_EBADNAME:
      return kDnsBadName;
    default:
      return kDnsFailure;
  }
}

bool isNotFound(int ares_status) { return errorCode(ares_status) == kDnsNotFound; }

void initLibraryOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    int rc = ares_library_init(ARES_LIB_INIT_ALL);
    WEFT_CHECK(rc == ARES_SUCCESS, std::string("ares_library_init: ") + ares_strerror(rc));
  });
}

struct AddrInfoDeleter {
  void operator()(ares_addrinfo* ai) const { ares_freeaddrinfo(ai); }
};

}  // namespace

Result<net::Address> parseNameserver(std::string_view spec) {
  std::string_view host = spec;
  std::optional<std::string_view> port_text;
  if (!spec.empty() && spec.front() == '[') {
    size_t close = spec.find(']');
    if (close == std::string_view::npos)
      return makeError("nameserver \"" + std::string(spec) + "\": missing ']'");
    host = spec.substr(1, close - 1);
    std::string_view rest = spec.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':')
        return makeError("nameserver \"" + std::string(spec) + "\": expected ':port' after ']'");
      port_text = rest.substr(1);
    }
  } else if (size_t colon = spec.rfind(':');
             colon != std::string_view::npos && spec.find(':') == colon) {
    // Exactly one colon: "ip:port". Several colons without brackets: a bare IPv6 address.
    host = spec.substr(0, colon);
    port_text = spec.substr(colon + 1);
  }
  uint32_t port = 53;
  if (port_text) {
    const char* first = port_text->data();
    const char* last = first + port_text->size();
    auto [end, ec] = std::from_chars(first, last, port);
    if (ec != std::errc() || end != last || port == 0 || port > 65535)
      return makeError("nameserver \"" + std::string(spec) + "\": port must be 1-65535");
  }
  auto addr = net::parseAddress(host, static_cast<uint16_t>(port));
  if (!addr) return makeError("nameserver \"" + std::string(spec) + "\": " + addr.error().message);
  return *addr;
}

DnsResolver::DnsResolver(net::EventLoop& loop)
    : loop_(loop),
      timeout_timer_(loop.timers(), [this] { onTimeout(); }),
      ready_timer_(loop.timers(), [this] { deliverReady(); }) {}

Result<std::unique_ptr<DnsResolver>> DnsResolver::create(net::EventLoop& loop,
                                                         DnsResolverOptions options) {
  initLibraryOnce();
  std::vector<net::Address> servers;
  for (const std::string& spec : options.nameservers) {
    auto addr = parseNameserver(spec);
    if (!addr) return makeError(addr.error().message);
    servers.push_back(*addr);
  }

  std::unique_ptr<DnsResolver> r(new DnsResolver(loop));
  ares_options opts{};
  int mask = ARES_OPT_SOCK_STATE_CB;
  opts.sock_state_cb = &DnsResolver::socketStateThunk;
  opts.sock_state_cb_data = r.get();
  if (options.query_timeout.count() > 0) {
    auto ms = std::chrono::duration_cast<milliseconds>(options.query_timeout).count();
    opts.timeout = static_cast<int>(std::clamp<int64_t>(ms, 1, std::numeric_limits<int>::max()));
    mask |= ARES_OPT_TIMEOUTMS;
  }
  if (options.tries > 0) {
    opts.tries = options.tries;
    mask |= ARES_OPT_TRIES;
  }
  ares_channel channel = nullptr;
  int rc = ares_init_options(&channel, &opts, mask);
  if (rc != ARES_SUCCESS) {
    return makeError(std::string("cannot start the DNS resolver (c-ares): ") + ares_strerror(rc));
  }
  r->channel_ = channel;

  if (!servers.empty()) {
    std::vector<ares_addr_port_node> nodes(servers.size());
    for (size_t i = 0; i < servers.size(); ++i) {
      ares_addr_port_node& n = nodes[i];
      n.next = i + 1 < nodes.size() ? &nodes[i + 1] : nullptr;
      n.family = servers[i].family();
      if (n.family == AF_INET) {
        std::memcpy(&n.addr.addr4,
                    &reinterpret_cast<const sockaddr_in*>(&servers[i].storage)->sin_addr,
                    sizeof(in_addr));
      } else {
        std::memcpy(&n.addr.addr6,
                    &reinterpret_cast<const sockaddr_in6*>(&servers[i].storage)->sin6_addr,
                    sizeof(in6_addr));
      }
      n.udp_port = n.tcp_port = servers[i].port();
    }
    rc = ares_set_servers_ports(channel, nodes.data());
    if (rc != ARES_SUCCESS) {
      return makeError(std::string("cannot set DNS nameservers: ") + ares_strerror(rc));
    }
  }
  return r;
}

DnsResolver::~DnsResolver() {
  destroying_ = true;
  ready_.clear();
  if (channel_ != nullptr) {
    // Runs every outstanding callback with ARES_EDESTRUCTION (dropped in onAddrInfo) and reports
    // every socket closed through onSocketState.
    ares_destroy(channel_);
    channel_ = nullptr;
  }
  for (auto& [fd, socket] : sockets_) {
    loop_.remove(fd);
    socket->close();
    loop_.deferDelete(std::move(socket));
  }
  sockets_.clear();
  queries_.clear();
}

Resolver::QueryId DnsResolver::resolve(const std::string& hostname, DnsFamily family,
                                       Callback callback) {
  WEFT_DCHECK(loop_.inLoopThread(), "DnsResolver used off its loop's thread");
  QueryId id = next_id_++;
  auto q = std::make_unique<Query>();
  q->id = id;
  q->hostname = hostname;
  q->family = family;
  q->callback = std::move(callback);
  q->owner = this;
  Query& query = *q;
  queries_.emplace(id, std::move(q));

  int af = AF_INET;
  if (family == DnsFamily::kV6Only || family == DnsFamily::kV6Preferred) af = AF_INET6;
  if (family == DnsFamily::kBoth) af = AF_UNSPEC;
  bool outer = !in_resolve_;
  in_resolve_ = true;
  start(query, af);  // may complete (and erase `query`) synchronously
  if (outer) in_resolve_ = false;
  updateTimer();
  return id;
}

void DnsResolver::start(Query& query, int family) {
  ares_addrinfo_hints hints{};
  hints.ai_family = family;
  // NOSORT: c-ares would otherwise connect() a UDP socket per address to sort by RFC 6724; the
  // balancer does not care about the order.
  hints.ai_flags = ARES_AI_NOSORT;
  ares_getaddrinfo(channel_, query.hostname.c_str(), nullptr, &hints, &DnsResolver::addrInfoThunk,
                   &query);
}

void DnsResolver::addrInfoThunk(void* arg, int status, int /*timeouts*/, ares_addrinfo* result) {
  auto* query = static_cast<Query*>(arg);
  query->owner->onAddrInfo(*query, status, result);
}

void DnsResolver::socketStateThunk(void* data, int fd, int readable, int writable) {
  static_cast<DnsResolver*>(data)->onSocketState(fd, readable != 0, writable != 0);
}

void DnsResolver::onAddrInfo(Query& query, int status, ares_addrinfo* result) {
  std::unique_ptr<ares_addrinfo, AddrInfoDeleter> owned(result);
  if (destroying_) return;  // queries_ is cleared by the destructor
  if (query.cancelled) {
    queries_.erase(query.id);
    return;
  }

  DnsAnswer answer;
  if (status == ARES_SUCCESS && result != nullptr) {
    int64_t min_ttl = std::numeric_limits<int64_t>::max();
    for (ares_addrinfo_node* n = result->nodes; n != nullptr; n = n->ai_next) {
      if (n->ai_family != AF_INET && n->ai_family != AF_INET6) continue;
      if (n->ai_addr == nullptr || n->ai_addrlen > sizeof(sockaddr_storage)) continue;
      net::Address a;
      std::memcpy(&a.storage, n->ai_addr, n->ai_addrlen);
      a.len = n->ai_addrlen;
      // Port 0 (c-ares leaves it 0 without a service, but do not rely on that).
      if (n->ai_family == AF_INET)
        reinterpret_cast<sockaddr_in*>(&a.storage)->sin_port = 0;
      else
        reinterpret_cast<sockaddr_in6*>(&a.storage)->sin6_port = 0;
      bool dup = std::any_of(answer.addresses.begin(), answer.addresses.end(),
                             [&](const net::Address& b) { return addressEqual(a, b); });
      if (!dup) answer.addresses.push_back(a);
      min_ttl = std::min<int64_t>(min_ttl, std::max(0, n->ai_ttl));
    }
    for (ares_addrinfo_cname* c = result->cnames; c != nullptr; c = c->next) {
      min_ttl = std::min<int64_t>(min_ttl, std::max(0, c->ttl));
    }
    if (answer.addresses.empty()) {
      status = ARES_ENODATA;
    } else {
      answer.ttl = seconds(min_ttl);
    }
  }

  bool preferred =
      query.family == DnsFamily::kV4Preferred || query.family == DnsFamily::kV6Preferred;
  if (status != ARES_SUCCESS && isNotFound(status) && preferred && !query.tried_fallback) {
    query.tried_fallback = true;
    // this callback runs again for the other family's answer
    start(query, query.family == DnsFamily::kV4Preferred ? AF_INET6 : AF_INET);
    return;
  }
  if (status != ARES_SUCCESS) {
    std::string why = status == ARES_ENODATA ? "the name has no records of that type"
                                             : std::string(ares_strerror(status));
    finish(query, makeError("DNS lookup of \"" + query.hostname + "\" (" +
                                familyName(query.family) + ") failed: " + why,
                            errorCode(status)));
    return;
  }
  finish(query, std::move(answer));
}

void DnsResolver::finish(Query& query, Result<DnsAnswer> result) {
  QueryId id = query.id;
  Callback callback = std::move(query.callback);
  queries_.erase(id);  // destroys `query`
  if (in_resolve_) {
    ready_.push_back(Ready{id, std::move(callback), std::move(result)});
    ready_timer_.arm(Duration(0));
    return;
  }
  if (callback) callback(std::move(result));
}

void DnsResolver::deliverReady() {
  std::vector<Ready> batch;
  batch.swap(ready_);
  delivering_ = &batch;  // so that a callback can cancel() a later entry of this batch
  for (size_t i = 0; i < batch.size(); ++i) {
    if (batch[i].callback) batch[i].callback(std::move(batch[i].result));
  }
  delivering_ = nullptr;
}

void DnsResolver::cancel(QueryId id) {
  auto it = queries_.find(id);
  if (it != queries_.end()) {
    // c-ares cannot cancel one query; it runs to completion and the result is dropped.
    it->second->cancelled = true;
    it->second->callback = nullptr;
    return;
  }
  for (Ready& r : ready_) {
    if (r.id == id) r.callback = nullptr;
  }
  if (delivering_ != nullptr) {
    for (Ready& r : *delivering_) {
      if (r.id == id) r.callback = nullptr;
    }
  }
}

void DnsResolver::onSocketState(int fd, bool readable, bool writable) {
  auto it = sockets_.find(fd);
  if (!readable && !writable) {
    if (it == sockets_.end()) return;
    loop_.remove(fd);
    it->second->close();
    loop_.deferDelete(std::move(it->second));
    sockets_.erase(it);
    return;
  }
  uint32_t events = (readable ? EPOLLIN : 0u) | (writable ? EPOLLOUT : 0u);
  if (it == sockets_.end()) {
    auto socket = std::make_unique<Socket>(*this, fd);
    loop_.add(fd, events, socket.get());
    sockets_.emplace(fd, std::move(socket));
  } else {
    loop_.modify(fd, events, it->second.get());
  }
}

void DnsResolver::processFd(int fd, uint32_t events) {
  bool error = (events & (EPOLLERR | EPOLLHUP)) != 0;
  ares_socket_t read_fd = (events & EPOLLIN) != 0 || error ? fd : ARES_SOCKET_BAD;
  ares_socket_t write_fd = (events & EPOLLOUT) != 0 || error ? fd : ARES_SOCKET_BAD;
  ares_process_fd(channel_, read_fd, write_fd);
  updateTimer();
}

void DnsResolver::onTimeout() {
  ares_process_fd(channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
  updateTimer();
}

void DnsResolver::updateTimer() {
  if (destroying_ || channel_ == nullptr) return;
  timeval tv{};
  if (ares_timeout(channel_, nullptr, &tv) == nullptr) {
    timeout_timer_.disarm();
    return;
  }
  timeout_timer_.arm(seconds(tv.tv_sec) + std::chrono::microseconds(tv.tv_usec));
}

}  // namespace weft::upstream
