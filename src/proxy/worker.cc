#include "proxy/worker.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/log.h"
#include "common/stats.h"
#include "net/tls/sniff.h"
#include "proxy/http_session.h"
#include "proxy/tcp_session.h"
#include "upstream/host_set.h"

namespace weft::proxy {

// Accepts on one shared listening socket (EPOLLEXCLUSIVE: one worker is woken per connection).
class Worker::Acceptor final : public net::IoHandler {
 public:
  Acceptor(Worker& w, std::shared_ptr<const ListenerInfo> l)
      : worker_(w), listener_(std::move(l)), resume_(w.loop_.timers(), [this] { watch(); }) {
    watch();
  }
  ~Acceptor() {
    if (watching_) worker_.loop_.remove(listener_->socket->fd());
  }
  void watch() {
    worker_.loop_.add(listener_->socket->fd(), EPOLLIN | EPOLLEXCLUSIVE, this);
    watching_ = true;
  }
  const ListenerInfo& listener() const { return *listener_; }
  void update(std::shared_ptr<const ListenerInfo> l) { listener_ = std::move(l); }

  void onIoEvents(uint32_t) override {
    for (int i = 0; i < 64; ++i) {
      int fd = ::accept4(listener_->socket->fd(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR) continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
          // Out of descriptors or memory: the socket stays readable, so stop watching it for a
          // moment instead of spinning (and logging) on every loop round.
          log::warn("listener", listener_->name + ": accept: " + std::strerror(errno) +
                                    "; pausing accepts for 100 ms (raise the fd limit?)");
          worker_.loop_.remove(listener_->socket->fd());
          watching_ = false;
          resume_.arm(milliseconds(100));
        } else if (errno != EAGAIN && errno != ECONNABORTED) {
          log::warn("listener", listener_->name + ": accept: " + std::strerror(errno));
        }
        return;
      }
      net::setNoDelay(fd);
      std::shared_ptr<const ListenerInfo> l = listener_;
      std::optional<net::Address> target;
      if (l->interception != ListenerInfo::Interception::kNone && !dispatch(fd, l, target)) {
        l->cx_refused->inc();
        ::close(fd);
        continue;
      }
      if (l->tls.mode == ListenerTlsSeam::Mode::kPermissive) {
        // Decide from the first bytes; the client speaks first in both TLS and HTTP/1.
        new PermissiveSniffer(worker_, std::move(l), fd, target);
        continue;
      }
      std::unique_ptr<net::Transport> t = l->tls.mode == ListenerTlsSeam::Mode::kStrict
                                              ? l->tls.make_tls(fd)
                                              : net::makePlainTransport(fd);
      worker_.addSession(fd, std::move(t), std::move(l), target);
    }
  }

  // An iptables-redirected connection: picks the filter chain for its original destination, or
  // the passthrough relay (`target` = where to relay). False: refuse it.
  static bool dispatch(int fd, std::shared_ptr<const ListenerInfo>& l,
                       std::optional<net::Address>& target) {
    auto dst = net::originalDestination(fd);
    if (!dst) {
      log::debug("listener", l->name + ": " + dst.error().message);
      return false;
    }
    if (upstream::addressEqual(*dst, net::localAddress(fd))) {
      // Not redirected (someone connected to the interception port itself): relaying it to its
      // "original" destination would loop back here.
      log::debug("listener", l->name + ": connection was not redirected; refused");
      return false;
    }
    for (const FilterChainInfo& chain : l->chains) {
      if (chain.matches(*dst)) {
        l = chain.listener;
        // An HTTP chain that passes unrouted requests through needs the destination too.
        if (l->passthrough_unrouted) target = *dst;
        return true;
      }
    }
    if (!l->passthrough) return false;  // OUTBOUND with egress filter DROP_ALL
    if (l->interception == ListenerInfo::Interception::kInbound) {
      // To the app on this host: same port, loopback.
      auto lo = net::parseAddress(dst->family() == AF_INET6 ? "::1" : "127.0.0.1", dst->port());
      if (!lo) return false;
      target = *lo;
    } else {
      target = *dst;
    }
    l = l->passthrough;
    return true;
  }

 private:
  // Waits (bounded by the idle timeout) for the first bytes of a PERMISSIVE connection, then hands
  // the socket to a session with the right transport. Owns itself until it decides.
  class PermissiveSniffer final : public net::IoHandler {
   public:
    PermissiveSniffer(Worker& w, std::shared_ptr<const ListenerInfo> l, int fd,
                      std::optional<net::Address> target)
        : worker_(w),
          listener_(std::move(l)),
          fd_(fd),
          target_(target),
          timer_(w.loop_.timers(), [this] {
            ::close(fd_);
            finish();
          }) {
      // Edge-triggered: a client that sends one byte and waits must not spin the worker.
      worker_.loop_.add(fd_, EPOLLIN | EPOLLRDHUP | EPOLLET, this);
      timer_.arm(seconds(10));
    }
    void onIoEvents(uint32_t) override {
      net::tls::Sniff sniff = net::tls::peekClientHello(fd_);
      if (sniff == net::tls::Sniff::kNeedMore) return;
      worker_.loop_.remove(fd_);
      if (sniff == net::tls::Sniff::kClosed || sniff == net::tls::Sniff::kError) {
        ::close(fd_);
        finish();
        return;
      }
      std::unique_ptr<net::Transport> t = sniff == net::tls::Sniff::kTls
                                              ? listener_->tls.make_tls(fd_)
                                              : net::makePlainTransport(fd_);
      worker_.addSession(fd_, std::move(t), listener_, target_);
      finish();
    }

   private:
    void finish() {
      timer_.disarm();
      struct Holder : net::Deferrable {
        std::unique_ptr<PermissiveSniffer> p;
      };
      auto h = std::make_unique<Holder>();
      h->p.reset(this);
      worker_.loop_.deferDelete(std::move(h));
    }
    Worker& worker_;
    std::shared_ptr<const ListenerInfo> listener_;
    int fd_;
    std::optional<net::Address> target_;
    Timer timer_;
  };

  Worker& worker_;
  std::shared_ptr<const ListenerInfo> listener_;
  Timer resume_;
  bool watching_ = false;
};

Worker::Worker(uint32_t index, uint64_t seed) : index_(index), random_(seed) {}

Worker::~Worker() { stopAndJoin(); }

void Worker::start(SnapshotPtr initial) {
  thread_ = std::thread([this, initial = std::move(initial)]() mutable {
    stats::bindWorkerThread(index_);
    apply(std::move(initial));
    loop_.run();
    // Sessions may hand connections to linger_ or call into pools while they die: take them out
    // of the list first so nothing iterates it meanwhile.
    auto sessions = std::move(sessions_);
    sessions_.clear();
    sessions.clear();
    lingering_.clear();
    acceptors_.clear();
    clusters_.clear();
    stats::unbindWorkerThread();
  });
}

void Worker::post(SnapshotPtr snapshot) {
  loop_.post([this, s = std::move(snapshot)]() mutable { apply(std::move(s)); });
}

void Worker::drain(std::function<void()> done) {
  loop_.post([this, done = std::move(done)]() mutable {
    draining_ = true;
    drained_ = std::move(done);
    acceptors_.clear();
    // Copy: drain() may close sessions, which unlinks them.
    std::vector<Session*> all;
    for (auto& s : sessions_) all.push_back(s.get());
    for (Session* s : all) s->drain();
    checkDrained();
  });
}

void Worker::stopAndJoin() {
  if (!thread_.joinable()) return;
  loop_.stop();
  thread_.join();
}

ClusterRuntime* Worker::cluster(std::string_view name) {
  auto it = clusters_.find(name);
  return it == clusters_.end() ? nullptr : it->second.get();
}

void Worker::addSession(int fd, std::unique_ptr<net::Transport> transport,
                        std::shared_ptr<const ListenerInfo> listener,
                        std::optional<net::Address> target) {
  auto conn = std::make_unique<net::Connection>(loop_, fd, std::move(transport), nullptr, false);
  if (!listener->tcp_cluster.empty()) {
    auto s = std::make_unique<TcpSession>(*this, std::move(conn), std::move(listener));
    TcpSession* raw = s.get();
    sessions_.push_back(std::move(s));
    sessions_.back()->self = std::prev(sessions_.end());
    raw->start(target);  // may end the session at once
    return;
  }
  auto s = std::make_unique<HttpSession>(*this, std::move(conn), std::move(listener), target);
  sessions_.push_back(std::move(s));
  sessions_.back()->self = std::prev(sessions_.end());
  if (draining_) sessions_.back()->drain();  // accepted (sniffed) just before the drain began
}

bool FilterChainInfo::matches(const net::Address& dst) const {
  if (!ports.empty() && std::find(ports.begin(), ports.end(), dst.port()) == ports.end())
    return false;
  if (cidrs.empty()) return true;
  for (const net::Cidr& c : cidrs)
    if (c.contains(dst)) return true;
  return false;
}

void Worker::linger(std::unique_ptr<net::Connection> conn) {
  if (!conn || conn->closed()) return;
  conn->setCallbacks(nullptr);
  lingering_.push_back({std::move(conn), nullptr});
  auto it = std::prev(lingering_.end());
  auto forget = [this, it] {
    struct Holder : net::Deferrable {
      Lingering l;
    };
    auto h = std::make_unique<Holder>();
    h->l = std::move(*it);
    lingering_.erase(it);
    loop_.deferDelete(std::move(h));
    checkDrained();  // a drain waits for the last bytes of closing responses too
  };
  it->timer = std::make_unique<Timer>(loop_.timers(), [this, it, forget] {
    it->conn->close(false);  // the client stopped reading: give up
    forget();
  });
  it->timer->arm(kLingerTime);
  it->conn->closeAfterFlush(forget);
}

void Worker::sessionClosed(Session& s) {
  struct Holder : net::Deferrable {
    std::unique_ptr<Session> p;
  };
  auto h = std::make_unique<Holder>();
  h->p = std::move(*s.self);
  sessions_.erase(s.self);
  loop_.deferDelete(std::move(h));
  if (!retired_.empty()) pruneRetired();
  checkDrained();
}

void Worker::replaceSession(Session& old, std::unique_ptr<Session> next) {
  struct Holder : net::Deferrable {
    std::unique_ptr<Session> p;
  };
  auto h = std::make_unique<Holder>();
  auto it = old.self;
  h->p = std::move(*it);
  *it = std::move(next);
  (*it)->self = it;
  loop_.deferDelete(std::move(h));
}

void Worker::checkDrained() {
  if (draining_ && sessions_.empty() && lingering_.empty() && drained_) {
    auto done = std::move(drained_);
    drained_ = nullptr;
    done();
  }
}

void Worker::apply(SnapshotPtr snapshot) {
  // Clusters: keep the runtime (pool, balancer state) of clusters whose config is unchanged;
  // follow host set changes; rebuild the rest.
  ClusterMap next;
  for (auto& [name, info] : snapshot->clusters) {
    auto it = clusters_.find(name);
    if (it != clusters_.end() && it->second->info->config_key == info->config_key) {
      auto rt = std::move(it->second);
      if (rt->info->hosts != info->hosts) {
        rt->lb->update(info->hosts);
        if (rt->outlier) rt->outlier->update(info->hosts);
      }
      // The same hosts may come with a new board (a reload rebuilt the cluster's info).
      if (rt->outlier) rt->outlier->publishTo(info->outlier_board, index_);
      rt->info = info;
      next.emplace(name, std::move(rt));
      continue;
    }
    auto rt = std::make_unique<ClusterRuntime>();
    rt->info = info;
    rt->lb = std::make_unique<upstream::LoadBalancer>(info->lb_policy, info->hosts, random_,
                                                      info->panic_threshold_percent);
    rt->breaker =
        std::make_unique<upstream::CircuitBreaker>(info->breaker_limits, info->stats.breaker);
    if (info->outlier) {
      rt->outlier = std::make_unique<upstream::OutlierDetector>(
          *info->outlier, info->hosts, loop_.timers(),
          upstream::OutlierDetector::excludeIn(*rt->lb), info->stats.outlier);
      rt->outlier->publishTo(info->outlier_board, index_);
    }
    upstream::PoolStats ps{info->stats.cx_total,   info->stats.cx_active,
                           info->stats.rx_bytes,   info->stats.tx_bytes,
                           info->stats.connect_ms, info->stats.cx_connect_timeout,
                           info->stats.cx_overflow};
    rt->pool = std::make_unique<upstream::ConnPool>(loop_, info->limits, info->transport_factory,
                                                    std::move(ps));
    if (info->http2) {
      rt->h2pool = std::make_unique<upstream::Http2Pool>(loop_, *rt->pool, info->limits,
                                                         loop_.time(), info->stats.http2);
    }
    next.emplace(name, std::move(rt));
  }
  // Sessions may still hold runtimes of removed clusters mid-request: keep those alive until
  // this worker is idle by parking them in the deferred-delete list.
  for (auto& [name, rt] : clusters_) {
    if (rt) {
      struct Holder : net::Deferrable {
        std::unique_ptr<ClusterRuntime> p;
      };
      auto h = std::make_unique<Holder>();
      h->p = std::move(rt);
      retired_.push_back(std::move(h));
    }
  }
  clusters_ = std::move(next);

  // Listeners: one acceptor per listening socket; the socket object identifies the listener.
  if (!draining_) {
    std::list<std::unique_ptr<Acceptor>> acceptors;
    for (auto& l : snapshot->listeners) {
      bool found = false;
      for (auto it = acceptors_.begin(); it != acceptors_.end(); ++it) {
        if ((*it)->listener().socket == l->socket) {
          (*it)->update(l);
          acceptors.push_back(std::move(*it));
          acceptors_.erase(it);
          found = true;
          break;
        }
      }
      if (!found) acceptors.push_back(std::make_unique<Acceptor>(*this, l));
    }
    acceptors_ = std::move(acceptors);
  }
  snapshot_ = std::move(snapshot);
  pruneRetired();
}

void Worker::pruneRetired() {
  // A retired cluster runtime is freed once no session is mid-request (simple and safe: sessions
  // reference runtimes only while a request is in flight).
  // Freed through the deferred-delete list, never here: pruneRetired() runs from sessionClosed(),
  // which may be inside a callback of the very runtime's pool or HTTP/2 connection (a stream
  // reset closing the last session); the runtime must outlive that call stack.
  bool busy = false;
  for (auto& s : sessions_)
    if (!s->idle()) busy = true;
  if (busy) return;
  for (auto& h : retired_) loop_.deferDelete(std::move(h));
  retired_.clear();
}

}  // namespace weft::proxy
