#pragma once
// Changing the CA key-encryption key (docs/ca.md, "Changing the KEK"): `weft server rekey`
// re-seals every sealed key of a data directory under a new KEK, with the server stopped.
//
// What is sealed, and with which AAD (each is opened with the AAD it was sealed with and sealed
// again with the same one):
//   ca/kek-check        the check record itself (a bare sealed value; AAD its key)
//   ca/pca/<id>         CA keys ("Key"; AAD the record's "Arn")
//   ca/acm/<id>         ACM leaf keys ("Key"; AAD the record's "CertificateArn")
//   ca/mesh/<mesh>      mesh identity CAs ("key"; AAD the record's store key)
//   push/ca             the config stream's CA ("key"; AAD its store key)
// resealStore() does not list these: it scans the whole store for values sealed with Kek::seal
// ("gcm1:..."), as a whole value or as any string member of a JSON record at any depth, and
// opens each with the first AAD that works among the record's store key, its "Arn" and its
// "CertificateArn". A sealed key added later under one of those conventions is covered without
// a change here; one that no candidate opens makes the rekey fail, changing nothing.
//
// Crash safety with the default DATA_DIR/ca-kek: the new key is written to DATA_DIR/ca-kek.new
// first, the store is committed (one transaction), then ca-kek.new is renamed over ca-kek. A
// crash between the commit and the rename leaves a store that only ca-kek.new opens;
// finishKekChange(), run by every start (and by rekey) before the KEK is loaded, completes the
// rename, or removes a ca-kek.new whose commit never happened.
//
// Thread-safety: none needed; these run before a server starts, under the data-dir lock.

#include <optional>
#include <string>

#include "common/result.h"
#include "control/ca/kek.h"
#include "control/store/store.h"

namespace weft::control::ca {

struct ResealCount {
  int records = 0;  // store records rewritten
  int keys = 0;     // sealed values re-sealed (the check record included)
};

// Re-seals every sealed value of `store` from `old_kek` to `new_kek` in ONE commit, each record
// under a precondition on the revision it was read at. Fails, changing nothing, when `old_kek`
// does not open the check record (or there is none: nothing was ever sealed), when a sealed
// value opens with none of the candidate AADs, or when a record changed meanwhile (a server is
// running). Never puts key material in an error message.
Result<ResealCount> resealStore(Store& store, const Kek& old_kek, const Kek& new_kek);

// Whether `kek` opens the check record; nullopt when the store has none yet.
Result<std::optional<bool>> kekOpensStore(Store& store, const Kek& kek);

// The DATA_DIR/ca-kek.new of an interrupted rekey: renamed over DATA_DIR/ca-kek when the store
// is already sealed with it; removed when it is not (the rekey never committed). No-op when
// there is no ca-kek.new. Only for the default key file (not --ca-key-file / WEFT_CA_KEY).
// Answers whether it completed a rename.
Result<bool> finishKekChange(Store& store, const std::string& data_dir);

}  // namespace weft::control::ca
