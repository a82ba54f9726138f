#include "proxy/admin.h"

#include <sys/socket.h>
#include <unistd.h>

#include "common/json.h"
#include "http/http1/parser.h"
#include "proxy/config_defaults.h"
#include "proxy/config_loader.h"
#include "proxy/server.h"

namespace weft::proxy {

// One admin connection: parses requests, answers each, closes after the response.
class AdminServer::Session final : public net::ConnectionCallbacks {
 public:
  Session(AdminServer& admin, int fd)
      : admin_(admin),
        conn_(std::make_unique<net::Connection>(admin.loop_, fd, net::makePlainTransport(fd), this,
                                                false)) {}
  void onData(net::Connection& c) override {
    http1::ParseResult r = parser_.parse(c.input().view());
    if (r.needMore()) return;
    Response resp;
    if (r.failed()) {
      resp.status = r.error.status;
      resp.body = std::string(r.error.reason) + "\n";
    } else {
      const auto& h = parser_.head();
      resp = admin_.handle(h.method, h.target);
      if (h.method_id == http1::Method::kHead) resp.body.clear();
    }
    std::string out = "HTTP/1.1 " + std::to_string(resp.status) +
                      (resp.status == 200   ? " OK"
                       : resp.status == 404 ? " Not Found"
                       : resp.status == 503 ? " Service Unavailable"
                                            : " Error") +
                      "\r\ncontent-type: " + resp.content_type +
                      "\r\ncontent-length: " + std::to_string(resp.body.size()) +
                      "\r\nconnection: close\r\nserver: weft\r\n\r\n" + resp.body;
    c.write(out);
    c.closeAfterFlush([this] { finish(); });
  }
  void onClose(net::Connection&, net::CloseReason, std::string_view) override { finish(); }

  std::list<std::unique_ptr<Session>>::iterator self;

 private:
  void finish() {
    if (done_) return;
    done_ = true;
    struct Holder : net::Deferrable {
      std::unique_ptr<Session> p;
    };
    auto h = std::make_unique<Holder>();
    h->p = std::move(*self);
    admin_.sessions_.erase(self);
    admin_.loop_.deferDelete(std::move(h));
  }
  AdminServer& admin_;
  std::unique_ptr<net::Connection> conn_;
  http1::RequestParser parser_;
  bool done_ = false;
};

Result<std::unique_ptr<AdminServer>> AdminServer::create(Server& server, net::EventLoop& loop,
                                                         const v1::Admin& config) {
  auto addr = net::parseAddress(adminAddress(config), static_cast<uint16_t>(adminPort(config)));
  if (!addr) return makeError("admin.address: " + addr.error().message);
  auto fd = net::listenTcp(*addr);
  if (!fd) return makeError("admin: " + fd.error().message);
  return std::unique_ptr<AdminServer>(new AdminServer(server, loop, *fd));
}

AdminServer::AdminServer(Server& server, net::EventLoop& loop, int fd)
    : server_(server), loop_(loop), fd_(fd), address_(net::localAddress(fd)) {
  loop_.add(fd_, EPOLLIN, this);
}

AdminServer::~AdminServer() {
  sessions_.clear();
  loop_.remove(fd_);
  ::close(fd_);
}

void AdminServer::onIoEvents(uint32_t) {
  for (;;) {
    int fd = ::accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    sessions_.push_back(std::make_unique<Session>(*this, fd));
    sessions_.back()->self = std::prev(sessions_.end());
  }
}

AdminServer::Response AdminServer::handle(std::string_view method, std::string_view target) {
  Response r;
  std::string_view path = target.substr(0, target.find('?'));
  std::string_view query = target.size() > path.size() ? target.substr(path.size() + 1) : "";
  if (method != "GET" && method != "HEAD") {
    r.status = 405;
    r.body = "the admin interface is read-only; use GET\n";
    return r;
  }
  // Before the first config (agent mode) an empty snapshot stands in.
  static const Snapshot kEmpty{};
  const Snapshot& snap = server_.snapshot() ? *server_.snapshot() : kEmpty;
  const char* state = server_.draining()      ? "DRAINING"
                      : server_.initialized() ? "LIVE"
                                              : "PRE_INITIALIZING";
  if (path == "/stats/prometheus") {
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = server_.registry().renderPrometheus();
  } else if (path == "/stats") {
    if (query.find("format=json") != std::string_view::npos) {
      r.content_type = "application/json";
      r.body = server_.registry().renderJson();
    } else {
      r.body = server_.registry().renderText();
    }
  } else if (path == "/server_info") {
    auto up = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() -
                                                               server_.startTime());
    r.content_type = "application/json";
    r.body =
        "{\"state\": \"" + std::string(state) +
        "\", \"version\": \"" WEFT_VERSION "\", \"uptime_seconds\": " + std::to_string(up.count()) +
        ", \"node\": " + jsonString(snap.config.node()) +
        ", \"concurrency\": " + std::to_string(server_.concurrency()) +
        ", \"config_version\": " + std::to_string(snap.version);
    if (const Agent* agent = server_.agent()) {
      const AgentOptions& o = agent->options();
      std::string addresses;
      for (const auto& a : o.addresses)
        addresses += (addresses.empty() ? "" : ", ") + jsonString(a);
      r.body += ", \"control_plane\": {\"connected\": " +
                std::string(agent->connected() ? "true" : "false") + ", \"addresses\": [" +
                addresses + "], \"resource\": " + jsonString(o.resource) +
                ", \"version_applied\": " + std::to_string(agent->lastAppliedVersion()) +
                ", \"last_error\": " + jsonString(agent->lastError()) + "}";
    }
    r.body += "}\n";
  } else if (path == "/ready") {
    if (server_.draining() || !server_.initialized()) {
      r.status = 503;
      r.body = std::string(state) + "\n";
    } else {
      r.body = "LIVE\n";
    }
  } else if (path == "/clusters") {
    bool json = query.find("format=json") != std::string_view::npos;
    // Outlier ejection is per worker: a host shows on how many of the workers it is ejected,
    // counted from the flags of the cluster's OutlierBoard (relaxed loads; no worker is asked or
    // locked). After a host set change, a worker's flags move to the new set's board when that
    // worker applies the snapshot (its next loop round).
    const std::string workers = std::to_string(server_.concurrency());
    std::string out = json ? "{\"workers\": " + workers + ", \"clusters\": [" : "";
    bool first_c = true;
    for (const auto& c : snap.config.clusters()) {
      const ClusterInfo* ci = snap.cluster(c.name());
      if (!ci) continue;
      if (json) {
        out += std::string(first_c ? "" : ", ") + "{\"name\": " + jsonString(c.name()) +
               ", \"hosts\": [";
      }
      first_c = false;
      bool first_h = true;
      // Bound to ci->hosts by construction; checked so that positions can never mismatch.
      const upstream::OutlierBoard* board =
          ci->outlier_board && ci->outlier_board->hosts() == ci->hosts ? ci->outlier_board.get()
                                                                       : nullptr;
      for (size_t i = 0; i < ci->hosts->size(); ++i) {
        const upstream::Host& h = (*ci->hosts)[i];
        const char* health = h.healthy() ? "healthy" : "unhealthy";
        std::string ejected_on = board ? std::to_string(board->ejectedOn(i)) : "";
        if (json) {
          out += std::string(first_h ? "" : ", ") + "{\"address\": \"" + h.addressString() +
                 "\", \"hostname\": " + jsonString(h.hostname()) + ", \"health\": \"" + health +
                 "\"";
          if (board) out += ", \"outlier_ejected_workers\": " + ejected_on;
          out += "}";
        } else {
          out += c.name() + "::" + h.addressString() + "::health_flags::" + health + "\n";
          if (!h.hostname().empty())
            out += c.name() + "::" + h.addressString() + "::hostname::" + h.hostname() + "\n";
          if (board) {
            out += c.name() + "::" + h.addressString() + "::outlier_ejected::" + ejected_on + "/" +
                   workers + "\n";
          }
        }
        first_h = false;
      }
      if (json) out += "]}";
      if (!json && ci->hosts->empty()) out += c.name() + "::no_endpoints\n";
    }
    if (json) {
      out += "]}\n";
      r.content_type = "application/json";
    }
    r.body = std::move(out);
  } else if (path == "/config_dump") {
    r.content_type = "application/json";
    r.body = configToJson(snap.config, true);
    if (r.body.empty() || r.body.back() != '\n') r.body.push_back('\n');
  } else if (path == "/" || path.empty()) {
    r.body =
        "weft-proxy admin\n  /stats/prometheus\n  /stats\n  /server_info\n  /ready\n"
        "  /clusters\n  /config_dump\n";
  } else {
    r.status = 404;
    r.body = "no admin endpoint " + std::string(path) + "; see / for the list\n";
  }
  return r;
}

}  // namespace weft::proxy
