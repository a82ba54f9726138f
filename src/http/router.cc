#include "http/router.h"

#include <re2/re2.h>

#include <algorithm>
#include <charconv>
#include <limits>

#include "weft/v1/config.pb.h"

namespace weft::http {

namespace {

constexpr uint32_t kMaxPriority = 1000;
constexpr uint32_t kMaxWeight = 100;
constexpr int kMaxTargets = 10;

char lowerAscii(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string toLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = lowerAscii(c);
  return out;
}

// RFC 9110 token characters (header names, methods).
bool isTchar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool isToken(std::string_view s) { return !s.empty() && std::all_of(s.begin(), s.end(), isTchar); }

// Splits a Host value into host name and port ("" if none). Handles "[v6]:port".
void splitHostPort(std::string_view host, std::string_view& name, std::string_view& port) {
  name = host;
  port = {};
  if (!host.empty() && host.front() == '[') {
    size_t close = host.find(']');
    if (close != std::string_view::npos && close + 1 < host.size() && host[close + 1] == ':') {
      name = host.substr(0, close + 1);
      port = host.substr(close + 2);
    }
    return;
  }
  size_t colon = host.find(':');
  if (colon != std::string_view::npos && host.find(':', colon + 1) == std::string_view::npos) {
    name = host.substr(0, colon);
    port = host.substr(colon + 1);
  }
}

// Value of the first occurrence of `name` in a raw query string ("a=1&b&c=3"). Occurrences are
// separated by '&'; a parameter without '=' has an empty value. Names and values are compared raw:
// no percent-decoding and no '+' to space, so "a%20b" only equals "a%20b".
std::optional<std::string_view> findQueryParam(std::string_view query, std::string_view name) {
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view part = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    size_t eq = part.find('=');
    std::string_view key = part.substr(0, eq);
    if (key == name) {
      return eq == std::string_view::npos ? std::string_view() : part.substr(eq + 1);
    }
  }
  return std::nullopt;
}

bool parseInt64(std::string_view s, int64_t& out) {
  if (s.empty()) return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && end == s.data() + s.size();
}

bool fullMatch(const re2::RE2& re, std::string_view text) {
  return re.Match(re2::StringPiece(text.data(), text.size()), 0, text.size(), re2::RE2::ANCHOR_BOTH,
                  nullptr, 0);
}

bool headerConditionHolds(const detail::HeaderCondition& c, const HeaderLookup& headers) {
  using Kind = detail::HeaderCondition::Kind;
  std::optional<std::string_view> v = headers.get(c.name, c.token);
  bool holds = false;
  if (c.kind == Kind::kPresent) {
    holds = v.has_value() == c.want_present;
  } else if (v.has_value()) {
    switch (c.kind) {
      case Kind::kExact:
        holds = *v == c.value;
        break;
      case Kind::kPrefix:
        holds = v->starts_with(c.value);
        break;
      case Kind::kSuffix:
        holds = v->ends_with(c.value);
        break;
      case Kind::kRegex:
        holds = fullMatch(*c.regex, *v);
        break;
      case Kind::kRange: {
        int64_t n = 0;
        holds = parseInt64(*v, n) && n >= c.range_start && n < c.range_end;
        break;
      }
      case Kind::kPresent:
        break;
    }
  }
  // A missing header fails every value condition, so an inverted value matcher matches it.
  return holds != c.invert;
}

bool queryConditionHolds(const detail::QueryCondition& c, std::string_view query) {
  std::optional<std::string_view> v = findQueryParam(query, c.name);
  if (c.exact) return v.has_value() && *v == c.value;
  return v.has_value() == c.want_present;
}

// Builds "<prefix>.<field>" style paths for error messages.
std::string indexed(std::string_view base, std::string_view field, size_t i) {
  std::string s(base);
  s += '.';
  s += field;
  s += '[';
  s += std::to_string(i);
  s += ']';
  return s;
}

std::string quoted(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      static const char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[(c >> 4) & 0xf];
      out += kHex[c & 0xf];
    } else {
      out += c;
    }
  }
  out += '"';
  return out;
}

// "virtual_hosts[1] (\"name\")" for messages that point at another virtual host.
std::string vhostLabel(const v1::RouteConfig& config, uint32_t v) {
  return "virtual_hosts[" + std::to_string(v) + "] (" +
         quoted(config.virtual_hosts(static_cast<int>(v)).name()) + ")";
}

Unexpected<Error> fieldError(std::string_view path, std::string_view what) {
  std::string m(path);
  m += ": ";
  m += what;
  return makeError(std::move(m));
}

Result<detail::RegexPtr> compileRegex(std::string_view pattern, std::string_view path) {
  re2::RE2::Options options;
  options.set_log_errors(false);
  detail::RegexPtr re(new re2::RE2(re2::StringPiece(pattern.data(), pattern.size()), options));
  if (!re->ok()) {
    // RE2's text is "<reason>: <fragment>"; drop the fragment when it is the whole pattern.
    std::string reason = re->error();
    std::string tail = ": " + re->error_arg();
    if (re->error_arg() == pattern && reason.size() > tail.size() && reason.ends_with(tail)) {
      reason.resize(reason.size() - tail.size());
    }
    return fieldError(path, "invalid regex " + quoted(pattern) + ": " + reason);
  }
  return re;
}

Result<std::optional<Duration>> convertDuration(bool has, const google::protobuf::Duration& d,
                                                std::string_view path) {
  if (!has) return std::optional<Duration>();
  if (d.seconds() < 0 || d.nanos() < 0) return fieldError(path, "must not be negative");
  if (d.nanos() > 999'999'999) return fieldError(path, "nanos must be below 1e9");
  constexpr int64_t kMaxSeconds = std::numeric_limits<int64_t>::max() / 1'000'000'000 - 1;
  if (d.seconds() > kMaxSeconds) return fieldError(path, "is too large");
  return std::optional<Duration>(std::chrono::seconds(d.seconds()) +
                                 std::chrono::nanoseconds(d.nanos()));
}

bool isDomainChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
}

enum class DomainKind { kExact, kSuffix, kPrefix, kAll };

// Validates a lowercase domain; on success returns its kind. Accepted: "*", "*<suffix>",
// "<prefix>*", "<name>", "<name>:<port>", "[<ipv6>]" and "[<ipv6>]:<port>".
Result<DomainKind> classifyDomain(std::string_view d, std::string_view path) {
  auto bad = [&](std::string_view why) {
    return fieldError(path, "invalid domain " + quoted(d) + ": " + std::string(why));
  };
  if (d.empty()) return bad("must not be empty");
  if (d == "*") return DomainKind::kAll;
  std::string_view name = d;
  std::string_view port;
  bool has_port = false;
  if (d.front() == '[') {
    size_t close = d.find(']');
    if (close == std::string_view::npos) return bad("missing ']'");
    std::string_view inner = d.substr(1, close - 1);
    if (inner.empty() || !std::all_of(inner.begin(), inner.end(), [](char c) {
          return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || c == ':' || c == '.';
        })) {
      return bad("not an IPv6 address between '[' and ']'");
    }
    std::string_view rest = d.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return bad("unexpected characters after ']'");
      has_port = true;
      port = rest.substr(1);
    }
    name = {};  // checked above
  } else {
    size_t colon = d.find(':');
    if (colon != std::string_view::npos) {
      has_port = true;
      name = d.substr(0, colon);
      port = d.substr(colon + 1);
    }
  }
  if (has_port) {
    int64_t p = 0;
    if (port.size() > 5 ||
        !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
        !parseInt64(port, p) || p < 1 || p > 65535) {
      return bad("port must be a number in 1..65535");
    }
  }
  if (d.front() == '[') return DomainKind::kExact;
  if (name.empty()) return bad("host name must not be empty");
  DomainKind kind = DomainKind::kExact;
  std::string_view body = name;
  if (name.front() == '*') {
    kind = DomainKind::kSuffix;
    body = name.substr(1);
  } else if (name.back() == '*') {
    kind = DomainKind::kPrefix;
    body = name.substr(0, name.size() - 1);
  }
  if (body.find('*') != std::string_view::npos) {
    return bad("'*' is allowed only as the whole domain or its first or last character");
  }
  if (kind != DomainKind::kExact && has_port) return bad("a wildcard domain cannot name a port");
  if (body.empty()) return bad("wildcard needs a non-empty suffix or prefix");
  for (char c : body) {
    if (!isDomainChar(c)) {
      return bad("character " + quoted(std::string_view(&c, 1)) + " is not allowed");
    }
  }
  return kind;
}

void insertLength(std::vector<size_t>& lengths, size_t n) {
  if (std::find(lengths.begin(), lengths.end(), n) == lengths.end()) lengths.push_back(n);
}

bool isValidHostRewrite(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u > 0x20 && u != 0x7f && c != '/' && c != '?' && c != '#' && c != '@';
  });
}

Status compileHeaderMatcher(const v1::HeaderMatcher& m, const std::string& path,
                            detail::HeaderCondition& out) {
  using Kind = detail::HeaderCondition::Kind;
  if (!isToken(m.name())) {
    return fieldError(path + ".name", "invalid header name " + quoted(m.name()) +
                                          " (must be a non-empty RFC 9110 token)");
  }
  out.name = toLower(m.name());
  out.token = lookupHeaderToken(out.name);
  out.invert = m.invert();
  switch (m.match_case()) {
    case v1::HeaderMatcher::kExact:
      out.kind = Kind::kExact;
      out.value = m.exact();
      break;
    case v1::HeaderMatcher::kPrefix:
      out.kind = Kind::kPrefix;
      out.value = m.prefix();
      break;
    case v1::HeaderMatcher::kSuffix:
      out.kind = Kind::kSuffix;
      out.value = m.suffix();
      break;
    case v1::HeaderMatcher::kRegex: {
      out.kind = Kind::kRegex;
      auto re = compileRegex(m.regex(), path + ".regex");
      if (!re) return Unexpected<Error>{re.error()};
      out.regex = std::move(*re);
      break;
    }
    case v1::HeaderMatcher::kRange:
      out.kind = Kind::kRange;
      out.range_start = m.range().start();
      out.range_end = m.range().end();
      if (out.range_start >= out.range_end) {
        return fieldError(path + ".range", "start (" + std::to_string(out.range_start) +
                                               ") must be less than end (" +
                                               std::to_string(out.range_end) + ")");
      }
      break;
    case v1::HeaderMatcher::kPresent:
      out.kind = Kind::kPresent;
      out.want_present = m.present();
      break;
    case v1::HeaderMatcher::MATCH_NOT_SET:  // a bare name means "present"
      out.kind = Kind::kPresent;
      out.want_present = true;
      break;
  }
  return {};
}

Status compileMatch(const v1::RouteMatch& m, const std::string& path, detail::RouteMatcher& out) {
  using PathKind = detail::RouteMatcher::PathKind;
  switch (m.path_specifier_case()) {
    case v1::RouteMatch::kPrefix:
      if (!m.prefix().starts_with('/')) {
        return fieldError(path + ".prefix", "must start with '/', got " + quoted(m.prefix()));
      }
      out.path_kind = PathKind::kPrefix;
      out.path = m.prefix();
      break;
    case v1::RouteMatch::kPath:
      if (!m.path().starts_with('/')) {
        return fieldError(path + ".path", "must start with '/', got " + quoted(m.path()));
      }
      if (m.path().find('?') != std::string::npos) {
        return fieldError(path + ".path",
                          "must not contain a query ('?'), got " + quoted(m.path()));
      }
      out.path_kind = PathKind::kExact;
      out.path = m.path();
      break;
    case v1::RouteMatch::kRegex: {
      out.path_kind = PathKind::kRegex;
      auto re = compileRegex(m.regex(), path + ".regex");
      if (!re) return Unexpected<Error>{re.error()};
      out.path_regex = std::move(*re);
      break;
    }
    case v1::RouteMatch::PATH_SPECIFIER_NOT_SET:
      out.path_kind = PathKind::kAny;  // no path condition: every path
      break;
  }
  if (!m.method().empty()) {
    if (!isToken(m.method())) {
      return fieldError(path + ".method", "invalid method " + quoted(m.method()));
    }
    out.method = m.method();
  }
  out.headers.resize(m.headers_size());
  for (int i = 0; i < m.headers_size(); ++i) {
    Status s = compileHeaderMatcher(m.headers(i), indexed(path, "headers", i), out.headers[i]);
    if (!s) return s;
  }
  out.query.resize(m.query_parameters_size());
  for (int i = 0; i < m.query_parameters_size(); ++i) {
    const v1::QueryParameterMatcher& q = m.query_parameters(i);
    std::string qpath = indexed(path, "query_parameters", i);
    if (q.name().empty()) return fieldError(qpath + ".name", "must not be empty");
    detail::QueryCondition& c = out.query[i];
    c.name = q.name();
    switch (q.match_case()) {
      case v1::QueryParameterMatcher::kExact:
        c.exact = true;
        c.value = q.exact();
        break;
      case v1::QueryParameterMatcher::kPresent:
        c.want_present = q.present();
        break;
      case v1::QueryParameterMatcher::MATCH_NOT_SET:
        c.want_present = true;  // a bare name means "present"
        break;
    }
  }
  return {};
}

Status compileAction(const v1::RouteAction& a, bool prefix_route, const std::string& path,
                     const Router::ClusterExists& cluster_exists,
                     std::vector<WeightedTarget>& targets, std::vector<uint32_t>& cumulative,
                     uint32_t& total) {
  std::string cpath = path + ".clusters";
  if (a.clusters_size() == 0) return fieldError(cpath, "at least one cluster is required");
  if (a.clusters_size() > kMaxTargets) {
    return fieldError(cpath, "at most " + std::to_string(kMaxTargets) + " clusters, got " +
                                 std::to_string(a.clusters_size()));
  }
  total = 0;
  for (int i = 0; i < a.clusters_size(); ++i) {
    const v1::WeightedCluster& wc = a.clusters(i);
    std::string tpath = indexed(path, "clusters", i);
    if (wc.name().empty()) return fieldError(tpath + ".name", "must not be empty");
    if (!cluster_exists(wc.name())) {
      return fieldError(tpath + ".name", "unknown cluster " + quoted(wc.name()));
    }
    if (wc.weight() > kMaxWeight) {
      return fieldError(tpath + ".weight", std::to_string(wc.weight()) + " is out of range 0.." +
                                               std::to_string(kMaxWeight));
    }
    // A lone target with no weight gets all the traffic.
    uint32_t w = (a.clusters_size() == 1 && wc.weight() == 0) ? 1 : wc.weight();
    total += w;
    targets.push_back(WeightedTarget{wc.name(), w});
    cumulative.push_back(total);
  }
  if (total == 0) return fieldError(cpath, "total weight must be greater than 0");
  if (!a.prefix_rewrite().empty()) {
    if (!prefix_route) {
      return fieldError(path + ".prefix_rewrite", "allowed only on routes that match a prefix");
    }
    if (!a.prefix_rewrite().starts_with('/')) {
      return fieldError(path + ".prefix_rewrite",
                        "must start with '/', got " + quoted(a.prefix_rewrite()));
    }
  }
  if (!isValidHostRewrite(a.host_rewrite())) {
    return fieldError(path + ".host_rewrite",
                      "invalid host " + quoted(a.host_rewrite()) +
                          " (no spaces, control characters, '/', '?', '#' or '@')");
  }
  return {};
}

}  // namespace

namespace detail {

void RegexDeleter::operator()(const re2::RE2* re) const { delete re; }

size_t CaseInsensitiveHash::operator()(std::string_view s) const {
  // FNV-1a over the lowercased bytes.
  uint64_t h = 14695981039346656037ull;
  for (char c : s) {
    h ^= static_cast<unsigned char>(lowerAscii(c));
    h *= 1099511628211ull;
  }
  return static_cast<size_t>(h);
}

bool CaseInsensitiveEq::operator()(std::string_view a, std::string_view b) const {
  return equalsIgnoreCase(a, b);
}

bool RouteMatcher::matches(const RequestView& req) const {
  if (!method.empty() && req.method != method) return false;
  switch (path_kind) {
    case PathKind::kAny:
      break;
    case PathKind::kPrefix:
      if (!req.path.starts_with(path)) return false;
      break;
    case PathKind::kExact:
      if (req.path != path) return false;
      break;
    case PathKind::kRegex:
      if (!fullMatch(*path_regex, req.path)) return false;
      break;
  }
  for (const HeaderCondition& h : headers) {
    if (!headerConditionHolds(h, req.headers)) return false;
  }
  for (const QueryCondition& q : query) {
    if (!queryConditionHolds(q, req.query)) return false;
  }
  return true;
}

}  // namespace detail

std::optional<std::string_view> HeaderLookup::spanGet(const void* ctx, size_t size,
                                                      std::string_view name, HeaderToken token) {
  const auto* fields = static_cast<const HeaderField*>(ctx);
  for (size_t i = 0; i < size; ++i) {
    const HeaderField& f = fields[i];
    if (f.token != HeaderToken::kOther) {
      // A well-known field name: equal to `name` exactly when the tokens are equal.
      if (f.token == token) return f.value;
    } else if (equalsIgnoreCase(f.name, name)) {
      return f.value;
    }
  }
  return std::nullopt;
}

std::string_view RouteEntry::pickCluster(uint64_t random) const {
  if (targets_.empty()) return {};
  uint64_t r = random % total_weight_;
  for (size_t i = 0; i < cumulative_.size(); ++i) {
    if (r < cumulative_[i]) return targets_[i].cluster;
  }
  return targets_.back().cluster;  // unreachable: r < total == cumulative_.back()
}

std::string RouteEntry::rewritePath(std::string_view path_and_query) const {
  if (prefix_rewrite_.empty() || match_.path_kind != detail::RouteMatcher::PathKind::kPrefix ||
      !path_and_query.starts_with(match_.path)) {
    return std::string(path_and_query);
  }
  std::string out;
  out.reserve(prefix_rewrite_.size() + path_and_query.size() - match_.path.size());
  out += prefix_rewrite_;
  out += path_and_query.substr(match_.path.size());
  return out;
}

Result<std::unique_ptr<const Router>> Router::compile(const v1::RouteConfig& config,
                                                      const ClusterExists& cluster_exists,
                                                      std::string_view field_prefix) {
  std::unique_ptr<Router> router(new Router());
  size_t total_routes = 0;
  for (const auto& vh : config.virtual_hosts()) total_routes += vh.routes_size();
  // Reserved up front: VirtualHostEntry keeps pointers into routes_.
  router->routes_.reserve(total_routes);
  router->vhosts_.resize(config.virtual_hosts_size());

  for (int v = 0; v < config.virtual_hosts_size(); ++v) {
    const v1::VirtualHost& vh = config.virtual_hosts(v);
    const std::string vpath = indexed(field_prefix, "virtual_hosts", v);
    VirtualHostEntry& vhe = router->vhosts_[v];
    vhe.name_ = vh.name();

    if (vh.domains_size() == 0)
      return fieldError(vpath + ".domains", "at least one domain is required");
    for (int d = 0; d < vh.domains_size(); ++d) {
      const std::string dpath = indexed(vpath, "domains", d);
      std::string domain = toLower(vh.domains(d));
      auto kind = classifyDomain(domain, dpath);
      if (!kind) return Unexpected<Error>{kind.error()};
      detail::DomainMap* table = nullptr;
      std::string key;
      switch (*kind) {
        case DomainKind::kAll:
          if (router->catch_all_) {
            return fieldError(dpath, "domain \"*\" is already used by " +
                                         vhostLabel(config, *router->catch_all_));
          }
          router->catch_all_ = v;
          continue;
        case DomainKind::kExact:
          table = &router->exact_;
          key = domain;
          break;
        case DomainKind::kSuffix:
          table = &router->suffix_;
          key = domain.substr(1);
          insertLength(router->suffix_lengths_, key.size());
          break;
        case DomainKind::kPrefix:
          table = &router->prefix_;
          key = domain.substr(0, domain.size() - 1);
          insertLength(router->prefix_lengths_, key.size());
          break;
      }
      auto [it, inserted] = table->emplace(std::move(key), v);
      if (!inserted) {
        return fieldError(dpath, "domain " + quoted(domain) + " is already used by " +
                                     vhostLabel(config, it->second));
      }
    }

    // (priority key, route) in file order; unset priority sorts after every set one.
    std::vector<std::pair<uint32_t, const RouteEntry*>> order;
    order.reserve(vh.routes_size());
    for (int r = 0; r < vh.routes_size(); ++r) {
      const v1::Route& route = vh.routes(r);
      const std::string rpath = indexed(vpath, "routes", r);
      RouteEntry& e = router->routes_.emplace_back();
      e.index_ = static_cast<uint32_t>(router->routes_.size() - 1);
      e.name_ = route.name();
      e.virtual_host_name_ = vh.name();
      if (route.has_priority() && route.priority() > kMaxPriority) {
        return fieldError(rpath + ".priority", std::to_string(route.priority()) +
                                                   " is out of range 0.." +
                                                   std::to_string(kMaxPriority));
      }
      // An unset match is the empty RouteMatch: every request.
      Status ms = compileMatch(route.match(), rpath + ".match", e.match_);
      if (!ms) return Unexpected<Error>{ms.error()};

      switch (route.action_case()) {
        case v1::Route::kRoute: {
          const v1::RouteAction& a = route.route();
          const std::string apath = rpath + ".route";
          e.kind_ = RouteEntry::Kind::kCluster;
          Status as =
              compileAction(a, e.match_.path_kind == detail::RouteMatcher::PathKind::kPrefix, apath,
                            cluster_exists, e.targets_, e.cumulative_, e.total_weight_);
          if (!as) return Unexpected<Error>{as.error()};
          e.prefix_rewrite_ = a.prefix_rewrite();
          e.host_rewrite_ = a.host_rewrite();
          auto t = convertDuration(a.has_timeout(), a.timeout(), apath + ".timeout");
          if (!t) return Unexpected<Error>{t.error()};
          e.timeout_ = *t;
          auto it =
              convertDuration(a.has_idle_timeout(), a.idle_timeout(), apath + ".idle_timeout");
          if (!it) return Unexpected<Error>{it.error()};
          e.idle_timeout_ = *it;
          break;
        }
        case v1::Route::kDirectResponse: {
          const v1::DirectResponse& dr = route.direct_response();
          if (dr.status() < 200 || dr.status() > 599) {
            return fieldError(rpath + ".direct_response.status",
                              std::to_string(dr.status()) + " is out of range 200..599");
          }
          e.kind_ = RouteEntry::Kind::kDirectResponse;
          e.direct_status_ = dr.status();
          e.direct_body_ = dr.body();
          break;
        }
        case v1::Route::ACTION_NOT_SET:
          return fieldError(rpath, "one of route or direct_response is required");
      }
      order.emplace_back(route.has_priority() ? route.priority() : kMaxPriority + 1, &e);
    }
    std::stable_sort(order.begin(), order.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    vhe.ordered_.reserve(order.size());
    for (const auto& [priority, e] : order) vhe.ordered_.push_back(e);
  }

  auto by_length_desc = [](size_t a, size_t b) { return a > b; };
  std::sort(router->suffix_lengths_.begin(), router->suffix_lengths_.end(), by_length_desc);
  std::sort(router->prefix_lengths_.begin(), router->prefix_lengths_.end(), by_length_desc);
  return std::unique_ptr<const Router>(std::move(router));
}

const VirtualHostEntry* Router::findVirtualHost(std::string_view host) const {
  std::string_view name;
  std::string_view port;
  splitHostPort(host, name, port);
  if (!exact_.empty()) {
    if (name.size() != host.size()) {
      if (auto it = exact_.find(host); it != exact_.end()) return &vhosts_[it->second];
    }
    if (auto it = exact_.find(name); it != exact_.end()) return &vhosts_[it->second];
  }
  // A wildcard must cover at least one character, hence the strict "<".
  for (size_t len : suffix_lengths_) {
    if (len >= name.size()) continue;
    if (auto it = suffix_.find(name.substr(name.size() - len)); it != suffix_.end()) {
      return &vhosts_[it->second];
    }
  }
  for (size_t len : prefix_lengths_) {
    if (len >= name.size()) continue;
    if (auto it = prefix_.find(name.substr(0, len)); it != prefix_.end()) {
      return &vhosts_[it->second];
    }
  }
  if (catch_all_) return &vhosts_[*catch_all_];
  return nullptr;
}

const RouteEntry* Router::route(const RequestView& req) const {
  const VirtualHostEntry* vh = findVirtualHost(req.host);
  if (vh == nullptr) return nullptr;
  for (const RouteEntry* e : vh->ordered_) {
    if (e->match_.matches(req)) return e;
  }
  return nullptr;
}

}  // namespace weft::http
