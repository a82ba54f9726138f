#pragma once
// AdminServer: the proxy's admin HTTP listener (default 127.0.0.1:9901), served on the main
// thread's loop, never on a worker. Read-only endpoints:
//   /stats/prometheus  Prometheus text format
//   /stats             one line per metric (?format=json for JSON)
//   /server_info       {"state": "PRE_INITIALIZING"|"LIVE"|"DRAINING", "version",
//                      "uptime_seconds", ..., and in agent mode "control_plane": {"connected",
//                      "addresses", "resource", "version_applied", "last_error"}}
//   /ready             200 "LIVE" when serving; 503 "PRE_INITIALIZING" before the first config
//                      (agent mode), 503 "DRAINING" while draining
//   /clusters          each cluster's endpoints with health, and with outlier detection on how
//                      many workers each is ejected ("outlier_ejected::n/N"; JSON
//                      "outlier_ejected_workers" beside the document's "workers")
//   /config_dump       the active config as JSON (private key paths redacted)

#include <list>
#include <memory>

#include "common/result.h"
#include "net/connection.h"
#include "weft/v1/config.pb.h"

namespace weft::proxy {

class Server;

class AdminServer final : public net::IoHandler {
 public:
  static Result<std::unique_ptr<AdminServer>> create(Server& server, net::EventLoop& loop,
                                                     const v1::Admin& config);
  ~AdminServer();
  const net::Address& address() const { return address_; }
  void onIoEvents(uint32_t events) override;

  // The response for one request (also used by tests). `target` is path plus query.
  struct Response {
    int status = 200;
    std::string content_type = "text/plain; charset=utf-8";
    std::string body;
  };
  Response handle(std::string_view method, std::string_view target);

 private:
  class Session;
  AdminServer(Server& server, net::EventLoop& loop, int fd);
  Server& server_;
  net::EventLoop& loop_;
  int fd_;
  net::Address address_;
  std::list<std::unique_ptr<Session>> sessions_;
};

}  // namespace weft::proxy
