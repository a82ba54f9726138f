#include "demo/http_client.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <optional>

namespace weft::demo {
namespace {

using Clock = std::chrono::steady_clock;

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

// Milliseconds left before `deadline` (at least 0), for poll().
int leftMs(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() < 0 ? 0 : static_cast<int>(left.count());
}

Status waitFor(int fd, short events, Clock::time_point deadline, const std::string& what) {
  for (;;) {
    pollfd p{fd, events, 0};
    int n = ::poll(&p, 1, leftMs(deadline));
    if (n > 0) return {};
    if (n == 0) return makeError(what + ": timed out", ETIMEDOUT);
    if (errno != EINTR) return makeError(what + ": " + std::strerror(errno), errno);
  }
}

Result<std::string> decodeChunked(std::string_view in) {
  std::string out;
  for (;;) {
    size_t eol = in.find("\r\n");
    if (eol == std::string_view::npos) return makeError("truncated chunked body");
    std::string_view size_line = in.substr(0, eol);
    if (size_t semi = size_line.find(';'); semi != std::string_view::npos)
      size_line = size_line.substr(0, semi);
    size_line = trim(size_line);
    if (size_line.empty() || size_line.size() > 8) return makeError("bad chunk size");
    size_t size = 0;
    for (char c : size_line) {
      int v = (c >= '0' && c <= '9')   ? c - '0'
              : (c >= 'a' && c <= 'f') ? c - 'a' + 10
              : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                       : -1;
      if (v < 0) return makeError("bad chunk size");
      size = size * 16 + static_cast<size_t>(v);
    }
    in.remove_prefix(eol + 2);
    if (size == 0) return out;
    if (in.size() < size + 2) return makeError("truncated chunked body");
    out.append(in.substr(0, size));
    in.remove_prefix(size + 2);
  }
}

}  // namespace

Result<HttpReply> parseResponse(std::string_view raw) {
  size_t head_end = raw.find("\r\n\r\n");
  if (head_end == std::string_view::npos)
    return makeError("incomplete response (" + std::to_string(raw.size()) + " bytes, no head)");
  std::string_view head = raw.substr(0, head_end);
  std::string_view rest = raw.substr(head_end + 4);
  size_t eol = head.find("\r\n");
  std::string_view status_line = head.substr(0, eol);
  if (status_line.substr(0, 7) != "HTTP/1." || status_line.size() < 12)
    return makeError("not an HTTP/1.x response: " + std::string(status_line.substr(0, 80)));
  HttpReply out;
  for (char c : status_line.substr(9, 3)) {
    if (c < '0' || c > '9') return makeError("bad status line: " + std::string(status_line));
    out.status = out.status * 10 + (c - '0');
  }
  std::string_view fields = eol == std::string_view::npos ? "" : head.substr(eol + 2);
  bool chunked = false;
  std::optional<size_t> length;
  while (!fields.empty()) {
    size_t e = fields.find("\r\n");
    std::string_view line = fields.substr(0, e);
    fields = e == std::string_view::npos ? "" : fields.substr(e + 2);
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string name = lower(trim(line.substr(0, colon)));
    std::string value(trim(line.substr(colon + 1)));
    if (name == "transfer-encoding" && lower(value).find("chunked") != std::string::npos)
      chunked = true;
    if (name == "content-length") length = std::strtoull(value.c_str(), nullptr, 10);
    out.headers.emplace_back(std::move(name), std::move(value));
  }
  if (chunked) {
    auto body = decodeChunked(rest);
    if (!body) return Unexpected<Error>{body.error()};
    out.body = std::move(*body);
  } else if (length) {
    if (rest.size() < *length)
      return makeError("truncated body: " + std::to_string(rest.size()) + " of " +
                       std::to_string(*length) + " bytes");
    out.body = std::string(rest.substr(0, *length));
  } else {
    out.body = std::string(rest);
  }
  return out;
}

Result<HttpReply> httpRequest(const std::string& host, uint16_t port, std::string_view method,
                              std::string_view target, const HeaderList& headers,
                              std::string_view body, std::chrono::milliseconds timeout) {
  const Clock::time_point deadline = Clock::now() + timeout;
  const std::string where = "http://" + host + ":" + std::to_string(port);
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  std::string literal = host == "localhost" ? "127.0.0.1" : host;
  if (literal.size() > 2 && literal.front() == '[') literal = literal.substr(1, literal.size() - 2);
  auto* v4 = reinterpret_cast<sockaddr_in*>(&addr);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&addr);
  if (::inet_pton(AF_INET, literal.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    addr_len = sizeof(sockaddr_in);
  } else if (::inet_pton(AF_INET6, literal.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    addr_len = sizeof(sockaddr_in6);
  } else {
    return makeError(where + ": not an IP address");
  }
  Fd fd(::socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return makeError(where + ": socket: " + std::strerror(errno), errno);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), addr_len) != 0) {
    if (errno != EINPROGRESS) return makeError(where + ": " + std::strerror(errno), errno);
    if (auto s = waitFor(fd.get(), POLLOUT, deadline, where + ": connect"); !s)
      return Unexpected<Error>{s.error()};
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) return makeError(where + ": " + std::strerror(err), err);
  }

  std::string wire = std::string(method) + " " + std::string(target) + " HTTP/1.1\r\n";
  bool has_host = false;
  for (const auto& [k, v] : headers) {
    has_host = has_host || lower(k) == "host";
    wire += k + ": " + v + "\r\n";
  }
  if (!has_host) wire += "host: " + host + ":" + std::to_string(port) + "\r\n";
  if (!body.empty() || method == "POST" || method == "PUT")
    wire += "content-length: " + std::to_string(body.size()) + "\r\n";
  wire += "connection: close\r\n\r\n";
  wire += body;
  size_t sent = 0;
  while (sent < wire.size()) {
    ssize_t n = ::send(fd.get(), wire.data() + sent, wire.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (auto s = waitFor(fd.get(), POLLOUT, deadline, where + ": send"); !s)
        return Unexpected<Error>{s.error()};
    } else {
      return makeError(where + ": send: " + std::strerror(errno), errno);
    }
  }

  std::string raw;
  char buf[16384];
  for (;;) {
    ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n > 0) {
      raw.append(buf, static_cast<size_t>(n));
      if (raw.size() > (64u << 20)) return makeError(where + ": answer over 64 MiB");
    } else if (n == 0) {
      break;
    } else if (errno == EAGAIN || errno == EINTR) {
      if (auto s = waitFor(fd.get(), POLLIN, deadline, where + ": reading the answer"); !s)
        return Unexpected<Error>{s.error()};
    } else {
      if (errno == ECONNRESET && !raw.empty()) break;
      return makeError(where + ": " + std::strerror(errno), errno);
    }
  }
  if (raw.empty()) return makeError(where + ": the connection closed without an answer");
  auto reply = parseResponse(raw);
  if (!reply) return makeError(where + ": " + reply.error().message);
  return reply;
}

}  // namespace weft::demo
