#pragma once
// Join tokens: what a proxy presents in its Hello. A token is bound to one resource
// ("mesh/M/virtualNode/N" or "mesh/M/virtualGateway/G"), may expire, and may be revoked.
//
// Format: "wft_<id>_<secret>", <id> 16 and <secret> 43 characters of [A-Za-z0-9]. Only the
// sha256 of the secret is stored, at "push/tokens/<id>" (JSON: resource, secretSha256,
// createdAt, expiresAt (0 = never), revoked). A token is shown once, at creation.
//
// Thread-safety: every method may run on any thread (the store is).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "common/time.h"
#include "control/store/store.h"

namespace weft::control::push {

struct TokenInfo {
  std::string id;
  std::string resource;
  int64_t created_at = 0;  // unix seconds
  int64_t expires_at = 0;  // unix seconds, 0 = never
  bool revoked = false;
};

// Error::code values of verify(): the stream answers UNAUTHENTICATED for kTokenInvalid and
// PERMISSION_DENIED for kTokenWrongResource.
inline constexpr int kTokenInvalid = 401;
inline constexpr int kTokenWrongResource = 403;

class Tokens {
 public:
  Tokens(Store& store, const TimeSource& time) : store_(store), time_(time) {}

  // A new token for `resource` (already normalized by compile::parseProxyResource), valid for
  // `ttl_seconds` (0 = no expiry). Answers the whole token; only its hash is kept.
  Result<std::string> create(std::string_view resource, int64_t ttl_seconds);
  // Marks a token revoked, by id or by the whole token. Error code 404 when there is none.
  Status revoke(std::string_view id_or_token);
  Result<std::vector<TokenInfo>> list();
  // OK iff `token` exists, is not revoked or expired, and is bound to `resource`. The error
  // message says which of those failed and what to do (never echoing the secret).
  Status verify(std::string_view token, std::string_view resource);

  // (Added by the push helper.) Where token records live, and the id part of a token ("" when
  // it is not shaped like one): the push server re-verifies a stream's token when its record
  // changes, so a revoked token's proxy is disconnected.
  static constexpr std::string_view kKeyPrefix = "push/tokens/";
  static std::string idOf(std::string_view token);

 private:
  Store& store_;
  const TimeSource& time_;
};

}  // namespace weft::control::push
