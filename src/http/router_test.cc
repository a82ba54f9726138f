#include "http/router.h"

#include <google/protobuf/text_format.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <map>
#include <new>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "weft/v1/config.pb.h"

// Allocation counter for the no-allocation check: replaces the global operator new in this test
// binary only. Counting is switched on per thread, around the code under test. Sanitizer builds
// keep their own allocator (they pair it with their own delete) and skip the check.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define WEFT_ROUTER_TEST_COUNTS_ALLOCS 0
#else
#define WEFT_ROUTER_TEST_COUNTS_ALLOCS 1
#endif

namespace {
thread_local bool g_count_allocs = false;
thread_local size_t g_allocs = 0;
}  // namespace

#if WEFT_ROUTER_TEST_COUNTS_ALLOCS
// A replacement operator new has to sit on malloc/free.
// NOLINTBEGIN(cppcoreguidelines-no-malloc)
// noinline: keeps GCC from inlining malloc/free pairs into callers and warning about a mismatch.
[[gnu::noinline]] void* operator new(size_t n) {
  if (g_count_allocs) ++g_allocs;
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
[[gnu::noinline]] void* operator new[](size_t n) { return operator new(n); }
[[gnu::noinline]] void operator delete(void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete[](void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, size_t) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete[](void* p, size_t) noexcept { std::free(p); }
// NOLINTEND(cppcoreguidelines-no-malloc)
#endif

namespace weft::http {
namespace {

v1::RouteConfig parseConfig(const std::string& text) {
  v1::RouteConfig config;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &config))
      << "test config does not parse as text proto:\n"
      << text;
  return config;
}

bool knownCluster(std::string_view name) { return name != "missing" && !name.empty(); }

std::unique_ptr<const Router> compileOk(const std::string& text) {
  auto r = Router::compile(parseConfig(text), knownCluster);
  EXPECT_TRUE(r.has_value()) << "expected the config to compile, got error: "
                             << (r ? "" : r.error().message) << "\nconfig:\n"
                             << text;
  if (!r) return nullptr;
  return std::move(r).value();
}

std::string compileError(const std::string& text) {
  auto r = Router::compile(parseConfig(text), knownCluster);
  EXPECT_FALSE(r.has_value()) << "expected a compile error, but the config compiled:\n" << text;
  return r ? std::string() : r.error().message;
}

// The name of the route matched for a request, or "<none>".
struct Req {
  std::string method = "GET";
  std::string path = "/";
  std::string query;
  std::string host = "example.com";
  std::vector<HeaderField> headers;
};

std::string routed(const Router& router, const Req& req) {
  RequestView v{req.method, req.path, req.query, req.host, HeaderLookup(req.headers)};
  const RouteEntry* e = router.route(v);
  return e ? e->name() : "<none>";
}

std::string vhostOf(const Router& router, std::string_view host) {
  const VirtualHostEntry* vh = router.findVirtualHost(host);
  return vh ? vh->name() : "<none>";
}

constexpr char kAnyRoute[] =
    R"(routes { name: "r" match { prefix: "/" } route { clusters { name: "c" } } })";

// ---------------------------------------------------------------------------------------------
// Virtual host selection

TEST(RouterVirtualHost, PrecedenceExactSuffixPrefixCatchAll) {
  std::string any = kAnyRoute;
  auto router = compileOk(R"(
    virtual_hosts { name: "exact" domains: "api.example.com" )" +
                          any + R"( }
    virtual_hosts { name: "suffix" domains: "*.example.com" )" +
                          any + R"( }
    virtual_hosts { name: "longer-suffix" domains: "*.eu.example.com" )" +
                          any + R"( }
    virtual_hosts { name: "prefix" domains: "api.*" )" +
                          any + R"( }
    virtual_hosts { name: "longer-prefix" domains: "api.internal.*" )" +
                          any + R"( }
    virtual_hosts { name: "all" domains: "*" )" +
                          any + R"( }
  )");
  ASSERT_NE(router, nullptr);
  const std::map<std::string, std::string> cases = {
      {"api.example.com", "exact"},
      {"API.Example.COM", "exact"},       // case-insensitive
      {"api.example.com:8443", "exact"},  // port ignored
      {"www.example.com", "suffix"},
      {"a.b.example.com", "suffix"},  // wildcard covers several labels
      {"x.eu.example.com", "longer-suffix"},
      {"api.x.example.com", "suffix"},  // suffix wildcard beats prefix wildcard
      {"example.com", "all"},           // "*.example.com" needs at least one character
      {"api.foo", "prefix"},
      {"api.internal.net", "longer-prefix"},
      {"API.INTERNAL.net:80", "longer-prefix"},
      {"api.", "all"},  // "api.*" needs at least one character
      {"other.net", "all"},
      {"", "all"},  // no Host at all
  };
  for (const auto& [host, want] : cases) {
    EXPECT_EQ(vhostOf(*router, host), want) << "Host: " << host;
  }
}

TEST(RouterVirtualHost, PortInDomainMatchesHostPortExactly) {
  std::string any = kAnyRoute;
  auto router = compileOk(R"(
    virtual_hosts { name: "with-port" domains: "svc.local:8080" )" +
                          any + R"( }
    virtual_hosts { name: "no-port" domains: "svc.local" )" +
                          any + R"( }
    virtual_hosts { name: "v6" domains: "[::1]:8080" domains: "[fe80::1]" )" +
                          any + R"( }
    virtual_hosts { name: "only-port" domains: "other.local:9000" )" +
                          any + R"( }
  )");
  ASSERT_NE(router, nullptr);
  EXPECT_EQ(vhostOf(*router, "svc.local:8080"), "with-port");
  EXPECT_EQ(vhostOf(*router, "SVC.local:8080"), "with-port");
  EXPECT_EQ(vhostOf(*router, "svc.local:9090"), "no-port");
  EXPECT_EQ(vhostOf(*router, "svc.local"), "no-port");
  EXPECT_EQ(vhostOf(*router, "[::1]:8080"), "v6");
  EXPECT_EQ(vhostOf(*router, "[::1]"), "<none>");
  EXPECT_EQ(vhostOf(*router, "[FE80::1]:443"), "v6");
  EXPECT_EQ(vhostOf(*router, "other.local:9000"), "only-port");
  EXPECT_EQ(vhostOf(*router, "other.local"), "<none>") << "a domain with a port needs that port";
  EXPECT_EQ(vhostOf(*router, "other.local:9001"), "<none>");
}

TEST(RouterVirtualHost, NoMatchingVirtualHostRoutesNowhere) {
  auto router =
      compileOk(R"(virtual_hosts { name: "a" domains: "a.com" )" + std::string(kAnyRoute) + "}");
  ASSERT_NE(router, nullptr);
  Req req;
  req.host = "b.com";
  EXPECT_EQ(routed(*router, req), "<none>");
  req.host = "a.com";
  EXPECT_EQ(routed(*router, req), "r");
}

// ---------------------------------------------------------------------------------------------
// Path and method

TEST(RouterMatch, PathPrefixExactRegexAndMethod) {
  auto router = compileOk(R"(virtual_hosts { name: "v" domains: "*"
    routes { name: "exact" match { path: "/health" } route { clusters { name: "c" } } }
    routes { name: "regex" match { regex: "/users/[0-9]+" } route { clusters { name: "c" } } }
    routes { name: "post-api" match { prefix: "/api" method: "POST" } route { clusters { name: "c" } } }
    routes { name: "api" match { prefix: "/api" } route { clusters { name: "c" } } }
    routes { name: "root" match { prefix: "/" } route { clusters { name: "c" } } }
  })");
  ASSERT_NE(router, nullptr);
  struct Case {
    std::string method, path, want;
  };
  const std::vector<Case> cases = {
      {"GET", "/health", "exact"},
      {"GET", "/health/", "root"},  // exact means exact
      {"GET", "/Health", "root"},   // paths are case-sensitive
      {"GET", "/users/42", "regex"},
      {"GET", "/users/42/x", "root"},  // regex must match the whole path
      {"GET", "/users/", "root"},
      {"POST", "/api/x", "post-api"},
      {"post", "/api/x", "api"},  // methods are case-sensitive
      {"GET", "/api/x", "api"},
      {"GET", "/api", "api"},
      {"GET", "/apix", "api"},  // plain string prefix, not a segment match
      {"GET", "/", "root"},
      {"DELETE", "/anything/else", "root"},  // prefix "/" matches everything
  };
  for (const auto& c : cases) {
    Req req;
    req.method = c.method;
    req.path = c.path;
    EXPECT_EQ(routed(*router, req), c.want) << c.method << " " << c.path;
  }
}

TEST(RouterMatch, MissingMatchOrPathConditionMatchesEveryPath) {
  auto router = compileOk(R"(virtual_hosts { name: "v" domains: "*"
    routes { name: "get-any" match { method: "GET" } route { clusters { name: "c" } } }
    routes { name: "no-match" route { clusters { name: "c" } } }
  })");
  ASSERT_NE(router, nullptr);
  Req req;
  req.path = "/any/thing";
  EXPECT_EQ(routed(*router, req), "get-any");
  req.method = "PUT";
  EXPECT_EQ(routed(*router, req), "no-match");
}

TEST(RouterMatch, QueryIsNotPartOfThePath) {
  auto router = compileOk(R"(virtual_hosts { name: "v" domains: "*"
    routes { name: "exact" match { path: "/a" } route { clusters { name: "c" } } }
  })");
  ASSERT_NE(router, nullptr);
  Req req;
  req.path = "/a";
  req.query = "x=1";
  EXPECT_EQ(routed(*router, req), "exact");
}

// ---------------------------------------------------------------------------------------------
// Header matchers

struct HeaderCase {
  std::string matcher;               // HeaderMatcher body, without invert
  std::optional<std::string> value;  // header value, or nullopt = header absent
  bool want;                         // expected result without invert
};

TEST(RouterMatch, HeaderMatchersWithAndWithoutInvert) {
  const std::vector<HeaderCase> cases = {
      {R"(exact: "blue")", "blue", true},
      {R"(exact: "blue")", "Blue", false},
      {R"(exact: "blue")", std::nullopt, false},
      {R"(exact: "")", "", true},
      {R"(prefix: "bl")", "blue", true},
      {R"(prefix: "bl")", "abl", false},
      {R"(prefix: "bl")", std::nullopt, false},
      {R"(suffix: "ue")", "blue", true},
      {R"(suffix: "ue")", "uex", false},
      {R"(suffix: "ue")", std::nullopt, false},
      {R"(regex: "v[0-9]+")", "v12", true},
      {R"(regex: "v[0-9]+")", "v12x", false},  // full match
      {R"(regex: "v[0-9]+")", "xv12", false},
      {R"(regex: "v[0-9]+")", std::nullopt, false},
      {R"(range { start: -10 end: 0 })", "-1", true},
      {R"(range { start: -10 end: 0 })", "-10", true},  // start inclusive
      {R"(range { start: -10 end: 0 })", "0", false},   // end exclusive
      {R"(range { start: -10 end: 0 })", "-11", false},
      {R"(range { start: -10 end: 0 })", "-5x", false},  // must be a whole integer
      {R"(range { start: -10 end: 0 })", "", false},
      {R"(range { start: 0 end: 100 })", "99999999999999999999", false},  // overflows int64
      {R"(range { start: -10 end: 0 })", std::nullopt, false},
      {R"(present: true)", "anything", true},
      {R"(present: true)", "", true},
      {R"(present: true)", std::nullopt, false},
      {R"(present: false)", "x", false},
      {R"(present: false)", std::nullopt, true},
      {"", "x", true},  // a matcher with no condition means "present"
      {"", std::nullopt, false},
  };
  for (const auto& c : cases) {
    for (bool invert : {false, true}) {
      std::string text = R"(virtual_hosts { name: "v" domains: "*"
        routes { name: "hit" match { prefix: "/" headers { name: "X-Color" )" +
                         c.matcher + (invert ? " invert: true" : "") +
                         R"( } } route { clusters { name: "c" } } }
        routes { name: "miss" match { prefix: "/" } route { clusters { name: "c" } } } })";
      auto router = compileOk(text);
      ASSERT_NE(router, nullptr);
      Req req;
      req.headers.push_back({"other", "x"});
      if (c.value) req.headers.push_back({"x-color", *c.value});
      bool want = c.want != invert;
      EXPECT_EQ(routed(*router, req), want ? "hit" : "miss")
          << "matcher {" << c.matcher << "} invert=" << invert << " header "
          << (c.value ? "x-color: \"" + *c.value + "\"" : std::string("absent"));
    }
  }
}

TEST(RouterMatch, HeaderNamesAreCaseInsensitiveAndFirstOccurrenceWins) {
  auto router = compileOk(R"(virtual_hosts { name: "v" domains: "*"
    routes { name: "hit" match { prefix: "/" headers { name: "X-Env" exact: "prod" } }
             route { clusters { name: "c" } } }
  })");
  ASSERT_NE(router, nullptr);
  Req req;
  req.headers = {{"x-ENV", "prod"}};
  EXPECT_EQ(routed(*router, req), "hit") << "header names must compare case-insensitively";
  req.headers = {{"x-env", "prod"}, {"x-env", "dev"}};
  EXPECT_EQ(routed(*router, req), "hit");
  req.headers = {{"x-env", "dev"}, {"x-env", "prod"}};
  EXPECT_EQ(routed(*router, req), "<none>") << "only the first occurrence is matched";
}

TEST(RouterMatch, TokenisedAndPlainHeaderFieldsBothMatch) {
  auto router = compileOk(R"(virtual_hosts { name: "v" domains: "*"
    routes { name: "ct" match { prefix: "/ct" headers { name: "Content-Type" exact: "json" } }
             route { clusters { name: "c" } } }
    routes { name: "custom" match { prefix: "/custom" headers { name: "x-a" exact: "1" } }
             route { clusters { name: "c" } } }
  })");
  ASSERT_NE(router, nullptr);
  const std::vector<std::vector<HeaderField>> lists = {
      // As the HTTP/1 parser produces them: well-known names carry their token.
      {{"Host", "h", HeaderToken::kHost},
       {"CONTENT-TYPE", "json", HeaderToken::kContentType},
       {"X-A", "1", HeaderToken::kOther}},
      // A producer that does not tokenise.
      {{"host", "h"}, {"content-type", "json"}, {"x-a", "1"}},
  };
  for (size_t i = 0; i < lists.size(); ++i) {
    for (const char* path : {"/ct", "/custom"}) {
      RequestView v{"GET", path, "", "h", HeaderLookup(lists[i])};
      const RouteEntry* e = router->route(v);
      EXPECT_TRUE(e != nullptr && e->name() == std::string_view(path).substr(1))
          << "field list " << i << ", path " << path << ": expected route "
          << std::string_view(path).substr(1) << ", got " << (e ? e->name() : "<none>");
    }
  }
}

TEST(RouterMatch, AllConditionsMustHoldAndCallableLookupWorks) {
  auto router = compileOk(R"(virtual_hosts { name: "v" domains: "*"
    routes { name: "hit" match { prefix: "/" headers { name: "a" exact: "1" }
             headers { name: "b" present: true } } route { clusters { name: "c" } } }
  })");
  ASSERT_NE(router, nullptr);
  std::map<std::string, std::string, std::less<>> map = {{"a", "1"}, {"b", ""}};
  auto lookup = [&map](std::string_view name) -> std::optional<std::string_view> {
    auto it = map.find(name);
    if (it == map.end()) return std::nullopt;
    return std::string_view(it->second);
  };
  RequestView v{"GET", "/", "", "h", HeaderLookup::of(lookup)};
  const RouteEntry* e = router->route(v);
  EXPECT_TRUE(e != nullptr && e->name() == "hit") << "expected route hit with a=1 and b present";
  map.erase("b");
  EXPECT_EQ(router->route(v), nullptr) << "expected no route once header b is gone";
}

// ---------------------------------------------------------------------------------------------
// Query parameters

TEST(RouterMatch, QueryParameters) {
  auto router = compileOk(R"(virtual_hosts { name: "v" domains: "*"
    routes { name: "exact" match { prefix: "/" query_parameters { name: "v" exact: "2" } }
             route { clusters { name: "c" } } }
    routes { name: "present" match { prefix: "/" query_parameters { name: "debug" present: true } }
             route { clusters { name: "c" } } }
    routes { name: "bare" match { prefix: "/" query_parameters { name: "flag" } }
             route { clusters { name: "c" } } }
    routes { name: "absent" match { prefix: "/" query_parameters { name: "x" present: false } }
             route { clusters { name: "c" } } }
    routes { name: "fallback" match { prefix: "/" } route { clusters { name: "c" } } }
  })");
  ASSERT_NE(router, nullptr);
  const std::map<std::string, std::string> cases = {
      {"v=2", "exact"},      {"a=1&v=2&b", "exact"}, {"v=2&v=3", "exact"},
      {"v=3&v=2", "absent"},                     // first occurrence only; then "x" is absent
      {"v=20", "absent"},    {"V=2", "absent"},  // names are case-sensitive
      {"debug", "present"},  {"debug=", "present"},  {"debug=0", "present"},
      {"flag", "bare"},  // a matcher with no condition means "present"
      {"x=1", "fallback"},   {"x", "fallback"},      {"v=%32", "absent"},  // no percent-decoding
      {"", "absent"},        {"&&v=2&", "exact"},  // empty parameters are skipped
  };
  for (const auto& [query, want] : cases) {
    Req req;
    req.query = query;
    EXPECT_EQ(routed(*router, req), want) << "query: " << query;
  }
}

// ---------------------------------------------------------------------------------------------
// Priority

TEST(RouterOrder, AscendingPriorityUnsetLastStableInFileOrder) {
  auto router = compileOk(R"(virtual_hosts { name: "v" domains: "*"
    routes { name: "unset-1" match { prefix: "/" } route { clusters { name: "c" } } }
    routes { name: "p5" priority: 5 match { prefix: "/" } route { clusters { name: "c" } } }
    routes { name: "p1-a" priority: 1 match { prefix: "/a" } route { clusters { name: "c" } } }
    routes { name: "unset-2" match { prefix: "/" } route { clusters { name: "c" } } }
    routes { name: "p1-b" priority: 1 match { prefix: "/" } route { clusters { name: "c" } } }
    routes { name: "p0" priority: 0 match { path: "/zero" } route { clusters { name: "c" } } }
    routes { name: "p1000" priority: 1000 match { prefix: "/" } route { clusters { name: "c" } } }
  })");
  ASSERT_NE(router, nullptr);
  std::vector<std::string> order;
  for (const RouteEntry* e : router->virtualHosts()[0].routes()) order.push_back(e->name());
  EXPECT_EQ(order,
            (std::vector<std::string>{"p0", "p1-a", "p1-b", "p5", "p1000", "unset-1", "unset-2"}));
  Req req;
  req.path = "/zero";
  EXPECT_EQ(routed(*router, req), "p0");
  req.path = "/abc";
  EXPECT_EQ(routed(*router, req), "p1-a");
  req.path = "/b";
  EXPECT_EQ(routed(*router, req), "p1-b");
}

TEST(RouterOrder, IndexIsFileOrderAcrossVirtualHosts) {
  auto router = compileOk(R"(
    virtual_hosts { name: "v0" domains: "a"
      routes { name: "r0" priority: 9 match { prefix: "/" } route { clusters { name: "c" } } }
      routes { name: "r1" priority: 1 match { prefix: "/" } route { clusters { name: "c" } } } }
    virtual_hosts { name: "v1" domains: "b"
      routes { name: "r2" match { prefix: "/" } route { clusters { name: "c" } } } }
  )");
  ASSERT_NE(router, nullptr);
  ASSERT_EQ(router->routes().size(), 3u);
  const char* const names[] = {"r0", "r1", "r2"};
  for (uint32_t i = 0; i < 3; ++i) {
    EXPECT_EQ(router->routes()[i].index(), i);
    EXPECT_EQ(router->routes()[i].name(), names[i]);
  }
  EXPECT_EQ(router->routes()[2].virtualHostName(), "v1");
  Req req;
  req.host = "a";
  RequestView v{req.method, req.path, req.query, req.host, {}};
  const RouteEntry* e = router->route(v);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->index(), 1u) << "expected r1 (priority 1) at index 1";
  EXPECT_EQ(e->virtualHostName(), "v0");
}

// ---------------------------------------------------------------------------------------------
// Actions

TEST(RouterAction, WeightedSelectionFollowsWeights) {
  auto router = compileOk(R"(virtual_hosts { name: "v" domains: "*"
    routes { name: "r" match { prefix: "/" } route {
      clusters { name: "a" weight: 10 } clusters { name: "zero" weight: 0 }
      clusters { name: "b" weight: 20 } clusters { name: "c" weight: 70 } } }
  })");
  ASSERT_NE(router, nullptr);
  const RouteEntry& e = router->routes()[0];
  ASSERT_EQ(e.kind(), RouteEntry::Kind::kCluster);
  EXPECT_EQ(e.totalWeight(), 100u);
  ASSERT_EQ(e.targets().size(), 4u);
  std::map<std::string, int> counts;
  for (uint64_t r = 0; r < 10'000; ++r) ++counts[std::string(e.pickCluster(r))];
  EXPECT_EQ(counts, (std::map<std::string, int>{{"a", 1000}, {"b", 2000}, {"c", 7000}}))
      << "every residue mod 100 is fed 100 times, so counts must be exactly 100 x weight";
  EXPECT_EQ(e.pickCluster(0), "a");
  EXPECT_EQ(e.pickCluster(9), "a");
  EXPECT_EQ(e.pickCluster(10), "b");
  EXPECT_EQ(e.pickCluster(29), "b");
  EXPECT_EQ(e.pickCluster(30), "c");
  EXPECT_EQ(e.pickCluster(99), "c");
  EXPECT_EQ(e.pickCluster(UINT64_MAX), "b") << "UINT64_MAX % 100 == 15";
}

TEST(RouterAction, SingleTargetWithoutWeightGetsEverything) {
  auto router = compileOk(R"(virtual_hosts { name: "v" domains: "*"
    routes { name: "r" match { prefix: "/" } route { clusters { name: "only" } } }
  })");
  ASSERT_NE(router, nullptr);
  const RouteEntry& e = router->routes()[0];
  EXPECT_EQ(e.targets()[0].weight, 1u);
  for (uint64_t r : {uint64_t{0}, uint64_t{1}, uint64_t{12345}, UINT64_MAX}) {
    EXPECT_EQ(e.pickCluster(r), "only") << "random " << r;
  }
}

TEST(RouterAction, PrefixRewriteKeepsRestOfPathAndQuery) {
  auto router = compileOk(R"(virtual_hosts { name: "v" domains: "*"
    routes { name: "api" match { prefix: "/api/" } route { clusters { name: "c" } prefix_rewrite: "/" } }
    routes { name: "v2" match { prefix: "/old" } route { clusters { name: "c" } prefix_rewrite: "/new/v2" } }
    routes { name: "root" match { prefix: "/" } route { clusters { name: "c" } prefix_rewrite: "/base/" } }
  })");
  ASSERT_NE(router, nullptr);
  const RouteEntry& api = router->routes()[0];
  const RouteEntry& v2 = router->routes()[1];
  const RouteEntry& root = router->routes()[2];
  EXPECT_EQ(api.rewritePath("/api/users?id=1&x=%20"), "/users?id=1&x=%20");
  EXPECT_EQ(api.rewritePath("/api/"), "/");
  EXPECT_EQ(v2.rewritePath("/old/thing?q"), "/new/v2/thing?q");
  EXPECT_EQ(v2.rewritePath("/oldish"), "/new/v2ish");
  EXPECT_EQ(root.rewritePath("/x/y?z=1"), "/base/x/y?z=1");
  EXPECT_EQ(api.rewritePath("/other?x"), "/other?x") << "input without the prefix is unchanged";
}

TEST(RouterAction, NoRewriteLeavesPathAlone) {
  auto router = compileOk(R"(virtual_hosts { name: "v" domains: "*"
    routes { name: "r" match { prefix: "/a" } route { clusters { name: "c" } } }
  })");
  ASSERT_NE(router, nullptr);
  EXPECT_EQ(router->routes()[0].rewritePath("/a/b?c"), "/a/b?c");
}

TEST(RouterAction, HostRewriteTimeoutsAndDirectResponse) {
  auto router = compileOk(R"(virtual_hosts { name: "v" domains: "*"
    routes { name: "up" match { prefix: "/up" } route { clusters { name: "c" }
             host_rewrite: "backend.internal:8080"
             timeout { seconds: 2 nanos: 500000000 } idle_timeout { } } }
    routes { name: "plain" match { prefix: "/plain" } route { clusters { name: "c" } } }
    routes { name: "teapot" match { prefix: "/" } direct_response { status: 418 body: "short and stout" } }
  })");
  ASSERT_NE(router, nullptr);
  const RouteEntry& up = router->routes()[0];
  EXPECT_EQ(up.hostRewrite(), "backend.internal:8080");
  ASSERT_TRUE(up.timeout().has_value());
  EXPECT_EQ(*up.timeout(), std::chrono::milliseconds(2500));
  ASSERT_TRUE(up.idleTimeout().has_value()) << "an explicit 0s idle_timeout is set, not unset";
  EXPECT_EQ(*up.idleTimeout(), Duration::zero());
  const RouteEntry& plain = router->routes()[1];
  EXPECT_FALSE(plain.timeout().has_value());
  EXPECT_FALSE(plain.idleTimeout().has_value());
  EXPECT_TRUE(plain.hostRewrite().empty());
  const RouteEntry& teapot = router->routes()[2];
  EXPECT_EQ(teapot.kind(), RouteEntry::Kind::kDirectResponse);
  EXPECT_EQ(teapot.directStatus(), 418u);
  EXPECT_EQ(teapot.directBody(), "short and stout");
  EXPECT_TRUE(teapot.targets().empty());
}

// ---------------------------------------------------------------------------------------------
// Validation

struct ErrorCase {
  std::string config;
  std::string want;  // the error message must start with this
};

TEST(RouterValidation, ErrorsNameTheField) {
  const std::string vh = R"(virtual_hosts { name: "v" domains: "*" )";
  const std::string ok_route =
      R"(routes { match { prefix: "/" } route { clusters { name: "c" } } })";
  const std::vector<ErrorCase> cases = {
      {vh + ok_route + R"(routes { match { regex: "(" } route { clusters { name: "c" } } } })",
       R"(route_config.virtual_hosts[0].routes[1].match.regex: invalid regex "(": missing ))"},
      {vh +
           R"(routes { match { prefix: "/" headers { name: "x" regex: "[a" } } route { clusters { name: "c" } } } })",
       R"(route_config.virtual_hosts[0].routes[0].match.headers[0].regex: invalid regex "[a": )"},
      {vh +
           R"(routes { match { prefix: "/" headers { name: "x" range { start: 5 end: 5 } } } route { clusters { name: "c" } } } })",
       "route_config.virtual_hosts[0].routes[0].match.headers[0].range: start (5) must be less "
       "than end (5)"},
      {vh +
           R"(routes { match { prefix: "/" headers { name: "bad name" exact: "1" } } route { clusters { name: "c" } } } })",
       "route_config.virtual_hosts[0].routes[0].match.headers[0].name: invalid header name"},
      {vh +
           R"(routes { match { prefix: "/" query_parameters { exact: "1" } } route { clusters { name: "c" } } } })",
       "route_config.virtual_hosts[0].routes[0].match.query_parameters[0].name: must not be empty"},
      {vh + R"(routes { match { prefix: "/" method: "GE T" } route { clusters { name: "c" } } } })",
       "route_config.virtual_hosts[0].routes[0].match.method: invalid method"},
      {vh + R"(routes { match { prefix: "api" } route { clusters { name: "c" } } } })",
       R"(route_config.virtual_hosts[0].routes[0].match.prefix: must start with '/', got "api")"},
      {vh + R"(routes { match { path: "/a?b" } route { clusters { name: "c" } } } })",
       "route_config.virtual_hosts[0].routes[0].match.path: must not contain a query"},
      {vh + R"(routes { route { clusters { name: "c" } prefix_rewrite: "/x" } } })",
       "route_config.virtual_hosts[0].routes[0].route.prefix_rewrite: allowed only on routes that "
       "match a prefix"},
      {vh + R"(routes { match { prefix: "/" } } })",
       "route_config.virtual_hosts[0].routes[0]: one of route or direct_response is required"},
      {vh + ok_route + ok_route +
           R"(routes { priority: 1001 match { prefix: "/" } route { clusters { name: "c" } } } })",
       "route_config.virtual_hosts[0].routes[2].priority: 1001 is out of range 0..1000"},
      {vh + R"(routes { match { prefix: "/" } route { clusters { name: "missing" } } } })",
       R"(route_config.virtual_hosts[0].routes[0].route.clusters[0].name: unknown cluster "missing")"},
      {vh + R"(routes { match { prefix: "/" } route { clusters { name: "" } } } })",
       "route_config.virtual_hosts[0].routes[0].route.clusters[0].name: must not be empty"},
      {vh +
           R"(routes { match { prefix: "/" } route { clusters { name: "a" weight: 50 } clusters { name: "b" weight: 101 } } } })",
       "route_config.virtual_hosts[0].routes[0].route.clusters[1].weight: 101 is out of range "
       "0..100"},
      {vh +
           R"(routes { match { prefix: "/" } route { clusters { name: "a" weight: 0 } clusters { name: "b" weight: 0 } } } })",
       "route_config.virtual_hosts[0].routes[0].route.clusters: total weight must be greater than "
       "0"},
      {vh + R"(routes { match { prefix: "/" } route { } } })",
       "route_config.virtual_hosts[0].routes[0].route.clusters: at least one cluster is required"},
      {vh + R"(routes { match { prefix: "/" } route { clusters { name: "a" } clusters { name: "a" }
          clusters { name: "a" } clusters { name: "a" } clusters { name: "a" } clusters { name: "a" }
          clusters { name: "a" } clusters { name: "a" } clusters { name: "a" } clusters { name: "a" }
          clusters { name: "a" } } } })",
       "route_config.virtual_hosts[0].routes[0].route.clusters: at most 10 clusters, got 11"},
      {vh +
           R"(routes { match { path: "/a" } route { clusters { name: "c" } prefix_rewrite: "/b" } } })",
       "route_config.virtual_hosts[0].routes[0].route.prefix_rewrite: allowed only on routes that "
       "match a prefix"},
      {vh +
           R"(routes { match { prefix: "/a" } route { clusters { name: "c" } prefix_rewrite: "b" } } })",
       "route_config.virtual_hosts[0].routes[0].route.prefix_rewrite: must start with '/'"},
      {vh +
           R"(routes { match { prefix: "/a" } route { clusters { name: "c" } host_rewrite: "a\r\nx: y" } } })",
       "route_config.virtual_hosts[0].routes[0].route.host_rewrite: invalid host"},
      {vh +
           R"(routes { match { prefix: "/a" } route { clusters { name: "c" } timeout { seconds: -1 } } } })",
       "route_config.virtual_hosts[0].routes[0].route.timeout: must not be negative"},
      {vh +
           R"(routes { match { prefix: "/a" } route { clusters { name: "c" } idle_timeout { nanos: -5 } } } })",
       "route_config.virtual_hosts[0].routes[0].route.idle_timeout: must not be negative"},
      {vh + R"(routes { match { prefix: "/" } direct_response { status: 600 } } })",
       "route_config.virtual_hosts[0].routes[0].direct_response.status: 600 is out of range "
       "200..599"},
      {vh + R"(routes { match { prefix: "/" } direct_response { status: 199 } } })",
       "route_config.virtual_hosts[0].routes[0].direct_response.status: 199 is out of range "
       "200..599"},
      {R"(virtual_hosts { name: "v" })",
       "route_config.virtual_hosts[0].domains: at least one domain is required"},
      {R"(virtual_hosts { name: "a" domains: "x.com" } virtual_hosts { name: "b" domains: "y.com" domains: "X.COM" })",
       R"(route_config.virtual_hosts[1].domains[1]: domain "x.com" is already used by virtual_hosts[0] ("a"))"},
      {R"(virtual_hosts { name: "a" domains: "*" } virtual_hosts { name: "b" domains: "*" })",
       R"(route_config.virtual_hosts[1].domains[0]: domain "*" is already used by virtual_hosts[0] ("a"))"},
      {R"(virtual_hosts { name: "a" domains: "*.x.com" } virtual_hosts { name: "b" domains: "*.X.com" })",
       R"(route_config.virtual_hosts[1].domains[0]: domain "*.x.com" is already used by virtual_hosts[0])"},
      {R"(virtual_hosts { name: "a" domains: "a.*.com" })",
       R"(route_config.virtual_hosts[0].domains[0]: invalid domain "a.*.com": '*' is allowed only)"},
      {R"(virtual_hosts { name: "a" domains: "" })",
       R"(route_config.virtual_hosts[0].domains[0]: invalid domain "": must not be empty)"},
      {R"(virtual_hosts { name: "a" domains: "a b.com" })",
       R"(route_config.virtual_hosts[0].domains[0]: invalid domain "a b.com": character " " is not allowed)"},
      {R"(virtual_hosts { name: "a" domains: "a.com:99999" })",
       R"(route_config.virtual_hosts[0].domains[0]: invalid domain "a.com:99999": port must be)"},
      {R"(virtual_hosts { name: "a" domains: "a.com:" })",
       R"(route_config.virtual_hosts[0].domains[0]: invalid domain "a.com:": port must be)"},
      {R"(virtual_hosts { name: "a" domains: "*.a.com:80" })",
       R"(route_config.virtual_hosts[0].domains[0]: invalid domain "*.a.com:80": a wildcard domain cannot name a port)"},
      {R"(virtual_hosts { name: "a" domains: "[::1" })",
       R"(route_config.virtual_hosts[0].domains[0]: invalid domain "[::1": missing ']')"},
      {R"(virtual_hosts { name: "a" domains: "**" })",
       R"(route_config.virtual_hosts[0].domains[0]: invalid domain "**": '*' is allowed only)"},
  };
  for (const auto& c : cases) {
    std::string got = compileError(c.config);
    EXPECT_TRUE(got.starts_with(c.want)) << "expected an error starting with:\n  " << c.want
                                         << "\ngot:\n  " << got << "\nconfig:\n  " << c.config;
  }
}

TEST(RouterValidation, FieldPrefixIsConfigurable) {
  auto r = Router::compile(parseConfig(R"(virtual_hosts { name: "v" })"), knownCluster,
                           "listeners[3].route_config");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message,
            "listeners[3].route_config.virtual_hosts[0].domains: at least one domain is required");
}

TEST(RouterValidation, EmptyConfigRoutesNothing) {
  auto router = compileOk("");
  ASSERT_NE(router, nullptr);
  Req req;
  EXPECT_EQ(routed(*router, req), "<none>");
}

// ---------------------------------------------------------------------------------------------
// Hot path properties

TEST(RouterHotPath, RouteDoesNotAllocate) {
  if (!WEFT_ROUTER_TEST_COUNTS_ALLOCS) {
    GTEST_SKIP() << "sanitizer build: operator new is the sanitizer's, allocations are not counted";
  }
  auto router = compileOk(R"(
    virtual_hosts { name: "a" domains: "a.example.com" domains: "a.example.com:8080"
      routes { name: "h" match { prefix: "/h" headers { name: "x-v" range { start: 0 end: 9 } }
               headers { name: "x-w" suffix: "z" invert: true } method: "GET"
               query_parameters { name: "q" exact: "1" } } route { clusters { name: "c" } } }
      routes { name: "re" match { regex: "/r/[a-z]+" headers { name: "x-r" regex: "[0-9]+" } }
               route { clusters { name: "c" } } } }
    virtual_hosts { name: "w" domains: "*.example.com" domains: "api.*" domains: "*"
      routes { name: "any" match { prefix: "/" } route { clusters { name: "c" weight: 3 } } } }
  )");
  ASSERT_NE(router, nullptr);
  // The counter itself must see allocations, or the check below proves nothing.
  g_allocs = 0;
  g_count_allocs = true;
  ::operator delete(::operator new(16));  // a call, not a new-expression: never elided
  g_count_allocs = false;
  ASSERT_EQ(g_allocs, 1u) << "expected the replaced operator new to count one allocation";

  std::vector<HeaderField> headers = {{"X-V", "5"}, {"x-w", "abc"}, {"x-r", "123"}};
  struct Case {
    std::string_view path, query, host, want;
  };
  const Case cases[] = {
      {"/h1", "a=b&q=1", "A.example.com:8080", "h"},
      {"/r/abc", "", "a.example.com", "re"},
      {"/h1", "q=2", "b.example.com", "any"},
      {"/x", "", "API.foo", "any"},
      {"/x", "", "other", "any"},
  };
  for (const Case& c : cases) {
    RequestView v{"GET", c.path, c.query, c.host, HeaderLookup(headers)};
    const RouteEntry* warm = router->route(v);  // lets RE2 build its DFA states
    ASSERT_TRUE(warm != nullptr && warm->name() == c.want) << "host " << c.host;
    g_allocs = 0;
    g_count_allocs = true;
    const RouteEntry* e = nullptr;
    for (int i = 0; i < 100; ++i) e = router->route(v);
    std::string_view picked = e->pickCluster(12345);
    g_count_allocs = false;
    EXPECT_EQ(g_allocs, 0u) << "expected route() to make no heap allocation for host " << c.host
                            << " path " << c.path;
    EXPECT_EQ(picked, "c");
  }
}

TEST(RouterHotPath, ConcurrentReadersSeeTheSameAnswers) {
  auto router = compileOk(R"(virtual_hosts { name: "v" domains: "*"
    routes { name: "re" match { regex: "/r/[0-9]+" } route { clusters { name: "c" } } }
    routes { name: "root" match { prefix: "/" } route { clusters { name: "c" } } } })");
  ASSERT_NE(router, nullptr);
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&router, &wrong, t] {
      for (int i = 0; i < 2000; ++i) {
        std::string path = (i + t) % 2 ? "/r/" + std::to_string(i) : "/x/" + std::to_string(i);
        RequestView v{"GET", path, "", "h", {}};
        const RouteEntry* e = router->route(v);
        std::string_view want = (i + t) % 2 ? "re" : "root";
        if (e == nullptr || e->name() != want) ++wrong;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0) << "expected every concurrent lookup to find its route";
}

}  // namespace
}  // namespace weft::http
