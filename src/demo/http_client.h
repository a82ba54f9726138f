#pragma once
// A small blocking HTTP/1.1 client for `weft demo`: one request per connection
// (`connection: close`), a deadline on the whole exchange, bodies by Content-Length, chunked or
// until close. It reaches the demo's own servers on this machine (the gateway, the API); it is
// not a general client (no TLS, no redirects, no proxies).

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.h"

namespace weft::demo {

struct HttpReply {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;
};

using HeaderList = std::vector<std::pair<std::string, std::string>>;

// Sends `method target` to host:port (an IP literal or "localhost") with `headers` (a host
// header is added when absent) and `body`, and reads the whole answer within `timeout`.
Result<HttpReply> httpRequest(const std::string& host, uint16_t port, std::string_view method,
                              std::string_view target, const HeaderList& headers,
                              std::string_view body, std::chrono::milliseconds timeout);

// Parses a complete HTTP/1.x response (head and body as read until the peer closed). Exposed for
// tests.
Result<HttpReply> parseResponse(std::string_view raw);

}  // namespace weft::demo
