#include "cli/client.h"

#include <netdb.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "cli/kinds.h"
#include "http/http1/chunked.h"
#include "http/http1/parser.h"

namespace weft::cli {

EnvLookup processEnv() {
  return [](const char* name) -> std::optional<std::string> {
    const char* v = std::getenv(name);
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

Result<Endpoint> parseEndpoint(std::string_view url) {
  std::string_view rest = url;
  if (rest.substr(0, 8) == "https://")
    return makeError("endpoint " + std::string(url) +
                     ": https is not supported yet; use an http:// endpoint");
  if (rest.substr(0, 7) == "http://") rest.remove_prefix(7);
  if (rest.find("://") != std::string_view::npos)
    return makeError("endpoint " + std::string(url) + ": expected http://HOST[:PORT]");
  rest = rest.substr(0, rest.find('/'));
  Endpoint ep;
  std::string_view port_text;
  if (!rest.empty() && rest[0] == '[') {
    size_t close = rest.find(']');
    if (close == std::string_view::npos)
      return makeError("endpoint " + std::string(url) + ": unterminated '[' in the host");
    ep.host = std::string(rest.substr(1, close - 1));
    std::string_view after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return makeError("endpoint " + std::string(url) + ": bad port");
      port_text = after.substr(1);
    }
  } else {
    size_t colon = rest.rfind(':');
    if (colon != std::string_view::npos) {
      ep.host = std::string(rest.substr(0, colon));
      port_text = rest.substr(colon + 1);
    } else {
      ep.host = std::string(rest);
    }
  }
  if (ep.host.empty()) return makeError("endpoint " + std::string(url) + ": missing host");
  if (!port_text.empty()) {
    int port = 0;
    for (char c : port_text) {
      if (!std::isdigit(static_cast<unsigned char>(c)) || port > 65535)
        return makeError("endpoint " + std::string(url) + ": bad port");
      port = port * 10 + (c - '0');
    }
    if (port < 1 || port > 65535) return makeError("endpoint " + std::string(url) + ": bad port");
    ep.port = static_cast<uint16_t>(port);
  }
  bool v6 = ep.host.find(':') != std::string::npos;
  ep.host_header = (v6 ? "[" + ep.host + "]" : ep.host);
  if (ep.port != 80) ep.host_header += ":" + std::to_string(ep.port);
  return ep;
}

std::map<std::string, std::map<std::string, std::string>> parseCredentialsFile(
    std::string_view text) {
  std::map<std::string, std::map<std::string, std::string>> out;
  std::string section;
  auto trim = [](std::string_view s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
    return s;
  };
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view line = trim(text.substr(pos, nl - pos));
    pos = nl + 1;
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    if (line.front() == '[' && line.back() == ']') {
      section = std::string(trim(line.substr(1, line.size() - 2)));
      if (section.rfind("profile ", 0) == 0) section = std::string(trim(section.substr(8)));
      out[section];
      continue;
    }
    size_t eq = line.find('=');
    if (eq == std::string_view::npos || section.empty()) continue;
    out[section][std::string(trim(line.substr(0, eq)))] = std::string(trim(line.substr(eq + 1)));
  }
  return out;
}

Result<ClientConfig> resolveConfig(const GlobalOptions& options, const EnvLookup& env) {
  ClientConfig cfg;
  auto nonEmpty = [&](const char* name) -> std::optional<std::string> {
    auto v = env(name);
    if (v && !v->empty()) return v;
    return std::nullopt;
  };
  cfg.endpoint_url = options.endpoint;
  if (cfg.endpoint_url.empty()) cfg.endpoint_url = nonEmpty("WEFT_ENDPOINT").value_or("");
  if (cfg.endpoint_url.empty()) cfg.endpoint_url = kDefaultEndpoint;
  auto ep = parseEndpoint(cfg.endpoint_url);
  if (!ep) return Unexpected<Error>{ep.error()};
  cfg.endpoint = std::move(*ep);

  cfg.region = options.region;
  if (cfg.region.empty()) cfg.region = nonEmpty("AWS_REGION").value_or("");
  if (cfg.region.empty()) cfg.region = nonEmpty("AWS_DEFAULT_REGION").value_or("");
  if (cfg.region.empty()) cfg.region = kDefaultRegion;

  auto fromFile = [&](const std::string& profile, bool fallback_weft) -> Result<void> {
    std::string file = nonEmpty("AWS_SHARED_CREDENTIALS_FILE").value_or("");
    if (file.empty()) {
      auto home = nonEmpty("HOME");
      if (!home)
        return makeError(
            "no credentials: set AWS_SHARED_CREDENTIALS_FILE or HOME, or "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY");
      file = *home + "/.aws/credentials";
    }
    std::ifstream in(file);
    if (!in)
      return makeError("no credentials: cannot read " + file +
                       " (use --profile with AWS_SHARED_CREDENTIALS_FILE, or set "
                       "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)");
    std::ostringstream ss;
    ss << in.rdbuf();
    auto profiles = parseCredentialsFile(ss.str());
    std::string chosen = profile;
    if (!profiles.count(chosen) && fallback_weft && profiles.count("weft")) chosen = "weft";
    auto it = profiles.find(chosen);
    if (it == profiles.end()) return makeError("no profile [" + profile + "] in " + file);
    auto& keys = it->second;
    cfg.credentials.access_key_id = keys["aws_access_key_id"];
    cfg.credentials.secret_access_key = keys["aws_secret_access_key"];
    cfg.credentials.session_token = keys["aws_session_token"];
    if (cfg.credentials.access_key_id.empty() || cfg.credentials.secret_access_key.empty())
      return makeError("profile [" + chosen + "] in " + file +
                       " lacks aws_access_key_id or aws_secret_access_key");
    cfg.credentials_source = "profile " + chosen + " in " + file;
    return {};
  };

  if (!options.profile.empty()) {
    auto r = fromFile(options.profile, false);
    if (!r) return Unexpected<Error>{r.error()};
    return cfg;
  }
  auto key = nonEmpty("AWS_ACCESS_KEY_ID");
  auto secret = nonEmpty("AWS_SECRET_ACCESS_KEY");
  if (key && secret) {
    cfg.credentials.access_key_id = *key;
    cfg.credentials.secret_access_key = *secret;
    cfg.credentials.session_token = nonEmpty("AWS_SESSION_TOKEN").value_or("");
    cfg.credentials_source = "environment";
    return cfg;
  }
  if (auto profile = nonEmpty("AWS_PROFILE")) {
    auto r = fromFile(*profile, false);
    if (!r) return Unexpected<Error>{r.error()};
    return cfg;
  }
  auto r = fromFile("default", true);
  if (!r) return Unexpected<Error>{r.error()};
  return cfg;
}

const std::string* HttpResponse::header(std::string_view lower_name) const {
  for (const auto& [k, v] : headers)
    if (k == lower_name) return &v;
  return nullptr;
}

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

class Socket {
 public:
  ~Socket() {
    if (fd_ >= 0) ::close(fd_);
  }
  int fd_ = -1;
};

Result<void> writeAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return makeError(std::string("sending the request: ") + std::strerror(errno));
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return {};
}

// Reads more bytes into buf; answers false at EOF.
Result<bool> readMore(int fd, std::string& buf) {
  char tmp[16384];
  while (true) {
    ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return makeError("timed out waiting for the server's response");
      return makeError(std::string("reading the response: ") + std::strerror(errno));
    }
    if (n == 0) return false;
    buf.append(tmp, static_cast<size_t>(n));
    return true;
  }
}

}  // namespace

Result<HttpResponse> HttpTransport::send(std::string_view method, std::string_view path,
                                         std::string_view query, std::string_view body,
                                         std::string_view service, const HeaderList& headers) {
  control::sigv4::Request req;
  req.method = std::string(method);
  req.path = std::string(path);
  req.query = std::string(query);
  req.headers.emplace_back("host", config_.endpoint.host_header);
  bool has_type = false;
  for (const auto& [k, v] : headers) {
    has_type = has_type || k == "content-type";
    req.headers.emplace_back(k, v);
  }
  if (!body.empty() && !has_type) req.headers.emplace_back("content-type", "application/json");
  req.body = std::string(body);
  auto now = std::chrono::duration_cast<std::chrono::seconds>(
                 std::chrono::system_clock::now().time_since_epoch())
                 .count();
  control::sigv4::sign(req, config_.credentials, config_.region, service,
                       control::sigv4::amzDate(now));

  std::string wire =
      req.method + " " + req.path + (req.query.empty() ? "" : "?" + req.query) + " HTTP/1.1\r\n";
  for (const auto& [k, v] : req.headers) wire += k + ": " + v + "\r\n";
  wire += "user-agent: weft-cli/" WEFT_VERSION "\r\n";
  wire += "content-length: " + std::to_string(body.size()) + "\r\n";
  wire += "connection: close\r\n\r\n";
  wire += body;

  std::string where = "weft server at " + config_.endpoint_url;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  std::string port = std::to_string(config_.endpoint.port);
  int rc = ::getaddrinfo(config_.endpoint.host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0)
    return makeError("cannot resolve " + config_.endpoint.host + ": " + ::gai_strerror(rc));
  Socket sock;
  std::string connect_error = "no address";
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    timeval tv{60, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (::connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
      sock.fd_ = fd;
      break;
    }
    connect_error = std::strerror(errno);
    ::close(fd);
  }
  ::freeaddrinfo(res);
  if (sock.fd_ < 0)
    return makeError("cannot connect to " + where + ": " + connect_error +
                     " (is `weft server` running? set --endpoint or WEFT_ENDPOINT)");
  if (auto w = writeAll(sock.fd_, wire); !w) return Unexpected<Error>{w.error()};

  http1::Method method_id = http1::lookupMethod(method);
  std::string buf;
  http1::ResponseParser parser;
  HttpResponse out;
  http1::BodyKind body_kind = http1::BodyKind::kNone;
  uint64_t content_length = 0;
  // The head (skipping interim 1xx responses).
  while (true) {
    http1::ParseResult r = parser.parse(buf, method_id);
    if (r.failed())
      return makeError("bad response from " + where + ": " + std::string(r.error.reason));
    if (r.done()) {
      const http1::ResponseHead& head = parser.head();
      if (head.interim) {
        buf.erase(0, r.consumed);
        continue;
      }
      out.status = head.status;
      for (const auto& f : head.headers)
        out.headers.emplace_back(lower(f.name), std::string(f.value));
      body_kind = head.body_kind;
      content_length = head.content_length;
      buf.erase(0, r.consumed);
      break;
    }
    auto more = readMore(sock.fd_, buf);
    if (!more) return Unexpected<Error>{more.error()};
    if (!*more) return makeError(where + " closed the connection before answering");
  }
  // The body.
  switch (body_kind) {
    case http1::BodyKind::kNone:
      break;
    case http1::BodyKind::kContentLength:
      while (buf.size() < content_length) {
        auto more = readMore(sock.fd_, buf);
        if (!more) return Unexpected<Error>{more.error()};
        if (!*more) return makeError(where + " closed the connection mid-response");
      }
      out.body = buf.substr(0, content_length);
      break;
    case http1::BodyKind::kChunked: {
      http1::ChunkedDecoder decoder;
      size_t offset = 0;
      while (true) {
        auto step = decoder.decode(std::string_view(buf).substr(offset),
                                   [&](std::string_view data) { out.body.append(data); });
        offset += step.consumed;
        if (step.failed())
          return makeError("bad chunked response from " + where + ": " +
                           std::string(step.error.reason));
        if (step.done) break;
        buf.erase(0, offset);
        offset = 0;
        auto more = readMore(sock.fd_, buf);
        if (!more) return Unexpected<Error>{more.error()};
        if (!*more) return makeError(where + " closed the connection mid-response");
      }
      break;
    }
    case http1::BodyKind::kUntilClose:
      while (true) {
        auto more = readMore(sock.fd_, buf);
        if (!more) return Unexpected<Error>{more.error()};
        if (!*more) break;
      }
      out.body = std::move(buf);
      break;
  }
  return out;
}

Result<Value> ApiClient::call(std::string_view method, std::string_view path,
                              std::string_view query, const Value* body) {
  std::string body_text = body ? toJson(*body) : "";
  std::string_view service = path.rfind("/weft/", 0) == 0 ? "weft" : "appmesh";
  auto resp = transport_.send(method, path, query, body_text, service);
  return parse(resp, std::string(method) + " " + std::string(path));
}

Result<Value> ApiClient::callTarget(std::string_view service, std::string_view target,
                                    const Value& body) {
  HeaderList headers = {{"content-type", "application/x-amz-json-1.1"},
                        {"x-amz-target", std::string(target)}};
  auto resp = transport_.send("POST", "/", "", toJson(body), service, headers);
  auto r = parse(resp, target);
  if (r && r->isNull()) return Value::object();
  return r;
}

Result<Value> ApiClient::parse(const Result<HttpResponse>& resp, std::string_view what) {
  if (!resp) return Unexpected<Error>{resp.error()};
  Value parsed;
  bool parsed_ok = false;
  if (!resp->body.empty()) {
    auto j = parseJson(resp->body);
    if (j) {
      parsed = std::move(*j);
      parsed_ok = true;
    }
  }
  if (resp->status >= 200 && resp->status < 300) {
    if (!resp->body.empty() && !parsed_ok)
      return makeError("the server answered " + std::string(what) +
                       " with a body that is not JSON");
    return parsed;
  }
  std::string type;
  if (const std::string* t = resp->header("x-amzn-errortype")) type = t->substr(0, t->find(':'));
  if (type.empty() && parsed_ok) {
    if (const Value* t = parsed.find("__type")) {
      type = t->text();
      if (size_t hash = type.rfind('#'); hash != std::string::npos) type = type.substr(hash + 1);
    }
  }
  std::string message;
  if (parsed_ok) {
    if (const Value* m = parsed.find("message")) message = m->scalarText();
    if (const Value* m = parsed.find("Message"); message.empty() && m) message = m->scalarText();
  }
  if (message.empty() && !parsed_ok) message = resp->body.substr(0, 200);
  if (type.empty()) type = "HTTP " + std::to_string(resp->status);
  while (!message.empty() && (message.back() == '\n' || message.back() == '\r')) message.pop_back();
  return makeError(type + (message.empty() ? "" : ": " + message), resp->status);
}

std::string makeQuery(const std::vector<std::pair<std::string, std::string>>& params) {
  std::string q;
  for (const auto& [k, v] : params) {
    if (!q.empty()) q += '&';
    q += encodeSegment(k);
    q += '=';
    q += encodeSegment(v);
  }
  return q;
}

}  // namespace weft::cli
