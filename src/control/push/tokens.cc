#include "control/push/tokens.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <chrono>

#include "common/json.h"
#include "control/api/crypto_util.h"
#include "control/stacks/json_value.h"

namespace weft::control::push {
namespace {

constexpr std::string_view kKeyPrefix = Tokens::kKeyPrefix;
constexpr std::string_view kTokenPrefix = "wft_";
constexpr size_t kIdLength = 16;
constexpr size_t kSecretLength = 43;  // ~256 bits of [A-Za-z0-9]
constexpr std::string_view kAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
constexpr int kMaxRetries = 20;

bool alnum(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
  });
}

bool validId(std::string_view id) { return id.size() == kIdLength && alnum(id); }

struct ParsedToken {
  std::string_view id;
  std::string_view secret;
};

// "wft_<id>_<secret>" split, or nullopt when it is not shaped like a token.
std::optional<ParsedToken> parseToken(std::string_view token) {
  if (token.size() != kTokenPrefix.size() + kIdLength + 1 + kSecretLength) return std::nullopt;
  if (token.substr(0, kTokenPrefix.size()) != kTokenPrefix) return std::nullopt;
  std::string_view id = token.substr(kTokenPrefix.size(), kIdLength);
  if (token[kTokenPrefix.size() + kIdLength] != '_') return std::nullopt;
  std::string_view secret = token.substr(kTokenPrefix.size() + kIdLength + 1);
  if (!validId(id) || !alnum(secret)) return std::nullopt;
  return ParsedToken{id, secret};
}

struct Record {
  TokenInfo info;
  std::string secret_sha256;
};

std::string recordJson(const Record& r) {
  return "{\"resource\": " + jsonString(r.info.resource) +
         ", \"secretSha256\": " + jsonString(r.secret_sha256) +
         ", \"createdAt\": " + std::to_string(r.info.created_at) +
         ", \"expiresAt\": " + std::to_string(r.info.expires_at) +
         ", \"revoked\": " + (r.info.revoked ? "true" : "false") + "}";
}

Result<Record> parseRecord(std::string_view key, std::string_view json) {
  auto v = stacks::parseJson(json);
  if (!v || !v->isObject())
    return makeError("token record " + std::string(key) + " is corrupt (not a JSON object)");
  Record r;
  r.info.id = std::string(key.substr(std::min(key.size(), kKeyPrefix.size())));
  auto str = [&](std::string_view f) {
    const stacks::Value* x = v->find(f);
    return x ? std::string(x->str()) : std::string();
  };
  auto num = [&](std::string_view f) -> int64_t {
    const stacks::Value* x = v->find(f);
    return x && x->isNumber() ? std::strtoll(x->text().c_str(), nullptr, 10) : 0;
  };
  r.info.resource = str("resource");
  r.secret_sha256 = str("secretSha256");
  r.info.created_at = num("createdAt");
  r.info.expires_at = num("expiresAt");
  const stacks::Value* revoked = v->find("revoked");
  r.info.revoked = revoked && revoked->isBool() && revoked->asBool();
  if (r.info.resource.empty() || r.secret_sha256.size() != 64)
    return makeError("token record " + std::string(key) + " lacks resource or secretSha256");
  return r;
}

int64_t unixNow(const TimeSource& time) {
  return std::chrono::duration_cast<std::chrono::seconds>(time.systemNow().time_since_epoch())
      .count();
}

}  // namespace

std::string Tokens::idOf(std::string_view token) {
  auto parsed = parseToken(token);
  return parsed ? std::string(parsed->id) : std::string();
}

Result<std::string> Tokens::create(std::string_view resource, int64_t ttl_seconds) {
  if (resource.empty()) return makeError("a token needs a resource (mesh/M/virtualNode/N)");
  if (ttl_seconds < 0) return makeError("the ttl must not be negative");
  for (int attempt = 0; attempt < kMaxRetries; ++attempt) {
    Record r;
    r.info.id = randomString(kIdLength, kAlphabet);
    std::string secret = randomString(kSecretLength, kAlphabet);
    r.info.resource = std::string(resource);
    r.info.created_at = unixNow(time_);
    r.info.expires_at = ttl_seconds == 0 ? 0 : r.info.created_at + ttl_seconds;
    r.secret_sha256 = sha256Hex(secret);
    auto committed = store_.commit(
        {StoreOp::put(std::string(kKeyPrefix) + r.info.id, recordJson(r), StoreOp::kAbsent)});
    if (committed) return std::string(kTokenPrefix) + r.info.id + "_" + secret;
    // An id collision (2^95 ids: practically never) draws again.
    if (committed.error().code != kStoreConflict) return Unexpected<Error>{committed.error()};
  }
  return makeError("could not store a new token (too many id collisions)");
}

Status Tokens::revoke(std::string_view id_or_token) {
  std::string_view id = id_or_token;
  if (auto parsed = parseToken(id_or_token)) id = parsed->id;
  if (!validId(id))
    return makeError("no token " + std::string(id.substr(0, 32)) +
                         " (expected a token id as `weft token list` shows, or the whole token)",
                     404);
  std::string key = std::string(kKeyPrefix) + std::string(id);
  for (int attempt = 0; attempt < kMaxRetries; ++attempt) {
    auto kv = store_.get(key);
    if (!kv) return Unexpected<Error>{kv.error()};
    if (!kv->has_value()) return makeError("no token " + std::string(id), 404);
    auto r = parseRecord(key, (*kv)->value);
    if (!r) return Unexpected<Error>{r.error()};
    if (r->info.revoked) return {};
    r->info.revoked = true;
    auto committed = store_.commit({StoreOp::put(key, recordJson(*r), (*kv)->revision)});
    if (committed) return {};
    if (committed.error().code != kStoreConflict) return Unexpected<Error>{committed.error()};
  }
  return makeError("too many concurrent changes to token " + std::string(id) + "; try again");
}

Result<std::vector<TokenInfo>> Tokens::list() {
  auto kvs = store_.list(kKeyPrefix, "", 0);
  if (!kvs) return Unexpected<Error>{kvs.error()};
  std::vector<TokenInfo> out;
  for (const KeyValue& kv : *kvs) {
    auto r = parseRecord(kv.key, kv.value);
    if (!r) return Unexpected<Error>{r.error()};
    out.push_back(std::move(r->info));
  }
  return out;
}

Status Tokens::verify(std::string_view token, std::string_view resource) {
  const std::string fix = " Create one with `weft token create --resource " +
                          std::string(resource) + "` and give it to the proxy (--token-file).";
  if (token.empty()) return makeError("no join token was presented." + fix, kTokenInvalid);
  auto parsed = parseToken(token);
  if (!parsed)
    return makeError(
        "the join token is malformed (expected wft_<id>_<secret> as `weft token create` prints "
        "it; check the token file for stray characters)." +
            fix,
        kTokenInvalid);
  std::string id(parsed->id);
  std::string key = std::string(kKeyPrefix) + id;
  auto kv = store_.get(key);
  if (!kv) return Unexpected<Error>{kv.error()};  // code 0: the stream answers UNAVAILABLE
  if (!kv->has_value())
    return makeError("join token " + id + " is unknown to this control plane." + fix,
                     kTokenInvalid);
  auto r = parseRecord(key, (*kv)->value);
  if (!r) return Unexpected<Error>{r.error()};
  std::string hash = sha256Hex(parsed->secret);
  if (hash.size() != r->secret_sha256.size() ||
      CRYPTO_memcmp(hash.data(), r->secret_sha256.data(), hash.size()) != 0)
    return makeError("join token " + id + " has a wrong secret." + fix, kTokenInvalid);
  if (r->info.revoked) return makeError("join token " + id + " was revoked." + fix, kTokenInvalid);
  if (r->info.expires_at != 0 && unixNow(time_) >= r->info.expires_at)
    return makeError("join token " + id + " expired at " + std::to_string(r->info.expires_at) +
                         " (unix time)." + fix,
                     kTokenInvalid);
  if (r->info.resource != resource)
    return makeError("join token " + id + " is bound to " + r->info.resource + ", not " +
                         std::string(resource) + ": start the proxy with --resource " +
                         r->info.resource + ", or create a token for " + std::string(resource) +
                         " with `weft token create --resource " + std::string(resource) + "`.",
                     kTokenWrongResource);
  return {};
}

}  // namespace weft::control::push
