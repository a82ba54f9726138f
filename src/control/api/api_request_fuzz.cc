// Fuzz target for what the API server does with a request's untrusted parts before a handler
// runs: SigV4 Authorization parsing, canonicalization and verification, and the path/query
// decoding and routing of ApiRouter.
//
// Input: "<path>\n<query>\n<authorization>\n" then header lines "name: value" up to an empty
// line, then the body. Besides "no crash", checks one invariant: a request signed with sign()
// verifies (both sides share one canonicalization).
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "control/api/api_router.h"
#include "control/api/sigv4.h"

namespace {

using namespace weft::control;

std::string_view nextLine(std::string_view& in) {
  size_t nl = in.find('\n');
  std::string_view line = in.substr(0, nl);
  in.remove_prefix(nl == std::string_view::npos ? in.size() : nl + 1);
  return line;
}

bool isToken(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    if (!ok) return false;
  }
  return true;
}

const weft::SimTimeSource& fuzzClock() {
  static weft::SimTimeSource t;
  return t;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  HttpRequest req;
  req.method = "POST";
  req.path = std::string(nextLine(in));
  req.query = std::string(nextLine(in));
  std::string auth(nextLine(in));
  while (!in.empty()) {
    std::string_view line = nextLine(in);
    if (line.empty()) break;
    size_t colon = line.find(':');
    std::string name(line.substr(0, colon));
    for (char& c : name) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    std::string value(colon == std::string_view::npos ? "" : line.substr(colon + 1));
    req.headers.emplace_back(std::move(name), std::move(value));
  }
  req.body = std::string(in);
  req.headers.emplace_back("authorization", auth);

  // Parsing and verification of whatever came.
  (void)sigv4::parseAuthorization(auth);
  static ApiRouter router(
      "us-west-2",
      [](std::string_view id) -> std::optional<KeyInfo> {
        if (id == "WKIAFUZZ") return KeyInfo{"fuzz-secret", "123456789012"};
        return std::nullopt;
      },
      fuzzClock());
  static bool routes = [] {
    router.addRoute([](std::string_view p) { return p.size() > 1 && p[1] == 'v'; }, "appmesh",
                    [](const ApiRequest& r) {
                      ApiResponse resp;
                      resp.body = r.path;
                      return resp;
                    });
    return true;
  }();
  (void)routes;
  (void)router.handle(req);
  (void)decodePath(req.path);
  (void)decodeQuery(req.query);

  // Round trip: the same request, signed, must verify.
  sigv4::Request w;
  w.method = req.method;
  w.path = req.path;
  w.query = req.query;
  w.body = req.body;
  w.headers.emplace_back("host", "127.0.0.1:7080");
  for (const auto& [k, v] : req.headers)
    if (isToken(k) && k != "host") w.headers.emplace_back(k, v);
  std::string now = sigv4::amzDate(1'800'000'000);
  sigv4::sign(w, {"WKIAFUZZ", "fuzz-secret", ""}, "us-west-2", "appmesh", now);
  auto v = sigv4::verify(
      w, [](std::string_view) -> std::optional<std::string> { return std::string("fuzz-secret"); },
      now);
  if (!v) std::abort();  // sign() and verify() disagree on the canonical request
  return 0;
}
