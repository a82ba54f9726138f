#pragma once
// What the config stream sends to take a proxy from one config to the next: an EndpointsUpdate
// when the two differ only in STATIC clusters' endpoints, else the whole ConfigUpdate
// (docs/config-push.md, "Deltas").
//
// Thread-safety: pure functions.

#include <optional>
#include <vector>

#include "weft/v1/config.pb.h"
#include "weft/v1/stream.pb.h"

namespace weft::control::push {

// The clusters whose endpoints differ (each with its new endpoints, in `next`'s cluster order)
// when `next` differs from `base` only in the endpoints of clusters that are STATIC in both;
// nullopt when anything else differs (a cluster added, removed, renamed, reordered or changed in
// any other field, a listener, ...). An empty vector means the configs are equal.
std::optional<std::vector<v1::ClusterEndpoints>> endpointsDelta(const v1::ProxyConfig& base,
                                                                const v1::ProxyConfig& next);

// The message that takes a proxy running `base` (nullptr: nothing yet) to `next`, whose hash is
// `next_hash`, numbered `version`.
v1::ServerMessage makeUpdate(const v1::ProxyConfig* base, const v1::ProxyConfig& next,
                             const std::string& next_hash, uint64_t version);

// A proxy applies an EndpointsUpdate with meshconfig::applyEndpoints (meshconfig.h).

}  // namespace weft::control::push
