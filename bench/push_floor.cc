// weft-push-floor: the reference point of bench/push --floor (docs/benchmarks.md, "Config push").
//
// A bare grpc++ ConfigStream server that does nothing but the transport work of a push: it
// accepts every Hello (no token check, no compilation), sends version 1 of one fixed config, and
// on "bump" from stdin sends the next version of the same config to every stream. Same gRPC
// library, same TLS, same message as `weft server`, so the time weft-push-load measures against
// it is what gRPC and the machine cost, and the difference to weft's is weft's own.
//
// Control protocol (stdout/stdin, one line each):
//   out "port <p>"      listening
//   in  "bump"          queue version v+1 for every stream (each stream: one write in flight, a
//                       newer version replaces a pending one, as in weft's push server)
//   out "bumped <k>"    queued for k streams
//   in  EOF             shut down
//
// Threading: reactions on gRPC threads; Floor::mu_ guards the stream set, each Stream's mu_ its
// write state. A Stream deletes itself in OnDone after leaving the set.

#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <sys/resource.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>

#include "weft/v1/stream.grpc.pb.h"

namespace weft::bench {
namespace {

using v1::ProxyMessage;
using v1::ServerMessage;

std::optional<std::string> readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class Floor;

class Stream final : public grpc::ServerBidiReactor<ProxyMessage, ServerMessage> {
 public:
  explicit Stream(Floor& floor) : floor_(floor) { StartRead(&in_); }

  // Queues `version` (sent at once when no write is in flight, else replaces the pending one).
  void send(uint64_t version);

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnDone() override;

 private:
  void writeLocked(uint64_t version);

  Floor& floor_;
  ProxyMessage in_;
  ServerMessage out_;
  std::mutex mu_;
  bool hello_ = false;
  bool writing_ = false;
  bool finishing_ = false;
  uint64_t pending_ = 0;  // 0: none
};

class Floor final : public v1::ConfigStream::CallbackService {
 public:
  explicit Floor(v1::ConfigUpdate config) : config_(std::move(config)) {}

  grpc::ServerBidiReactor<ProxyMessage, ServerMessage>* Stream(
      grpc::CallbackServerContext*) override {
    return new bench::Stream(*this);
  }

  // A Hello arrived: the stream gets the current version.
  void join(bench::Stream* s) {
    uint64_t v = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      streams_.insert(s);
      v = version_;
    }
    s->send(v);
  }
  void leave(bench::Stream* s) {
    std::lock_guard<std::mutex> lock(mu_);
    streams_.erase(s);
  }
  size_t bump() {
    std::lock_guard<std::mutex> lock(mu_);
    ++version_;
    for (auto* s : streams_) s->send(version_);
    return streams_.size();
  }
  const v1::ConfigUpdate& config() const { return config_; }

 private:
  const v1::ConfigUpdate config_;  // version unset; each write sets its own
  std::mutex mu_;
  std::set<bench::Stream*> streams_;
  uint64_t version_ = 1;
};

void Stream::send(uint64_t version) {
  std::lock_guard<std::mutex> lock(mu_);
  if (finishing_) return;
  if (writing_) {
    pending_ = version;
    return;
  }
  writeLocked(version);
}

void Stream::writeLocked(uint64_t version) {
  out_.Clear();
  *out_.mutable_config() = floor_.config();
  out_.mutable_config()->set_version(version);
  writing_ = true;
  StartWrite(&out_);
}

void Stream::OnReadDone(bool ok) {
  if (!ok) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!finishing_) {
      finishing_ = true;
      Finish(grpc::Status::OK);
    }
    return;
  }
  // Join before the next read: the stream cannot finish (and be deleted) while joining.
  if (!hello_ && in_.kind_case() == ProxyMessage::kHello) {
    hello_ = true;
    floor_.join(this);
  }
  StartRead(&in_);
}

void Stream::OnWriteDone(bool ok) {
  std::lock_guard<std::mutex> lock(mu_);
  writing_ = false;
  if (!ok || finishing_) return;
  if (pending_ != 0) {
    uint64_t v = pending_;
    pending_ = 0;
    writeLocked(v);
  }
}

void Stream::OnDone() {
  floor_.leave(this);
  delete this;
}

constexpr const char* kUsage =
    R"(usage: weft-push-floor [--listen HOST:PORT] (--cert F --key F | --insecure) [--config-json F]

A bare gRPC ConfigStream server for bench/push --floor: accepts any Hello, sends one fixed config
(--config-json: a ProxyConfig in protobuf JSON, e.g. from GET /weft/v1/proxy-config; default
empty) as version 1, and version v+1 to every stream on "bump" from stdin.
)";

}  // namespace
}  // namespace weft::bench

int main(int argc, char** argv) {
  std::string listen = "127.0.0.1:0", cert, key, config_json;
  bool insecure = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::fputs(weft::bench::kUsage, stdout);
      return 0;
    }
    if (a == "--insecure") {
      insecure = true;
      continue;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "weft-push-floor: %s needs a value (see --help)\n", a.c_str());
      return 2;
    }
    std::string v = argv[++i];
    if (a == "--listen") {
      listen = v;
    } else if (a == "--cert") {
      cert = v;
    } else if (a == "--key") {
      key = v;
    } else if (a == "--config-json") {
      config_json = v;
    } else {
      std::fprintf(stderr, "weft-push-floor: unknown option %s (see --help)\n", a.c_str());
      return 2;
    }
  }
  if (!insecure && (cert.empty() || key.empty())) {
    std::fprintf(stderr, "weft-push-floor: --cert and --key are required (or --insecure)\n");
    return 2;
  }
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }

  weft::v1::ConfigUpdate update;
  if (!config_json.empty()) {
    auto text = weft::bench::readFile(config_json);
    if (!text) {
      std::fprintf(stderr, "weft-push-floor: cannot read %s\n", config_json.c_str());
      return 2;
    }
    google::protobuf::util::JsonParseOptions opts;
    opts.ignore_unknown_fields = true;
    auto st = google::protobuf::util::JsonStringToMessage(*text, update.mutable_config(), opts);
    if (!st.ok()) {
      std::fprintf(stderr, "weft-push-floor: %s is not a ProxyConfig in JSON: %s\n",
                   config_json.c_str(), st.ToString().c_str());
      return 2;
    }
  }
  update.set_hash(std::string(64, '0'));

  std::shared_ptr<grpc::ServerCredentials> creds;
  if (insecure) {
    creds = grpc::InsecureServerCredentials();
  } else {
    auto c = weft::bench::readFile(cert), k = weft::bench::readFile(key);
    if (!c || !k) {
      std::fprintf(stderr, "weft-push-floor: cannot read --cert or --key\n");
      return 2;
    }
    grpc::SslServerCredentialsOptions ssl;
    ssl.pem_key_cert_pairs.push_back({*k, *c});
    creds = grpc::SslServerCredentials(ssl);
  }
  weft::bench::Floor floor(std::move(update));
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen, creds, &port);
  builder.RegisterService(&floor);
  auto server = builder.BuildAndStart();
  if (!server || port == 0) {
    std::fprintf(stderr, "weft-push-floor: cannot listen on %s\n", listen.c_str());
    return 1;
  }
  std::printf("port %d\n", port);
  std::fflush(stdout);
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line == "bump") {
      size_t k = floor.bump();
      std::printf("bumped %zu\n", k);
      std::fflush(stdout);
    }
  }
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  std::_Exit(0);
}
