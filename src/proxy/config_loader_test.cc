#include "proxy/config_loader.h"

#include <gmock/gmock.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>

#include "net/tls/tls_test_util.h"
#include "proxy/config_defaults.h"

namespace weft::proxy {
namespace {

using google::protobuf::util::MessageDifferencer;
using ::testing::HasSubstr;

// A temporary directory removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = ::testing::TempDir() + "weft_config_XXXXXX";
    char* made = mkdtemp(tmpl.data());
    EXPECT_NE(made, nullptr) << "mkdtemp(" << tmpl << ") failed";
    path_ = tmpl;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string write(const std::string& name, const std::string& content) {
    std::string p = path_ + "/" + name;
    std::ofstream(p) << content;
    return p;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::filesystem::path examplesDir() {
  // src/proxy/config_loader_test.cc -> repository root.
  return std::filesystem::path(__FILE__).parent_path().parent_path().parent_path() / "examples" /
         "configs";
}

constexpr char kHelloYaml[] = R"(
node: n1
listeners:
  - name: hello
    address: 127.0.0.1
    port: 10000
    http:
      request_timeout: 2.5s
      preserve_upstream_server: true
      max_request_body_bytes: 18446744073709551615
    route_config:
      virtual_hosts:
        - name: any
          domains: ["*"]
          routes:
            - match: {prefix: /}
              priority: 0
              route:
                clusters:
                  - name: backend
clusters:
  - name: backend
    lb_policy: LEAST_REQUEST
    endpoints:
      - address: 127.0.0.1
        port: 8080
)";

constexpr char kHelloJson[] = R"({
  "node": "n1",
  "listeners": [{
    "name": "hello", "address": "127.0.0.1", "port": 10000,
    "http": {"request_timeout": "2.5s", "preserve_upstream_server": true,
             "max_request_body_bytes": "18446744073709551615"},
    "route_config": {"virtual_hosts": [{
      "name": "any", "domains": ["*"],
      "routes": [{"match": {"prefix": "/"}, "priority": 0,
                  "route": {"clusters": [{"name": "backend"}]}}]}]}
  }],
  "clusters": [{"name": "backend", "lb_policy": "LEAST_REQUEST",
                "endpoints": [{"address": "127.0.0.1", "port": 8080}]}]
})";

v1::ProxyConfig mustParse(std::string_view text, Format fmt = Format::kAuto) {
  Result<v1::ProxyConfig> r = parseConfig(text, fmt, "test");
  EXPECT_TRUE(r.has_value()) << "expected the config to parse, got: " << r.error().message
                             << "\nconfig:\n"
                             << text;
  return r ? *r : v1::ProxyConfig();
}

std::string parseError(std::string_view text, Format fmt, std::string_view source = "config.yaml") {
  Result<v1::ProxyConfig> r = parseConfig(text, fmt, source);
  EXPECT_FALSE(r.has_value()) << "expected a parse error for:\n" << text;
  return r ? std::string() : r.error().message;
}

std::string validationError(const v1::ProxyConfig& c, ValidateOptions options = {}) {
  Status s = validateConfig(c, options);
  EXPECT_FALSE(s.has_value()) << "expected validation errors for:\n" << c.DebugString();
  return s ? std::string() : s.error().message;
}

// ---- parsing ----

TEST(ParseConfig, YamlAndJsonGiveIdenticalMessages) {
  v1::ProxyConfig from_yaml = mustParse(kHelloYaml, Format::kYaml);
  v1::ProxyConfig from_json = mustParse(kHelloJson, Format::kJson);
  std::string diff;
  MessageDifferencer d;
  d.ReportDifferencesToString(&diff);
  EXPECT_TRUE(d.Compare(from_yaml, from_json)) << "YAML and JSON differ: " << diff;
  EXPECT_EQ(from_yaml.listeners(0).port(), 10000u);
  EXPECT_EQ(from_yaml.listeners(0).http().request_timeout().seconds(), 2);
  EXPECT_EQ(from_yaml.listeners(0).http().request_timeout().nanos(), 500'000'000);
  EXPECT_EQ(from_yaml.listeners(0).http().max_request_body_bytes(), 18446744073709551615ull);
  EXPECT_TRUE(from_yaml.listeners(0).http().preserve_upstream_server());
  EXPECT_EQ(from_yaml.clusters(0).lb_policy(), v1::Cluster::LEAST_REQUEST);
  EXPECT_TRUE(from_yaml.listeners(0).route_config().virtual_hosts(0).routes(0).has_priority())
      << "an explicit priority: 0 must set the optional field";
}

TEST(ParseConfig, AutoDetectsFormat) {
  EXPECT_EQ(detectFormat("a/b.json", "x: 1"), Format::kJson);
  EXPECT_EQ(detectFormat("a/b.YML", "{}"), Format::kYaml);
  EXPECT_EQ(detectFormat("", "  \n{\"node\": 1}"), Format::kJson);
  EXPECT_EQ(detectFormat("conf", "node: x"), Format::kYaml);
  EXPECT_EQ(mustParse(kHelloJson).node(), "n1");
  EXPECT_EQ(mustParse(kHelloYaml).node(), "n1");
}

TEST(ParseConfig, ExampleFilesAgreeAndValidate) {
  Result<v1::ProxyConfig> yaml = loadConfigFile(examplesDir() / "hello.yaml");
  Result<v1::ProxyConfig> json = loadConfigFile(examplesDir() / "hello.json");
  ASSERT_TRUE(yaml.has_value()) << yaml.error().message;
  ASSERT_TRUE(json.has_value()) << json.error().message;
  EXPECT_TRUE(MessageDifferencer::Equals(*yaml, *json)) << "hello.yaml:\n"
                                                        << yaml->DebugString() << "hello.json:\n"
                                                        << json->DebugString();
  // tls.yaml names certificate files that exist only on a real deployment.
  Result<v1::ProxyConfig> tls =
      loadConfigFile(examplesDir() / "tls.yaml", ValidateOptions{.check_files = false});
  ASSERT_TRUE(tls.has_value()) << tls.error().message;
  EXPECT_EQ(tls->listeners(0).tls().mode(), v1::ListenerTls::STRICT);
  EXPECT_EQ(tls->listeners(0).access_logs(0).json_format().fields().at("status"),
            "%RESPONSE_CODE%");
}

TEST(ParseConfig, DocumentationReferenceExampleIsValid) {
  std::filesystem::path doc =
      examplesDir().parent_path().parent_path() / "docs" / "configuration.md";
  std::ifstream in(doc);
  ASSERT_TRUE(in) << "cannot open " << doc;
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t section = text.find("## Reference by example");
  ASSERT_NE(section, std::string::npos) << "docs/configuration.md lost its reference section";
  size_t start = text.find("```yaml\n", section);
  ASSERT_NE(start, std::string::npos);
  start += 8;
  size_t end = text.find("```", start);
  Result<v1::ProxyConfig> r = loadConfigText(text.substr(start, end - start), Format::kYaml,
                                             "configuration.md", {.check_files = false});
  ASSERT_TRUE(r.has_value()) << "the reference example in docs/configuration.md must be valid: "
                             << r.error().message;
  EXPECT_EQ(r->listeners(0).route_config().virtual_hosts(0).routes_size(), 2);
}

TEST(ParseConfig, CamelCaseAndSnakeCaseAreEquivalent) {
  constexpr char kCamel[] = R"(
listeners:
  - name: l
    routeConfig:
      virtualHosts:
        - domains: ["*"]
          routes:
            - match: {prefix: /}
              directResponse: {status: 204}
    http: {maxRequestHeadersKb: 8, requestTimeout: 1s, serverName: x}
    accessLogs: [{path: /dev/stdout, textFormat: "%RESPONSE_CODE%"}]
drainTime: 3s
)";
  constexpr char kSnake[] = R"(
listeners:
  - name: l
    route_config:
      virtual_hosts:
        - domains: ["*"]
          routes:
            - match: {prefix: /}
              direct_response: {status: 204}
    http: {max_request_headers_kb: 8, request_timeout: 1s, server_name: x}
    access_logs: [{path: /dev/stdout, text_format: "%RESPONSE_CODE%"}]
drain_time: 3s
)";
  v1::ProxyConfig camel = mustParse(kCamel, Format::kYaml);
  v1::ProxyConfig snake = mustParse(kSnake, Format::kYaml);
  EXPECT_TRUE(MessageDifferencer::Equals(camel, snake)) << camel.DebugString();
  EXPECT_EQ(camel.listeners(0).http().max_request_headers_kb(), 8u);
  v1::ProxyConfig json = mustParse(
      R"({"drainTime": "3s", "listeners": [{"name": "l", "http": {"maxRequestHeadersKb": 8}}]})",
      Format::kJson);
  EXPECT_EQ(json.drain_time().seconds(), 3);
  EXPECT_EQ(json.listeners(0).http().max_request_headers_kb(), 8u);
}

TEST(ParseConfig, PlainScalarsKeepTheFieldsType) {
  // Unquoted YAML scalars that look like numbers or booleans still fill string fields.
  v1::ProxyConfig c =
      mustParse("node: 1234\nlisteners: [{name: true, http: {server_name: 1.5}}]", Format::kYaml);
  EXPECT_EQ(c.node(), "1234");
  EXPECT_EQ(c.listeners(0).name(), "true");
  EXPECT_EQ(c.listeners(0).http().server_name(), "1.5");
  // Quoted numbers still fill integer fields.
  EXPECT_EQ(mustParse("listeners: [{port: \"80\"}]", Format::kYaml).listeners(0).port(), 80u);
  // An empty value leaves the field unset.
  EXPECT_FALSE(mustParse("admin:\nnode:\n", Format::kYaml).has_admin());
  // An empty document is an empty config.
  EXPECT_EQ(mustParse("# nothing\n", Format::kYaml).ByteSizeLong(), 0u);
}

TEST(ParseConfig, UnknownFieldIsNamedWithItsPathAndLocation) {
  std::string e = parseError("listeners:\n  - name: a\n    foo: 1\n", Format::kYaml);
  EXPECT_EQ(e,
            "config.yaml:3:5: listeners[0]: unknown field \"foo\" in weft.v1.Listener; valid "
            "fields: name, address, port, tls, route_config, http, access_logs, tcp_proxy, "
            "interception, filter_chains, authorization");

  e = parseError("listeners:\n  - name: a\n    prot: 1\n", Format::kYaml);
  EXPECT_THAT(e, HasSubstr("listeners[0]: unknown field \"prot\" in weft.v1.Listener; did you "
                           "mean \"port\"?"));

  e = parseError("{\"listeners\": [{\"name\": \"a\",\n  \"tls\": {\"mdoe\": \"STRICT\"}}]}",
                 Format::kJson, "config.json");
  EXPECT_EQ(
      e,
      "config.json:2:11: listeners[0].tls: unknown field \"mdoe\" in weft.v1.ListenerTls; did "
      "you mean \"mode\"?");

  e = parseError("{\"nodes\": \"x\"}", Format::kJson, "config.json");
  EXPECT_EQ(
      e, "config.json:1:2: unknown field \"nodes\" in weft.v1.ProxyConfig; did you mean \"node\"?");
}

TEST(ParseConfig, TypeErrorsNameTheField) {
  std::string e = parseError("listeners:\n  - port: http\n", Format::kYaml);
  EXPECT_EQ(e,
            "config.yaml:2:11: listeners[0].port: expected a non-negative integer, found \"http\"");

  e = parseError("listeners:\n  - port: -1\n", Format::kYaml);
  EXPECT_THAT(e, HasSubstr("listeners[0].port: expected a non-negative integer, found \"-1\""));

  e = parseError("listeners:\n  - port: 99999999999\n", Format::kYaml);
  EXPECT_THAT(e, HasSubstr("listeners[0].port: \"99999999999\" is out of range"));

  e = parseError("{\"listeners\": [{\"port\": \"http\"}]}", Format::kJson, "c.json");
  EXPECT_THAT(e, HasSubstr("c.json:1:17: listeners[0].port: invalid value \"http\"; expected a "
                           "non-negative integer"));

  e = parseError("listeners: [{http: {preserve_upstream_server: yes}}]", Format::kYaml);
  EXPECT_THAT(e, HasSubstr("listeners[0].http.preserve_upstream_server: expected true or false, "
                           "found \"yes\""));

  e = parseError("listeners:\n  name: a\n", Format::kYaml);
  EXPECT_THAT(e, HasSubstr("config.yaml:2:3: listeners: expected a list, found a mapping"));

  e = parseError("listeners: [{name: [a, b]}]", Format::kYaml);
  EXPECT_THAT(e, HasSubstr("listeners[0].name: expected a string, found a list"));

  e = parseError("- a\n- b\n", Format::kYaml);
  EXPECT_THAT(e, HasSubstr("config.yaml:1:1: the top level must be a mapping"));
}

TEST(ParseConfig, EnumErrorsListTheValues) {
  std::string e = parseError("listeners: [{tls: {mode: strict}}]", Format::kYaml);
  EXPECT_THAT(e, HasSubstr("listeners[0].tls.mode: \"strict\" is not a valid Mode; use one of "
                           "DISABLED, PERMISSIVE, STRICT (names are upper case: STRICT)"));
  e = parseError("{\"clusters\": [{\"type\": \"dns\"}]}", Format::kJson);
  EXPECT_THAT(e, HasSubstr("clusters[0].type: invalid value \"dns\"; use one of STATIC, DNS"));
  // Numbers are accepted, as in protobuf JSON.
  EXPECT_EQ(mustParse("clusters: [{type: 1}]", Format::kYaml).clusters(0).type(), v1::Cluster::DNS);
}

TEST(ParseConfig, DurationErrorsExplainTheFormat) {
  std::string e = parseError("drain_time: 10m\n", Format::kYaml);
  EXPECT_EQ(e,
            "config.yaml:1:13: drain_time: invalid duration \"10m\"; expected a duration in "
            "seconds with an \"s\" suffix, like \"15s\" or \"0.5s\"; write \"600s\"");
  e = parseError("drain_time: 250ms\n", Format::kYaml);
  EXPECT_THAT(e, HasSubstr("write \"0.25s\""));
  e = parseError("drain_time: 10\n", Format::kYaml);
  EXPECT_THAT(e, HasSubstr("write \"10s\""));
  e = parseError("{\"drain_time\": \"10\"}", Format::kJson);
  EXPECT_THAT(e, HasSubstr("drain_time: invalid duration (Illegal duration format; duration must "
                           "end with 's')"));
  EXPECT_EQ(mustParse("drain_time: -1.5s\n", Format::kYaml).drain_time().nanos(), -500'000'000);
}

TEST(ParseConfig, DuplicatesAndOneofConflictsAreErrors) {
  std::string e = parseError("node: a\nnode: b\n", Format::kYaml);
  EXPECT_THAT(
      e, HasSubstr("config.yaml:2:1: node: set twice (as \"node\" on line 1 and as \"node\")"));
  e = parseError("drain_time: 1s\ndrainTime: 2s\n", Format::kYaml);
  EXPECT_THAT(e, HasSubstr("drain_time: set twice (as \"drain_time\" on line 1 and as "
                           "\"drainTime\")"));
  e = parseError(
      "listeners: [{route_config: {virtual_hosts: [{routes: [{match: {prefix: /, path: /x}}]}]}}]",
      Format::kYaml);
  EXPECT_THAT(e, HasSubstr("listeners[0].route_config.virtual_hosts[0].routes[0].match.path: only "
                           "one of prefix, path, regex may be set, but \"prefix\" is set too"));
  e = parseError(
      R"({"listeners": [{"route_config": {"virtual_hosts": [{"routes": [{"match": {"prefix": "/", "path": "/x"}}]}]}}]})",
      Format::kJson);
  EXPECT_THAT(e, HasSubstr("routes[0].match: only one of prefix, path, regex may be set"));
}

TEST(ParseConfig, AllSchemaErrorsAreReportedTogether) {
  std::string e = parseError("foo: 1\nlisteners:\n  - port: x\n    bar: 2\n", Format::kYaml);
  EXPECT_THAT(e, HasSubstr("config.yaml:1:1: unknown field \"foo\""));
  EXPECT_THAT(e, HasSubstr("config.yaml:3:11: listeners[0].port: expected"));
  EXPECT_THAT(e, HasSubstr("config.yaml:4:5: listeners[0]: unknown field \"bar\""));
  EXPECT_EQ(std::count(e.begin(), e.end(), '\n'), 2) << e;
}

TEST(ParseConfig, YamlSyntaxErrorHasLineAndColumn) {
  std::string e = parseError("listeners:\n  - name: [a,\n    port: }\n", Format::kYaml);
  EXPECT_THAT(e, ::testing::MatchesRegex("config\\.yaml:[0-9]+:[0-9]+: .+")) << e;
  e = parseError("a: b\n\tc: d\n", Format::kYaml);
  EXPECT_THAT(e, ::testing::StartsWith("config.yaml:2:")) << e;
  e = parseError("node: a\n---\nnode: b\n", Format::kYaml);
  EXPECT_THAT(e, HasSubstr("expected one YAML document, found 2"));
}

TEST(ParseConfig, JsonSyntaxErrorHasLineAndColumn) {
  std::string e = parseError("{\"listeners\": [\n  {\"name\": \"x\"]}", Format::kJson, "c.json");
  EXPECT_EQ(e, "c.json:2:15: Expected , or } after key:value pair.");
  e = parseError("", Format::kJson, "c.json");
  EXPECT_THAT(e, HasSubstr("c.json:1:1: Unexpected end of string"));
}

TEST(LoadConfigFile, MissingFileIsAReadError) {
  TempDir dir;
  Result<v1::ProxyConfig> r = loadConfigFile(dir.path() + "/nope.yaml");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, kConfigReadError);
  EXPECT_THAT(r.error().message, HasSubstr("nope.yaml\": No such file or directory"));
}

TEST(LoadConfigFile, ErrorsCarryTheFileName) {
  TempDir dir;
  std::string path = dir.write("proxy.yaml", "listeners:\n  - name: a\n    foo: 1\n");
  Result<v1::ProxyConfig> r = loadConfigFile(path);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, kConfigSyntaxError);
  EXPECT_THAT(r.error().message, ::testing::StartsWith(path + ":3:5: listeners[0]: unknown field"));
}

// ---- semantic validation ----

// A valid config that each rule test breaks in one place.
v1::ProxyConfig baseConfig() {
  return mustParse(R"(
listeners:
  - name: web
    address: 127.0.0.1
    port: 10000
    route_config:
      virtual_hosts:
        - name: any
          domains: ["*"]
          routes:
            - match: {prefix: /}
              route: {clusters: [{name: backend}]}
clusters:
  - name: backend
    endpoints: [{address: 127.0.0.1, port: 8080}]
  - name: named
    type: DNS
    endpoints: [{address: backend.internal, port: 8080}]
)",
                   Format::kYaml);
}

TEST(ValidateConfig, BaseConfigIsValid) {
  Status s = validateConfig(baseConfig());
  EXPECT_TRUE(s.has_value()) << s.error().message;
}

struct RuleCase {
  const char* name;
  std::function<void(v1::ProxyConfig&)> mutate;
  const char* expected;
};

TEST(ValidateConfig, EachRuleReportsItsFieldAndFix) {
  auto route = [](v1::ProxyConfig& c) {
    return c.mutable_listeners(0)->mutable_route_config()->mutable_virtual_hosts(0)->mutable_routes(
        0);
  };
  auto second_listener = [](v1::ProxyConfig& c) {
    v1::Listener* l = c.add_listeners();
    l->set_name("other");
    l->set_port(10001);
    return l;
  };
  std::vector<RuleCase> cases = {
      {"listener name empty", [](auto& c) { c.mutable_listeners(0)->clear_name(); },
       "listeners[0].name: required; give every listener a unique name"},
      {"listener name duplicate", [&](auto& c) { second_listener(c)->set_name("web"); },
       "listeners[1].name: duplicate listener name \"web\" (also used by listeners[0])"},
      {"listener address not IP", [](auto& c) { c.mutable_listeners(0)->set_address("localhost"); },
       "listeners[0].address: \"localhost\" is not an IPv4 or IPv6 address"},
      {"listener address bracketed", [](auto& c) { c.mutable_listeners(0)->set_address("[::1]"); },
       "listeners[0].address: write IPv6 addresses without brackets: \"::1\""},
      {"listener port range", [](auto& c) { c.mutable_listeners(0)->set_port(65536); },
       "listeners[0].port: 65536 is out of range; use 1-65535, or 0 to pick a free port"},
      {"listeners share address:port", [&](auto& c) { second_listener(c)->set_port(10000); },
       "listeners[1].port: 0.0.0.0:10000 overlaps 127.0.0.1:10000 used by listeners[0]"},
      {"listener overlaps admin", [&](auto& c) { c.mutable_listeners(0)->set_port(9901); },
       "listeners[0].port: 127.0.0.1:9901 overlaps 127.0.0.1:9901 used by admin"},
      {"ipv6 listeners share address:port",
       [&](auto& c) {
         c.mutable_listeners(0)->set_address("::1");
         v1::Listener* l = second_listener(c);
         l->set_address("0:0::1");
         l->set_port(10000);
       },
       "listeners[1].port: [0:0::1]:10000 overlaps [::1]:10000 used by listeners[0]"},
      {"strict tls needs certificate chain",
       [](auto& c) { c.mutable_listeners(0)->mutable_tls()->set_mode(v1::ListenerTls::STRICT); },
       "listeners[0].tls.certificate.certificate_chain_file: required when tls.mode is STRICT; "
       "set it to the PEM file holding the certificate chain"},
      {"permissive tls needs key",
       [](auto& c) {
         auto* t = c.mutable_listeners(0)->mutable_tls();
         t->set_mode(v1::ListenerTls::PERMISSIVE);
         t->mutable_certificate()->set_certificate_chain_file("/etc/hostname");
       },
       "listeners[0].tls.certificate.private_key_file: required when tls.mode is PERMISSIVE"},
      {"tls files must exist",
       [](auto& c) {
         auto* t = c.mutable_listeners(0)->mutable_tls();
         t->set_mode(v1::ListenerTls::STRICT);
         t->mutable_certificate()->set_certificate_chain_file("/nonexistent/chain.pem");
         t->mutable_certificate()->set_private_key_file("/etc/hostname");
       },
       "listeners[0].tls.certificate.certificate_chain_file: cannot read "
       "\"/nonexistent/chain.pem\": No such file or directory"},
      {"tls file is a directory",
       [](auto& c) {
         auto* t = c.mutable_listeners(0)->mutable_tls();
         t->set_mode(v1::ListenerTls::STRICT);
         t->mutable_certificate()->set_certificate_chain_file("/etc/hostname");
         t->mutable_certificate()->set_private_key_file("/tmp");
       },
       "listeners[0].tls.certificate.private_key_file: \"/tmp\" is a directory"},
      {"certificate with tls disabled",
       [](auto& c) {
         c.mutable_listeners(0)->mutable_tls()->mutable_certificate()->set_private_key_file("k");
       },
       "listeners[0].tls.mode: is DISABLED (the default) but tls.certificate or tls.validation is "
       "set"},
      {"mtls needs trust bundle",
       [](auto& c) {
         auto* t = c.mutable_listeners(0)->mutable_tls();
         t->set_mode(v1::ListenerTls::STRICT);
         t->mutable_certificate()->set_certificate_chain_file("/etc/hostname");
         t->mutable_certificate()->set_private_key_file("/etc/hostname");
         t->mutable_validation()->add_match_subject_alt_names()->set_dns("a");
       },
       "listeners[0].tls.validation.trust_bundle_file: required when tls.validation is set"},
      {"san matcher empty",
       [](auto& c) {
         auto* t = c.mutable_listeners(0)->mutable_tls();
         t->set_mode(v1::ListenerTls::STRICT);
         t->mutable_certificate()->set_certificate_chain_file("/etc/hostname");
         t->mutable_certificate()->set_private_key_file("/etc/hostname");
         t->mutable_validation()->set_trust_bundle_file("/etc/hostname");
         t->mutable_validation()->add_match_subject_alt_names();
       },
       "listeners[0].tls.validation.match_subject_alt_names[0]: set dns"},
      {"tls versions inverted",
       [](auto& c) {
         auto* t = c.mutable_listeners(0)->mutable_tls();
         t->set_mode(v1::ListenerTls::STRICT);
         t->mutable_certificate()->set_certificate_chain_file("/etc/hostname");
         t->mutable_certificate()->set_private_key_file("/etc/hostname");
         t->set_min_version(v1::TLS_1_3);
         t->set_max_version(v1::TLS_1_2);
       },
       "listeners[0].tls.min_version: TLS_1_3 is above max_version TLS_1_2"},
      {"max headers kb",
       [](auto& c) { c.mutable_listeners(0)->mutable_http()->set_max_request_headers_kb(1025); },
       "listeners[0].http.max_request_headers_kb: 1025 is out of range; use 1-1024 (KiB)"},
      {"negative request timeout",
       [](auto& c) {
         c.mutable_listeners(0)->mutable_http()->mutable_request_timeout()->set_seconds(-2);
       },
       "listeners[0].http.request_timeout: -2s is negative; durations must be 0s or more"},
      {"negative drain time", [](auto& c) { c.mutable_drain_time()->set_nanos(-1000000); },
       "drain_time: -0.001s is negative"},
      {"access log path", [](auto& c) { c.mutable_listeners(0)->add_access_logs(); },
       "listeners[0].access_logs[0].path: required"},
      {"virtual host without domains",
       [](auto& c) {
         c.mutable_listeners(0)->mutable_route_config()->mutable_virtual_hosts(0)->clear_domains();
       },
       "listeners[0].route_config.virtual_hosts[0].domains: at least one domain is required; use "
       "\"*\" to match any host"},
      {"bad domain pattern",
       [](auto& c) {
         c.mutable_listeners(0)->mutable_route_config()->mutable_virtual_hosts(0)->add_domains(
             "a.*.b");
       },
       "virtual_hosts[0].domains[1]: \"a.*.b\" is not a valid domain pattern"},
      {"duplicate domain",
       [](auto& c) {
         auto* vh = c.mutable_listeners(0)->mutable_route_config()->add_virtual_hosts();
         vh->add_domains("*");
       },
       "listeners[0].route_config.virtual_hosts[1].domains[0]: \"*\" is also listed by "
       "listeners[0].route_config.virtual_hosts[0]"},
      {"route without action", [&](auto& c) { route(c)->clear_route(); },
       "routes[0]: has no action; set route (forward to clusters) or direct_response"},
      {"unknown cluster",
       [&](auto& c) { route(c)->mutable_route()->mutable_clusters(0)->set_name("backnd"); },
       "routes[0].route.clusters[0].name: no cluster named \"backnd\" is defined; defined "
       "clusters: \"backend\", \"named\""},
      {"no targets", [&](auto& c) { route(c)->mutable_route()->clear_clusters(); },
       "routes[0].route.clusters: at least one target is required"},
      {"too many targets",
       [&](auto& c) {
         for (int i = 0; i < 10; ++i) {
           auto* wc = route(c)->mutable_route()->add_clusters();
           wc->set_name(i % 2 ? "named" : "backend");
           wc->set_weight(1);
         }
       },
       "routes[0].route.clusters: 11 targets; at most 10 are allowed"},
      {"weight range",
       [&](auto& c) { route(c)->mutable_route()->mutable_clusters(0)->set_weight(101); },
       "routes[0].route.clusters[0].weight: 101 is out of range; use 0-100"},
      {"all weights zero",
       [&](auto& c) { route(c)->mutable_route()->add_clusters()->set_name("named"); },
       "routes[0].route.clusters: every weight is 0"},
      {"priority range", [&](auto& c) { route(c)->set_priority(1001); },
       "routes[0].priority: 1001 is out of range; use 0 (highest) to 1000"},
      {"direct response status",
       [&](auto& c) { route(c)->mutable_direct_response()->set_status(600); },
       "routes[0].direct_response.status: 600 is invalid; use an HTTP status from 200 to 599"},
      {"direct response status unset", [&](auto& c) { route(c)->mutable_direct_response(); },
       "routes[0].direct_response.status: required"},
      {"prefix must start with slash",
       [&](auto& c) { route(c)->mutable_match()->set_prefix("api"); },
       "routes[0].match.prefix: \"api\" must start with \"/\""},
      {"prefix rewrite needs prefix",
       [&](auto& c) {
         route(c)->mutable_match()->set_path("/x");
         route(c)->mutable_route()->set_prefix_rewrite("/y");
       },
       "routes[0].route.prefix_rewrite: applies only to prefix matches"},
      {"lower-case method", [&](auto& c) { route(c)->mutable_match()->set_method("get"); },
       "routes[0].match.method: methods are case-sensitive; write \"GET\""},
      {"header range",
       [&](auto& c) {
         auto* h = route(c)->mutable_match()->add_headers();
         h->set_name("x");
         h->mutable_range()->set_start(5);
         h->mutable_range()->set_end(5);
       },
       "routes[0].match.headers[0].range: end (5) must be greater than start (5)"},
      {"route timeout negative",
       [&](auto& c) { route(c)->mutable_route()->mutable_timeout()->set_seconds(-1); },
       "routes[0].route.timeout: -1s is negative"},
      {"cluster name empty", [](auto& c) { c.mutable_clusters(1)->clear_name(); },
       "clusters[1].name: required; routes refer to clusters by name"},
      {"cluster name duplicate", [](auto& c) { c.mutable_clusters(1)->set_name("backend"); },
       "clusters[1].name: duplicate cluster name \"backend\" (also used by clusters[0])"},
      {"cluster without endpoints", [](auto& c) { c.mutable_clusters(0)->clear_endpoints(); },
       "clusters[0].endpoints: at least one endpoint is required"},
      {"static cluster with hostname",
       [](auto& c) { c.mutable_clusters(0)->mutable_endpoints(0)->set_address("db.internal"); },
       "clusters[0].endpoints[0].address: \"db.internal\" is not an IP address; STATIC clusters "
       "need IPv4/IPv6 literals (set type: DNS"},
      {"dns cluster with ip",
       [](auto& c) { c.mutable_clusters(1)->mutable_endpoints(0)->set_address("10.0.0.1"); },
       "clusters[1].endpoints[0].address: \"10.0.0.1\" is an IP address; DNS clusters resolve "
       "host names"},
      {"dns cluster with bad name",
       [](auto& c) { c.mutable_clusters(1)->mutable_endpoints(0)->set_address("-bad..name"); },
       "clusters[1].endpoints[0].address: \"-bad..name\" is not a valid DNS name"},
      {"endpoint port zero",
       [](auto& c) { c.mutable_clusters(0)->mutable_endpoints(0)->set_port(0); },
       "clusters[0].endpoints[0].port: required; use 1-65535"},
      {"endpoint port range",
       [](auto& c) { c.mutable_clusters(0)->mutable_endpoints(0)->set_port(70000); },
       "clusters[0].endpoints[0].port: 70000 is out of range; use 1-65535"},
      {"negative cluster idle timeout",
       [](auto& c) { c.mutable_clusters(0)->mutable_idle_timeout()->set_seconds(-5); },
       "clusters[0].idle_timeout: -5s is negative"},
      {"zero connect timeout", [](auto& c) { c.mutable_clusters(0)->mutable_connect_timeout(); },
       "clusters[0].connect_timeout: must be more than 0s"},
      {"upstream tls needs trust bundle",
       [](auto& c) { c.mutable_clusters(1)->mutable_tls()->set_sni("x"); },
       "clusters[1].tls.validation.trust_bundle_file: required when tls is set: weft does not "
       "originate unverified TLS"},
      {"upstream trust bundle readable",
       [](auto& c) {
         c.mutable_clusters(1)->mutable_tls()->mutable_validation()->set_trust_bundle_file(
             "/nonexistent/ca.pem");
       },
       "clusters[1].tls.validation.trust_bundle_file: cannot read \"/nonexistent/ca.pem\""},
      {"upstream client certificate needs key",
       [](auto& c) {
         auto* t = c.mutable_clusters(1)->mutable_tls();
         t->mutable_validation()->set_trust_bundle_file("/etc/hostname");
         t->mutable_certificate()->set_certificate_chain_file("/etc/hostname");
       },
       "clusters[1].tls.certificate.private_key_file: required when tls.certificate is set"},
      {"admin port range", [](auto& c) { c.mutable_admin()->set_port(70000); },
       "admin.port: 70000 is out of range"},
      {"admin address", [](auto& c) { c.mutable_admin()->set_address("my-host"); },
       "admin.address: \"my-host\" is not an IPv4 or IPv6 address"},
  };
  for (const RuleCase& rc : cases) {
    v1::ProxyConfig c = baseConfig();
    rc.mutate(c);
    std::string e = validationError(c);
    EXPECT_THAT(e, HasSubstr(rc.expected)) << "rule: " << rc.name;
  }
}

TEST(ValidateConfig, L4AndInterceptionRules) {
  auto intercepting = [](v1::ProxyConfig& c) {
    v1::Listener* l = c.add_listeners();
    l->set_name("outbound");
    l->set_port(15001);
    l->mutable_interception()->set_direction(v1::Interception::OUTBOUND);
    v1::FilterChain* fc = l->add_filter_chains();
    fc->set_name("svc");
    fc->add_destination_ports(8080);
    fc->add_destination_cidrs("10.0.0.0/16");
    fc->mutable_tcp_proxy()->set_cluster("backend");
    return l;
  };
  {
    v1::ProxyConfig c = baseConfig();
    intercepting(c);
    Status s = validateConfig(c);
    EXPECT_TRUE(s.has_value()) << s.error().message;
  }
  std::vector<RuleCase> cases = {
      {"tcp proxy unknown cluster",
       [](auto& c) {
         c.mutable_listeners(0)->clear_route_config();
         c.mutable_listeners(0)->mutable_tcp_proxy()->set_cluster("nope");
       },
       "listeners[0].tcp_proxy.cluster: no cluster named \"nope\" is defined"},
      {"tcp and http on one listener",
       [](auto& c) { c.mutable_listeners(0)->mutable_tcp_proxy()->set_cluster("backend"); },
       "listeners[0].tcp_proxy: a listener relays TCP (tcp_proxy) or routes HTTP "
       "(route_config), not both"},
      {"chains without interception",
       [](auto& c) { c.mutable_listeners(0)->add_filter_chains()->set_name("x"); },
       "listeners[0].filter_chains: only interception listeners have filter chains"},
      {"interception with its own routes",
       [](auto& c) { c.mutable_listeners(0)->mutable_interception(); },
       "listeners[0].interception: an interception listener dispatches by original destination"},
      {"chain port range",
       [&](auto& c) { intercepting(c)->mutable_filter_chains(0)->add_destination_ports(0); },
       "listeners[1].filter_chains[0].destination_ports[1]: 0 is out of range; use 1-65535"},
      {"chain cidr",
       [&](auto& c) { intercepting(c)->mutable_filter_chains(0)->add_destination_cidrs("10.1/8"); },
       "listeners[1].filter_chains[0].destination_cidrs[1]: \"10.1/8\" is not a CIDR prefix"},
      {"chain without protocol",
       [&](auto& c) { intercepting(c)->mutable_filter_chains(0)->clear_tcp_proxy(); },
       "listeners[1].filter_chains[0]: set route_config (HTTP) or tcp_proxy (TCP)"},
      {"chain name duplicate",
       [&](auto& c) {
         v1::Listener* l = intercepting(c);
         *l->add_filter_chains() = l->filter_chains(0);
       },
       "listeners[1].filter_chains[1].name: duplicate chain name \"svc\""},
  };
  for (const RuleCase& rc : cases) {
    v1::ProxyConfig c = baseConfig();
    rc.mutate(c);
    std::string e = validationError(c);
    EXPECT_THAT(e, HasSubstr(rc.expected)) << "rule: " << rc.name;
  }
}

TEST(ValidateConfig, PortZeroListenersMayShareAnAddress) {
  v1::ProxyConfig c = baseConfig();
  c.mutable_listeners(0)->set_port(0);
  v1::Listener* l = c.add_listeners();
  *l = c.listeners(0);
  l->set_name("second");
  c.mutable_admin()->set_port(0);
  Status s = validateConfig(c);
  EXPECT_TRUE(s.has_value()) << s.error().message;
}

TEST(ValidateConfig, CheckFilesCanBeTurnedOff) {
  v1::ProxyConfig c = baseConfig();
  auto* t = c.mutable_listeners(0)->mutable_tls();
  t->set_mode(v1::ListenerTls::STRICT);
  t->mutable_certificate()->set_certificate_chain_file("/nonexistent/a.pem");
  t->mutable_certificate()->set_private_key_file("/nonexistent/a.key");
  EXPECT_FALSE(validateConfig(c).has_value());
  Status s = validateConfig(c, ValidateOptions{.check_files = false});
  EXPECT_TRUE(s.has_value()) << s.error().message;
}

TEST(ValidateConfig, UnreadableFileIsReported) {
  if (geteuid() == 0) GTEST_SKIP() << "root reads every file; permission check cannot fail";
  TempDir dir;
  std::string key = dir.write("key.pem", "secret");
  ASSERT_EQ(chmod(key.c_str(), 0), 0);
  v1::ProxyConfig c = baseConfig();
  auto* t = c.mutable_listeners(0)->mutable_tls();
  t->set_mode(v1::ListenerTls::STRICT);
  t->mutable_certificate()->set_certificate_chain_file(dir.write("chain.pem", "x"));
  t->mutable_certificate()->set_private_key_file(key);
  EXPECT_THAT(validationError(c), HasSubstr("listeners[0].tls.certificate.private_key_file: cannot "
                                            "read \"" +
                                            key + "\": Permission denied"));
}

TEST(ValidateConfig, AllErrorsAreReportedAtOnce) {
  v1::ProxyConfig c = baseConfig();
  c.mutable_listeners(0)->clear_name();
  c.mutable_listeners(0)->set_port(70000);
  c.mutable_clusters(0)->mutable_endpoints(0)->set_port(0);
  c.mutable_admin()->set_port(99999);
  Status s = validateConfig(c);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code, kConfigInvalid);
  EXPECT_EQ(s.error().message,
            "admin.port: 99999 is out of range; use 1-65535, or 0 to pick a free port\n"
            "listeners[0].name: required; give every listener a unique name (it labels its "
            "metrics)\n"
            "listeners[0].port: 70000 is out of range; use 1-65535, or 0 to pick a free port\n"
            "clusters[0].endpoints[0].port: required; use 1-65535");
  EXPECT_EQ(findConfigIssues(c).size(), 4u);
}

TEST(LoadConfigText, SemanticErrorsCarryLineAndColumn) {
  constexpr char kYaml[] = R"(listeners:
  - name: web
    port: 10000
    tls:
      mode: STRICT
    route_config:
      virtual_hosts:
        - domains: ["*"]
          routes:
            - match: {prefix: /}
              route:
                clusters: [{name: nowhere}]
)";
  Result<v1::ProxyConfig> r = loadConfigText(kYaml, Format::kYaml, "proxy.yaml");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, kConfigInvalid);
  EXPECT_EQ(r.error().message,
            // certificate is not written: the nearest written field is tls (line 4).
            "proxy.yaml:4:5: listeners[0].tls.certificate.certificate_chain_file: required when "
            "tls.mode is STRICT; set it to the PEM file holding the certificate chain (or "
            "certificate_chain_pem to the PEM text)\n"
            "proxy.yaml:4:5: listeners[0].tls.certificate.private_key_file: required when "
            "tls.mode is STRICT; set it to the PEM file holding the certificate's private key "
            "(or private_key_pem to the PEM text)\n"
            "proxy.yaml:12:29: listeners[0].route_config.virtual_hosts[0].routes[0].route."
            "clusters[0].name: no cluster named \"nowhere\" is defined; define it under clusters");

  constexpr char kJson[] = "{\"listeners\": [\n  {\"name\": \"a\", \"port\": 70000}]}";
  r = loadConfigText(kJson, Format::kJson, "proxy.json");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message,
            "proxy.json:2:17: listeners[0].port: 70000 is out of range; use 1-65535, or 0 to pick "
            "a free port");
}

// ---- defaults ----

TEST(ConfigDefaults, AccessorsReturnDocumentedDefaults) {
  using std::chrono::milliseconds;
  v1::ProxyConfig c;
  EXPECT_EQ(drainTime(c), milliseconds(10'000));
  EXPECT_EQ(adminAddress(c.admin()), "127.0.0.1");
  EXPECT_EQ(adminPort(c.admin()), 9901u);
  v1::Listener l;
  EXPECT_EQ(listenerAddress(l), "0.0.0.0");
  EXPECT_EQ(requestTimeout(l.http()), milliseconds(15'000));
  EXPECT_EQ(idleTimeout(l.http()), milliseconds(300'000));
  EXPECT_EQ(serverName(l.http()), "weft");
  EXPECT_EQ(maxRequestHeadersKb(l.http()), 60u);
  EXPECT_EQ(maxRequestHeadersBytes(l.http()), 60u * 1024);
  EXPECT_EQ(listenerAlpn(l), (std::vector<std::string>{"h2", "http/1.1"}))
      << "HTTP listeners offer h2 first";
  v1::Listener relay;
  relay.mutable_tcp_proxy()->set_cluster("c");
  EXPECT_EQ(listenerAlpn(relay), std::vector<std::string>{"http/1.1"}) << "TCP relays do not";
  v1::Cluster cl;
  EXPECT_EQ(connectTimeout(cl), milliseconds(5'000));
  EXPECT_EQ(clusterIdleTimeout(cl), milliseconds(300'000));
  EXPECT_EQ(maxConnections(cl), 1024u);
  EXPECT_EQ(maxPendingRequests(cl), 1024u);
  EXPECT_EQ(dnsMinRefresh(cl), milliseconds(5'000));
  v1::RouteAction a;
  a.add_clusters()->set_name("x");
  EXPECT_EQ(targetWeight(a, 0), 1u) << "a lone target without weight gets 1";
  a.add_clusters()->set_name("y");
  EXPECT_EQ(targetWeight(a, 0), 0u) << "with several targets, 0 means no traffic";
  EXPECT_EQ(routeTimeout(a, l.http()), milliseconds(15'000));
}

TEST(ConfigDefaults, ExplicitValuesWin) {
  using std::chrono::milliseconds;
  v1::ProxyConfig c = mustParse(R"(
admin: {port: 0}
listeners:
  - address: "::"
    http: {request_timeout: 0s, idle_timeout: 0.0001s, server_name: edge, max_request_headers_kb: 8}
    tls: {alpn: [h2]}
clusters:
  - connect_timeout: 1.5s
    max_connections: 7
)",
                                Format::kYaml);
  EXPECT_EQ(adminPort(c.admin()), 0u) << "port 0 written explicitly means 'pick a free port'";
  const v1::HttpOptions& h = c.listeners(0).http();
  EXPECT_EQ(listenerAddress(c.listeners(0)), "::");
  EXPECT_EQ(requestTimeout(h), milliseconds(0)) << "0s disables";
  EXPECT_EQ(idleTimeout(h), milliseconds(1)) << "sub-millisecond values round up, never to 0";
  EXPECT_EQ(serverName(h), "edge");
  EXPECT_EQ(maxRequestHeadersBytes(h), 8u * 1024);
  EXPECT_EQ(listenerAlpn(c.listeners(0)), std::vector<std::string>{"h2"});
  EXPECT_EQ(connectTimeout(c.clusters(0)), milliseconds(1'500));
  EXPECT_EQ(maxConnections(c.clusters(0)), 7u);
  v1::RouteAction a;
  a.mutable_timeout()->set_seconds(3);
  EXPECT_EQ(routeTimeout(a, h), milliseconds(3'000));
  EXPECT_EQ(routeIdleTimeout(a, h), milliseconds(1));
}

TEST(ConfigDefaults, UpstreamSni) {
  v1::Cluster c;
  v1::Endpoint e;
  e.set_address("api.internal");
  EXPECT_EQ(upstreamSni(c, e), "") << "STATIC clusters send no SNI by default";
  c.set_type(v1::Cluster::DNS);
  EXPECT_EQ(upstreamSni(c, e), "api.internal");
  c.mutable_tls()->set_sni("override");
  EXPECT_EQ(upstreamSni(c, e), "override");
}

TEST(ConfigDefaults, WithDefaultsFillsEveryDefault) {
  v1::ProxyConfig c = baseConfig();
  c.mutable_listeners(0)->mutable_tls()->set_mode(v1::ListenerTls::STRICT);
  c.mutable_clusters(0)->mutable_idle_timeout()->set_seconds(7);
  v1::ProxyConfig d = withDefaults(c);
  EXPECT_EQ(d.drain_time().seconds(), 10);
  EXPECT_EQ(d.admin().address(), "127.0.0.1");
  EXPECT_TRUE(d.admin().has_port());
  EXPECT_EQ(d.admin().port(), 9901u);
  const v1::Listener& l = d.listeners(0);
  EXPECT_EQ(l.address(), "127.0.0.1") << "explicit address kept";
  EXPECT_EQ(l.http().request_timeout().seconds(), 15);
  EXPECT_EQ(l.http().idle_timeout().seconds(), 300);
  EXPECT_EQ(l.http().server_name(), "weft");
  EXPECT_EQ(l.http().max_request_headers_kb(), 60u);
  ASSERT_EQ(l.tls().alpn_size(), 2);
  EXPECT_EQ(l.tls().alpn(0), "h2") << "HTTP listeners offer HTTP/2 first";
  EXPECT_EQ(l.tls().alpn(1), "http/1.1");
  EXPECT_EQ(l.route_config().virtual_hosts(0).routes(0).route().clusters(0).weight(), 1u);
  const v1::Cluster& cl = d.clusters(0);
  EXPECT_EQ(cl.connect_timeout().seconds(), 5);
  EXPECT_EQ(cl.idle_timeout().seconds(), 7) << "explicit value kept";
  EXPECT_EQ(cl.dns_min_refresh().seconds(), 5);
  EXPECT_EQ(cl.max_connections(), 1024u);
  EXPECT_EQ(cl.max_pending_requests(), 1024u);
  // Applying defaults twice changes nothing; defaults never make a valid config invalid.
  EXPECT_TRUE(MessageDifferencer::Equals(withDefaults(d), d));
  v1::ProxyConfig valid = withDefaults(baseConfig());
  Status s = validateConfig(valid);
  EXPECT_TRUE(s.has_value()) << s.error().message;
}

TEST(ValidateConfig, InlinePemCertificateAndTrust) {
  net::tls::testing::TestCerts certs;
  v1::ProxyConfig c = baseConfig();
  auto* t = c.mutable_listeners(0)->mutable_tls();
  t->set_mode(v1::ListenerTls::STRICT);
  t->mutable_certificate()->set_certificate_chain_pem(certs.server.cert_pem);
  t->mutable_certificate()->set_private_key_pem(certs.server.key_pem);
  t->mutable_validation()->set_trust_bundle_pem(certs.ca.cert_pem);
  c.mutable_clusters(1)->mutable_tls()->mutable_validation()->set_trust_bundle_pem(
      certs.ca.cert_pem);
  Status s = validateConfig(c);
  EXPECT_TRUE(s.has_value()) << "inline PEM instead of files must validate: " << s.error().message;

  // A file and PEM for one item.
  v1::ProxyConfig both = c;
  both.mutable_listeners(0)->mutable_tls()->mutable_certificate()->set_private_key_file(
      certs.server.key_file);
  EXPECT_THAT(validationError(both),
              HasSubstr("listeners[0].tls.certificate.private_key_pem: private_key_file and "
                        "private_key_pem are both set; give one of them"));
  both = c;
  both.mutable_clusters(1)->mutable_tls()->mutable_validation()->set_trust_bundle_file(
      certs.ca.cert_file);
  EXPECT_THAT(validationError(both),
              HasSubstr("clusters[1].tls.validation.trust_bundle_pem: trust_bundle_file and "
                        "trust_bundle_pem are both set"));

  // PEM that does not parse; the key's text never appears in the message.
  v1::ProxyConfig bad = c;
  auto* bt = bad.mutable_listeners(0)->mutable_tls();
  bt->mutable_certificate()->set_certificate_chain_pem("garbage");
  bt->mutable_certificate()->set_private_key_pem(
      "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1ieXRlcw==\n-----END PRIVATE KEY-----\n");
  bt->mutable_validation()->set_trust_bundle_pem("not a bundle");
  std::string e = validationError(bad);
  EXPECT_THAT(e, HasSubstr("listeners[0].tls.certificate.certificate_chain_pem: is not a PEM "
                           "certificate chain"));
  EXPECT_THAT(e, HasSubstr("listeners[0].tls.certificate.private_key_pem: is not an unencrypted "
                           "PEM private key"));
  EXPECT_THAT(e, HasSubstr("listeners[0].tls.validation.trust_bundle_pem: is not a PEM bundle"));
  EXPECT_EQ(e.find("c2VjcmV0"), std::string::npos) << "key material in an error: " << e;
}

// ---- config dump ----

TEST(ConfigToJson, RedactsPrivateKeyPaths) {
  v1::ProxyConfig c = baseConfig();
  auto* t = c.mutable_listeners(0)->mutable_tls();
  t->set_mode(v1::ListenerTls::STRICT);
  t->mutable_certificate()->set_certificate_chain_file("/certs/chain.pem");
  t->mutable_certificate()->set_private_key_file("/certs/listener.key");
  auto* ut = c.mutable_clusters(1)->mutable_tls();
  ut->mutable_certificate()->set_private_key_file("/certs/client.key");

  std::string redacted = configToJson(c, true);
  EXPECT_EQ(redacted.find("listener.key"), std::string::npos) << redacted;
  EXPECT_EQ(redacted.find("client.key"), std::string::npos) << redacted;
  EXPECT_THAT(redacted, HasSubstr("\"private_key_file\": \"[redacted]\""));
  EXPECT_THAT(redacted, HasSubstr("\"certificate_chain_file\": \"/certs/chain.pem\""));
  EXPECT_THAT(redacted, HasSubstr("\"route_config\"")) << "proto field names expected";
  EXPECT_EQ(c.listeners(0).tls().certificate().private_key_file(), "/certs/listener.key")
      << "the input must not be modified";

  std::string plain = configToJson(c, false);
  EXPECT_THAT(plain, HasSubstr("/certs/listener.key"));
  // The dump parses back to the same config.
  v1::ProxyConfig back = mustParse(plain, Format::kJson);
  EXPECT_TRUE(MessageDifferencer::Equals(back, c)) << plain;
}

TEST(ConfigToJson, RedactsInlinePrivateKeys) {
  v1::ProxyConfig c = baseConfig();
  auto* t = c.mutable_listeners(0)->mutable_tls();
  t->set_mode(v1::ListenerTls::STRICT);
  t->mutable_certificate()->set_certificate_chain_pem("-----BEGIN CERTIFICATE-----\nY2hhaW4=\n");
  t->mutable_certificate()->set_private_key_pem("-----BEGIN PRIVATE KEY-----\nbGlzdGVuZXI=\n");
  c.mutable_clusters(1)->mutable_tls()->mutable_certificate()->set_private_key_pem(
      "-----BEGIN PRIVATE KEY-----\nY2xpZW50\n");
  std::string redacted = configToJson(c, true);
  EXPECT_EQ(redacted.find("bGlzdGVuZXI="), std::string::npos) << redacted;
  EXPECT_EQ(redacted.find("Y2xpZW50"), std::string::npos) << redacted;
  EXPECT_THAT(redacted, HasSubstr("\"private_key_pem\": \"[redacted]\""));
  EXPECT_THAT(redacted, HasSubstr("Y2hhaW4=")) << "the certificate is public and stays";
  EXPECT_THAT(configToJson(c, false), HasSubstr("bGlzdGVuZXI="));
}

TEST(ConfigToJson, RoundTripsUnredacted) {
  v1::ProxyConfig c = baseConfig();
  std::string plain = configToJson(c, false);
  // The dump parses back to the same config.
  v1::ProxyConfig back = mustParse(plain, Format::kJson);
  EXPECT_TRUE(MessageDifferencer::Equals(back, c)) << plain;
}

}  // namespace
}  // namespace weft::proxy
