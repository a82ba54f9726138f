#pragma once
// Hashing and randomness for the control plane: one SHA-256 helper, one source of random bytes
// with one failure policy, one UUIDv4 generator, one uniform random-string sampler.
//
// Failure policy: randomness comes from OpenSSL's RAND_bytes (the OS entropy source). If it
// fails, the process aborts (logged): every caller uses the bytes for secrets, identifiers or
// nonces, and none of them is safe to make from anything weaker.
//
// Thread-safety: every function may be called from any thread.

#include <cstddef>
#include <string>
#include <string_view>

namespace weft::control {

// Lower-case hex of the SHA-256 of `data` (64 characters).
std::string sha256Hex(std::string_view data);
// Fills `out` with `n` cryptographically random bytes (aborts on failure, see above).
void randomBytes(unsigned char* out, size_t n);
// A random RFC 4122 version-4 UUID, lower-case: "xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx".
std::string uuidV4();
// `n` characters drawn uniformly (rejection sampling) from `alphabet` (1-256 characters).
std::string randomString(size_t n, std::string_view alphabet);

}  // namespace weft::control
