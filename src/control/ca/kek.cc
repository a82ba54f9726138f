#include "control/ca/kek.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "control/ca/pki.h"

namespace weft::control::ca {
namespace {

constexpr std::string_view kPrefix = "gcm1:";
constexpr size_t kNonce = 12;
constexpr size_t kTag = 16;

struct CtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using CtxPtr = std::unique_ptr<EVP_CIPHER_CTX, CtxFree>;

Result<std::string> readFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return makeError(std::strerror(errno), errno);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  int err = errno;
  ::close(fd);
  if (n < 0) return makeError(std::strerror(err), err);
  return out;
}

}  // namespace

Result<Kek> Kek::fromBytes(std::string_view key) {
  if (key.size() != sizeof key_) return makeError("a CA key-encryption key must be 32 bytes");
  Kek k;
  std::memcpy(k.key_, key.data(), sizeof k.key_);
  return k;
}

Result<Kek> Kek::fromText(std::string_view text, std::string_view what) {
  if (text.size() == 32) return fromBytes(text);
  std::string t(text);
  while (!t.empty() && (t.back() == '\n' || t.back() == '\r' || t.back() == ' ')) t.pop_back();
  if (t.size() == 32) return fromBytes(t);
  if (t.size() == 64) {
    std::string out;
    bool ok = true;
    for (size_t i = 0; i < 64 && ok; i += 2) {
      auto d = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
      };
      int hi = d(t[i]), lo = d(t[i + 1]);
      ok = hi >= 0 && lo >= 0;
      out += static_cast<char>(hi * 16 + lo);
    }
    if (ok) {
      auto k = fromBytes(out);
      OPENSSL_cleanse(out.data(), out.size());
      OPENSSL_cleanse(t.data(), t.size());
      return k;
    }
  }
  if (auto b = base64Decode(t); b && b->size() == 32) {
    auto k = fromBytes(*b);
    OPENSSL_cleanse(b->data(), b->size());
    OPENSSL_cleanse(t.data(), t.size());
    return k;
  }
  OPENSSL_cleanse(t.data(), t.size());
  return makeError(std::string(what) +
                   ": a CA key-encryption key is 32 bytes, raw, as 64 hex digits or as base64 "
                   "(make one with: openssl rand -hex 32)");
}

Result<Kek> Kek::load(const std::string& key_file, const char* env_value,
                      const std::string& data_dir) {
  if (!key_file.empty()) {
    auto text = readFile(key_file);
    if (!text) return makeError("--ca-key-file " + key_file + ": " + text.error().message);
    auto k = fromText(*text, "--ca-key-file " + key_file);
    OPENSSL_cleanse(text->data(), text->size());
    return k;
  }
  if (env_value != nullptr && *env_value != '\0') return fromText(env_value, "WEFT_CA_KEY");
  const std::string path = data_dir + "/ca-kek";
  auto text = readFile(path);
  if (text) {
    auto k = fromBytes(*text);
    OPENSSL_cleanse(text->data(), text->size());
    if (!k) return makeError(path + ": " + k.error().message + " (the file is damaged)");
    return k;
  }
  if (text.error().code != ENOENT) return makeError(path + ": " + text.error().message);
  unsigned char fresh[32];
  if (RAND_bytes(fresh, sizeof fresh) != 1) return makeError("RAND_bytes failed");
  // O_EXCL: of two racing creators (not possible under the data-dir lock, but cheap) one wins
  // and the other reads its key.
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    OPENSSL_cleanse(fresh, sizeof fresh);
    if (errno == EEXIST) return load(key_file, env_value, data_dir);
    return makeError("cannot create " + path + ": " + std::strerror(errno));
  }
  ssize_t n = ::write(fd, fresh, sizeof fresh);
  bool ok = n == static_cast<ssize_t>(sizeof fresh) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) {
    OPENSSL_cleanse(fresh, sizeof fresh);
    ::unlink(path.c_str());
    return makeError("cannot write " + path);
  }
  auto k = fromBytes(std::string_view(reinterpret_cast<char*>(fresh), sizeof fresh));
  OPENSSL_cleanse(fresh, sizeof fresh);
  return k;
}

Result<Kek> Kek::generate() {
  Kek k;
  if (RAND_bytes(k.key_, sizeof k.key_) != 1) return makeError("RAND_bytes failed");
  return k;
}

bool Kek::sameKey(const Kek& other) const {
  return CRYPTO_memcmp(key_, other.key_, sizeof key_) == 0;
}

Status Kek::writeNewFile(const std::string& path) const {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return makeError("cannot create " + path + ": " + std::strerror(errno));
  ssize_t n = ::write(fd, key_, sizeof key_);
  bool ok = n == static_cast<ssize_t>(sizeof key_) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) {
    ::unlink(path.c_str());
    return makeError("cannot write " + path);
  }
  return {};
}

Kek::Kek(Kek&& other) noexcept {
  std::memcpy(key_, other.key_, sizeof key_);
  OPENSSL_cleanse(other.key_, sizeof other.key_);
}

Kek& Kek::operator=(Kek&& other) noexcept {
  if (this != &other) {
    std::memcpy(key_, other.key_, sizeof key_);
    OPENSSL_cleanse(other.key_, sizeof other.key_);
  }
  return *this;
}

Kek::~Kek() { OPENSSL_cleanse(key_, sizeof key_); }

std::string Kek::seal(std::string_view plaintext, std::string_view aad) const {
  std::string out(kNonce + plaintext.size() + kTag, '\0');
  auto* o = reinterpret_cast<unsigned char*>(out.data());
  if (RAND_bytes(o, kNonce) != 1) abort();  // a repeated nonce would break GCM; never risk it
  CtxPtr ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  bool ok = EVP_EncryptInit_ex2(ctx.get(), EVP_aes_256_gcm(), key_, o, nullptr) == 1 &&
            EVP_EncryptUpdate(ctx.get(), nullptr, &len,
                              reinterpret_cast<const unsigned char*>(aad.data()),
                              static_cast<int>(aad.size())) == 1 &&
            EVP_EncryptUpdate(ctx.get(), o + kNonce, &len,
                              reinterpret_cast<const unsigned char*>(plaintext.data()),
                              static_cast<int>(plaintext.size())) == 1 &&
            EVP_EncryptFinal_ex(ctx.get(), o + kNonce + len, &len) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTag,
                                o + kNonce + plaintext.size()) == 1;
  if (!ok) abort();  // AES-GCM with a valid key cannot fail short of a broken libcrypto
  return std::string(kPrefix) + base64Encode(out);
}

Result<std::string> Kek::open(std::string_view sealed, std::string_view aad) const {
  if (sealed.substr(0, kPrefix.size()) != kPrefix) return makeError("not a sealed key");
  auto raw = base64Decode(sealed.substr(kPrefix.size()));
  if (!raw || raw->size() < kNonce + kTag) return makeError("not a sealed key");
  const auto* r = reinterpret_cast<const unsigned char*>(raw->data());
  size_t n = raw->size() - kNonce - kTag;
  std::string out(n, '\0');
  CtxPtr ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  std::string tag = raw->substr(kNonce + n);
  bool ok =
      EVP_DecryptInit_ex2(ctx.get(), EVP_aes_256_gcm(), key_, r, nullptr) == 1 &&
      EVP_DecryptUpdate(ctx.get(), nullptr, &len,
                        reinterpret_cast<const unsigned char*>(aad.data()),
                        static_cast<int>(aad.size())) == 1 &&
      EVP_DecryptUpdate(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &len, r + kNonce,
                        static_cast<int>(n)) == 1 &&
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTag, tag.data()) == 1 &&
      EVP_DecryptFinal_ex(ctx.get(), reinterpret_cast<unsigned char*>(out.data()) + len, &len) == 1;
  if (!ok) {
    OPENSSL_cleanse(out.data(), out.size());
    return makeError(
        "the sealed key does not open with this key-encryption key (a different --ca-key-file "
        "/ WEFT_CA_KEY / ca-kek than the one it was sealed with?)");
  }
  return out;
}

}  // namespace weft::control::ca
