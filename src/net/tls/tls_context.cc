#include "net/tls/tls_context.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>

#include <atomic>
#include <cstring>
#include <ctime>
#include <unordered_map>

#include "common/log.h"
#include "net/tls/ssl_util.h"
#include "net/tls/tls_transport.h"

namespace weft::net::tls {

std::string_view verifyFailureName(VerifyFailure failure) {
  switch (failure) {
    case VerifyFailure::kNone:
      return "none";
    case VerifyFailure::kNoPeerCertificate:
      return "no_peer_certificate";
    case VerifyFailure::kUntrusted:
      return "untrusted";
    case VerifyFailure::kExpired:
      return "expired";
    case VerifyFailure::kSanMismatch:
      return "san_mismatch";
    case VerifyFailure::kHandshake:
      return "handshake";
  }
  return "handshake";
}

namespace {

std::atomic<uint64_t> g_next_context_id{1};

// ---- Client session cache: one per worker thread, no locks. ----

class SessionCache {
 public:
  static constexpr size_t kMaxEntries = 1024;

  SessionCache() = default;
  SessionCache(const SessionCache&) = delete;
  SessionCache& operator=(const SessionCache&) = delete;
  ~SessionCache() {
    for (auto& [key, entry] : entries_) SSL_SESSION_free(entry.session);
  }

  // Borrowed; valid until the next put/erase on this thread.
  SSL_SESSION* get(const std::string& key) {
    auto it = entries_.find(key);
    if (it == entries_.end()) return nullptr;
    it->second.last_use = ++tick_;
    return it->second.session;
  }

  // Takes ownership of `session`.
  void put(const std::string& key, SSL_SESSION* session) {
    auto it = entries_.find(key);
    if (it != entries_.end()) {
      SSL_SESSION_free(it->second.session);
      it->second = Entry{session, ++tick_};
      return;
    }
    if (entries_.size() >= kMaxEntries) evictOldest();
    entries_.emplace(key, Entry{session, ++tick_});
  }

  void erase(const std::string& key) {
    auto it = entries_.find(key);
    if (it == entries_.end()) return;
    SSL_SESSION_free(it->second.session);
    entries_.erase(it);
  }

 private:
  struct Entry {
    SSL_SESSION* session;
    uint64_t last_use;
  };

  // O(n), but only when a new key arrives at a full cache: cheap next to the full handshake
  // that produced the new session.
  void evictOldest() {
    auto oldest = entries_.begin();
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if (it->second.last_use < oldest->second.last_use) oldest = it;
    }
    if (oldest != entries_.end()) {
      SSL_SESSION_free(oldest->second.session);
      entries_.erase(oldest);
    }
  }

  std::unordered_map<std::string, Entry> entries_;
  uint64_t tick_ = 0;
};

SessionCache& threadSessions() {
  thread_local SessionCache cache;
  return cache;
}

// SSL_CTX_sess_set_new_cb: a client received a resumable session (at the end of a TLS 1.2
// handshake, or in a TLS 1.3 NewSessionTicket read later). Runs on the connection's thread.
int onNewClientSession(SSL* ssl, SSL_SESSION* session) {
  detail::ConnState* state = detail::connStateOf(ssl);
  if (state == nullptr || state->session_key.empty() || !SSL_SESSION_is_resumable(session)) {
    return 0;
  }
  threadSessions().put(state->session_key, session);
  return 1;  // we keep the reference
}

std::string peerAddressKey(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "";
  char ip[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
    return std::string(ip) + ":" + std::to_string(ntohs(in->sin_port));
  }
  if (ss.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
    std::string out = "[";
    out += ip;
    out += "]:";
    out += std::to_string(ntohs(in6->sin6_port));
    return out;
  }
  return "";
}

// ---- Verification ----

// One X509_verify_cert run of a context that checks revocation (the store's app data while it
// runs).
struct RevocationRun {
  const detail::ContextBase* context;
  X509_CRL* expired_crl = nullptr;  // the first expired CRL accepted, if any (a reference)
};

// X509_STORE_CTX verify callback of contexts with CRLs (tls_context.h, "Revocation"): accepts a
// CRL's time errors (the CRL is still enforced) and a missing CRL for an issuer that has none
// loaded; every other error stands.
int revocationVerifyCallback(int ok, X509_STORE_CTX* store) {
  if (ok == 1) return 1;
  auto* run = static_cast<RevocationRun*>(X509_STORE_CTX_get_app_data(store));
  if (run == nullptr) return ok;
  switch (X509_STORE_CTX_get_error(store)) {
    case X509_V_ERR_CRL_HAS_EXPIRED:
    case X509_V_ERR_CRL_NOT_YET_VALID:
      if (run->expired_crl == nullptr) {
        X509_CRL* crl = X509_STORE_CTX_get0_current_crl(store);
        if (crl != nullptr && X509_CRL_up_ref(crl) == 1) run->expired_crl = crl;
      }
      X509_STORE_CTX_set_error(store, X509_V_OK);
      return 1;
    case X509_V_ERR_UNABLE_TO_GET_CRL: {
      X509* cert = X509_STORE_CTX_get_current_cert(store);
      if (cert != nullptr && !run->context->hasCrlFrom(X509_get_issuer_name(cert))) {
        X509_STORE_CTX_set_error(store, X509_V_OK);
        return 1;
      }
      return 0;
    }
    default:
      return 0;
  }
}

// SSL_CTX_set_cert_verify_callback: OpenSSL's chain verification (trust bundle, validity,
// purpose, revocation when the context has CRLs and, on the client without SAN rules, the host
// name), then our SAN rules on the leaf. Records why it failed in the connection's ConnState.
int verifyPeer(X509_STORE_CTX* store, void* arg) {
  const auto* context = static_cast<const detail::ContextBase*>(arg);
  auto* ssl =
      static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
  detail::ConnState* state = detail::connStateOf(ssl);

  RevocationRun run{context, nullptr};
  if (context->checksRevocation()) {
    X509_STORE_CTX_set_app_data(store, &run);
    X509_STORE_CTX_set_verify_cb(store, revocationVerifyCallback);
  }
  int verified = X509_verify_cert(store);
  if (context->checksRevocation()) X509_STORE_CTX_set_app_data(store, nullptr);
  if (run.expired_crl != nullptr) {
    context->noteExpiredCrl(run.expired_crl);
    X509_CRL_free(run.expired_crl);
  }
  if (verified <= 0) {
    int err = X509_STORE_CTX_get_error(store);
    if (state != nullptr) {
      state->failure = detail::classifyVerifyError(err);
      X509* bad = X509_STORE_CTX_get_current_cert(store);
      std::string subject;
      if (bad != nullptr) {
        char buf[256];
        X509_NAME_oneline(X509_get_subject_name(bad), buf, sizeof(buf));
        subject = buf;
      }
      state->verify_detail = std::string(X509_verify_cert_error_string(err)) + " (depth " +
                             std::to_string(X509_STORE_CTX_get_error_depth(store)) +
                             (subject.empty() ? "" : ", " + subject) + ")";
      if (state->failure == VerifyFailure::kSanMismatch) {
        PeerSans sans = sansOf(X509_STORE_CTX_get0_cert(store));
        state->verify_detail += ": certificate names [" + describeSans(sans) + "] do not match \"" +
                                state->server_name + "\"";
      }
    }
    return 0;
  }
  if (!context->sanRules().empty()) {
    PeerSans sans = sansOf(X509_STORE_CTX_get0_cert(store));
    if (!sansMatch(sans, context->sanRules())) {
      X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
      if (state != nullptr) {
        state->failure = VerifyFailure::kSanMismatch;
        state->verify_detail = "peer certificate SANs [" + describeSans(sans) +
                               "] match none of [" + describeRules(context->sanRules()) + "]";
      }
      return 0;
    }
  }
  return 1;
}

int protocolVersion(v1::TlsVersion v, bool is_max) {
  switch (v) {
    case v1::TLS_1_2:
      return TLS1_2_VERSION;
    case v1::TLS_1_3:
      return TLS1_3_VERSION;
    default:
      return is_max ? TLS1_3_VERSION : TLS1_2_VERSION;
  }
}

Result<std::string> alpnWire(const google::protobuf::RepeatedPtrField<std::string>& protos,
                             std::string_view name) {
  std::string wire;
  for (int i = 0; i < protos.size(); ++i) {
    const std::string& p = protos[i];
    if (p.empty() || p.size() > 255) {
      return makeError(std::string(name) + ": alpn[" + std::to_string(i) +
                       "]: protocol names are 1 to 255 bytes");
    }
    wire.push_back(static_cast<char>(p.size()));
    wire += p;
  }
  return wire;
}

// OpenSSL computes a certificate's extension cache (key ids, constraints, purposes) lazily on
// first use, under a per-certificate lock but with an unlocked fast-path check. Doing it here,
// before the context is shared, means workers only ever read the cache.
void warmExtensionCache(X509* cert) { (void)X509_check_purpose(cert, -1, 0); }

bool isIpLiteral(const std::string& s) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

// One PEM item of a TLS config: `<item>_file` or `<item>_pem` (exactly one of them).
class PemSource {
 public:
  PemSource(std::string item, const std::string& file, const std::string& pem)
      : item_(std::move(item)), file_(file), pem_(pem) {}

  // "certificate_chain_file /x.pem" or "certificate_chain_pem": names the item in errors.
  std::string what() const { return file_.empty() ? item_ + "_pem" : item_ + "_file " + file_; }
  // The file name, or "(inline PEM)".
  std::string label() const { return file_.empty() ? std::string("(inline PEM)") : file_; }
  // The PEM text (the file's contents, or a copy of the inline text). Never in an error message.
  Result<std::string> read(const std::string& context_name) const {
    if (file_.empty()) return pem_;
    return readSmallFile(file_, context_name + ": " + item_ + "_file");
  }

 private:
  std::string item_;
  const std::string& file_;
  const std::string& pem_;
};

Result<PemSource> pemSource(const std::string& file, const std::string& pem,
                            const std::string& item) {
  if (!file.empty() && !pem.empty())
    return makeError(item + "_file and " + item + "_pem are both set; give one of them");
  if (file.empty() && pem.empty()) return makeError(item + "_file or " + item + "_pem is required");
  return PemSource(item, file, pem);
}

}  // namespace

namespace detail {

void forgetClientSession(const std::string& key) { threadSessions().erase(key); }

ContextBase::ContextBase(bool client, std::string_view name)
    : name_(name), client_(client), id_(g_next_context_id.fetch_add(1)) {}

ContextBase::~ContextBase() {
  SSL_CTX_free(ctx_);
  for (X509_NAME* n : crl_issuers_) X509_NAME_free(n);
}

bool ContextBase::hasCrlFrom(const X509_NAME* issuer) const {
  for (const X509_NAME* n : crl_issuers_)
    if (X509_NAME_cmp(n, issuer) == 0) return true;
  return false;
}

void ContextBase::noteExpiredCrl(const X509_CRL* crl) const {
  if (counters_.crl_expired) counters_.crl_expired->inc();
  if (expired_crl_logged_.exchange(true, std::memory_order_relaxed)) return;
  char issuer[256] = "?";
  X509_NAME_oneline(X509_CRL_get_issuer(crl), issuer, sizeof(issuer));
  auto text = [](const ASN1_TIME* t) {
    struct tm tm {};
    if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return std::string("?");
    char buf[32];
    std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
    return std::string(buf);
  };
  log::warn("tls", name_ + ": the CRL of " + issuer + " is outside its validity (thisUpdate " +
                       text(X509_CRL_get0_lastUpdate(crl)) + ", nextUpdate " +
                       text(X509_CRL_get0_nextUpdate(crl)) +
                       "); its revocations are still enforced and connections go on. weft server "
                       "re-signs CRLs: is the control plane reachable, is this host's clock "
                       "right? (counted in weft_*_ssl_crl_expired_total; logged once per "
                       "configuration)");
}

Status ContextBase::loadCrls(const std::string& crl_pem) {
  auto crls = parseCrlBundle(crl_pem, name_ + ": validation.crl_pem");
  if (!crls) return makeError(crls.error().message);
  X509_STORE* store = SSL_CTX_get_cert_store(ctx_);
  for (const X509CrlPtr& crl : *crls) {
    if (X509_STORE_add_crl(store, crl.get()) != 1) {
      unsigned long e = ERR_peek_last_error();
      if (ERR_GET_REASON(e) != X509_R_CERT_ALREADY_IN_HASH_TABLE)
        return makeError(name_ + ": validation.crl_pem: " + drainSslErrors());
      ERR_clear_error();
    }
    const X509_NAME* issuer = X509_CRL_get_issuer(crl.get());
    if (!hasCrlFrom(issuer)) {
      X509_NAME* copy = X509_NAME_dup(issuer);
      if (copy == nullptr) return makeError(name_ + ": validation.crl_pem: out of memory");
      crl_issuers_.push_back(copy);
    }
  }
  // Every certificate of the chain, not only the leaf: a revoked subordinate CA fails too. An
  // issuer without a CRL here is let through by revocationVerifyCallback.
  if (X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL) != 1)
    return makeError(name_ + ": cannot enable CRL checking: " + drainSslErrors());
  crl_pem_ = crl_pem;
  return {};
}

Status ContextBase::init(const v1::TlsCertificate* certificate, const v1::TlsValidation* validation,
                         v1::TlsVersion min_version, v1::TlsVersion max_version) {
  ERR_clear_error();
  ctx_ = SSL_CTX_new(client_ ? TLS_client_method() : TLS_server_method());
  if (ctx_ == nullptr) return makeError(name_ + ": SSL_CTX_new: " + drainSslErrors());

  int min_v = protocolVersion(min_version, false);
  int max_v = protocolVersion(max_version, true);
  if (min_v > max_v) {
    return makeError(name_ + ": min_version " + v1::TlsVersion_Name(min_version) +
                     " is above max_version " + v1::TlsVersion_Name(max_version));
  }
  if (SSL_CTX_set_min_proto_version(ctx_, min_v) != 1 ||
      SSL_CTX_set_max_proto_version(ctx_, max_v) != 1) {
    return makeError(name_ + ": cannot set protocol versions: " + drainSslErrors());
  }
  SSL_CTX_set_options(ctx_, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                (client_ ? 0 : SSL_OP_CIPHER_SERVER_PREFERENCE));
  SSL_CTX_set_mode(ctx_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                             SSL_MODE_RELEASE_BUFFERS);
  // Read whole socket buffers into OpenSSL at once instead of a header read and a body read per
  // record (halves the recv calls); TlsTransport::drained() tells the connection when to stop.
  SSL_CTX_set_read_ahead(ctx_, 1);

  if (certificate != nullptr) {
    auto chain_src = pemSource(certificate->certificate_chain_file(),
                               certificate->certificate_chain_pem(), "certificate_chain");
    if (!chain_src) return makeError(name_ + ": " + chain_src.error().message);
    auto key_src =
        pemSource(certificate->private_key_file(), certificate->private_key_pem(), "private_key");
    if (!key_src) return makeError(name_ + ": " + key_src.error().message);
    auto chain_pem = chain_src->read(name_);
    if (!chain_pem) return makeError(chain_pem.error().message);
    auto chain = parseCertChain(*chain_pem, name_ + ": " + chain_src->what());
    if (!chain) return makeError(chain.error().message);
    auto key_pem = key_src->read(name_);
    if (!key_pem) return makeError(key_pem.error().message);
    auto key = parsePrivateKey(*key_pem, name_ + ": " + key_src->what());
    OPENSSL_cleanse(key_pem->data(), key_pem->size());
    if (!key) return makeError(key.error().message);
    warmExtensionCache(chain->leaf.get());
    for (const X509Ptr& intermediate : chain->intermediates) warmExtensionCache(intermediate.get());
    if (X509_check_private_key(chain->leaf.get(), key->get()) != 1) {
      ERR_clear_error();
      return makeError(name_ + ": private key " + key_src->label() +
                       " does not match certificate " + chain_src->label());
    }
    if (SSL_CTX_use_certificate(ctx_, chain->leaf.get()) != 1 ||
        SSL_CTX_use_PrivateKey(ctx_, key->get()) != 1) {
      return makeError(name_ + ": " + chain_src->what() + ": " + drainSslErrors());
    }
    {
      struct tm tm {};
      if (ASN1_TIME_to_tm(X509_get0_notAfter(chain->leaf.get()), &tm) == 1)
        certificate_not_after_ = static_cast<int64_t>(timegm(&tm));
    }
    for (const X509Ptr& intermediate : chain->intermediates) {
      if (SSL_CTX_add1_chain_cert(ctx_, intermediate.get()) != 1) {
        return makeError(name_ + ": " + chain_src->what() + ": " + drainSslErrors());
      }
    }
  }

  if (validation != nullptr) {
    auto bundle_src =
        pemSource(validation->trust_bundle_file(), validation->trust_bundle_pem(), "trust_bundle");
    if (!bundle_src) return makeError(name_ + ": validation." + bundle_src.error().message);
    auto bundle_pem = bundle_src->read(name_);
    if (!bundle_pem) return makeError(bundle_pem.error().message);
    auto bundle = parseCertBundle(*bundle_pem, name_ + ": " + bundle_src->what());
    if (!bundle) return makeError(bundle.error().message);
    X509_STORE* store = SSL_CTX_get_cert_store(ctx_);
    for (const X509Ptr& ca : *bundle) {
      warmExtensionCache(ca.get());
      if (X509_STORE_add_cert(store, ca.get()) != 1) {
        unsigned long e = ERR_peek_last_error();
        if (ERR_GET_REASON(e) == X509_R_CERT_ALREADY_IN_HASH_TABLE) {  // duplicate: harmless
          ERR_clear_error();
          continue;
        }
        return makeError(name_ + ": " + bundle_src->what() + ": " + drainSslErrors());
      }
    }
    if (!client_) {
      // Tell clients which CAs we accept, so one with several certificates picks the right one.
      STACK_OF(X509_NAME)* names = sk_X509_NAME_new_null();
      for (const X509Ptr& ca : *bundle) {
        X509_NAME* n = X509_NAME_dup(X509_get_subject_name(ca.get()));
        if (n != nullptr && sk_X509_NAME_push(names, n) == 0) X509_NAME_free(n);
      }
      SSL_CTX_set_client_CA_list(ctx_, names);
    }
    if (!validation->crl_pem().empty()) {
      if (auto st = loadCrls(validation->crl_pem()); !st) return st;
    }
    auto rules = sanRulesFrom(validation->match_subject_alt_names(), name_);
    if (!rules) return makeError(rules.error().message);
    san_rules_ = std::move(*rules);
    trust_bundle_pem_ = std::move(*bundle_pem);
    SSL_CTX_set_cert_verify_callback(ctx_, verifyPeer, this);
  }
  ERR_clear_error();
  return {};
}

}  // namespace detail

// ---- ServerContext ----

Result<std::shared_ptr<const ServerContext>> ServerContext::create(const v1::ListenerTls& cfg,
                                                                   std::string_view name,
                                                                   const ServerContext* previous,
                                                                   ContextCounters counters) {
  std::shared_ptr<ServerContext> c(new ServerContext(name));
  c->counters_ = std::move(counters);
  if (!cfg.has_certificate()) {
    return makeError(c->name_ +
                     ": certificate (certificate_chain_file or certificate_chain_pem, "
                     "private_key_file or private_key_pem) is required");
  }
  const v1::TlsValidation* validation = cfg.has_validation() ? &cfg.validation() : nullptr;
  if (auto st = c->init(&cfg.certificate(), validation, cfg.min_version(), cfg.max_version());
      !st) {
    return makeError(st.error().message);
  }
  c->mode_ = cfg.mode();
  c->require_client_cert_ = validation != nullptr;
  SSL_CTX* ctx = c->ctx_;

  if (cfg.alpn_size() == 0) {
    c->alpn_ = {"http/1.1"};
  } else {
    auto wire = alpnWire(cfg.alpn(), c->name_);  // validates lengths
    if (!wire) return makeError(wire.error().message);
    c->alpn_.assign(cfg.alpn().begin(), cfg.alpn().end());
  }
  SSL_CTX_set_alpn_select_cb(ctx, &ServerContext::selectAlpn, c.get());

  if (c->require_client_cert_) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  }

  // Session id context: sessions resume only under the same client-validation rules.
  std::string sid_input = "weft server session v1\n";
  sid_input += c->require_client_cert_ ? "mtls\n" : "no-mtls\n";
  sid_input += c->trust_bundle_pem_;
  sid_input += "\n" + describeRules(c->san_rules_);
  if (!c->crl_pem_.empty()) sid_input += "\ncrl\n" + c->crl_pem_;
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  if (EVP_Digest(sid_input.data(), sid_input.size(), digest, &digest_len, EVP_sha256(), nullptr) !=
          1 ||
      SSL_CTX_set_session_id_context(
          ctx, digest, std::min<unsigned int>(digest_len, SSL_MAX_SID_CTX_LENGTH)) != 1) {
    return makeError(c->name_ + ": cannot set session id context: " + drainSslErrors());
  }
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
  SSL_CTX_sess_set_cache_size(ctx, 20480);
  SSL_CTX_set_num_tickets(ctx, 1);  // TLS 1.3: one ticket per handshake; clients keep the last

  if (previous != nullptr) {
    c->ticket_keys_ = previous->ticket_keys_;
    if (SSL_CTX_set_tlsext_ticket_keys(ctx, c->ticket_keys_.data(), c->ticket_keys_.size()) != 1) {
      return makeError(c->name_ + ": cannot set session ticket keys: " + drainSslErrors());
    }
  } else if (SSL_CTX_get_tlsext_ticket_keys(ctx, c->ticket_keys_.data(), c->ticket_keys_.size()) !=
             1) {
    return makeError(c->name_ + ": cannot read session ticket keys: " + drainSslErrors());
  }
  ERR_clear_error();
  return std::shared_ptr<const ServerContext>(std::move(c));
}

ServerContext::~ServerContext() { OPENSSL_cleanse(ticket_keys_.data(), ticket_keys_.size()); }

int ServerContext::selectAlpn(SSL*, const unsigned char** out, unsigned char* outlen,
                              const unsigned char* in, unsigned int inlen, void* arg) {
  const auto* self = static_cast<const ServerContext*>(arg);
  for (const std::string& mine : self->alpn_) {
    unsigned int i = 0;
    while (i < inlen) {
      unsigned int len = in[i];
      if (i + 1 + len > inlen) break;  // malformed list: stop looking
      if (len == mine.size() && std::memcmp(in + i + 1, mine.data(), len) == 0) {
        *out = in + i + 1;
        *outlen = static_cast<unsigned char>(len);
        return SSL_TLSEXT_ERR_OK;
      }
      i += 1 + len;
    }
  }
  return SSL_TLSEXT_ERR_NOACK;
}

std::unique_ptr<Transport> ServerContext::newTransport(int fd) const {
  auto self = std::static_pointer_cast<const detail::ContextBase>(shared_from_this());
  ERR_clear_error();
  SSL* ssl = SSL_new(ctx_);
  if (ssl == nullptr || !TlsTransport::attachSocket(ssl, fd)) {
    std::string why = "cannot create SSL: " + drainSslErrors("out of memory");
    SSL_free(ssl);
    TlsTransport::Setup setup;
    setup.init_error = std::move(why);
    return std::make_unique<TlsTransport>(fd, std::move(self), nullptr, std::move(setup));
  }
  SSL_set_accept_state(ssl);
  return std::make_unique<TlsTransport>(fd, std::move(self), ssl, TlsTransport::Setup{});
}

// ---- ClientContext ----

Result<std::shared_ptr<const ClientContext>> ClientContext::create(const v1::UpstreamTls& cfg,
                                                                   std::string_view name,
                                                                   ContextCounters counters) {
  std::shared_ptr<ClientContext> c(new ClientContext(name));
  c->counters_ = std::move(counters);
  if (!cfg.has_validation() || (cfg.validation().trust_bundle_file().empty() &&
                                cfg.validation().trust_bundle_pem().empty())) {
    return makeError(c->name_ +
                     ": validation.trust_bundle_file or validation.trust_bundle_pem is required "
                     "(weft does not originate unverified TLS)");
  }
  const v1::TlsCertificate* certificate = cfg.has_certificate() ? &cfg.certificate() : nullptr;
  if (auto st = c->init(certificate, &cfg.validation(), cfg.min_version(), cfg.max_version());
      !st) {
    return makeError(st.error().message);
  }
  SSL_CTX* ctx = c->ctx_;
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  if (cfg.alpn_size() > 0) {
    auto wire = alpnWire(cfg.alpn(), c->name_);
    if (!wire) return makeError(wire.error().message);
    // Note the inverted convention: 0 is success.
    if (SSL_CTX_set_alpn_protos(ctx, reinterpret_cast<const unsigned char*>(wire->data()),
                                static_cast<unsigned int>(wire->size())) != 0) {
      return makeError(c->name_ + ": cannot set alpn: " + drainSslErrors());
    }
  }
  std::string sni = cfg.sni();
  if (!sni.empty() && sni.back() == '.') sni.pop_back();
  c->sni_ = std::move(sni);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(ctx, onNewClientSession);
  ERR_clear_error();
  return std::shared_ptr<const ClientContext>(std::move(c));
}

std::unique_ptr<Transport> ClientContext::newTransport(int fd, std::string_view sni_host) const {
  auto self = std::static_pointer_cast<const detail::ContextBase>(shared_from_this());
  std::string server_name = sni_.empty() ? std::string(sni_host) : sni_;
  if (!server_name.empty() && server_name.back() == '.') server_name.pop_back();
  if (server_name.size() > 2 && server_name.front() == '[' && server_name.back() == ']') {
    server_name = server_name.substr(1, server_name.size() - 2);
  }
  const bool ip = isIpLiteral(server_name);

  ERR_clear_error();
  SSL* ssl = SSL_new(ctx_);
  auto failed = [&](std::string why) {
    SSL_free(ssl);
    TlsTransport::Setup setup;
    setup.server_name = server_name;
    setup.init_error = std::move(why);
    return std::make_unique<TlsTransport>(fd, self, nullptr, std::move(setup));
  };
  if (ssl == nullptr || !TlsTransport::attachSocket(ssl, fd)) {
    return failed("cannot create SSL: " + drainSslErrors("out of memory"));
  }
  SSL_set_connect_state(ssl);
  if (!server_name.empty() && !ip && SSL_set_tlsext_host_name(ssl, server_name.c_str()) != 1) {
    return failed("invalid server name \"" + server_name + "\": " + drainSslErrors());
  }
  if (san_rules_.empty()) {
    if (server_name.empty()) {
      return failed(
          "cannot verify the server: no match_subject_alt_names configured and no host name "
          "(set sni, or match_subject_alt_names)");
    }
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    int ok = 0;
    if (ip) {
      ok = X509_VERIFY_PARAM_set1_ip_asc(param, server_name.c_str());
    } else {
      X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      ok = X509_VERIFY_PARAM_set1_host(param, server_name.c_str(), server_name.size());
    }
    if (ok != 1) {
      return failed("cannot verify against \"" + server_name + "\": " + drainSslErrors());
    }
  }
  std::string key = std::to_string(id_) + '\n' + server_name + '\n' + peerAddressKey(fd);
  if (SSL_SESSION* session = threadSessions().get(key)) {
    if (SSL_SESSION_is_resumable(session) != 1 || SSL_set_session(ssl, session) != 1) {
      threadSessions().erase(key);
      ERR_clear_error();
    }
  }
  ERR_clear_error();
  TlsTransport::Setup setup;
  setup.session_key = std::move(key);
  setup.server_name = server_name;
  setup.sni_sent = !server_name.empty() && !ip;
  return std::make_unique<TlsTransport>(fd, std::move(self), ssl, std::move(setup));
}

namespace {
// Listener and upstream TLS name their files with the same fields.
template <class TlsConfig>
std::vector<std::string> tlsFiles(const TlsConfig& cfg) {
  std::vector<std::string> files;
  if (cfg.has_certificate()) {
    files.push_back(cfg.certificate().certificate_chain_file());
    files.push_back(cfg.certificate().private_key_file());
  }
  if (cfg.has_validation()) files.push_back(cfg.validation().trust_bundle_file());
  std::erase(files, std::string());
  return files;
}
}  // namespace

std::vector<std::string> filesOf(const v1::ListenerTls& cfg) { return tlsFiles(cfg); }
std::vector<std::string> filesOf(const v1::UpstreamTls& cfg) { return tlsFiles(cfg); }

}  // namespace weft::net::tls
