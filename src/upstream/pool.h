#pragma once
// ConnPool: one worker's HTTP/1 connections to the hosts of one cluster. HTTP/1 carries one
// request at a time per connection, so a connection is either connecting, idle (kept alive in the
// pool) or held by exactly one PoolUser (a request in flight). Limits (per worker, per cluster):
// at most `max_connections` open connections and `max_pending` requests waiting for one; beyond
// that acquire() answers kOverflow and the caller replies 503.
//
// Single-threaded: a ConnPool and its connections belong to one worker's EventLoop.

#include <functional>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/stats.h"
#include "common/time.h"
#include "common/timer.h"
#include "net/connection.h"
#include "upstream/host_set.h"

namespace weft::upstream {

class PooledConnection;

// The holder of a connection. Callbacks arrive only while it holds one (or waits for one).
class PoolUser {
 public:
  // The connection is connected (TCP and TLS) and assigned to this user.
  virtual void onUpstreamReady(PooledConnection& conn) = 0;
  // No connection could be made; `detail` says why. The user no longer holds anything. `conn` is
  // the failed connection when there was one (to read the TLS verification failure), valid only
  // during the call.
  virtual void onUpstreamFailure(net::CloseReason reason, std::string_view detail,
                                 const net::Connection* conn) = 0;
  // Bytes arrived on the held connection (in conn.input()).
  virtual void onUpstreamData(PooledConnection& conn) = 0;
  // The held connection's output drained below its low watermark.
  virtual void onUpstreamDrained(PooledConnection&) {}
  // The held connection closed. The user no longer holds it; the pool frees it.
  virtual void onUpstreamClosed(PooledConnection& conn, net::CloseReason reason,
                                std::string_view detail) = 0;

 protected:
  ~PoolUser() = default;
};

struct PoolLimits {
  uint32_t max_connections = 1024;
  uint32_t max_pending = 1024;
  Duration connect_timeout = seconds(5);
  Duration idle_timeout = seconds(300);
};

// Connection-level metrics a pool keeps for its cluster (any may be null). Updated on the pool's
// worker thread only.
struct PoolStats {
  std::shared_ptr<stats::Counter> cx_total;      // connections opened
  std::shared_ptr<stats::Gauge> cx_active;       // connections open now
  std::shared_ptr<stats::Counter> rx_bytes;      // bytes read, counted per request and at close
  std::shared_ptr<stats::Counter> tx_bytes;      // bytes written, counted per request and at close
  std::shared_ptr<stats::Histogram> connect_ms;  // TCP (+TLS) connect time
  std::shared_ptr<stats::Counter> cx_connect_timeout;  // connects abandoned at connect_timeout
  std::shared_ptr<stats::Counter> cx_overflow;         // requests queued at max_connections
};

// Makes the transport for a new upstream socket (plaintext or TLS origination).
using TransportFactory = std::function<std::unique_ptr<net::Transport>(int fd, const Host& host)>;

class ConnPool;

class PooledConnection final : public net::ConnectionCallbacks {
 public:
  PooledConnection(ConnPool& pool, const Host& host, std::unique_ptr<net::Connection> conn);
  ~PooledConnection();

  net::Connection& connection() { return *conn_; }
  Buffer& input() { return conn_->input(); }
  void write(std::string_view data) { conn_->write(data); }
  const std::string& hostAddressString() const { return address_string_; }
  // How many requests this connection has carried (1 = fresh).
  uint32_t uses() const { return uses_; }

  void onConnected(net::Connection&) override;
  void onData(net::Connection&) override;
  void onWriteDrained(net::Connection&) override;
  void onClose(net::Connection&, net::CloseReason reason, std::string_view detail) override;

 private:
  friend class ConnPool;
  enum class State { kConnecting, kIdle, kBusy, kFlushing, kDead };
  ConnPool& pool_;
  std::unique_ptr<net::Connection> conn_;
  std::string address_string_;
  State state_ = State::kConnecting;
  PoolUser* user_ = nullptr;
  uint32_t uses_ = 0;
  uint64_t counted_rx_ = 0, counted_tx_ = 0;  // bytes already added to the pool's counters
  MonoTime connect_start_{};
  Timer timer_;  // connect timeout while connecting, idle timeout while idle
  std::list<std::unique_ptr<PooledConnection>>::iterator self_;
};

class ConnPool {
 public:
  ConnPool(net::EventLoop& loop, PoolLimits limits, TransportFactory factory, PoolStats stats = {});
  ~ConnPool();

  enum class Acquire {
    kReady,     // `out` holds an idle connected connection, now assigned to the user
    kPending,   // a connection is on its way; the user gets onUpstreamReady or onUpstreamFailure
    kOverflow,  // limits reached: reply 503 (counted by the caller)
    kFailed,    // the connect failed at once; `error` says why
  };
  // `fresh`: never an idle (reused) connection, always a new one: for exchanges whose
  // connection is not given back for reuse (TCP relays, HTTP Upgrade), which must not take
  // a keep-alive connection from the requests that could reuse it, nor one the peer may be
  // closing at that moment.
  Acquire acquire(const Host& host, PoolUser& user, PooledConnection*& out, std::string& error,
                  bool fresh = false);
  // Withdraws a user that is waiting (kPending) and no longer wants a connection.
  void cancel(PoolUser& user);
  // Returns a held connection. reuse=false closes it (e.g. response not fully read).
  void release(PooledConnection& conn, bool reuse);
  // Returns a held connection that is not reused, closing it once its queued output is written
  // (bounded by the idle timeout). Bytes arriving meanwhile are dropped. For relays (TCP) whose
  // last bytes must reach the upstream after the downstream side has gone.
  void releaseAfterFlush(PooledConnection& conn);

  size_t openConnections() const { return conns_.size(); }
  size_t idleConnections() const;
  size_t pendingRequests() const { return pending_.size(); }

 private:
  friend class PooledConnection;
  struct Waiter {
    PoolUser* user;
    const Host* host;
    net::Address address;
    bool fresh;
  };
  PooledConnection* startConnect(const net::Address& address, const Host& host, PoolUser& user,
                                 std::string& error);
  void onConnectionReady(PooledConnection& c);
  void onConnectionClosed(PooledConnection& c, net::CloseReason reason, std::string_view detail,
                          bool was_connecting);
  void makeIdle(PooledConnection& c);
  void destroy(PooledConnection& c);
  void servePending();
  void countBytes(PooledConnection& c);
  bool evictIdle();
  PooledConnection* takeIdle(const Host& host, PoolUser& user);

  net::EventLoop& loop_;
  PoolLimits limits_;
  TransportFactory factory_;
  PoolStats stats_;
  std::list<std::unique_ptr<PooledConnection>> conns_;
  // Idle connections by host address string, most recently used at the back.
  std::unordered_map<std::string, std::vector<PooledConnection*>> idle_;
  std::list<Waiter> pending_;
  // Expires when the destructor starts: callbacks run by the connections it closes then do
  // nothing (see releaseAfterFlush).
  std::shared_ptr<char> alive_ = std::make_shared<char>();
};

}  // namespace weft::upstream
