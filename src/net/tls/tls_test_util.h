#pragma once
// Test-only helpers for the tls module's *_test.cc files (header-only, so nothing here is built
// into weft_net): a throw-away PKI generated with the OpenSSL API (ECDSA P-256), non-blocking
// socket pairs, and poll-driven loops that run a handshake or move bytes between two transports
// on one thread, with a deadline instead of sleeps.

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "net/tls/ssl_util.h"
#include "net/transport.h"
#include "weft/v1/config.pb.h"

namespace weft::net::tls::testing {

// A fresh directory under $TMPDIR, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "weft-tls-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) ADD_FAILURE() << "mkdtemp failed for " << tmpl;
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline void writeFile(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << contents;
  out.close();
  if (!out) ADD_FAILURE() << "cannot write " << path;
}

inline std::string readFileForTest(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Replaces `path` the way a careful writer does: write a sibling, rename over.
inline void replaceFile(const std::string& path, const std::string& contents) {
  writeFile(path + ".tmp", contents);
  std::filesystem::rename(path + ".tmp", path);
}

inline std::string pemOf(X509* cert) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(bio, cert);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(len));
  BIO_free(bio);
  return out;
}

inline std::string pemOf(EVP_PKEY* key) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(len));
  BIO_free(bio);
  return out;
}

struct Issued {
  EvpPkeyPtr key;
  X509Ptr cert;
  std::string cert_pem;
  std::string key_pem;
  std::string cert_file;  // written by TestPki::issue/makeCa
  std::string key_file;
};

struct LeafSpec {
  std::string common_name = "leaf";
  std::vector<std::string> dns;
  std::vector<std::string> uri;
  std::vector<std::string> ip;
  long not_before_days = -1;
  long not_after_days = 30;
};

// Builds certificates and writes them (PEM) into a TempDir.
class TestPki {
 public:
  explicit TestPki(const TempDir& dir) : dir_(dir) {}

  Issued makeCa(const std::string& stem, const std::string& cn) {
    Issued ca;
    ca.key = newKey();
    ca.cert = newCert(cn, ca.key.get(), -1, 3650);
    X509_set_issuer_name(ca.cert.get(), X509_get_subject_name(ca.cert.get()));
    addExt(ca.cert.get(), ca.cert.get(), NID_basic_constraints, "critical,CA:TRUE");
    addExt(ca.cert.get(), ca.cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign");
    addExt(ca.cert.get(), ca.cert.get(), NID_subject_key_identifier, "hash");
    EXPECT_GT(X509_sign(ca.cert.get(), ca.key.get(), EVP_sha256()), 0) << "signing CA " << cn;
    finish(ca, stem);
    return ca;
  }

  Issued issue(const Issued& ca, const std::string& stem, const LeafSpec& spec) {
    Issued leaf;
    leaf.key = newKey();
    leaf.cert =
        newCert(spec.common_name, leaf.key.get(), spec.not_before_days, spec.not_after_days);
    X509_set_issuer_name(leaf.cert.get(), X509_get_subject_name(ca.cert.get()));
    addExt(ca.cert.get(), leaf.cert.get(), NID_basic_constraints, "critical,CA:FALSE");
    addExt(ca.cert.get(), leaf.cert.get(), NID_key_usage, "critical,digitalSignature");
    addExt(ca.cert.get(), leaf.cert.get(), NID_ext_key_usage, "serverAuth,clientAuth");
    addExt(ca.cert.get(), leaf.cert.get(), NID_subject_key_identifier, "hash");
    addExt(ca.cert.get(), leaf.cert.get(), NID_authority_key_identifier, "keyid:always");
    std::string san;
    for (const auto& d : spec.dns) san += (san.empty() ? "DNS:" : ",DNS:") + d;
    for (const auto& u : spec.uri) san += (san.empty() ? "URI:" : ",URI:") + u;
    for (const auto& i : spec.ip) san += (san.empty() ? "IP:" : ",IP:") + i;
    if (!san.empty()) addExt(ca.cert.get(), leaf.cert.get(), NID_subject_alt_name, san);
    EXPECT_GT(X509_sign(leaf.cert.get(), ca.key.get(), EVP_sha256()), 0) << "signing " << stem;
    finish(leaf, stem);
    return leaf;
  }

 private:
  static EvpPkeyPtr newKey() {
    EvpPkeyPtr key(EVP_EC_gen("P-256"));
    EXPECT_NE(key, nullptr) << "EC P-256 key generation failed";
    return key;
  }

  static X509Ptr newCert(const std::string& cn, EVP_PKEY* key, long not_before_days,
                         long not_after_days) {
    X509Ptr cert(X509_new());
    X509_set_version(cert.get(), 2);
    unsigned char serial[16];
    RAND_bytes(serial, sizeof(serial));
    serial[0] &= 0x7f;
    BIGNUM* bn = BN_bin2bn(serial, sizeof(serial), nullptr);
    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
    BN_free(bn);
    X509_gmtime_adj(X509_getm_notBefore(cert.get()), not_before_days * 86400L);
    X509_gmtime_adj(X509_getm_notAfter(cert.get()), not_after_days * 86400L);
    X509_NAME* name = X509_get_subject_name(cert.get());
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
    X509_set_pubkey(cert.get(), key);
    return cert;
  }

  static void addExt(X509* issuer, X509* subject, int nid, const std::string& value) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, subject, nullptr, nullptr, 0);
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
    ASSERT_NE(ext, nullptr) << "bad extension " << OBJ_nid2sn(nid) << "=" << value;
    X509_add_ext(subject, ext, -1);
    X509_EXTENSION_free(ext);
  }

  void finish(Issued& out, const std::string& stem) {
    out.cert_pem = pemOf(out.cert.get());
    out.key_pem = pemOf(out.key.get());
    out.cert_file = dir_.file(stem + ".crt");
    out.key_file = dir_.file(stem + ".key");
    writeFile(out.cert_file, out.cert_pem);
    writeFile(out.key_file, out.key_pem);
  }

  const TempDir& dir_;
};

// A v2 CRL of `ca` (PEM) listing `revoked`, with thisUpdate now + `this_update_days` and
// nextUpdate now + `next_update_days` (both may be negative: an expired CRL).
inline std::string makeCrlPem(const Issued& ca, const std::vector<const Issued*>& revoked,
                              long this_update_days = -1, long next_update_days = 7) {
  X509_CRL* crl = X509_CRL_new();
  X509_CRL_set_version(crl, 1);
  X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca.cert.get()));
  ASN1_TIME* t = X509_gmtime_adj(nullptr, this_update_days * 86400L);
  X509_CRL_set1_lastUpdate(crl, t);
  ASN1_TIME_free(t);
  t = X509_gmtime_adj(nullptr, next_update_days * 86400L);
  X509_CRL_set1_nextUpdate(crl, t);
  ASN1_TIME_free(t);
  for (const Issued* r : revoked) {
    X509_REVOKED* entry = X509_REVOKED_new();
    X509_REVOKED_set_serialNumber(entry, X509_get_serialNumber(r->cert.get()));
    ASN1_TIME* when = X509_gmtime_adj(nullptr, -3600);
    X509_REVOKED_set_revocationDate(entry, when);
    ASN1_TIME_free(when);
    X509_CRL_add0_revoked(crl, entry);
  }
  X509_CRL_sort(crl);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, ca.cert.get(), nullptr, nullptr, crl, 0);
  if (X509_EXTENSION* akid =
          X509V3_EXT_conf_nid(nullptr, &ctx, NID_authority_key_identifier, "keyid:always")) {
    X509_CRL_add_ext(crl, akid, -1);
    X509_EXTENSION_free(akid);
  }
  EXPECT_GT(X509_CRL_sign(crl, ca.key.get(), EVP_sha256()), 0) << "signing a CRL";
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509_CRL(bio, crl);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(len));
  BIO_free(bio);
  X509_CRL_free(crl);
  return out;
}

// The standard set used by the tls tests.
struct TestCerts {
  static constexpr const char* kServerUri = "spiffe://weft.test/ns/default/sa/server";
  static constexpr const char* kClientUri = "spiffe://weft.test/ns/default/sa/client";

  TempDir dir;
  Issued ca, other_ca, server, client, other_server, other_client, expired, server_v2;

  TestCerts() {
    TestPki pki(dir);
    ca = pki.makeCa("ca", "weft test root");
    other_ca = pki.makeCa("other-ca", "some other root");
    LeafSpec s;
    s.common_name = "server";
    s.dns = {"*.example.test"};
    s.uri = {kServerUri};
    s.ip = {"127.0.0.1"};
    server = pki.issue(ca, "server", s);
    other_server = pki.issue(other_ca, "other-server", s);
    LeafSpec e = s;
    e.common_name = "expired";
    e.not_before_days = -10;
    e.not_after_days = -1;
    expired = pki.issue(ca, "expired", e);
    LeafSpec v2 = s;
    v2.common_name = "server v2";
    v2.dns = {"v2.example.test", "*.example.test"};
    server_v2 = pki.issue(ca, "server-v2", v2);
    LeafSpec c;
    c.common_name = "client";
    c.dns = {"client.example.test"};
    c.uri = {kClientUri};
    client = pki.issue(ca, "client", c);
    other_client = pki.issue(other_ca, "other-client", c);
  }
};

inline void setCertificate(v1::TlsCertificate* c, const Issued& leaf) {
  c->set_certificate_chain_file(leaf.cert_file);
  c->set_private_key_file(leaf.key_file);
}

inline v1::ListenerTls serverConfig(const Issued& leaf) {
  v1::ListenerTls cfg;
  cfg.set_mode(v1::ListenerTls::STRICT);
  setCertificate(cfg.mutable_certificate(), leaf);
  return cfg;
}

inline v1::UpstreamTls clientConfig(const Issued& trusted_ca) {
  v1::UpstreamTls cfg;
  cfg.mutable_validation()->set_trust_bundle_file(trusted_ca.cert_file);
  return cfg;
}

// ---- sockets and loops ----

struct FdPair {
  int a = -1;
  int b = -1;
  FdPair() = default;
  FdPair(const FdPair&) = delete;
  FdPair& operator=(const FdPair&) = delete;
  FdPair(FdPair&& o) noexcept : a(o.a), b(o.b) { o.a = o.b = -1; }
  FdPair& operator=(FdPair&& o) noexcept {
    if (this != &o) {
      closeBoth();
      a = o.a;
      b = o.b;
      o.a = o.b = -1;
    }
    return *this;
  }
  ~FdPair() { closeBoth(); }
  void closeBoth() {
    if (a >= 0) ::close(a);
    if (b >= 0) ::close(b);
    a = b = -1;
  }
};

// A connected non-blocking AF_UNIX stream pair: `a` for the client, `b` for the server.
inline FdPair socketPair() {
  FdPair p;
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) {
    ADD_FAILURE() << "socketpair: " << std::strerror(errno);
    return p;
  }
  p.a = fds[0];
  p.b = fds[1];
  return p;
}

// A connected non-blocking TCP pair over 127.0.0.1 (port chosen by the kernel).
inline FdPair tcpPair() {
  FdPair p;
  int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (lfd < 0 || ::bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(lfd, 4) != 0 || ::getsockname(lfd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ADD_FAILURE() << "listen on 127.0.0.1:0: " << std::strerror(errno);
    if (lfd >= 0) ::close(lfd);
    return p;
  }
  p.a = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (::connect(p.a, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ADD_FAILURE() << "connect to 127.0.0.1: " << std::strerror(errno);
  }
  p.b = ::accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  ::close(lfd);
  ::fcntl(p.a, F_SETFL, ::fcntl(p.a, F_GETFL) | O_NONBLOCK);
  return p;
}

inline const char* statusName(IoStatus s) {
  switch (s) {
    case IoStatus::kOk:
      return "kOk";
    case IoStatus::kWantRead:
      return "kWantRead";
    case IoStatus::kWantWrite:
      return "kWantWrite";
    case IoStatus::kEof:
      return "kEof";
    case IoStatus::kError:
      return "kError";
  }
  return "?";
}

inline short pollEventsFor(IoStatus s) { return s == IoStatus::kWantWrite ? POLLOUT : POLLIN; }

using Clock = std::chrono::steady_clock;
inline constexpr std::chrono::seconds kLoopTimeout{10};

inline int msLeft(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

struct HandshakeResult {
  IoResult client;
  IoResult server;
};

// Runs both handshakes to an end (kOk or kError each). A side that fails has its socket shut
// down, so the other side ends too instead of waiting for bytes that will never come.
inline HandshakeResult runHandshake(Transport& client, Transport& server) {
  HandshakeResult r;
  r.client.status = IoStatus::kWantWrite;
  r.server.status = IoStatus::kWantRead;
  bool client_done = false;
  bool server_done = false;
  auto step = [](Transport& t, IoResult& res, bool& done) {
    res = t.handshake();
    if (res.status == IoStatus::kOk || res.status == IoStatus::kError) {
      done = true;
      if (res.status == IoStatus::kError) ::shutdown(t.fd(), SHUT_RDWR);
    }
  };
  const auto deadline = Clock::now() + kLoopTimeout;
  for (;;) {
    if (!client_done) step(client, r.client, client_done);
    if (!server_done) step(server, r.server, server_done);
    if (client_done && server_done) return r;
    pollfd fds[2];
    nfds_t n = 0;
    if (!client_done) fds[n++] = {client.fd(), pollEventsFor(r.client.status), 0};
    if (!server_done) fds[n++] = {server.fd(), pollEventsFor(r.server.status), 0};
    int left = msLeft(deadline);
    if (left == 0) {
      ADD_FAILURE() << "expected both handshakes to end within " << kLoopTimeout.count()
                    << "s; client is at " << statusName(r.client.status) << ", server at "
                    << statusName(r.server.status);
      if (!client_done) r.client = {IoStatus::kError, 0, "test timeout"};
      if (!server_done) r.server = {IoStatus::kError, 0, "test timeout"};
      return r;
    }
    ::poll(fds, n, left);
  }
}

// Reads until one read returns something other than kWantRead/kWantWrite (kOk with bytes, kEof
// or kError), waiting with poll.
inline IoResult readOnce(Transport& t, std::string& out) {
  const auto deadline = Clock::now() + kLoopTimeout;
  char buf[16384];
  for (;;) {
    IoResult r = t.read(buf, sizeof(buf));
    if (r.status == IoStatus::kOk) out.append(buf, r.bytes);
    if (r.status != IoStatus::kWantRead && r.status != IoStatus::kWantWrite) return r;
    pollfd p{t.fd(), pollEventsFor(r.status), 0};
    int left = msLeft(deadline);
    if (left == 0) return {IoStatus::kError, 0, "test timeout waiting to read"};
    ::poll(&p, 1, left);
  }
}

// Writes all of `data` on `from` and reads it on `to`, interleaving so that neither blocks.
// Returns what `to` received (or stops at the first kEof/kError, recorded in `failure`).
inline std::string transfer(Transport& from, Transport& to, const std::string& data,
                            std::string* failure = nullptr) {
  const auto deadline = Clock::now() + kLoopTimeout;
  size_t written = 0;
  std::string got;
  char buf[65536];
  IoStatus wstat = IoStatus::kOk;
  IoStatus rstat = IoStatus::kOk;
  while (got.size() < data.size()) {
    bool progress = false;
    if (written < data.size()) {
      IoResult w = from.write(data.data() + written, data.size() - written);
      wstat = w.status;
      if (w.status == IoStatus::kOk) {
        written += w.bytes;
        progress = w.bytes > 0;
      } else if (w.status == IoStatus::kError || w.status == IoStatus::kEof) {
        if (failure != nullptr) *failure = "write: " + w.error;
        return got;
      }
    }
    IoResult r = to.read(buf, sizeof(buf));
    rstat = r.status;
    if (r.status == IoStatus::kOk) {
      got.append(buf, r.bytes);
      progress = true;
    } else if (r.status == IoStatus::kError || r.status == IoStatus::kEof) {
      if (failure != nullptr)
        *failure = std::string("read: ") + statusName(r.status) + " " + r.error;
      return got;
    }
    if (progress) continue;
    pollfd fds[2];
    nfds_t n = 0;
    if (written < data.size()) fds[n++] = {from.fd(), pollEventsFor(wstat), 0};
    fds[n++] = {to.fd(), pollEventsFor(rstat), 0};
    int left = msLeft(deadline);
    if (left == 0) {
      if (failure != nullptr)
        *failure = "test timeout after " + std::to_string(got.size()) + " bytes";
      return got;
    }
    ::poll(fds, n, left);
  }
  return got;
}

}  // namespace weft::net::tls::testing
