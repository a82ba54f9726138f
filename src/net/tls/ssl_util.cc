#include "net/tls/ssl_util.h"

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace weft::net::tls {
namespace {

// PEM files we read are certificates and keys; anything bigger is not one of them.
constexpr size_t kMaxFileBytes = 4 << 20;

std::string osReason(int err) {
  if (err == ENOENT) return "no such file";
  std::string s = std::strerror(err);
  if (!s.empty() && s[0] >= 'A' && s[0] <= 'Z') s[0] = static_cast<char>(s[0] - 'A' + 'a');
  return s;
}

struct BioFree {
  void operator()(BIO* p) const { BIO_free(p); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;

BioPtr memBio(std::string_view data) {
  return BioPtr(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

// True when the last error is the PEM reader's "no more PEM blocks" (normal end of a bundle).
bool atPemEnd() {
  unsigned long e = ERR_peek_last_error();
  return ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
}

int noPassphrase(char*, int, int, void*) { return -1; }

}  // namespace

std::vector<unsigned long> takeSslErrors() {
  std::vector<unsigned long> codes;
  while (unsigned long e = ERR_get_error()) codes.push_back(e);
  return codes;
}

bool hasSslReason(const std::vector<unsigned long>& codes, int reason) {
  for (unsigned long e : codes) {
    if (ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == reason) return true;
  }
  return false;
}

std::string drainSslErrors(std::string_view fallback) {
  return describeSslErrors(takeSslErrors(), fallback);
}

std::string describeSslErrors(const std::vector<unsigned long>& codes, std::string_view fallback) {
  std::string out;
  for (unsigned long e : codes) {
    const char* reason = ERR_reason_error_string(e);
    std::string text;
    if (reason != nullptr) {
      text = reason;
    } else {
      char buf[256];
      ERR_error_string_n(e, buf, sizeof(buf));
      text = buf;
    }
    if (out.find(text) != std::string::npos) continue;
    if (!out.empty()) out += "; ";
    out += text;
  }
  return out.empty() ? std::string(fallback) : out;
}

Result<std::string> readSmallFile(const std::string& path, std::string_view what) {
  auto fail = [&](int err) {
    return makeError(std::string(what) + " " + path + ": " + osReason(err));
  };
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(errno);
  std::string out;
  char buf[16384];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return fail(err);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > kMaxFileBytes) {
      ::close(fd);
      return makeError(std::string(what) + " " + path + ": larger than " +
                       std::to_string(kMaxFileBytes) + " bytes, not a PEM file");
    }
  }
  ::close(fd);
  return out;
}

Result<CertChain> parseCertChain(std::string_view pem, std::string_view what) {
  ERR_clear_error();
  BioPtr bio = memBio(pem);
  CertChain chain;
  chain.leaf.reset(PEM_read_bio_X509_AUX(bio.get(), nullptr, noPassphrase, nullptr));
  if (!chain.leaf) {
    if (atPemEnd()) {
      ERR_clear_error();
      return makeError(std::string(what) + ": no PEM certificate found");
    }
    return makeError(std::string(what) + ": cannot parse certificate: " + drainSslErrors());
  }
  for (;;) {
    X509Ptr next(PEM_read_bio_X509(bio.get(), nullptr, noPassphrase, nullptr));
    if (!next) {
      if (atPemEnd()) {
        ERR_clear_error();
        break;
      }
      return makeError(std::string(what) + ": cannot parse certificate " +
                       std::to_string(chain.intermediates.size() + 2) + ": " + drainSslErrors());
    }
    chain.intermediates.push_back(std::move(next));
  }
  return chain;
}

Result<std::vector<X509Ptr>> parseCertBundle(std::string_view pem, std::string_view what) {
  ERR_clear_error();
  BioPtr bio = memBio(pem);
  std::vector<X509Ptr> certs;
  for (;;) {
    X509Ptr next(PEM_read_bio_X509(bio.get(), nullptr, noPassphrase, nullptr));
    if (!next) {
      if (atPemEnd()) {
        ERR_clear_error();
        break;
      }
      return makeError(std::string(what) + ": cannot parse certificate " +
                       std::to_string(certs.size() + 1) + ": " + drainSslErrors());
    }
    certs.push_back(std::move(next));
  }
  if (certs.empty()) return makeError(std::string(what) + ": no PEM certificate found");
  return certs;
}

Result<std::vector<X509CrlPtr>> parseCrlBundle(std::string_view pem, std::string_view what) {
  ERR_clear_error();
  BioPtr bio = memBio(pem);
  std::vector<X509CrlPtr> crls;
  for (;;) {
    X509CrlPtr next(PEM_read_bio_X509_CRL(bio.get(), nullptr, noPassphrase, nullptr));
    if (!next) {
      if (atPemEnd()) {
        ERR_clear_error();
        break;
      }
      return makeError(std::string(what) + ": cannot parse CRL " + std::to_string(crls.size() + 1) +
                       ": " + drainSslErrors());
    }
    crls.push_back(std::move(next));
  }
  if (crls.empty()) return makeError(std::string(what) + ": no PEM CRL (X509 CRL) found");
  return crls;
}

Result<EvpPkeyPtr> parsePrivateKey(std::string_view pem, std::string_view what) {
  if (pem.find("PRIVATE KEY-----") == std::string_view::npos) {
    return makeError(std::string(what) + ": no PEM private key found");
  }
  if (pem.find("ENCRYPTED") != std::string_view::npos) {
    return makeError(std::string(what) + ": encrypted private keys are not supported");
  }
  ERR_clear_error();
  BioPtr bio = memBio(pem);
  EvpPkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, noPassphrase, nullptr));
  if (!key) {
    return makeError(std::string(what) + ": cannot parse private key: " + drainSslErrors());
  }
  ERR_clear_error();
  return key;
}

}  // namespace weft::net::tls
