#pragma once
// How the CLI reaches `weft server`: endpoint and credential resolution, a blocking HTTP/1.1
// client that signs every request with SigV4, and ApiClient, which turns AWS JSON error answers
// into errors with the server's exception name and message.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cli/yaml_json.h"
#include "common/result.h"
#include "control/api/sigv4.h"

namespace weft::cli {

inline constexpr std::string_view kDefaultEndpoint = "http://127.0.0.1:7080";
inline constexpr std::string_view kDefaultRegion = "us-west-2";

// Flags every command takes.
struct GlobalOptions {
  std::string endpoint;  // --endpoint
  std::string profile;   // --profile
  std::string region;    // --region
};

// Environment lookup (getenv in production, a map in tests): nullopt when unset.
using EnvLookup = std::function<std::optional<std::string>(const char* name)>;
EnvLookup processEnv();

struct Endpoint {
  std::string host;  // without brackets for IPv6
  uint16_t port = 80;
  std::string host_header;  // "host:port" as sent
};

// Only http:// URLs (a path after the authority is ignored); https answers an error saying so.
Result<Endpoint> parseEndpoint(std::string_view url);

struct ClientConfig {
  Endpoint endpoint;
  std::string endpoint_url;
  control::sigv4::Credentials credentials;
  std::string region;
  std::string credentials_source;  // "profile weft in /x/admin-credentials", "environment"
};

// Endpoint: --endpoint, WEFT_ENDPOINT, kDefaultEndpoint. Region: --region, AWS_REGION,
// AWS_DEFAULT_REGION, kDefaultRegion. Credentials: --profile P (from the shared credentials
// file, AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials); else AWS_ACCESS_KEY_ID +
// AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN); else AWS_PROFILE; else the file's [default],
// falling back to [weft] (the profile `weft server` writes).
Result<ClientConfig> resolveConfig(const GlobalOptions& options, const EnvLookup& env);

// Parses an AWS shared-credentials (INI) file: profile → key → value.
std::map<std::string, std::map<std::string, std::string>> parseCredentialsFile(
    std::string_view text);

struct HttpResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;
  const std::string* header(std::string_view lower_name) const;
};

// Extra request headers (lower-case names), signed with the rest.
using HeaderList = std::vector<std::pair<std::string, std::string>>;

// Sends one request and answers the response. `path` is percent-encoded; `query` is the raw
// query string; `headers` are added to (and signed with) the request — a content-type among
// them replaces the default application/json. Implementations: HttpTransport (sockets), and
// in-process ones in tests.
class Transport {
 public:
  virtual ~Transport() = default;
  virtual Result<HttpResponse> send(std::string_view method, std::string_view path,
                                    std::string_view query, std::string_view body,
                                    std::string_view service, const HeaderList& headers) = 0;
  Result<HttpResponse> send(std::string_view method, std::string_view path, std::string_view query,
                            std::string_view body, std::string_view service) {
    return send(method, path, query, body, service, HeaderList{});
  }
};

// A new TCP connection per request (the CLI makes few). Signs with SigV4 (`service` is the
// credential scope's service: "appmesh" for App Mesh paths, "weft" for /weft/v1). Reads the
// response with weft's HTTP/1 parser (Content-Length, chunked, or until close). Blocking, with
// a 60 s socket timeout.
class HttpTransport final : public Transport {
 public:
  explicit HttpTransport(ClientConfig config) : config_(std::move(config)) {}
  using Transport::send;
  Result<HttpResponse> send(std::string_view method, std::string_view path, std::string_view query,
                            std::string_view body, std::string_view service,
                            const HeaderList& headers) override;

 private:
  ClientConfig config_;
};

// JSON calls over a Transport. A non-2xx answer becomes an Error whose message is
// "<ExceptionName>: <message>" and whose code is the HTTP status.
class ApiClient {
 public:
  explicit ApiClient(Transport& transport) : transport_(transport) {}

  // `body` null → no body. Answers the parsed JSON (null for an empty body).
  Result<Value> call(std::string_view method, std::string_view path, std::string_view query = "",
                     const Value* body = nullptr);

  // One AWS JSON 1.1 (RPC) call: POST / with X-Amz-Target `target`
  // ("ACMPrivateCA.DescribeCertificateAuthority") and content-type application/x-amz-json-1.1,
  // signed for `service` ("acm-pca", "acm", "servicediscovery"). Answers the parsed JSON answer
  // ({} for an empty body); errors as call().
  Result<Value> callTarget(std::string_view service, std::string_view target, const Value& body);

 private:
  Result<Value> parse(const Result<HttpResponse>& resp, std::string_view what);

  Transport& transport_;
};

// Builds a query string from pairs (values percent-encoded).
std::string makeQuery(const std::vector<std::pair<std::string, std::string>>& params);

}  // namespace weft::cli
