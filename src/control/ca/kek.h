#pragma once
// The key-encryption key (KEK) that seals the CA's private keys and ACM-generated leaf keys at
// rest: AES-256-GCM (OpenSSL EVP), a fresh 96-bit nonce per seal, and the record's identity
// (its ARN) as additional authenticated data so a sealed key cannot be moved to another record.
//
// Where the KEK comes from (first that is set): the file given with --ca-key-file, the
// environment variable WEFT_CA_KEY, else DATA_DIR/ca-kek, created with mode 0600 on first use.
// A file holds 32 raw bytes, or 64 hex digits, or the base64 of 32 bytes (a trailing newline is
// ignored); WEFT_CA_KEY holds hex or base64. The KEK is never logged; its memory is wiped when
// the object dies.
//
// Thread-safety: seal() and open() are const and may be called from any threads.

#include <string>
#include <string_view>

#include "common/result.h"

namespace weft::control::ca {

// The store record that says which KEK a data directory's keys are sealed with: this text
// sealed with that KEK, AAD the record's key. CaApi::init() writes it on first start and refuses
// a KEK that does not open it; `weft server rekey` re-seals it with the keys (docs/ca.md,
// "Changing the KEK").
inline constexpr std::string_view kKekCheckRecordKey = "ca/kek-check";
inline constexpr std::string_view kKekCheckRecordText = "weft-ca-kek-check-v1";

class Kek {
 public:
  // `key` must be 32 bytes.
  static Result<Kek> fromBytes(std::string_view key);
  // Parses the file/environment forms above (raw, hex or base64 of 32 bytes).
  static Result<Kek> fromText(std::string_view text, std::string_view what);
  // The operator's KEK: `key_file` if non-empty, else `env_value` if non-null and non-empty,
  // else DATA_DIR/ca-kek (created 0600 with 32 random bytes when absent).
  static Result<Kek> load(const std::string& key_file, const char* env_value,
                          const std::string& data_dir);

  // A new random KEK (RAND_bytes).
  static Result<Kek> generate();

  Kek(Kek&& other) noexcept;
  Kek& operator=(Kek&& other) noexcept;
  Kek(const Kek&) = delete;
  Kek& operator=(const Kek&) = delete;
  ~Kek();

  // "gcm1:" + base64(nonce || ciphertext || tag).
  std::string seal(std::string_view plaintext, std::string_view aad) const;
  // Fails when `sealed` was not made by seal() with this KEK and this `aad`.
  Result<std::string> open(std::string_view sealed, std::string_view aad) const;

  // Whether both hold the same 32 bytes (constant time).
  bool sameKey(const Kek& other) const;

  // Writes the 32 raw bytes (the DATA_DIR/ca-kek form) to the new file `path`: created with
  // mode 0600 (fails if it exists), written and fsynced; removed again on failure.
  Status writeNewFile(const std::string& path) const;

 private:
  Kek() = default;
  unsigned char key_[32] = {};
};

}  // namespace weft::control::ca
