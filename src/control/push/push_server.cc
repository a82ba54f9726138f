#include "control/push/push_server.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/server_credentials.h>

#include <algorithm>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "common/log.h"
#include "control/ca/mesh_identity.h"
#include "control/model/resource_keys.h"
#include "control/push/config_delta.h"
#include "weft/v1/stream.grpc.pb.h"

namespace weft::control::push {
namespace {

using v1::ProxyMessage;
using v1::ServerMessage;

constexpr const char* kLog = "push";
constexpr std::chrono::seconds kHelloTimeout{10};
// Bounds on what one proxy can make the registrar hold.
constexpr size_t kMaxAddresses = 16;
constexpr size_t kMaxReportedPorts = 64;
constexpr std::chrono::seconds kRegistrarTick{1};
// A CSR is a few hundred bytes; a proxy asks about twice per certificate lifetime.
constexpr size_t kMaxCsrBytes = 16 * 1024;
constexpr std::chrono::seconds kMinCsrInterval{1};

// A compiled config shared by every stream of one resource (immutable once built).
struct Compiled {
  v1::ProxyConfig config;
  std::string hash;
  // The update from one base config to this one, built once and reused by every stream of the
  // resource that moves from the same base (they nearly always do): the delta comparison is the
  // expensive part. Version 0; each stream stamps its own. Guarded by memo_mu (a leaf lock).
  mutable std::mutex memo_mu;
  mutable std::string memo_base_hash;
  mutable std::shared_ptr<const ServerMessage> memo;
};
using CompiledPtr = std::shared_ptr<const Compiled>;

// The message taking a proxy from `base` (nullptr: nothing, or a full config is wanted) to
// `next`, numbered `version`.
ServerMessage updateFor(const Compiled* base, const Compiled& next, uint64_t version) {
  const std::string base_hash = base ? base->hash : std::string();
  std::shared_ptr<const ServerMessage> shared;
  {
    std::lock_guard lock(next.memo_mu);
    if (next.memo && next.memo_base_hash == base_hash) shared = next.memo;
  }
  if (!shared) {
    shared = std::make_shared<const ServerMessage>(
        makeUpdate(base ? &base->config : nullptr, next.config, next.hash, 0));
    std::lock_guard lock(next.memo_mu);
    next.memo_base_hash = base_hash;
    next.memo = shared;
  }
  ServerMessage out = *shared;
  if (out.has_endpoints())
    out.mutable_endpoints()->set_version(version);
  else
    out.mutable_config()->set_version(version);
  return out;
}

int64_t unixNow(const TimeSource& time) {
  return std::chrono::duration_cast<std::chrono::seconds>(time.systemNow().time_since_epoch())
      .count();
}

// Key prefixes that matter to a proxy whose config could not be compiled (its resource does not
// exist yet, or the mesh is broken): its own key and its mesh's (every create in a mesh rewrites
// the mesh's key).
std::vector<std::string> waitingDependsOn(const compile::ProxyIdentity& who) {
  return {appmesh::resourceKey({who.kind, who.mesh, "", who.name}),
          appmesh::resourceKey({appmesh::Kind::kMesh, who.mesh, "", who.mesh})};
}

}  // namespace

class PushServer::Impl {
 public:
  class Stream;

  Impl(const compile::Compiler& compiler, Tokens& tokens, const TimeSource& time,
       PushOptions options)
      : compiler_(compiler), tokens_(tokens), time_(time), options_(std::move(options)) {}

  Result<uint16_t> start();
  void stop();
  void onStoreChanged(const std::vector<std::string>& keys);
  std::vector<ProxyStatus> proxies() const;

  // Called by streams (gRPC threads).
  void registerStream(const std::shared_ptr<Stream>& s);
  void unregisterStream(uint64_t id);
  // A stream that has not said Hello within kHelloTimeout is ended (a peer cannot hold a stream
  // without authenticating). awaitHello when it opens, helloReceived when the Hello arrives.
  void awaitHello(const std::shared_ptr<Stream>& s);
  void helloReceived(uint64_t id);
  uint64_t nextStreamId() { return next_stream_id_.fetch_add(1) + 1; }
  // Queues a call to the registrar for the push thread (no-op without one). Any thread.
  void toRegistrar(std::function<void(InstanceRegistrar&)> call);
  Tokens& tokens() { return tokens_; }
  IdentitySigner* identities() const { return options_.identities; }
  const TimeSource& time() const { return time_; }

 private:
  class Service;
  void pushLoop();
  void recompile(const std::set<std::string>& changed, std::vector<std::shared_ptr<Stream>> fresh);

  const compile::Compiler& compiler_;
  Tokens& tokens_;
  const TimeSource& time_;
  PushOptions options_;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
  std::thread push_thread_;
  std::atomic<uint64_t> next_stream_id_{0};

  // Guards everything below.
  mutable std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  bool running_ = false;
  std::map<uint64_t, std::shared_ptr<Stream>> streams_;
  std::map<uint64_t, std::pair<std::weak_ptr<Stream>, std::chrono::steady_clock::time_point>>
      awaiting_hello_;                                // opened, no Hello yet: since when
  std::set<std::string> changed_keys_;                // queued by onStoreChanged
  std::chrono::steady_clock::time_point last_run_;    // start of the last recompilation
  std::vector<std::shared_ptr<Stream>> new_streams_;  // accepted, not compiled yet
  std::vector<std::function<void(InstanceRegistrar&)>> registrar_calls_;  // in arrival order
  std::chrono::steady_clock::time_point last_tick_;                       // registrar tick
};

// One proxy's stream. Owned by itself (self_) from creation until gRPC calls OnDone, and shared
// with the registry and the push thread while they work on it; after OnDone every method is a
// no-op (done_), so a late push never touches a finished call.
//
// Thread-safety: reactions run on gRPC threads, push() and proxy status reads on the push and API
// threads; mu_ guards all mutable state. StartWrite/Finish are called under mu_ (gRPC never runs
// a reaction inline from them, see can_inline in grpcpp's callback handlers).
class PushServer::Impl::Stream final : public grpc::ServerBidiReactor<ProxyMessage, ServerMessage>,
                                       public std::enable_shared_from_this<Stream> {
 public:
  Stream(Impl& impl, grpc::CallbackServerContext* context)
      : impl_(impl), context_(context), id_(impl.nextStreamId()) {}

  // Starts reading the Hello. Called once, right after construction.
  void begin() {
    self_ = shared_from_this();
    StartRead(&in_);
  }

  uint64_t id() const { return id_; }
  // Set once, before the stream is registered, then read-only.
  const compile::ProxyIdentity& who() const { return who_; }
  const std::string& tokenId() const { return token_id_; }
  const std::string& token() const { return token_; }
  // Only the push thread touches depends_on.
  std::vector<std::string>& dependsOn() { return depends_on_; }

  ProxyStatus status() const {
    std::lock_guard lock(mu_);
    return status_;
  }

  // The push thread's newest config for this proxy: sent at once if no write is in flight, else
  // kept as the one pending message (replacing an older pending one), computed against the
  // config of the write in flight so the proxy ends on `next` whatever it was.
  void push(const CompiledPtr& next) {
    std::lock_guard lock(mu_);
    if (done_ || finishing_) return;
    if (!write_in_flight_) {
      if (sent_ && sent_->hash == next->hash) return;
      startWriteLocked(next);
      return;
    }
    // A write is in flight: its config (sent_) is what the proxy will have — none yet when that
    // write is an IdentityUpdate ahead of the stream's first config.
    if (sent_ && sent_->hash == next->hash) {
      pending_.reset();
      pending_config_.reset();
      return;
    }
    pending_ = updateFor(sent_.get(), *next, status_.version_sent + 1);
    pending_config_ = next;
  }

  // Ends the stream with `status` (after the write in flight, if any).
  void end(grpc::Status status) {
    std::lock_guard lock(mu_);
    finishLocked(std::move(status));
  }

  void OnReadDone(bool ok) override {
    {
      std::lock_guard lock(mu_);
      if (!ok) {
        // The proxy closed its side or went away.
        finishLocked(grpc::Status::OK);
        return;
      }
    }
    if (!hello_done_) {
      handleHello();
      return;
    }
    if (in_.kind_case() == ProxyMessage::kCertificateRequest) {
      handleCertificateRequest();
      return;
    }
    std::lock_guard lock(mu_);
    switch (in_.kind_case()) {
      case ProxyMessage::kAck:
        if (in_.ack().version() <= status_.version_sent)
          status_.version_acked = std::max(status_.version_acked, in_.ack().version());
        break;
      case ProxyMessage::kNack: {
        const bool repeat = status_.last_nack_version == in_.nack().version();
        status_.last_nack_version = in_.nack().version();
        status_.last_nack_reason = in_.nack().reason().substr(0, 4096);
        if (!repeat)  // a proxy repeating itself is not news
          log::warn(kLog, status_.resource + " (" + status_.peer + ") rejected version " +
                              std::to_string(in_.nack().version()) + ": " +
                              status_.last_nack_reason);
        if (in_.nack().version() == last_delta_version_ && sent_) {
          last_delta_version_ = 0;  // once per delta: a repeated NACK does not resend again
          resendFullLocked();
        }
        break;
      }
      case ProxyMessage::kHealth: {
        std::vector<std::pair<uint32_t, AppHealth>> ports;
        for (const v1::PortHealth& p : in_.health().ports()) {
          if (ports.size() == kMaxReportedPorts) break;
          ports.emplace_back(p.port(), p.state() == v1::PortHealth::HEALTHY ? AppHealth::kHealthy
                                       : p.state() == v1::PortHealth::UNHEALTHY
                                           ? AppHealth::kUnhealthy
                                           : AppHealth::kUnknown);
        }
        impl_.toRegistrar([id = id_, ports = std::move(ports)](InstanceRegistrar& r) {
          r.proxyHealth(id, ports);
        });
        break;
      }
      case ProxyMessage::kGoodbye:
        goodbye_ = true;
        break;
      case ProxyMessage::kHello:
        finishLocked(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                  "a second Hello on one stream: send Hello once, first"));
        return;
      default:
        break;  // an unknown kind from a newer proxy: ignore
    }
    if (!finishing_) StartRead(&in_);
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard lock(mu_);
    write_in_flight_ = false;
    out_.Clear();
    if (finish_wanted_) {
      // end() waited for this write (whether it succeeded or not): finish now.
      grpc::Status st = std::move(*finish_wanted_);
      finish_wanted_.reset();
      finishing_ = false;
      finishLocked(std::move(st));
      return;
    }
    if (!ok) {
      finishLocked(grpc::Status::OK);  // the stream is broken; the read fails too
      return;
    }
    if (pending_identity_ && !finishing_) {
      out_ = std::move(*pending_identity_);
      pending_identity_.reset();
      write_in_flight_ = true;
      StartWrite(&out_);
      return;
    }
    if (pending_ && !finishing_) {
      out_ = std::move(*pending_);
      pending_.reset();
      sent_ = std::move(pending_config_);
      status_.version_sent += 1;
      startWriteOutLocked();
    }
  }

  void OnDone() override {
    bool clean;
    {
      std::lock_guard lock(mu_);
      done_ = true;
      clean = goodbye_;
    }
    if (announced_)
      impl_.toRegistrar(
          [id = id_, clean](InstanceRegistrar& r) { r.proxyDisconnected(id, clean); });
    if (registered_) impl_.unregisterStream(id_);
    self_.reset();  // may destroy this
  }

 private:
  // The first message: checks it and the token, then registers the stream so the push thread
  // compiles its config. Refusals end the stream with the status the protocol names.
  void handleHello() {
    hello_done_ = true;
    impl_.helloReceived(id_);
    if (in_.kind_case() != ProxyMessage::kHello) {
      end(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                       "the first message on a config stream must be a Hello (resource, token)"));
      return;
    }
    const v1::Hello& hello = in_.hello();
    auto who = compile::parseProxyResource(hello.resource());
    if (!who) {
      end(grpc::Status(
          grpc::StatusCode::INVALID_ARGUMENT,
          "Hello.resource '" + hello.resource().substr(0, 256) + "': " + who.error().message));
      return;
    }
    who_ = *who;
    std::string resource = who_.resource();
    if (auto st = impl_.tokens().verify(hello.token(), resource); !st) {
      grpc::StatusCode code = st.error().code == kTokenWrongResource
                                  ? grpc::StatusCode::PERMISSION_DENIED
                              : st.error().code == kTokenInvalid ? grpc::StatusCode::UNAUTHENTICATED
                                                                 : grpc::StatusCode::UNAVAILABLE;
      if (code == grpc::StatusCode::UNAVAILABLE)
        log::error(kLog, "checking a join token: " + st.error().message);
      else
        log::info(kLog,
                  "refused " + resource + " from " + context_->peer() + ": " + st.error().message);
      end(grpc::Status(code, code == grpc::StatusCode::UNAVAILABLE
                                 ? "the control plane could not check the token; retry"
                                 : st.error().message));
      return;
    }
    token_ = hello.token();
    token_id_ = Tokens::idOf(token_);
    {
      std::lock_guard lock(mu_);
      status_.resource = resource;
      status_.host = hello.host().substr(0, 256);
      status_.network = hello.network().substr(0, 256);
      status_.proxy_version = hello.proxy_version().substr(0, 128);
      status_.peer = context_->peer();
      status_.connected_at = unixNow(impl_.time());
      if (finishing_ || done_) return;
      // Told before the next read starts, so this stream's reports queue after it.
      ConnectedProxy proxy;
      proxy.stream_id = id_;
      proxy.who = who_;
      proxy.host = status_.host;
      for (const std::string& a : hello.addresses()) {
        if (proxy.addresses.size() == kMaxAddresses) break;
        proxy.addresses.push_back(a.substr(0, 64));
      }
      impl_.toRegistrar(
          [proxy = std::move(proxy)](InstanceRegistrar& r) { r.proxyConnected(proxy); });
      announced_ = true;
    }
    // `hello` lives in in_, which the next read reuses: nothing reads it after StartRead.
    log::info(kLog, "proxy " + resource + " connected from " + context_->peer() + " (host " +
                        hello.host().substr(0, 256) + ")");
    registered_ = true;
    impl_.registerStream(shared_from_this());
    std::lock_guard lock(mu_);
    if (!finishing_ && !done_) StartRead(&in_);
  }

  // A CertificateRequest (after the Hello): signed here, on the gRPC thread that read it, without
  // the stream's lock; the answer goes out before any pending config.
  void handleCertificateRequest() {
    ServerMessage answer;
    v1::IdentityUpdate* u = answer.mutable_identity();
    const std::string& csr = in_.certificate_request().csr_pem();
    const auto now = std::chrono::steady_clock::now();
    IdentitySigner* signer = impl_.identities();
    if (signer == nullptr) {
      u->set_error("this control plane does not issue mesh identities");
    } else if (csr.size() > kMaxCsrBytes) {
      u->set_error("the certificate request is larger than " + std::to_string(kMaxCsrBytes) +
                   " bytes");
    } else if (last_csr_ && now - *last_csr_ < kMinCsrInterval) {
      u->set_error("certificate requests come too often: at most one a second");
    } else {
      last_csr_ = now;
      auto signed_identity = signer->sign(who_, csr);
      if (!signed_identity && signed_identity.error().code == ca::kIdentityForeignName) {
        log::warn(kLog, "refused a certificate request of " + who_.resource() + " (" +
                            context_->peer() + "): " + signed_identity.error().message);
        std::lock_guard lock(mu_);
        finishLocked(
            grpc::Status(grpc::StatusCode::PERMISSION_DENIED, signed_identity.error().message));
        return;
      }
      if (!signed_identity) {
        log::warn(kLog, "cannot issue the identity of " + who_.resource() + " (" +
                            context_->peer() + "): " + signed_identity.error().message);
        u->set_error(signed_identity.error().message);
      } else {
        *u = std::move(*signed_identity);
      }
    }
    std::lock_guard lock(mu_);
    if (u->error().empty()) {
      status_.identity = u->spiffe_id();
      auto cert = ca::parseCert(u->certificate_chain_pem());
      status_.identity_expires_at = cert ? ca::certNotAfter(cert->get()) : 0;
      log::info(kLog, "issued " + u->spiffe_id() + " to " + status_.peer + " until " +
                          std::to_string(status_.identity_expires_at));
    }
    sendExtraLocked(std::move(answer));
    if (!finishing_ && !done_) StartRead(&in_);
  }

  // A message outside the config versions (an IdentityUpdate): written at once when nothing is in
  // flight, else before the pending config (a newer one replaces an unsent one).
  void sendExtraLocked(ServerMessage m) {
    if (done_ || finishing_) return;
    if (write_in_flight_) {
      pending_identity_ = std::move(m);
      return;
    }
    out_ = std::move(m);
    write_in_flight_ = true;
    StartWrite(&out_);
  }

  void startWriteLocked(const CompiledPtr& next, bool full = false) {
    status_.version_sent += 1;
    out_ = updateFor(full ? nullptr : sent_.get(), *next, status_.version_sent);
    sent_ = next;
    startWriteOutLocked();
  }

  void startWriteOutLocked() {
    if (out_.has_endpoints()) last_delta_version_ = status_.version_sent;
    write_in_flight_ = true;
    StartWrite(&out_);
  }

  // The proxy refused an endpoints delta (it could not apply it to what it holds): the next
  // message is the whole latest config, whatever was queued.
  void resendFullLocked() {
    if (finishing_ || done_) return;
    if (!write_in_flight_) {
      startWriteLocked(sent_, /*full=*/true);
      return;
    }
    CompiledPtr target = pending_config_ ? pending_config_ : sent_;
    pending_ = updateFor(nullptr, *target, status_.version_sent + 1);
    pending_config_ = target;
  }

  void finishLocked(grpc::Status status) {
    if (done_ || finishing_) return;
    finishing_ = true;
    pending_.reset();
    pending_config_.reset();
    pending_identity_.reset();
    if (write_in_flight_) {
      finish_wanted_ = std::move(status);  // OnWriteDone finishes
      return;
    }
    Finish(std::move(status));
  }

  Impl& impl_;
  grpc::CallbackServerContext* context_;
  const uint64_t id_;
  std::shared_ptr<Stream> self_;
  ProxyMessage in_;  // the read in progress (one at a time)
  // Read/written only by the read reactions (serialized by gRPC: one read at a time) before the
  // stream is registered; constant afterwards.
  bool hello_done_ = false;
  bool registered_ = false;
  bool announced_ = false;  // the registrar was told of the Hello
  compile::ProxyIdentity who_;
  std::string token_, token_id_;
  std::vector<std::string> depends_on_;  // push thread only
  // The last CertificateRequest signed (read reactions only: one read at a time).
  std::optional<std::chrono::steady_clock::time_point> last_csr_;

  mutable std::mutex mu_;
  bool done_ = false;       // OnDone ran: touch nothing of gRPC's
  bool finishing_ = false;  // Finish called or wanted: start no more operations
  bool goodbye_ = false;    // the proxy said Goodbye: its end is clean
  std::optional<grpc::Status> finish_wanted_;
  bool write_in_flight_ = false;
  ServerMessage out_;                              // the write in flight
  CompiledPtr sent_;                               // config of the last write started
  std::optional<ServerMessage> pending_;           // the next write, against sent_
  CompiledPtr pending_config_;                     // its config
  std::optional<ServerMessage> pending_identity_;  // an IdentityUpdate waiting for the write
  uint64_t last_delta_version_ = 0;                // the last version sent as an EndpointsUpdate
  ProxyStatus status_;
};

class PushServer::Impl::Service final : public v1::ConfigStream::CallbackService {
 public:
  explicit Service(Impl& impl) : impl_(impl) {}
  grpc::ServerBidiReactor<ProxyMessage, ServerMessage>* Stream(
      grpc::CallbackServerContext* context) override {
    auto s = std::make_shared<Impl::Stream>(impl_, context);
    impl_.awaitHello(s);  // before the first read: its Hello may arrive at once
    s->begin();
    return s.get();
  }

 private:
  Impl& impl_;
};

Result<uint16_t> PushServer::Impl::start() {
  std::shared_ptr<grpc::ServerCredentials> creds;
  if (options_.insecure) {
    creds = grpc::InsecureServerCredentials();
  } else {
    if (options_.cert_pem.empty() || options_.key_pem.empty())
      return makeError("the config stream needs a certificate and key (or --insecure)");
    grpc::SslServerCredentialsOptions ssl;
    ssl.pem_key_cert_pairs.push_back({options_.key_pem, options_.cert_pem});
    ssl.client_certificate_request = GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
    creds = grpc::SslServerCredentials(ssl);
  }
  service_ = std::make_unique<Service>(*this);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(options_.address, creds, &port);
  builder.RegisterService(service_.get());
  // Dead peers are noticed by keepalive pings; proxies may ping us too.
  // A second server on the same port must fail, not share it (gRPC sets SO_REUSEPORT).
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  builder.AddChannelArgument(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, 1 << 20);
  // A proxy needs one stream; a few more per connection cover a reconnect racing the old one.
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, 4);
  builder.AddChannelArgument(GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, 64 << 20);
  server_ = builder.BuildAndStart();
  if (!server_ || port == 0)
    return makeError("cannot listen for the config stream on " + options_.address +
                     " (address in use, or not a HOST:PORT this machine has)");
  {
    std::lock_guard lock(mu_);
    running_ = true;
    stopping_ = false;
  }
  push_thread_ = std::thread([this] { pushLoop(); });
  return static_cast<uint16_t>(port);
}

void PushServer::Impl::stop() {
  std::vector<std::shared_ptr<Stream>> streams;
  {
    std::lock_guard lock(mu_);
    if (!running_) return;
    running_ = false;
    stopping_ = true;
    for (auto& [id, s] : streams_) streams.push_back(s);
  }
  wake_.notify_all();
  if (push_thread_.joinable()) push_thread_.join();
  for (auto& s : streams)
    s->end(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "the control plane is shutting down; reconnect later"));
  streams.clear();
  if (server_) {
    // Calls not finished by then (a write to a stuck peer) are cancelled.
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    server_.reset();
  }
  service_.reset();
  std::lock_guard lock(mu_);
  streams_.clear();
  new_streams_.clear();
}

void PushServer::Impl::onStoreChanged(const std::vector<std::string>& keys) {
  {
    std::lock_guard lock(mu_);
    if (!running_) return;
    changed_keys_.insert(keys.begin(), keys.end());
  }
  wake_.notify_all();
}

void PushServer::Impl::toRegistrar(std::function<void(InstanceRegistrar&)> call) {
  if (!options_.registrar) return;
  {
    std::lock_guard lock(mu_);
    if (!running_) return;
    registrar_calls_.push_back(std::move(call));
  }
  wake_.notify_all();
}

void PushServer::Impl::registerStream(const std::shared_ptr<Stream>& s) {
  {
    std::lock_guard lock(mu_);
    if (!running_) {
      s->end(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the control plane is shutting down"));
      return;
    }
    streams_[s->id()] = s;
    new_streams_.push_back(s);
  }
  wake_.notify_all();
}

void PushServer::Impl::unregisterStream(uint64_t id) {
  std::lock_guard lock(mu_);
  streams_.erase(id);
}

void PushServer::Impl::awaitHello(const std::shared_ptr<Stream>& s) {
  std::lock_guard lock(mu_);
  awaiting_hello_[s->id()] = {s, std::chrono::steady_clock::now()};
}

void PushServer::Impl::helloReceived(uint64_t id) {
  std::lock_guard lock(mu_);
  awaiting_hello_.erase(id);
}

std::vector<ProxyStatus> PushServer::Impl::proxies() const {
  std::vector<std::shared_ptr<Stream>> streams;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, s] : streams_) streams.push_back(s);
  }
  std::vector<ProxyStatus> out;
  out.reserve(streams.size());
  for (const auto& s : streams) out.push_back(s->status());
  std::sort(out.begin(), out.end(), [](const ProxyStatus& a, const ProxyStatus& b) {
    if (a.resource != b.resource) return a.resource < b.resource;
    if (a.connected_at != b.connected_at) return a.connected_at < b.connected_at;
    return a.peer < b.peer;
  });
  return out;
}

void PushServer::Impl::pushLoop() {
  std::unique_lock lock(mu_);
  while (true) {
    auto work = [&] {
      return stopping_ || !changed_keys_.empty() || !new_streams_.empty() ||
             !registrar_calls_.empty();
    };
    if (awaiting_hello_.empty() && !options_.registrar)
      wake_.wait(lock, work);
    else
      wake_.wait_for(lock, std::chrono::seconds(1), work);
    if (stopping_) return;
    // The registrar's calls, in arrival order, then its tick; without our lock (it commits to
    // the store, whose listener calls onStoreChanged).
    if (options_.registrar) {
      std::vector<std::function<void(InstanceRegistrar&)>> calls = std::move(registrar_calls_);
      registrar_calls_.clear();
      const auto now = std::chrono::steady_clock::now();
      const bool tick = now - last_tick_ >= kRegistrarTick;
      if (tick) last_tick_ = now;
      if (!calls.empty() || tick) {
        lock.unlock();
        for (auto& call : calls) call(*options_.registrar);
        if (tick) options_.registrar->tick(options_.stale_after);
        lock.lock();
        if (stopping_) return;
      }
    }
    // Streams still without a Hello after kHelloTimeout are ended.
    std::vector<std::shared_ptr<Stream>> silent;
    const auto now = std::chrono::steady_clock::now();
    for (auto it = awaiting_hello_.begin(); it != awaiting_hello_.end();) {
      if (now - it->second.second < kHelloTimeout) {
        ++it;
        continue;
      }
      if (auto st = it->second.first.lock()) silent.push_back(std::move(st));
      it = awaiting_hello_.erase(it);
    }
    if (!silent.empty()) {
      lock.unlock();
      for (auto& st : silent)
        st->end(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                             "no Hello within " + std::to_string(kHelloTimeout.count()) +
                                 " s of opening the stream: send Hello (resource, token) first"));
      lock.lock();
    }
    if (changed_keys_.empty() && new_streams_.empty()) continue;
    // At most one recompilation per coalesce_window for store changes: a change after a quiet
    // spell goes at once, the rest of a burst gathers until the window since the last run ends.
    // New streams alone go at once.
    const auto due = last_run_ + options_.coalesce_window;
    if (!changed_keys_.empty() && std::chrono::steady_clock::now() < due) {
      wake_.wait_until(lock, due, [&] { return stopping_; });
      if (stopping_) return;
    }
    if (!changed_keys_.empty()) last_run_ = std::chrono::steady_clock::now();
    std::set<std::string> changed = std::move(changed_keys_);
    changed_keys_.clear();
    std::vector<std::shared_ptr<Stream>> fresh = std::move(new_streams_);
    new_streams_.clear();
    lock.unlock();
    recompile(changed, std::move(fresh));
    lock.lock();
  }
}

void PushServer::Impl::recompile(const std::set<std::string>& changed,
                                 std::vector<std::shared_ptr<Stream>> fresh) {
  // Which streams to recompile: the new ones, and every one with a depends_on prefix of a
  // changed key. A changed token record re-checks the streams that used it.
  std::vector<std::shared_ptr<Stream>> all;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, s] : streams_) all.push_back(s);
  }
  std::set<uint64_t> fresh_ids;
  for (const auto& s : fresh) fresh_ids.insert(s->id());
  std::set<std::string> changed_tokens;
  for (const std::string& k : changed)
    if (k.rfind(Tokens::kKeyPrefix, 0) == 0)
      changed_tokens.insert(k.substr(Tokens::kKeyPrefix.size()));

  std::vector<std::shared_ptr<Stream>> affected;
  for (const auto& s : all) {
    if (!changed_tokens.empty() && changed_tokens.count(s->tokenId())) {
      if (auto st = tokens_.verify(s->token(), s->who().resource()); !st && st.error().code != 0) {
        log::info(kLog, "disconnecting " + s->who().resource() + ": " + st.error().message);
        s->end(grpc::Status(st.error().code == kTokenWrongResource
                                ? grpc::StatusCode::PERMISSION_DENIED
                                : grpc::StatusCode::UNAUTHENTICATED,
                            st.error().message));
        continue;
      }
    }
    bool hit = fresh_ids.count(s->id()) > 0;
    for (auto it = changed.begin(); !hit && it != changed.end(); ++it)
      for (const std::string& prefix : s->dependsOn())
        if (it->compare(0, prefix.size(), prefix) == 0) {
          hit = true;
          break;
        }
    if (hit) affected.push_back(s);
  }

  // One compilation per resource, shared by its streams.
  std::map<std::string, std::pair<CompiledPtr, std::vector<std::string>>> by_resource;
  for (const auto& s : affected) {
    std::string resource = s->who().resource();
    auto it = by_resource.find(resource);
    if (it == by_resource.end()) {
      auto r = compiler_.compile(s->who());
      std::pair<CompiledPtr, std::vector<std::string>> entry;
      if (r) {
        auto c = std::make_shared<Compiled>();
        c->hash = compile::configHash(r->config);
        c->config = std::move(r->config);
        entry.first = std::move(c);
        entry.second = std::move(r->depends_on);
      } else {
        if (r.error().code != compile::kCompileNotFound)
          log::warn(kLog, "compiling " + resource + ": " + r.error().message +
                              " (its proxies keep their current config)");
        else
          log::debug(kLog, resource + " does not exist (yet); its proxies wait for it");
        entry.second = waitingDependsOn(s->who());
      }
      it = by_resource.emplace(resource, std::move(entry)).first;
    }
    const auto& [compiled, depends_on] = it->second;
    if (compiled) {
      s->dependsOn() = depends_on;
    } else {
      // Keep listening to what the last good config read, and to the resource and its mesh.
      std::set<std::string> merged(s->dependsOn().begin(), s->dependsOn().end());
      merged.insert(depends_on.begin(), depends_on.end());
      s->dependsOn().assign(merged.begin(), merged.end());
    }
    if (compiled) s->push(compiled);
  }
}

PushServer::PushServer(const compile::Compiler& compiler, Tokens& tokens, const TimeSource& time,
                       PushOptions options)
    : impl_(std::make_unique<Impl>(compiler, tokens, time, std::move(options))) {}

PushServer::~PushServer() { stop(); }

Result<uint16_t> PushServer::start() { return impl_->start(); }
void PushServer::stop() { impl_->stop(); }
void PushServer::onStoreChanged(const std::vector<std::string>& keys) {
  impl_->onStoreChanged(keys);
}
std::vector<ProxyStatus> PushServer::proxies() const { return impl_->proxies(); }

}  // namespace weft::control::push
