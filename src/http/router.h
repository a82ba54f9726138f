#pragma once
// HTTP router: compiles a weft::v1::RouteConfig into an immutable Router that picks, for each
// request, a virtual host (by Host) and then the first matching route in it (see docs/routing.md).
//
// Thread-safety: a Router is built once by Router::compile() (main thread) and is then read-only;
// route() and every RouteEntry accessor are const, never mutate, take no locks of ours and may be
// called concurrently from any number of worker threads. (RE2, used for regex matchers, keeps an
// internal DFA cache guarded by its own reader-writer lock; that is the only synchronisation on
// the path, and only for routes that use a regex.)
// Allocation: route() performs no heap allocation (regex matchers excepted while RE2 warms its
// cache).

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "common/result.h"
#include "common/time.h"
#include "http/headers.h"

namespace re2 {
class RE2;
}
namespace weft::v1 {
class RouteConfig;
}

namespace weft::http {

// Non-owning, type-erased header lookup used by the matchers. get() returns the value of the FIRST
// occurrence of a header, or nullopt when the request has none. Repeated headers are therefore
// matched on their first value only (no comma-joining, which would need an allocation).
// Lifetime: whatever the lookup was built from (span or callable) must outlive it.
class HeaderLookup {
 public:
  // No headers at all.
  HeaderLookup() = default;
  // Over the codec's field list. A field whose `token` is set is compared by token (one byte);
  // a field with HeaderToken::kOther is compared by name, ASCII case-insensitively, so a producer
  // that does not tokenise still works. A wrong non-kOther token makes the field invisible.
  HeaderLookup(std::span<const HeaderField> fields)
      : ctx_(fields.data()), size_(fields.size()), fn_(&spanGet) {}
  // Over any callable `std::optional<std::string_view>(std::string_view lowercase_name) const`,
  // e.g. a lambda wrapping another header container. The callable is referenced, not copied.
  template <class F>
  static HeaderLookup of(const F& fn) {
    static_assert(
        std::is_invocable_r_v<std::optional<std::string_view>, const F&, std::string_view>,
        "F must be callable as std::optional<std::string_view>(std::string_view)");
    HeaderLookup h;
    h.ctx_ = &fn;
    h.fn_ = [](const void* ctx, size_t, std::string_view name,
               HeaderToken) -> std::optional<std::string_view> {
      return (*static_cast<const F*>(ctx))(name);
    };
    return h;
  }

  // `lowercase_name` is the header name in lower case and `token` must be
  // lookupHeaderToken(lowercase_name).
  std::optional<std::string_view> get(std::string_view lowercase_name, HeaderToken token) const {
    if (fn_ == nullptr) return std::nullopt;
    return fn_(ctx_, size_, lowercase_name, token);
  }

 private:
  using Fn = std::optional<std::string_view> (*)(const void* ctx, size_t size,
                                                 std::string_view name, HeaderToken token);
  static std::optional<std::string_view> spanGet(const void* ctx, size_t size,
                                                 std::string_view name, HeaderToken token);
  const void* ctx_ = nullptr;
  size_t size_ = 0;
  Fn fn_ = nullptr;
};

// What the router looks at, filled by the proxy from its parsed request without copying.
// All views must stay valid for the duration of Router::route().
struct RequestView {
  std::string_view method;  // e.g. "GET"; compared case-sensitively
  std::string_view path;    // request path without the query, e.g. "/a/b"
  std::string_view query;   // raw query without the '?', e.g. "x=1&y"; may be empty
  std::string_view host;    // Host / :authority, may carry ":port"; may be empty
  HeaderLookup headers;
};

// Compiled matchers. Implementation detail, in the header only so that RouteEntry can hold them by
// value; not for use outside router.cc.
namespace detail {

struct RegexDeleter {
  void operator()(const re2::RE2* re) const;
};
using RegexPtr = std::unique_ptr<const re2::RE2, RegexDeleter>;

struct HeaderCondition {
  enum class Kind : uint8_t { kExact, kPrefix, kSuffix, kRegex, kRange, kPresent };
  std::string name;                         // lowercase
  HeaderToken token = HeaderToken::kOther;  // lookupHeaderToken(name)
  Kind kind = Kind::kPresent;
  bool invert = false;
  bool want_present = true;  // kPresent: true = must be present, false = must be absent
  std::string value;         // kExact, kPrefix, kSuffix
  RegexPtr regex;            // kRegex
  int64_t range_start = 0;   // kRange, [start, end)
  int64_t range_end = 0;
};

struct QueryCondition {
  std::string name;
  bool exact = false;        // compare the value (raw, not percent-decoded)
  bool want_present = true;  // when !exact: true = must be present, false = must be absent
  std::string value;
};

struct RouteMatcher {
  enum class PathKind : uint8_t { kAny, kPrefix, kExact, kRegex };
  PathKind path_kind = PathKind::kAny;
  std::string path;  // prefix or exact path
  RegexPtr path_regex;
  std::string method;  // empty = any
  std::vector<HeaderCondition> headers;
  std::vector<QueryCondition> query;

  bool matches(const RequestView& req) const;
};

// ASCII case-insensitive hashing/equality for the domain tables; keys are stored lowercase and
// looked up with the request's spelling, without building a lowercase copy.
struct CaseInsensitiveHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const;
};
struct CaseInsensitiveEq {
  using is_transparent = void;
  bool operator()(std::string_view a, std::string_view b) const;
};
using DomainMap = std::unordered_map<std::string, uint32_t, CaseInsensitiveHash, CaseInsensitiveEq>;

}  // namespace detail

// One upstream target of a route and its weight (0..100; 0 = never picked).
struct WeightedTarget {
  std::string cluster;
  uint32_t weight = 0;
};

// A compiled route. Owned by its Router; pointers to it stay valid as long as the Router lives.
class RouteEntry {
 public:
  enum class Kind : uint8_t { kCluster, kDirectResponse };

  // Route name from the config (may be empty).
  const std::string& name() const { return name_; }
  // Position of the route in the config, counting the routes of virtual_hosts[0] first, then
  // virtual_hosts[1], ... (file order, not evaluation order). Dense: 0..Router::routes().size()-1,
  // so the proxy can index per-route stats arrays with it.
  uint32_t index() const { return index_; }
  const std::string& virtualHostName() const { return virtual_host_name_; }
  Kind kind() const { return kind_; }

  // kCluster: 1..10 targets with weights, in config order (empty for kDirectResponse).
  std::span<const WeightedTarget> targets() const { return targets_; }
  // kCluster: selects a target by weight. `random` is any uniformly distributed 64-bit value; the
  // pick is target i for (random % totalWeight()) in [w0+..+w(i-1), w0+..+wi). Returns an empty
  // view for kDirectResponse. The view points into this entry.
  std::string_view pickCluster(uint64_t random) const;
  uint32_t totalWeight() const { return total_weight_; }

  // kCluster, prefix routes only: replacement for the matched prefix; empty = no rewrite.
  const std::string& prefixRewrite() const { return prefix_rewrite_; }
  // Returns `path_and_query` (the request target, "/a/b?x=1") with the matched prefix replaced by
  // prefixRewrite(); the rest of the path and the query string are kept as they are. Returns the
  // input unchanged if there is no rewrite or if it does not start with the route's prefix.
  std::string rewritePath(std::string_view path_and_query) const;
  // kCluster: replacement for the Host header sent upstream; empty = keep.
  const std::string& hostRewrite() const { return host_rewrite_; }
  // kCluster: overrides of the listener's request and idle timeouts; nullopt = not set.
  // A zero value means what it means for the listener (disabled).
  std::optional<Duration> timeout() const { return timeout_; }
  std::optional<Duration> idleTimeout() const { return idle_timeout_; }

  // kDirectResponse: status (200..599) and body.
  uint32_t directStatus() const { return direct_status_; }
  const std::string& directBody() const { return direct_body_; }

 private:
  friend class Router;

  detail::RouteMatcher match_;
  std::string name_;
  std::string virtual_host_name_;
  uint32_t index_ = 0;
  Kind kind_ = Kind::kCluster;
  std::vector<WeightedTarget> targets_;
  std::vector<uint32_t> cumulative_;  // running sum of target weights
  uint32_t total_weight_ = 0;
  std::string prefix_rewrite_;
  std::string host_rewrite_;
  std::optional<Duration> timeout_;
  std::optional<Duration> idle_timeout_;
  uint32_t direct_status_ = 0;
  std::string direct_body_;
};

// A compiled virtual host: its name and its routes in evaluation order.
class VirtualHostEntry {
 public:
  const std::string& name() const { return name_; }
  // Routes sorted by ascending priority (unset last), ties in file order.
  std::span<const RouteEntry* const> routes() const { return ordered_; }

 private:
  friend class Router;
  std::string name_;
  std::vector<const RouteEntry*> ordered_;
};

class Router {
 public:
  using ClusterExists = std::function<bool(std::string_view)>;

  // Validates `config` and builds the router. `cluster_exists` is asked about every cluster a
  // route names (during this call only). On failure the error message starts with the path of the
  // offending field below `field_prefix`, e.g.
  //   route_config.virtual_hosts[0].routes[2].match.regex: invalid regex "(": missing )
  // (pass e.g. "listeners[1].route_config" to get full paths in a ProxyConfig).
  static Result<std::unique_ptr<const Router>> compile(
      const v1::RouteConfig& config, const ClusterExists& cluster_exists,
      std::string_view field_prefix = "route_config");

  Router(const Router&) = delete;
  Router& operator=(const Router&) = delete;

  // The first route of the selected virtual host that matches `req`, or nullptr (no virtual host
  // for the Host, or no route matched; the proxy answers 404).
  const RouteEntry* route(const RequestView& req) const;

  // Virtual host selection alone: exact domain, then longest suffix wildcard ("*.b.c"), then
  // longest prefix wildcard ("a.*"), then "*". Case-insensitive. The port of `host` is ignored
  // unless an exact domain names that host:port. nullptr when nothing matches.
  const VirtualHostEntry* findVirtualHost(std::string_view host) const;

  // All routes by index() (file order).
  std::span<const RouteEntry> routes() const { return routes_; }
  std::span<const VirtualHostEntry> virtualHosts() const { return vhosts_; }

 private:
  Router() = default;

  std::vector<RouteEntry> routes_;
  std::vector<VirtualHostEntry> vhosts_;
  // Domain tables; values index vhosts_.
  detail::DomainMap exact_;             // "a.b" and "a.b:80"
  detail::DomainMap suffix_;            // "*.b.c" stored as ".b.c"
  std::vector<size_t> suffix_lengths_;  // distinct key lengths of suffix_, longest first
  detail::DomainMap prefix_;            // "a.*" stored as "a."
  std::vector<size_t> prefix_lengths_;  // distinct key lengths of prefix_, longest first
  std::optional<uint32_t> catch_all_;   // "*"
};

}  // namespace weft::http
