#pragma once
// Access keys of the control plane's API, kept in the Store, and the credentials API on
// /weft/v1/credentials.
//
// A key is an access key id ("WKIA" + 16 characters, shaped like AWS's) and a secret. The
// secret is stored as it is, not hashed: SigV4 verification recomputes an HMAC keyed with it.
// What protects it is the data directory (0700) and the database file (0600), as for any
// server's private key; see docs/control-plane.md. Every key belongs to the server's account
// and may use every operation (weft has one role for now).
//
// Credentials API (all SigV4-signed, any service name in the scope; the CLI uses "weft"):
//   POST   /weft/v1/credentials         body {} or {"description": "..."}
//          -> 200 {"accessKeyId", "secretAccessKey", "accountId", "createdAt", "description"}
//             (the only time the secret is shown)
//   GET    /weft/v1/credentials
//          -> 200 {"credentials": [{"accessKeyId", "accountId", "createdAt", "description"}]}
//             sorted by id, never with secrets
//   DELETE /weft/v1/credentials/<id>
//          -> 200 {}; 404 NotFoundException if unknown; 409 ConflictException for the last key
//             (deleting it would lock everyone out)
// createdAt is seconds since the UNIX epoch (a JSON number, as AWS REST-JSON timestamps).
//
// Thread-safety: every method may be called from several threads at once (state is in the
// Store; concurrent deletes are serialized by optimistic preconditions).

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "common/time.h"
#include "control/api/api_types.h"
#include "control/store/store.h"

namespace weft::control::credentials {

struct AccessKey {
  std::string access_key_id;
  std::string secret_access_key;
  std::string account_id;
  std::string description;
  int64_t created_at = 0;  // UNIX seconds
};

// Error::code values of remove().
inline constexpr int kNotFound = 404;
inline constexpr int kLastKey = 409;

class Credentials {
 public:
  // `store` and `time` must outlive this object. New keys belong to `account_id`.
  Credentials(Store& store, const TimeSource& time, std::string account_id);

  // Makes and stores a new key with fresh random id and secret.
  Result<AccessKey> create(std::string description);
  Result<std::optional<AccessKey>> find(std::string_view access_key_id);
  // Every key (secrets included: for the server's own use), sorted by id.
  Result<std::vector<AccessKey>> list();
  // Deletes a key; refuses (kLastKey) to delete the only one left, and answers kNotFound for
  // an unknown id.
  Status remove(std::string_view access_key_id);

  // First start: when the store holds no key, makes one and answers it, after `before_commit`
  // (if given) succeeded with it: the server writes the key to DATA_DIR/admin-credentials
  // there, so a crash can leave a file with an unused key but never a stored key nobody has.
  // Answers nullopt when keys already exist.
  Result<std::optional<AccessKey>> ensureAdminKey(
      const std::function<Status(const AccessKey&)>& before_commit = {});

  static bool handles(std::string_view path);  // "/weft/v1/credentials" and below
  ApiResponse handle(const ApiRequest& request);

 private:
  AccessKey generate(std::string description) const;
  Result<AccessKey> store(AccessKey key);

  Store& store_;
  const TimeSource& time_;
  std::string account_id_;
};

// Writes an AWS shared-credentials file (mode 0600, replaced atomically) holding one profile:
//   [profile]
//   aws_access_key_id = ...
//   aws_secret_access_key = ...
Status writeSharedCredentialsFile(const std::string& path, std::string_view profile,
                                  const AccessKey& key);

// Writes an AWS config file (mode 0600) with `[profile <profile>]` and `region = <region>`:
// point AWS_CONFIG_FILE at it to get the server's region without --region.
Status writeAwsConfigFile(const std::string& path, std::string_view profile,
                          std::string_view region);

}  // namespace weft::control::credentials
