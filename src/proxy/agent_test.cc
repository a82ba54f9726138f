// The agent against a real grpc++ ConfigStream server in the same process (the test, and only
// the test, links grpc++). The agent runs on a net::EventLoop driven by this thread; the gRPC
// server runs on its own threads; every wait is a condition with a deadline.

#include "proxy/agent.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <condition_variable>
#include <deque>
#include <fstream>
#include <functional>
#include <mutex>
#include <sstream>

#include "common/log.h"
#include "net/event_loop.h"
#include "net/socket.h"
#include "net/tls/tls_test_util.h"
#include "weft/v1/stream.grpc.pb.h"

namespace weft::proxy {
namespace {

using net::tls::testing::TempDir;

// ---- a scriptable ConfigStream server ------------------------------------------------------

class TestStreamServer {
 public:
  struct Options {
    std::shared_ptr<grpc::ServerCredentials> creds = grpc::InsecureServerCredentials();
  };

  TestStreamServer() : TestStreamServer(Options()) {}
  explicit TestStreamServer(Options o) : service_(*this) {
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", o.creds, &port_);
    b.RegisterService(&service_);
    // Accept the agent's keepalive PINGs (every keepalive_interval with no traffic); gRPC's
    // default policy allows one per 5 minutes and answers more with GOAWAY(too_many_pings).
    b.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10);
    b.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
    server_ = b.BuildAndStart();
  }
  ~TestStreamServer() { shutdown(); }

  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

  void shutdown() {
    if (!server_) return;
    server_->Shutdown(std::chrono::system_clock::now());
    server_->Wait();
    server_.reset();
  }

  // Every new stream is ended with this status right after its Hello.
  void refuseWith(grpc::StatusCode code, std::string message) {
    std::lock_guard lk(mu_);
    refuse_ = grpc::Status(code, std::move(message));
  }
  void acceptStreams() {
    std::lock_guard lk(mu_);
    refuse_ = grpc::Status::OK;
  }

  // Sends on the current stream; false if there is none.
  bool send(const v1::ServerMessage& m);
  bool sendConfig(uint64_t version, const v1::ProxyConfig& c) {
    v1::ServerMessage m;
    m.mutable_config()->set_version(version);
    *m.mutable_config()->mutable_config() = c;
    m.mutable_config()->set_hash(meshconfig::configHash(c));
    return send(m);
  }
  // Ends the current stream with `status`.
  void finish(grpc::Status status);

  std::vector<v1::Hello> hellos() const {
    std::lock_guard lk(mu_);
    return hellos_;
  }
  std::vector<v1::Ack> acks() const {
    std::lock_guard lk(mu_);
    return acks_;
  }
  std::vector<v1::Nack> nacks() const {
    std::lock_guard lk(mu_);
    return nacks_;
  }
  std::vector<v1::HealthReport> healths() const {
    std::lock_guard lk(mu_);
    return healths_;
  }
  int goodbyes() const {
    std::lock_guard lk(mu_);
    return goodbyes_;
  }
  std::vector<std::string> csrs() const {
    std::lock_guard lk(mu_);
    return csrs_;
  }
  bool streamOpen() const {
    std::lock_guard lk(mu_);
    return current_ != nullptr;
  }

 private:
  class Reactor final : public grpc::ServerBidiReactor<v1::ProxyMessage, v1::ServerMessage> {
   public:
    explicit Reactor(TestStreamServer& s) : s_(s) { StartRead(&in_); }

    void OnReadDone(bool ok) override {
      std::lock_guard lk(s_.mu_);
      if (!ok) {
        finishLocked(grpc::Status::OK);
        return;
      }
      if (in_.has_hello()) {
        s_.hellos_.push_back(in_.hello());
        if (!s_.refuse_.ok()) {
          finishLocked(s_.refuse_);
          return;
        }
        s_.current_ = this;
      } else if (in_.has_ack()) {
        s_.acks_.push_back(in_.ack());
      } else if (in_.has_nack()) {
        s_.nacks_.push_back(in_.nack());
      } else if (in_.has_health()) {
        s_.healths_.push_back(in_.health());
      } else if (in_.has_goodbye()) {
        ++s_.goodbyes_;
      } else if (in_.has_certificate_request()) {
        s_.csrs_.push_back(in_.certificate_request().csr_pem());
      }
      StartRead(&in_);
    }
    void OnWriteDone(bool) override {
      std::lock_guard lk(s_.mu_);
      writing_ = false;
      pumpLocked();
    }
    void OnDone() override {
      {
        std::lock_guard lk(s_.mu_);
        if (s_.current_ == this) s_.current_ = nullptr;
      }
      delete this;
    }

    void sendLocked(const v1::ServerMessage& m) {
      if (finishing_) return;
      out_.push_back(m);
      pumpLocked();
    }
    void finishLocked(grpc::Status st) {
      if (finishing_) return;
      finishing_ = true;
      finish_status_ = std::move(st);
      if (s_.current_ == this) s_.current_ = nullptr;
      pumpLocked();
    }

   private:
    void pumpLocked() {
      if (writing_ || finished_) return;
      if (!out_.empty()) {
        writing_ = true;
        current_out_ = out_.front();
        out_.pop_front();
        StartWrite(&current_out_);
      } else if (finishing_) {
        finished_ = true;
        Finish(finish_status_);
      }
    }

    TestStreamServer& s_;
    v1::ProxyMessage in_;
    std::deque<v1::ServerMessage> out_;
    v1::ServerMessage current_out_;
    bool writing_ = false;
    bool finishing_ = false;
    bool finished_ = false;
    grpc::Status finish_status_;
  };

  class Service final : public v1::ConfigStream::CallbackService {
   public:
    explicit Service(TestStreamServer& s) : s_(s) {}
    grpc::ServerBidiReactor<v1::ProxyMessage, v1::ServerMessage>* Stream(
        grpc::CallbackServerContext*) override {
      return new Reactor(s_);
    }

   private:
    TestStreamServer& s_;
  };

  // Recursive: a reaction may run inline from a Start*/Finish call made under the lock.
  mutable std::recursive_mutex mu_;
  Service service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  grpc::Status refuse_ = grpc::Status::OK;
  Reactor* current_ = nullptr;
  std::vector<v1::Hello> hellos_;
  std::vector<v1::Ack> acks_;
  std::vector<v1::Nack> nacks_;
  std::vector<v1::HealthReport> healths_;
  int goodbyes_ = 0;
  std::vector<std::string> csrs_;
};

bool TestStreamServer::send(const v1::ServerMessage& m) {
  std::lock_guard lk(mu_);
  if (!current_) return false;
  current_->sendLocked(m);
  return true;
}

void TestStreamServer::finish(grpc::Status status) {
  std::lock_guard lk(mu_);
  if (current_) current_->finishLocked(std::move(status));
}

// ---- helpers --------------------------------------------------------------------------------

constexpr std::chrono::seconds kDeadline{10};

// Runs the loop until `cond` holds; false when the deadline passed first.
bool runUntil(net::EventLoop& loop, const std::function<bool()>& cond,
              std::chrono::milliseconds deadline = kDeadline) {
  auto end = std::chrono::steady_clock::now() + deadline;
  while (!cond()) {
    if (std::chrono::steady_clock::now() > end) return false;
    loop.runOnce(milliseconds(5));
  }
  return true;
}

v1::ProxyConfig makeConfig(std::string node, std::vector<std::pair<std::string, int>> endpoints) {
  v1::ProxyConfig c;
  c.set_node(std::move(node));
  v1::Cluster* cl = c.add_clusters();
  cl->set_name("cds_egress_m_b_http_8080");
  for (auto& [ip, port] : endpoints) {
    v1::Endpoint* e = cl->add_endpoints();
    e->set_address(ip);
    e->set_port(static_cast<uint32_t>(port));
  }
  v1::Cluster* dns = c.add_clusters();
  dns->set_name("dns_cluster");
  dns->set_type(v1::Cluster::DNS);
  dns->add_endpoints()->set_address("example.test");
  return c;
}

class AgentTest : public ::testing::Test {
 protected:
  AgentOptions options(std::vector<std::string> addresses) {
    AgentOptions o;
    o.addresses = std::move(addresses);
    o.resource = "mesh/m/virtualNode/a";
    o.token = "tok-123";
    o.insecure = true;
    o.state_dir = dir_.path() + "/state";
    o.host = "host-1";
    o.network = "net-1";
    o.backoff_base = milliseconds(20);
    o.backoff_cap = milliseconds(200);
    return o;
  }

  std::unique_ptr<Agent> makeAgent(AgentOptions o) {
    return std::make_unique<Agent>(
        loop_, std::move(o),
        [this](const v1::ProxyConfig& c) -> Status {
          applied_.push_back(c);
          if (c.node() == "refuse-me") return makeError("listeners[x]: port 99999 is invalid");
          return {};
        },
        registry_);
  }

  uint64_t counter(std::string_view name) { return registry_.counter(name)->value(); }

  TempDir dir_;
  net::EventLoop loop_;
  stats::Registry registry_{1};
  std::vector<v1::ProxyConfig> applied_;
};

TEST(ResourceLabels, NameTheMeshAndTheNodeOrGateway) {
  auto b = meshconfig::parseProxyResource(
      "arn:aws:appmesh:eu-west-1:123456789012:mesh/m2/virtualGateway/g");
  ASSERT_TRUE(b) << b.error().message;
  stats::Labels want{{"appmesh_mesh", "m2"}, {"appmesh_virtual_gateway", "g"}};
  EXPECT_EQ(resourceLabels(*b), want);
  auto n = meshconfig::parseProxyResource("mesh/m1/virtualNode/n1");
  ASSERT_TRUE(n) << n.error().message;
  want = {{"appmesh_mesh", "m1"}, {"appmesh_virtual_node", "n1"}};
  EXPECT_EQ(resourceLabels(*n), want);
}

TEST_F(AgentTest, HelloCarriesWhoTheProxyIs) {
  TestStreamServer server;
  v1::ProxyConfig running = makeConfig("mesh/m/virtualNode/a", {{"10.0.0.1", 80}});
  auto agent = makeAgent(options({server.address()}));
  agent->setRunning(running);
  agent->start();
  ASSERT_TRUE(runUntil(loop_, [&] { return server.hellos().size() == 1 && agent->connected(); }))
      << "expected one Hello; got " << server.hellos().size() << ", last error '"
      << agent->lastError() << "'";
  v1::Hello h = server.hellos()[0];
  EXPECT_EQ(h.resource(), "mesh/m/virtualNode/a");
  EXPECT_EQ(h.token(), "tok-123");
  EXPECT_EQ(h.host(), "host-1");
  EXPECT_EQ(h.network(), "net-1");
  EXPECT_EQ(h.proxy_version(), WEFT_VERSION);
  EXPECT_EQ(h.running_hash(), meshconfig::configHash(running));
  EXPECT_EQ(registry_.gauge("weft_control_plane_connected")->value(), 1);
}

TEST_F(AgentTest, ConfigUpdateIsAppliedStoredAndAcked) {
  TestStreamServer server;
  auto agent = makeAgent(options({server.address()}));
  agent->start();
  ASSERT_TRUE(runUntil(loop_, [&] { return server.streamOpen(); }));
  v1::ProxyConfig cfg = makeConfig("mesh/m/virtualNode/a", {{"10.0.0.1", 80}});
  ASSERT_TRUE(server.sendConfig(1, cfg));
  ASSERT_TRUE(runUntil(loop_, [&] { return server.acks().size() == 1; }))
      << "expected an Ack; nacks: " << server.nacks().size() << ", error '" << agent->lastError()
      << "'";
  EXPECT_EQ(server.acks()[0].version(), 1u);
  ASSERT_EQ(applied_.size(), 1u);
  EXPECT_EQ(applied_[0].SerializeAsString(), cfg.SerializeAsString());
  EXPECT_EQ(agent->lastAppliedVersion(), 1u);
  EXPECT_EQ(counter("weft_control_plane_update_success_total"), 1u);

  // Stored (mode 0600) and read back by the next run.
  std::string path = dir_.path() + "/state/config.yaml";
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0) << "expected the stored config at " << path;
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto next = makeAgent(options({server.address()}));
  auto stored = next->loadStored();
  ASSERT_TRUE(stored.has_value()) << "expected loadStored() to read " << path;
  EXPECT_EQ(stored->SerializeAsString(), cfg.SerializeAsString());

  // The same config again (as after a reconnect): acknowledged without a rebuild.
  ASSERT_TRUE(server.sendConfig(2, cfg));
  ASSERT_TRUE(runUntil(loop_, [&] { return server.acks().size() == 2; }));
  EXPECT_EQ(server.acks()[1].version(), 2u);
  EXPECT_EQ(applied_.size(), 1u) << "an unchanged config must not be rebuilt";
  EXPECT_EQ(agent->lastAppliedVersion(), 2u);

  // The server ends the stream: the agent comes back with the running config's hash.
  server.finish(grpc::Status::OK);
  ASSERT_TRUE(runUntil(loop_, [&] { return server.hellos().size() == 2; }))
      << "expected a new stream after the server ended one; error '" << agent->lastError() << "'";
  EXPECT_EQ(server.hellos()[1].running_hash(), meshconfig::configHash(cfg));
}

TEST_F(AgentTest, StoredConfigHashIsSentInHelloOfTheNextRun) {
  TestStreamServer server;
  v1::ProxyConfig cfg = makeConfig("mesh/m/virtualNode/a", {{"10.0.0.1", 80}});
  {
    auto agent = makeAgent(options({server.address()}));
    agent->start();
    ASSERT_TRUE(runUntil(loop_, [&] { return server.streamOpen(); }));
    ASSERT_TRUE(server.sendConfig(1, cfg));
    ASSERT_TRUE(runUntil(loop_, [&] { return server.acks().size() == 1; }));
    agent->stop();
  }
  ASSERT_TRUE(runUntil(loop_, [&] { return !server.streamOpen(); }))
      << "expected stop() to end the stream";
  auto agent = makeAgent(options({server.address()}));
  auto stored = agent->loadStored();
  ASSERT_TRUE(stored.has_value());
  agent->setRunning(*stored);
  agent->start();
  ASSERT_TRUE(runUntil(loop_, [&] { return server.hellos().size() == 2 && server.streamOpen(); }));
  EXPECT_EQ(server.hellos()[1].running_hash(), meshconfig::configHash(cfg));
  applied_.clear();
  ASSERT_TRUE(server.sendConfig(1, cfg));
  ASSERT_TRUE(runUntil(loop_, [&] { return server.acks().size() == 2; }));
  EXPECT_TRUE(applied_.empty()) << "the stored (running) config must not be rebuilt";
}

TEST_F(AgentTest, CorruptStoredConfigIsIgnored) {
  auto agent = makeAgent(options({"127.0.0.1:1"}));
  EXPECT_FALSE(agent->loadStored().has_value()) << "no file yet";
  ::mkdir((dir_.path() + "/state").c_str(), 0700);
  std::string path = dir_.path() + "/state/config.yaml";
  net::tls::testing::writeFile(path, "# sha256 00\n{\"listeners\": [ {\"name\": ");
  EXPECT_FALSE(agent->loadStored().has_value()) << "truncated JSON must be ignored";
  net::tls::testing::writeFile(path, "# sha256 0000\n{\"node\": \"x\"}\n");
  EXPECT_FALSE(agent->loadStored().has_value()) << "a hash mismatch must be ignored";
  v1::ProxyConfig ok;
  ok.set_node("x");
  net::tls::testing::writeFile(path,
                               "# sha256 " + meshconfig::configHash(ok) + "\n{\"node\": \"x\"}\n");
  auto loaded = agent->loadStored();
  ASSERT_TRUE(loaded.has_value()) << "a well-formed file with the right hash must load";
  EXPECT_EQ(loaded->node(), "x");
}

TEST_F(AgentTest, ApplyErrorIsNackedWithTheReason) {
  TestStreamServer server;
  auto agent = makeAgent(options({server.address()}));
  agent->start();
  ASSERT_TRUE(runUntil(loop_, [&] { return server.streamOpen(); }));
  v1::ProxyConfig good = makeConfig("mesh/m/virtualNode/a", {{"10.0.0.1", 80}});
  ASSERT_TRUE(server.sendConfig(1, good));
  ASSERT_TRUE(runUntil(loop_, [&] { return server.acks().size() == 1; }));
  ASSERT_TRUE(server.sendConfig(2, makeConfig("refuse-me", {})));
  ASSERT_TRUE(runUntil(loop_, [&] { return server.nacks().size() == 1; }))
      << "expected a Nack; acks " << server.acks().size();
  EXPECT_EQ(server.nacks()[0].version(), 2u);
  EXPECT_EQ(server.nacks()[0].reason(), "listeners[x]: port 99999 is invalid");
  EXPECT_EQ(agent->lastAppliedVersion(), 1u);
  EXPECT_EQ(counter("weft_control_plane_update_rejected_total"), 1u);
  EXPECT_NE(agent->lastError().find("port 99999"), std::string::npos) << agent->lastError();
  // The stored config is still the applied one.
  auto stored = agent->loadStored();
  ASSERT_TRUE(stored.has_value());
  EXPECT_EQ(stored->node(), good.node());
}

TEST_F(AgentTest, EndpointsUpdateAppliesOnTopOfTheLastConfig) {
  TestStreamServer server;
  auto agent = makeAgent(options({server.address()}));
  agent->start();
  ASSERT_TRUE(runUntil(loop_, [&] { return server.streamOpen(); }));
  v1::ProxyConfig v1cfg = makeConfig("mesh/m/virtualNode/a", {{"10.0.0.1", 80}});
  ASSERT_TRUE(server.sendConfig(1, v1cfg));
  ASSERT_TRUE(runUntil(loop_, [&] { return server.acks().size() == 1; }));

  v1::ProxyConfig want = makeConfig("mesh/m/virtualNode/a", {{"10.0.0.2", 81}, {"10.0.0.3", 82}});
  v1::ServerMessage m;
  v1::EndpointsUpdate* u = m.mutable_endpoints();
  u->set_version(2);
  v1::ClusterEndpoints* ce = u->add_clusters();
  ce->set_cluster("cds_egress_m_b_http_8080");
  *ce->mutable_endpoints() = want.clusters(0).endpoints();
  u->set_hash(meshconfig::configHash(want));
  ASSERT_TRUE(server.send(m));
  ASSERT_TRUE(runUntil(loop_, [&] { return server.acks().size() == 2; }))
      << "expected Ack 2; nacks " << server.nacks().size() << " "
      << (server.nacks().empty() ? "" : server.nacks()[0].reason());
  EXPECT_EQ(server.acks()[1].version(), 2u);
  ASSERT_EQ(applied_.size(), 2u);
  EXPECT_EQ(applied_[1].SerializeAsString(), want.SerializeAsString());

  // A delta whose result is not what the server says: refused, asking for a full config.
  u->set_version(3);
  u->set_hash(std::string(64, '0'));
  ASSERT_TRUE(server.send(m));
  ASSERT_TRUE(runUntil(loop_, [&] { return server.nacks().size() == 1; }));
  EXPECT_EQ(server.nacks()[0].version(), 3u);
  EXPECT_EQ(server.nacks()[0].reason(),
            "endpoints delta does not apply to version 2; send a full config");
  // A delta naming a DNS cluster: refused.
  u->set_version(4);
  u->mutable_clusters(0)->set_cluster("dns_cluster");
  u->clear_hash();
  ASSERT_TRUE(server.send(m));
  ASSERT_TRUE(runUntil(loop_, [&] { return server.nacks().size() == 2; }));
  EXPECT_NE(server.nacks()[1].reason().find("not a STATIC cluster"), std::string::npos)
      << server.nacks()[1].reason();
  EXPECT_EQ(applied_.size(), 2u);
}

TEST_F(AgentTest, RefusalIsReportedAndRetriedWithBackoff) {
  TestStreamServer server;
  server.refuseWith(grpc::StatusCode::PERMISSION_DENIED,
                    "token is bound to mesh/m/virtualNode/b, not mesh/m/virtualNode/a");
  auto agent = makeAgent(options({server.address()}));
  agent->start();
  ASSERT_TRUE(runUntil(loop_, [&] { return server.hellos().size() >= 2; }))
      << "expected the agent to try again after the refusal; hellos " << server.hellos().size()
      << ", error '" << agent->lastError() << "'";
  EXPECT_NE(agent->lastError().find("PERMISSION_DENIED"), std::string::npos) << agent->lastError();
  EXPECT_NE(agent->lastError().find("token is bound to mesh/m/virtualNode/b"), std::string::npos)
      << agent->lastError();
  // Once accepted, a config flows and the error clears.
  server.acceptStreams();
  ASSERT_TRUE(runUntil(loop_, [&] { return server.streamOpen(); }));
  ASSERT_TRUE(server.sendConfig(1, makeConfig("mesh/m/virtualNode/a", {})));
  ASSERT_TRUE(runUntil(loop_, [&] { return server.acks().size() == 1; }));
  EXPECT_EQ(agent->lastError(), "");
  EXPECT_TRUE(agent->connected());
}

TEST_F(AgentTest, FailsOverToTheNextAddress) {
  auto first = std::make_unique<TestStreamServer>();
  TestStreamServer second;
  auto agent = makeAgent(options({first->address(), second.address()}));
  agent->start();
  ASSERT_TRUE(runUntil(loop_, [&] { return first->streamOpen(); }));
  ASSERT_TRUE(first->sendConfig(1, makeConfig("mesh/m/virtualNode/a", {{"10.0.0.1", 80}})));
  ASSERT_TRUE(runUntil(loop_, [&] { return first->acks().size() == 1; }));
  first->shutdown();
  ASSERT_TRUE(runUntil(loop_, [&] { return second.streamOpen(); }))
      << "expected a stream to the second address; error '" << agent->lastError() << "'";
  EXPECT_EQ(second.hellos()[0].running_hash(),
            meshconfig::configHash(makeConfig("mesh/m/virtualNode/a", {{"10.0.0.1", 80}})));
  EXPECT_TRUE(runUntil(loop_, [&] { return agent->connected(); }));
  EXPECT_EQ(registry_.gauge("weft_control_plane_connected")->value(), 1);
}

TEST_F(AgentTest, UnreachableAddressesAreRetried) {
  // A port nobody listens on, then a real server: round robin reaches it.
  int fd = *net::listenTcp(*net::parseAddress("127.0.0.1", 0));
  std::string dead = "127.0.0.1:" + std::to_string(net::localAddress(fd).port());
  ::close(fd);
  TestStreamServer server;
  auto agent = makeAgent(options({dead, server.address()}));
  agent->start();
  ASSERT_TRUE(runUntil(loop_, [&] { return server.streamOpen(); }))
      << "error '" << agent->lastError() << "'";
}

TEST_F(AgentTest, SilentServerIsDetectedByKeepalive) {
  // Accepts TCP (the kernel does) but never says a word: no SETTINGS, no PING ACK.
  int fd = *net::listenTcp(*net::parseAddress("127.0.0.1", 0));
  std::string addr = "127.0.0.1:" + std::to_string(net::localAddress(fd).port());
  AgentOptions o = options({addr});
  o.keepalive_interval = milliseconds(50);
  o.keepalive_timeout = milliseconds(50);
  auto agent = makeAgent(o);
  agent->start();
  ASSERT_TRUE(
      runUntil(loop_, [&] { return agent->lastError().find("after a PING") != std::string::npos; }))
      << "expected the dead connection to be noticed; error '" << agent->lastError() << "'";
  EXPECT_FALSE(agent->connected());
  ::close(fd);
}

TEST_F(AgentTest, KeepaliveKeepsAnIdleStreamOpen) {
  TestStreamServer server;
  AgentOptions o = options({server.address()});
  o.keepalive_interval = milliseconds(30);
  o.keepalive_timeout = milliseconds(2000);
  auto agent = makeAgent(o);
  agent->start();
  ASSERT_TRUE(runUntil(loop_, [&] { return server.streamOpen(); }));
  // Idle for many keepalive intervals (PINGs go out, their ACKs keep it alive): same stream.
  auto until = std::chrono::steady_clock::now() + milliseconds(600);
  runUntil(loop_, [&] { return std::chrono::steady_clock::now() > until; });
  EXPECT_EQ(server.hellos().size(), 1u)
      << "expected the idle stream to stay up; error '" << agent->lastError() << "'";
  EXPECT_TRUE(agent->connected());
}

TEST_F(AgentTest, TlsVerifiesTheServerAgainstTheCaFile) {
  TempDir pki_dir;
  net::tls::testing::TestPki pki(pki_dir);
  auto ca = pki.makeCa("ca", "control plane ca");
  auto other_ca = pki.makeCa("other", "someone else");
  net::tls::testing::LeafSpec spec;
  spec.common_name = "weft stream";
  spec.dns = {"localhost"};
  spec.ip = {"127.0.0.1"};
  auto leaf = pki.issue(ca, "stream", spec);

  grpc::SslServerCredentialsOptions so;
  so.pem_key_cert_pairs.push_back({leaf.key_pem, leaf.cert_pem});
  TestStreamServer::Options opts;
  opts.creds = grpc::SslServerCredentials(so);
  TestStreamServer server(opts);

  AgentOptions o = options({server.address()});
  o.insecure = false;
  o.ca_file = ca.cert_file;
  auto agent = makeAgent(o);
  agent->start();
  ASSERT_TRUE(runUntil(loop_, [&] { return server.streamOpen(); }))
      << "error '" << agent->lastError() << "'";
  ASSERT_TRUE(server.sendConfig(1, makeConfig("mesh/m/virtualNode/a", {})));
  ASSERT_TRUE(runUntil(loop_, [&] { return server.acks().size() == 1; }));
  agent->stop();

  // The wrong CA: the handshake fails and no Hello reaches the server.
  o.ca_file = other_ca.cert_file;
  auto wrong = makeAgent(o);
  wrong->start();
  ASSERT_TRUE(runUntil(loop_, [&] { return !wrong->lastError().empty(); }));
  EXPECT_NE(wrong->lastError().find("TLS handshake"), std::string::npos) << wrong->lastError();
  EXPECT_EQ(server.hellos().size(), 1u);
}

}  // namespace
}  // namespace weft::proxy

namespace weft::proxy {
namespace {

std::string describe(const v1::HealthReport& r) {
  std::string out;
  for (const v1::PortHealth& p : r.ports())
    out += std::to_string(p.port()) + "=" + v1::PortHealth::State_Name(p.state()) + " ";
  return out;
}

TEST_F(AgentTest, HelloCarriesTheAppAddresses) {
  TestStreamServer server;
  AgentOptions o = options({server.address()});
  o.app_addresses = {"10.0.0.5", "fd00::5"};
  auto agent = makeAgent(o);
  agent->start();
  ASSERT_TRUE(runUntil(loop_, [&] { return server.hellos().size() == 1; })) << agent->lastError();
  v1::Hello h = server.hellos()[0];
  ASSERT_EQ(h.addresses_size(), 2);
  EXPECT_EQ(h.addresses(0), "10.0.0.5");
  EXPECT_EQ(h.addresses(1), "fd00::5");
}

TEST_F(AgentTest, HelloWithoutAppAddressesCarriesTheHostsOwn) {
  TestStreamServer server;
  auto agent = makeAgent(options({server.address()}));
  agent->start();
  ASSERT_TRUE(runUntil(loop_, [&] { return server.hellos().size() == 1; })) << agent->lastError();
  v1::Hello h = server.hellos()[0];
  std::vector<std::string> got(h.addresses().begin(), h.addresses().end());
  EXPECT_EQ(got, hostAddresses());
  for (const std::string& a : got) {
    EXPECT_NE(a.rfind("127.", 0), 0u) << "loopback address " << a << " in Hello";
    EXPECT_NE(a, "::1");
  }
}

TEST_F(AgentTest, HealthIsReportedAfterHelloOnChangeAndPeriodically) {
  TestStreamServer server;
  AgentOptions o = options({server.address()});
  o.health_poll_interval = milliseconds(10);
  o.health_report_interval = milliseconds(300);
  auto agent = makeAgent(o);
  AppHealth app = AppHealth::kHealthy;
  agent->setHealthSource([&] {
    return std::vector<std::pair<uint32_t, AppHealth>>{{8080, app}, {9090, AppHealth::kUnknown}};
  });
  agent->start();
  ASSERT_TRUE(runUntil(loop_, [&] { return server.healths().size() == 1; }))
      << "expected a report right after Hello; " << agent->lastError();
  EXPECT_EQ(describe(server.healths()[0]), "8080=HEALTHY 9090=UNKNOWN ");
  app = AppHealth::kUnhealthy;
  agent->healthChanged();
  ASSERT_TRUE(runUntil(
      loop_, [&] { return server.healths().size() == 2; }, milliseconds(250)))
      << "expected a report on the change, before the periodic one; got "
      << server.healths().size();
  EXPECT_EQ(describe(server.healths()[1]), "8080=UNHEALTHY 9090=UNKNOWN ");
  ASSERT_TRUE(runUntil(loop_, [&] { return server.healths().size() == 3; }))
      << "expected the unchanged state again after health_report_interval";
  EXPECT_EQ(describe(server.healths()[2]), "8080=UNHEALTHY 9090=UNKNOWN ");
  // A change is also noticed by polling, without healthChanged().
  app = AppHealth::kHealthy;
  ASSERT_TRUE(runUntil(loop_, [&] { return server.healths().size() == 4; }));
  EXPECT_EQ(describe(server.healths()[3]), "8080=HEALTHY 9090=UNKNOWN ");
}

TEST_F(AgentTest, WithoutAHealthSourceEmptyReportsKeepTheProxyFresh) {
  TestStreamServer server;
  AgentOptions o = options({server.address()});
  o.health_poll_interval = milliseconds(10);
  o.health_report_interval = milliseconds(100);
  auto agent = makeAgent(o);
  agent->start();
  ASSERT_TRUE(runUntil(loop_, [&] { return server.healths().size() >= 2; }))
      << "expected periodic (empty) reports; got " << server.healths().size();
  EXPECT_EQ(server.healths()[0].ports_size(), 0);
}

TEST_F(AgentTest, StopSaysGoodbyeBeforeClosing) {
  TestStreamServer server;
  auto agent = makeAgent(options({server.address()}));
  agent->start();
  ASSERT_TRUE(runUntil(loop_, [&] { return agent->connected() && server.streamOpen(); }))
      << agent->lastError();
  agent->stop();
  ASSERT_TRUE(runUntil(loop_, [&] { return server.goodbyes() == 1 && !server.streamOpen(); }))
      << "expected a Goodbye, then the stream closed; goodbyes " << server.goodbyes();
}

}  // namespace
}  // namespace weft::proxy

// ---- mesh identity ---------------------------------------------------------------------------

namespace weft::proxy {
namespace {

using net::tls::testing::Issued;
using net::tls::testing::TestPki;

// Signs `csr_pem`'s key with `ca` for [now + from, now + to] seconds, with URI SAN `uri`.
std::string signCsr(const Issued& ca, const std::string& csr_pem, int64_t from, int64_t to,
                    const std::string& uri) {
  BIO* b = BIO_new_mem_buf(csr_pem.data(), static_cast<int>(csr_pem.size()));
  X509_REQ* req = PEM_read_bio_X509_REQ(b, nullptr, nullptr, nullptr);
  BIO_free(b);
  EXPECT_NE(req, nullptr) << "not a CSR: " << csr_pem;
  if (req == nullptr) return "";
  EXPECT_EQ(X509_REQ_verify(req, X509_REQ_get0_pubkey(req)), 1) << "the CSR's signature";
  X509* cert = X509_new();
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), static_cast<long>(std::rand()));
  X509_set_issuer_name(cert, X509_get_subject_name(ca.cert.get()));
  X509_set_subject_name(cert, X509_get_subject_name(ca.cert.get()));
  X509_time_adj_ex(X509_getm_notBefore(cert), 0, static_cast<long>(from), nullptr);
  X509_time_adj_ex(X509_getm_notAfter(cert), 0, static_cast<long>(to), nullptr);
  X509_set_pubkey(cert, X509_REQ_get0_pubkey(req));
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, ca.cert.get(), cert, nullptr, nullptr, 0);
  std::string san = "URI:" + uri;
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, NID_subject_alt_name, san.c_str());
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  X509_sign(cert, ca.key.get(), EVP_sha256());
  BIO* out = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(out, cert);
  char* data = nullptr;
  long n = BIO_get_mem_data(out, &data);
  std::string pem(data, static_cast<size_t>(n));
  BIO_free(out);
  X509_free(cert);
  X509_REQ_free(req);
  return pem;
}

// The URI SANs a CSR asks for.
std::vector<std::string> csrUris(const std::string& csr_pem) {
  std::vector<std::string> out;
  BIO* b = BIO_new_mem_buf(csr_pem.data(), static_cast<int>(csr_pem.size()));
  X509_REQ* req = PEM_read_bio_X509_REQ(b, nullptr, nullptr, nullptr);
  BIO_free(b);
  if (req == nullptr) return out;
  STACK_OF(X509_EXTENSION)* exts = X509_REQ_get_extensions(req);
  auto* gens =
      static_cast<GENERAL_NAMES*>(X509V3_get_d2i(exts, NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens); ++i) {
    const GENERAL_NAME* g = sk_GENERAL_NAME_value(gens, i);
    if (g->type == GEN_URI)
      out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(g->d.ia5)),
                       static_cast<size_t>(ASN1_STRING_length(g->d.ia5)));
  }
  GENERAL_NAMES_free(gens);
  sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
  X509_REQ_free(req);
  return out;
}

// A config whose inbound listener and one cluster use the mesh identity.
v1::ProxyConfig identityConfig(const std::string& node) {
  v1::ProxyConfig c = makeConfig(node, {{"10.0.0.1", 80}});
  v1::Listener* l = c.add_listeners();
  l->set_name("lds_ingress_0.0.0.0_15000");
  l->mutable_tls()->set_mode(v1::ListenerTls::STRICT);
  l->mutable_tls()->mutable_certificate()->set_mesh_identity(true);
  l->mutable_tls()->mutable_validation()->set_trust_bundle_pem("ROOT");
  v1::Cluster& cl = *c.mutable_clusters(0);
  cl.mutable_tls()->mutable_certificate()->set_mesh_identity(true);
  cl.mutable_tls()->mutable_validation()->set_trust_bundle_pem("ROOT");
  return c;
}

class AgentIdentityTest : public AgentTest {
 protected:
  AgentIdentityTest() : pki_(pki_dir_), ca_(pki_.makeCa("mesh-ca", "mesh identity ca")) {}

  // Answers the `n`th CSR with a certificate valid [now + from, now + to].
  bool answer(TestStreamServer& server, size_t n, int64_t from, int64_t to) {
    v1::ServerMessage m;
    v1::IdentityUpdate* u = m.mutable_identity();
    u->set_certificate_chain_pem(signCsr(ca_, server.csrs().at(n), from, to, kSpiffe));
    u->set_trust_bundle_pem(ca_.cert_pem);
    u->set_spiffe_id(kSpiffe);
    return server.send(m);
  }
  static const v1::TlsCertificate& listenerCert(const v1::ProxyConfig& c) {
    return c.listeners(0).tls().certificate();
  }

  static constexpr const char* kSpiffe = "spiffe://m/virtualNode/a";
  TempDir pki_dir_;
  TestPki pki_;
  Issued ca_;
};

TEST_F(AgentIdentityTest, ConfigWaitsForTheIdentityThenRunsWithIt) {
  TestStreamServer server;
  auto agent = makeAgent(options({server.address()}));
  agent->start();
  ASSERT_TRUE(runUntil(loop_, [&] { return server.csrs().size() == 1; }))
      << "expected a CSR right after Hello; " << agent->lastError();
  EXPECT_EQ(csrUris(server.csrs()[0]), std::vector<std::string>{kSpiffe})
      << "the CSR asks for the proxy's own SPIFFE ID";
  v1::ProxyConfig cfg = identityConfig("mesh/m/virtualNode/a");
  ASSERT_TRUE(server.sendConfig(1, cfg));
  // Not applied (and not acknowledged) without the certificate: its version waits.
  ASSERT_TRUE(runUntil(loop_, [&] { return server.healths().size() >= 1; }));
  EXPECT_TRUE(applied_.empty()) << "a config that uses the identity needs the certificate first";
  ASSERT_TRUE(answer(server, 0, -60, 3600));
  ASSERT_TRUE(runUntil(loop_, [&] { return server.acks().size() == 1; }))
      << "expected the waiting version acknowledged once the certificate came; nacks "
      << server.nacks().size() << ", error '" << agent->lastError() << "'";
  ASSERT_EQ(applied_.size(), 1u);
  const v1::TlsCertificate& cert = listenerCert(applied_[0]);
  EXPECT_NE(cert.certificate_chain_pem().find("BEGIN CERTIFICATE"), std::string::npos);
  auto key = net::tls::parsePrivateKey(cert.private_key_pem(), "filled key");
  ASSERT_TRUE(key.has_value()) << "the proxy's own key is filled in";
  EXPECT_TRUE(net::tls::inspectIdentityCertificate(cert.certificate_chain_pem(), key->get()))
      << "the certificate is for the key of the CSR";
  EXPECT_EQ(applied_[0].clusters(0).tls().certificate().certificate_chain_pem(),
            cert.certificate_chain_pem())
      << "clusters present the same identity";
  EXPECT_EQ(agent->identity(), kSpiffe);
  EXPECT_GT(agent->identityExpiresAt(), 0);
  EXPECT_EQ(registry_.gauge("weft_identity_certificate_expiry_timestamp_seconds")->value(),
            agent->identityExpiresAt());
  EXPECT_EQ(counter("weft_identity_certificate_renewals_total"), 1u);

  // Kept 0600 in the state directory, apart from the stored config (which holds no key).
  std::string path = dir_.path() + "/state/identity.pem";
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0) << "expected the identity at " << path;
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  std::ifstream stored_cfg(dir_.path() + "/state/config.yaml");
  std::stringstream text;
  text << stored_cfg.rdbuf();
  EXPECT_EQ(text.str().find("PRIVATE KEY"), std::string::npos)
      << "the stored config must not carry the identity key";

  // A restart serves the stored config with the stored identity and asks for nothing.
  agent->stop();
  ASSERT_TRUE(runUntil(loop_, [&] { return !server.streamOpen(); }));
  auto next = makeAgent(options({server.address()}));
  auto stored = next->loadStored();
  ASSERT_TRUE(stored.has_value()) << "the stored config with the stored identity";
  EXPECT_EQ(listenerCert(*stored).certificate_chain_pem(), cert.certificate_chain_pem());
  next->setRunning(*stored);
  next->start();
  ASSERT_TRUE(runUntil(loop_, [&] { return server.hellos().size() == 2 && server.streamOpen(); }));
  EXPECT_EQ(server.hellos()[1].running_hash(), meshconfig::configHash(cfg))
      << "the running hash is the compiled config's, not the filled one's";
  ASSERT_TRUE(server.sendConfig(1, cfg));
  ASSERT_TRUE(runUntil(loop_, [&] { return server.acks().size() == 2; }));
  EXPECT_EQ(server.csrs().size(), 1u) << "a valid stored identity is not asked for again";
}

TEST_F(AgentIdentityTest, RenewsAtHalfLifeAndSwapsTheCertificateIn) {
  TestStreamServer server;
  auto agent = makeAgent(options({server.address()}));
  agent->start();
  ASSERT_TRUE(runUntil(loop_, [&] { return server.csrs().size() == 1; }));
  ASSERT_TRUE(server.sendConfig(1, identityConfig("mesh/m/virtualNode/a")));
  // Valid [now - 1 s, now + 3 s]: half-life one second from now.
  ASSERT_TRUE(answer(server, 0, -1, 3));
  ASSERT_TRUE(runUntil(loop_, [&] { return server.acks().size() == 1; }));
  ASSERT_TRUE(runUntil(loop_, [&] { return server.csrs().size() == 2; }))
      << "expected a renewal CSR at half-life";
  EXPECT_NE(server.csrs()[1], server.csrs()[0]) << "a fresh key for each certificate";
  ASSERT_TRUE(answer(server, 1, -1, 3600));
  ASSERT_TRUE(runUntil(loop_, [&] { return applied_.size() == 2; }))
      << "expected the running config re-applied with the new certificate";
  EXPECT_NE(listenerCert(applied_[1]).certificate_chain_pem(),
            listenerCert(applied_[0]).certificate_chain_pem());
  EXPECT_NE(listenerCert(applied_[1]).private_key_pem(),
            listenerCert(applied_[0]).private_key_pem());
  EXPECT_EQ(server.acks().size(), 1u) << "a new certificate is not a new version";
  EXPECT_EQ(counter("weft_identity_certificate_renewals_total"), 2u);
}

TEST_F(AgentIdentityTest, RefusalIsRetriedAndNackedThenServed) {
  TestStreamServer server;
  AgentOptions o = options({server.address()});
  o.identity_renewal.retry_base = milliseconds(50);
  auto agent = makeAgent(o);
  agent->start();
  ASSERT_TRUE(runUntil(loop_, [&] { return server.csrs().size() == 1; }));
  ASSERT_TRUE(server.sendConfig(1, identityConfig("mesh/m/virtualNode/a")));
  v1::ServerMessage refusal;
  refusal.mutable_identity()->set_error("mesh identities are off for mesh \"m\"");
  ASSERT_TRUE(server.send(refusal));
  ASSERT_TRUE(runUntil(loop_, [&] { return server.nacks().size() == 1; }))
      << "the waiting version is NACKed with the refusal";
  EXPECT_NE(server.nacks()[0].reason().find("mesh identities are off"), std::string::npos)
      << server.nacks()[0].reason();
  EXPECT_EQ(counter("weft_identity_certificate_renewal_failures_total"), 1u);
  ASSERT_TRUE(runUntil(loop_, [&] { return server.csrs().size() == 2; }))
      << "expected the request retried after the backoff";
  ASSERT_TRUE(answer(server, 1, -60, 3600));
  ASSERT_TRUE(runUntil(loop_, [&] { return server.acks().size() == 1; }))
      << "the waiting version runs once the certificate comes";
  EXPECT_EQ(applied_.size(), 1u);
}

TEST_F(AgentIdentityTest, CertificateForAnotherKeyIsRefused) {
  TestStreamServer server;
  AgentOptions o = options({server.address()});
  o.identity_renewal.retry_base = milliseconds(50);
  auto agent = makeAgent(o);
  agent->start();
  ASSERT_TRUE(runUntil(loop_, [&] { return server.csrs().size() == 1; }));
  auto other = net::tls::generateIdentityKey().value();
  std::string foreign_csr = net::tls::makeIdentityCsr(other.get(), kSpiffe).value();
  v1::ServerMessage m;
  m.mutable_identity()->set_certificate_chain_pem(signCsr(ca_, foreign_csr, -60, 3600, kSpiffe));
  ASSERT_TRUE(server.send(m));
  ASSERT_TRUE(runUntil(loop_, [&] { return server.csrs().size() == 2; }))
      << "a certificate that is not for the proxy's key is not used; it asks again";
  EXPECT_EQ(agent->identity(), "");
  EXPECT_EQ(counter("weft_identity_certificate_renewal_failures_total"), 1u);
}

}  // namespace
}  // namespace weft::proxy
