#include "control/api/crypto_util.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>

#include "common/hex.h"
#include "common/log.h"

namespace weft::control {

std::string sha256Hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  WEFT_CHECK(EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr) == 1,
             "EVP_Digest(SHA-256) failed");
  return hexEncode(std::string_view(reinterpret_cast<const char*>(md), len));
}

void randomBytes(unsigned char* out, size_t n) {
  while (n > 0) {
    int chunk = static_cast<int>(std::min<size_t>(n, 1 << 20));
    WEFT_CHECK(RAND_bytes(out, chunk) == 1, "RAND_bytes failed: no entropy source");
    out += chunk;
    n -= static_cast<size_t>(chunk);
  }
}

std::string uuidV4() {
  unsigned char b[16];
  randomBytes(b, sizeof b);
  b[6] = (b[6] & 0x0f) | 0x40;  // version 4
  b[8] = (b[8] & 0x3f) | 0x80;  // RFC 4122 variant
  std::string h = hexEncode(std::string_view(reinterpret_cast<const char*>(b), sizeof b));
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) +
         "-" + h.substr(20);
}

std::string randomString(size_t n, std::string_view alphabet) {
  WEFT_CHECK(!alphabet.empty() && alphabet.size() <= 256, "randomString: bad alphabet size");
  // Bytes at or above `limit` are dropped so every character is equally likely.
  const size_t limit = 256 - (256 % alphabet.size());
  std::string out;
  out.reserve(n);
  unsigned char buf[64];
  while (out.size() < n) {
    randomBytes(buf, sizeof buf);
    for (unsigned char b : buf) {
      if (b >= limit) continue;
      out.push_back(alphabet[b % alphabet.size()]);
      if (out.size() == n) break;
    }
  }
  return out;
}

}  // namespace weft::control
