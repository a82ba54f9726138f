#include "control/ca/rekey.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <vector>

#include "common/log.h"
#include "control/stacks/json_value.h"

namespace weft::control::ca {
namespace {

using stacks::Value;

constexpr std::string_view kSealedPrefix = "gcm1:";

bool isSealed(std::string_view s) { return s.substr(0, kSealedPrefix.size()) == kSealedPrefix; }

// Opens `sealed` with the first of `aads` that works and seals it again under `new_kek` with
// the same AAD. The plaintext is wiped before returning.
Result<std::string> reseal(std::string_view sealed, const std::vector<std::string>& aads,
                           const Kek& old_kek, const Kek& new_kek, const std::string& where) {
  for (const std::string& aad : aads) {
    auto plain = old_kek.open(sealed, aad);
    if (!plain) continue;
    std::string out = new_kek.seal(*plain, aad);
    OPENSSL_cleanse(plain->data(), plain->size());
    return out;
  }
  return makeError("a sealed key in the store record " + where +
                   " does not open with the current key-encryption key; nothing was changed");
}

// Re-seals every sealed string inside `v` (any depth); counts them in `keys`.
Status resealValue(Value& v, const std::vector<std::string>& aads, const Kek& old_kek,
                   const Kek& new_kek, const std::string& where, int& keys) {
  if (v.isString()) {
    if (!isSealed(v.text())) return {};
    auto r = reseal(v.text(), aads, old_kek, new_kek, where);
    if (!r) return Unexpected<Error>{r.error()};
    v = Value::string(std::move(*r));
    ++keys;
    return {};
  }
  if (v.isArray()) {
    for (Value& item : v.items())
      if (auto st = resealValue(item, aads, old_kek, new_kek, where, keys); !st) return st;
    return {};
  }
  if (v.isObject()) {
    for (auto& [name, member] : v.members())
      if (auto st = resealValue(member, aads, old_kek, new_kek, where, keys); !st) return st;
  }
  return {};
}

bool fileExists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

// fsync of a directory, so a rename in it is durable.
void syncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  (void)::fsync(fd);
  ::close(fd);
}

}  // namespace

Result<std::optional<bool>> kekOpensStore(Store& store, const Kek& kek) {
  auto kv = store.get(kKekCheckRecordKey);
  if (!kv) return Unexpected<Error>{kv.error()};
  if (!kv->has_value()) return std::optional<bool>();
  auto opened = kek.open((*kv)->value, kKekCheckRecordKey);
  return std::optional<bool>(opened && *opened == kKekCheckRecordText);
}

Result<ResealCount> resealStore(Store& store, const Kek& old_kek, const Kek& new_kek) {
  auto matches = kekOpensStore(store, old_kek);
  if (!matches) return Unexpected<Error>{matches.error()};
  if (!matches->has_value())
    return makeError(
        "this data directory has no CA key-encryption key check record: no server has started "
        "with it yet, so there is nothing to re-seal");
  if (!**matches)
    return makeError(
        "the current key-encryption key (--ca-key-file / WEFT_CA_KEY / DATA_DIR/ca-kek) is not "
        "the one this data directory's CA keys are sealed with");

  auto all = store.list("", "", 0);
  if (!all) return Unexpected<Error>{all.error()};
  ResealCount count;
  std::vector<StoreOp> ops;
  for (const KeyValue& kv : *all) {
    if (kv.value.find(kSealedPrefix) == std::string::npos) continue;
    if (isSealed(kv.value)) {  // a bare sealed value (the check record)
      auto r = reseal(kv.value, {kv.key}, old_kek, new_kek, kv.key);
      if (!r) return Unexpected<Error>{r.error()};
      ops.push_back(StoreOp::put(kv.key, std::move(*r), kv.revision));
      ++count.records;
      ++count.keys;
      continue;
    }
    auto v = stacks::parseJson(kv.value);
    if (!v || (!v->isObject() && !v->isArray())) continue;  // not a record that holds keys
    std::vector<std::string> aads{kv.key};
    if (v->isObject()) {
      for (std::string_view member : {"Arn", "CertificateArn"})
        if (const Value* a = v->find(member); a && a->isString() && !a->text().empty())
          aads.push_back(a->text());
    }
    int keys = 0;
    if (auto st = resealValue(*v, aads, old_kek, new_kek, kv.key, keys); !st)
      return Unexpected<Error>{st.error()};
    if (keys == 0) continue;
    ops.push_back(StoreOp::put(kv.key, stacks::toJson(*v), kv.revision));
    ++count.records;
    count.keys += keys;
  }
  auto c = store.commit(ops);
  if (!c) {
    if (c.error().code == kStoreConflict)
      return makeError(
          "the store changed while the keys were re-sealed (is a server running on this data "
          "directory?); nothing was changed");
    return Unexpected<Error>{c.error()};
  }
  return count;
}

Result<bool> finishKekChange(Store& store, const std::string& data_dir) {
  const std::string path = data_dir + "/ca-kek";
  const std::string pending = path + ".new";
  if (!fileExists(pending)) return false;
  // Written by rekey in the ca-kek form: exactly 32 raw bytes.
  std::string bytes;
  {
    std::ifstream in(pending, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    if (!in.good() && !in.eof()) return makeError("cannot read " + pending);
  }
  auto fresh = Kek::fromBytes(bytes);
  OPENSSL_cleanse(bytes.data(), bytes.size());
  if (!fresh)
    return makeError(pending +
                     " is not a key file written by `weft server rekey` (32 bytes); "
                     "remove it if no rekey was interrupted");
  auto opens = kekOpensStore(store, *fresh);
  if (!opens) return Unexpected<Error>{opens.error()};
  if (opens->has_value() && **opens) {
    if (::rename(pending.c_str(), path.c_str()) != 0)
      return makeError("cannot rename " + pending + " to " + path + ": " + std::strerror(errno));
    syncDir(data_dir);
    log::info("ca", "finished changing the CA key-encryption key: " + pending + " is now " + path);
    return true;
  }
  // The rekey that wrote it never committed: the store is still sealed with ca-kek.
  if (::unlink(pending.c_str()) != 0)
    return makeError("cannot remove " + pending + ": " + std::strerror(errno));
  log::warn("ca", "removed " + pending +
                      " left by a key-encryption key change that never "
                      "committed; the keys are still sealed with " +
                      path);
  return false;
}

}  // namespace weft::control::ca
