#pragma once
// Small OpenSSL helpers for the tls module: owning pointers, error-queue text, reading and
// parsing PEM files with error messages that name the file and the reason.

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace weft::net::tls {

struct SslCtxFree {
  void operator()(SSL_CTX* p) const { SSL_CTX_free(p); }
};
struct SslFree {
  void operator()(SSL* p) const { SSL_free(p); }
};
struct X509Free {
  void operator()(X509* p) const { X509_free(p); }
};
struct EvpPkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct X509CrlFree {
  void operator()(X509_CRL* p) const { X509_CRL_free(p); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxFree>;
using SslPtr = std::unique_ptr<SSL, SslFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, EvpPkeyFree>;
using X509CrlPtr = std::unique_ptr<X509_CRL, X509CrlFree>;

// Drains this thread's OpenSSL error queue, oldest first.
std::vector<unsigned long> takeSslErrors();
// "reason; reason" (the library's reason strings, e.g. "certificate verify failed"), duplicates
// dropped; `fallback` when `codes` is empty.
std::string describeSslErrors(const std::vector<unsigned long>& codes,
                              std::string_view fallback = "unknown OpenSSL error");
// True if `codes` holds `reason` raised by the SSL library.
bool hasSslReason(const std::vector<unsigned long>& codes, int reason);
// describeSslErrors(takeSslErrors(), fallback).
std::string drainSslErrors(std::string_view fallback = "unknown OpenSSL error");

// Reads a whole (small) file. Error: "<what> <path>: no such file" (or the OS reason).
Result<std::string> readSmallFile(const std::string& path, std::string_view what);

// A certificate chain: leaf first, then intermediates, as in a PEM chain file.
struct CertChain {
  X509Ptr leaf;
  std::vector<X509Ptr> intermediates;
};

// Parsers over file contents; `what` ("certificate_chain_file /x.pem") prefixes errors.
Result<CertChain> parseCertChain(std::string_view pem, std::string_view what);
Result<std::vector<X509Ptr>> parseCertBundle(std::string_view pem, std::string_view what);
// One or more "X509 CRL" PEM blocks (blocks of other types are skipped); an error when there is
// none or one does not parse.
Result<std::vector<X509CrlPtr>> parseCrlBundle(std::string_view pem, std::string_view what);
// Unencrypted PEM private key (PKCS#8, or traditional EC/RSA); never prompts for a passphrase.
Result<EvpPkeyPtr> parsePrivateKey(std::string_view pem, std::string_view what);

}  // namespace weft::net::tls
