#include "control/push/push_server.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <openssl/x509v3.h>

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "control/ca/pki.h"
#include "control/compile/mesh_policy.h"
#include "control/model/appmesh_test_support.h"
#include "control/push/config_delta.h"
#include "control/store/notifying_store.h"
#include "meshconfig/meshconfig.h"
#include "weft/v1/stream.grpc.pb.h"

namespace weft::control::push {
namespace {

using appmesh::testing::summary;

constexpr std::chrono::seconds kDeadline{20};

std::string nodeSpec(int port, const std::string& backends = "") {
  return R"({"listeners":[{"portMapping":{"port":)" + std::to_string(port) +
         R"(,"protocol":"http"}}],"serviceDiscovery":{"dns":{"hostname":"n.local"}})" +
         (backends.empty() ? "" : R"(,"backends":)" + backends) + "}";
}

// Polls `cond` until it holds or `kDeadline` passes (a condition wait with a deadline).
bool eventually(const std::function<bool()>& cond) {
  auto deadline = std::chrono::steady_clock::now() + kDeadline;
  while (!cond()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

// One proxy's side of the stream: a blocking grpc++ client whose whole call has a deadline, so
// every read waits at most that long.
class Proxy {
 public:
  explicit Proxy(uint16_t port) {
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::ConfigStream::NewStub(channel_);
    context_.set_deadline(std::chrono::system_clock::now() + kDeadline);
    stream_ = stub_->Stream(&context_);
  }
  ~Proxy() {
    if (finished_) return;
    context_.TryCancel();
    (void)stream_->Finish();
  }

  bool hello(const std::string& resource, const std::string& token) {
    v1::ProxyMessage m;
    m.mutable_hello()->set_resource(resource);
    m.mutable_hello()->set_token(token);
    m.mutable_hello()->set_host("host-a");
    m.mutable_hello()->set_network("net-1");
    m.mutable_hello()->set_proxy_version("test");
    return stream_->Write(m);
  }
  bool write(const v1::ProxyMessage& m) { return stream_->Write(m); }
  void cancel() { context_.TryCancel(); }
  bool ack(uint64_t version) {
    v1::ProxyMessage m;
    m.mutable_ack()->set_version(version);
    return stream_->Write(m);
  }
  bool nack(uint64_t version, const std::string& reason) {
    v1::ProxyMessage m;
    m.mutable_nack()->set_version(version);
    m.mutable_nack()->set_reason(reason);
    return stream_->Write(m);
  }
  // The next message, or nullopt when the stream ended (or the deadline passed).
  std::optional<v1::ServerMessage> read() {
    v1::ServerMessage m;
    if (!stream_->Read(&m)) return std::nullopt;
    // Track what a proxy would run.
    if (m.has_config()) {
      running_ = m.config().config();
      hash_ = m.config().hash();
    } else if (m.has_endpoints()) {
      EXPECT_TRUE(meshconfig::applyEndpoints(running_, m.endpoints())) << m.DebugString();
      hash_ = m.endpoints().hash();
    }
    return m;
  }
  // The status the server ended the stream with (after read() answered nullopt).
  grpc::Status finish() {
    if (finished_) return status_;
    finished_ = true;
    stream_->WritesDone();
    status_ = stream_->Finish();
    return status_;
  }
  const v1::ProxyConfig& running() const { return running_; }
  const std::string& hash() const { return hash_; }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::ConfigStream::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::ProxyMessage, v1::ServerMessage>> stream_;
  v1::ProxyConfig running_;
  std::string hash_;
  bool finished_ = false;
  grpc::Status status_;
};

uint64_t versionOf(const v1::ServerMessage& m) {
  return m.has_config() ? m.config().version() : m.endpoints().version();
}

class PushServerTest : public ::testing::Test {
 protected:
  PushServerTest() {
    notifying.setListener([this](const std::vector<std::string>& keys) {
      if (server) server->onStoreChanged(keys);
    });
  }

  void SetUp() override {
    ASSERT_EQ(summary(call("PUT", "/v20190125/meshes", R"({"meshName":"m"})")), "200");
    ASSERT_EQ(summary(createNode("n", nodeSpec(8080))), "200");
    startServer(std::chrono::milliseconds(20));
  }
  void startServer(std::chrono::milliseconds coalesce_window) {
    if (server) server->stop();
    PushOptions options;
    options.address = "127.0.0.1:0";
    options.insecure = true;
    options.coalesce_window = coalesce_window;
    options.registrar = registrar_;
    options.stale_after = std::chrono::milliseconds(1234);
    options.identities = identities_;
    server = std::make_unique<PushServer>(compiler, tokens, time, options);
    auto port = server->start();
    ASSERT_TRUE(port) << port.error().message;
    port_ = *port;
  }
  void TearDown() override {
    if (server) server->stop();
  }

  ApiResponse call(std::string method, std::string path, std::string body = "") {
    ApiRequest r;
    r.method = std::move(method);
    r.path = std::move(path);
    r.body = std::move(body);
    r.account_id = "111122223333";
    return api.handle(r);
  }
  ApiResponse createNode(const std::string& name, const std::string& spec) {
    return call("PUT", "/v20190125/meshes/m/virtualNodes",
                R"({"virtualNodeName":")" + name + R"(","spec":)" + spec + "}");
  }
  ApiResponse updateNode(const std::string& name, const std::string& spec) {
    return call("PUT", "/v20190125/meshes/m/virtualNodes/" + name, R"({"spec":)" + spec + "}");
  }
  std::string token(const std::string& resource) {
    auto t = tokens.create(resource, 0);
    EXPECT_TRUE(t) << t.error().message;
    return t ? *t : "";
  }
  std::string expectedHash(const std::string& node) {
    auto r = compiler.compile({appmesh::Kind::kVirtualNode, "m", node});
    EXPECT_TRUE(r) << r.error().message;
    return r ? compile::configHash(r->config) : "";
  }
  // Connects as node `node` with a valid token and reads version 1.
  std::unique_ptr<Proxy> connected(const std::string& node = "n") {
    auto p = std::make_unique<Proxy>(port_);
    EXPECT_TRUE(p->hello("mesh/m/virtualNode/" + node, token("mesh/m/virtualNode/" + node)));
    auto m = p->read();
    EXPECT_TRUE(m.has_value()) << "expected version 1, the stream ended: "
                               << p->finish().error_message();
    if (m) {
      EXPECT_TRUE(m->has_config()) << m->DebugString();
      EXPECT_EQ(m->config().version(), 1u);
    }
    return p;
  }
  // The refusal status of a Hello.
  grpc::Status refused(const std::string& resource, const std::string& tok) {
    Proxy p(port_);
    p.hello(resource, tok);
    auto m = p.read();
    EXPECT_FALSE(m.has_value()) << "expected the stream to be refused, got " << m->DebugString();
    return p.finish();
  }
  std::optional<ProxyStatus> statusOf(const std::string& resource) {
    for (const ProxyStatus& s : server->proxies())
      if (s.resource == resource) return s;
    return std::nullopt;
  }

  MemoryStore store;
  NotifyingStore notifying{store};
  SimTimeSource time;
  appmesh::AppMeshApi api{notifying, time, appmesh::Options{}};
  compile::Compiler compiler{notifying, compile::CompileOptions{}};
  Tokens tokens{notifying, time};
  std::unique_ptr<PushServer> server;
  uint16_t port_ = 0;
  InstanceRegistrar* registrar_ = nullptr;
  IdentitySigner* identities_ = nullptr;
};

// Records what the push server tells the registry.
class FakeRegistrar final : public InstanceRegistrar {
 public:
  void proxyConnected(const ConnectedProxy& proxy) override {
    std::lock_guard lock(mu_);
    events_.push_back("connected " + std::to_string(proxy.stream_id) + " " + proxy.who.resource() +
                      " " + proxy.host + " [" + join(proxy.addresses) + "]");
    last_stream_ = proxy.stream_id;
  }
  void proxyHealth(uint64_t stream_id,
                   const std::vector<std::pair<uint32_t, AppHealth>>& ports) override {
    std::lock_guard lock(mu_);
    std::vector<std::string> parts;
    for (auto& [port, h] : ports)
      parts.push_back(std::to_string(port) + "=" +
                      (h == AppHealth::kHealthy     ? "HEALTHY"
                       : h == AppHealth::kUnhealthy ? "UNHEALTHY"
                                                    : "UNKNOWN"));
    events_.push_back("health " + std::to_string(stream_id) + " [" + join(parts) + "]");
  }
  void proxyDisconnected(uint64_t stream_id, bool clean) override {
    std::lock_guard lock(mu_);
    events_.push_back("disconnected " + std::to_string(stream_id) + (clean ? " clean" : " lost"));
  }
  void tick(std::chrono::milliseconds stale_after) override {
    std::lock_guard lock(mu_);
    ++ticks_;
    stale_after_ = stale_after;
  }
  std::vector<std::string> events() const {
    std::lock_guard lock(mu_);
    return events_;
  }
  uint64_t lastStream() const {
    std::lock_guard lock(mu_);
    return last_stream_;
  }
  int ticks() const {
    std::lock_guard lock(mu_);
    return ticks_;
  }
  std::chrono::milliseconds staleAfter() const {
    std::lock_guard lock(mu_);
    return stale_after_;
  }

 private:
  static std::string join(const std::vector<std::string>& v) {
    std::string out;
    for (const auto& s : v) out += (out.empty() ? "" : ",") + s;
    return out;
  }
  mutable std::mutex mu_;
  std::vector<std::string> events_;
  uint64_t last_stream_ = 0;
  int ticks_ = 0;
  std::chrono::milliseconds stale_after_{0};
};

class PushServerRegistrarTest : public PushServerTest {
 protected:
  void SetUp() override {
    registrar_ = &fake;
    PushServerTest::SetUp();
  }
  std::string joined() const {
    std::string out;
    for (const auto& e : fake.events()) out += e + "\n";
    return out;
  }
  FakeRegistrar fake;
};

TEST_F(PushServerRegistrarTest, HelloReportsAndGoodbyeReachTheRegistrarInOrder) {
  Proxy p(port_);
  v1::ProxyMessage hello;
  hello.mutable_hello()->set_resource("mesh/m/virtualNode/n");
  hello.mutable_hello()->set_token(token("mesh/m/virtualNode/n"));
  hello.mutable_hello()->set_host("host-a");
  hello.mutable_hello()->add_addresses("10.0.0.7");
  hello.mutable_hello()->add_addresses("fd00::7");
  ASSERT_TRUE(p.write(hello));
  ASSERT_TRUE(p.read().has_value());
  v1::ProxyMessage report;
  v1::PortHealth* ph = report.mutable_health()->add_ports();
  ph->set_port(8080);
  ph->set_state(v1::PortHealth::UNHEALTHY);
  ASSERT_TRUE(p.write(report));
  v1::ProxyMessage bye;
  bye.mutable_goodbye();
  ASSERT_TRUE(p.write(bye));
  EXPECT_TRUE(p.finish().ok());
  ASSERT_TRUE(eventually([&] { return fake.events().size() == 3; }))
      << "expected connected, health, disconnected; got:\n"
      << joined();
  uint64_t id = fake.lastStream();
  std::vector<std::string> want = {
      "connected " + std::to_string(id) + " mesh/m/virtualNode/n host-a [10.0.0.7,fd00::7]",
      "health " + std::to_string(id) + " [8080=UNHEALTHY]",
      "disconnected " + std::to_string(id) + " clean"};
  EXPECT_EQ(fake.events(), want) << joined();
}

TEST_F(PushServerRegistrarTest, StreamWithoutGoodbyeEndsLost) {
  {
    auto p = connected();
    p->cancel();
  }
  ASSERT_TRUE(eventually([&] { return fake.events().size() == 2; })) << joined();
  EXPECT_EQ(fake.events()[1], "disconnected " + std::to_string(fake.lastStream()) + " lost");
  // A plain half-close (an older proxy) is not a Goodbye either.
  auto q = connected();
  EXPECT_TRUE(q->finish().ok());
  ASSERT_TRUE(eventually([&] { return fake.events().size() == 4; })) << joined();
  EXPECT_EQ(fake.events()[3], "disconnected " + std::to_string(fake.lastStream()) + " lost");
}

TEST_F(PushServerRegistrarTest, RefusedHelloIsNotReported) {
  EXPECT_EQ(refused("mesh/m/virtualNode/n", "wft_bogus").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  auto p = connected();  // a later good one is
  ASSERT_TRUE(eventually([&] { return fake.events().size() == 1; })) << joined();
  EXPECT_EQ(fake.events()[0].rfind("connected ", 0), 0u) << joined();
}

TEST_F(PushServerRegistrarTest, RegistrarIsTickedWithStaleAfter) {
  ASSERT_TRUE(eventually([&] { return fake.ticks() >= 2; }))
      << "expected the push thread to tick the registrar about once a second; ticks "
      << fake.ticks();
  EXPECT_EQ(fake.staleAfter(), std::chrono::milliseconds(1234));
}

TEST_F(PushServerTest, HelloGetsVersionOneAndAckIsRecorded) {
  Proxy p(port_);
  ASSERT_TRUE(p.hello("mesh/m/virtualNode/n", token("mesh/m/virtualNode/n")));
  auto m = p.read();
  ASSERT_TRUE(m.has_value()) << "expected a ConfigUpdate; stream ended with "
                             << p.finish().error_message();
  ASSERT_TRUE(m->has_config()) << m->DebugString();
  EXPECT_EQ(m->config().version(), 1u);
  EXPECT_EQ(m->config().config().node(), "mesh/m/virtualNode/n");
  EXPECT_EQ(m->config().hash(), compile::configHash(m->config().config()));
  EXPECT_EQ(m->config().hash(), expectedHash("n"));
  ASSERT_TRUE(p.ack(1));
  ASSERT_TRUE(eventually([&] {
    auto s = statusOf("mesh/m/virtualNode/n");
    return s && s->version_acked == 1;
  })) << "expected proxies() to show version 1 acked";
  auto s = *statusOf("mesh/m/virtualNode/n");
  EXPECT_EQ(s.version_sent, 1u);
  EXPECT_EQ(s.host, "host-a");
  EXPECT_EQ(s.network, "net-1");
  EXPECT_EQ(s.proxy_version, "test");
  EXPECT_NE(s.peer.find("127.0.0.1"), std::string::npos) << s.peer;
  EXPECT_EQ(s.connected_at, 1'800'000'000);
}

TEST_F(PushServerTest, StoreChangeGivesVersionTwo) {
  auto p = connected();
  std::string v1_hash = p->hash();
  ASSERT_EQ(summary(updateNode("n", nodeSpec(9090))), "200");
  auto m = p->read();
  ASSERT_TRUE(m.has_value()) << "expected version 2; stream ended: " << p->finish().error_message();
  ASSERT_TRUE(m->has_config()) << m->DebugString();
  EXPECT_EQ(m->config().version(), 2u);
  EXPECT_NE(m->config().hash(), v1_hash);
  EXPECT_EQ(m->config().hash(), expectedHash("n"));
}

TEST_F(PushServerTest, UnrelatedChangeSendsNothing) {
  auto p = connected();
  auto p2 = connected("n");  // a second proxy of the same node
  ASSERT_EQ(summary(createNode("other", nodeSpec(7070))), "200");
  ASSERT_EQ(summary(updateNode("other", nodeSpec(7071))), "200");
  ASSERT_EQ(summary(updateNode("n", nodeSpec(9191))), "200");
  // The next message must be the one for n's change, numbered 2 (the other node's writes,
  // if they reached n's config at all, would have to change its hash to be sent).
  auto m = p->read();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(p->hash(), expectedHash("n"));
  EXPECT_EQ(versionOf(*m), 2u) << m->DebugString();
  ASSERT_TRUE(p2->read().has_value());
  EXPECT_EQ(p2->hash(), expectedHash("n"));
}

TEST_F(PushServerTest, BurstIsCoalesced) {
  // A window far longer than the burst takes, however slow the machine (TSan): the first write
  // is compiled at once, the other 99 together when the window ends.
  startServer(std::chrono::seconds(2));
  auto p = connected();
  for (int i = 0; i < 100; ++i)
    ASSERT_EQ(summary(updateNode("n", nodeSpec(10000 + i))), "200") << "update " << i;
  std::string want = expectedHash("n");
  int versions = 0;
  while (p->hash() != want) {
    auto m = p->read();
    ASSERT_TRUE(m.has_value()) << "stream ended before the last config, after " << versions
                               << " versions";
    ++versions;
    EXPECT_EQ(versionOf(*m), static_cast<uint64_t>(versions + 1)) << "versions must be 2, 3, ...";
  }
  EXPECT_LE(versions, 3) << "expected a burst of 100 writes to give a few versions";
  EXPECT_GE(versions, 1);
}

// A proxy that does not read meanwhile still ends on the latest config, in order, and does not
// hold up another proxy. (Small configs fit in the transport's buffers, so how many versions the
// slow one sees is up to gRPC's flow control: at most one per change.)
TEST_F(PushServerTest, SlowProxyEndsOnTheLatestConfig) {
  auto slow = connected();
  auto fast = connected();
  // The slow proxy reads nothing while the fast one follows every version.
  for (int i = 0; i < 20; ++i) {
    ASSERT_EQ(summary(updateNode("n", nodeSpec(11000 + i))), "200");
    std::string want = expectedHash("n");
    while (fast->hash() != want) ASSERT_TRUE(fast->read().has_value()) << "fast proxy, round " << i;
  }
  std::string want = expectedHash("n");
  int versions = 0;
  while (slow->hash() != want) {
    auto m = slow->read();
    ASSERT_TRUE(m.has_value()) << "slow proxy after " << versions << " versions";
    ++versions;
    EXPECT_EQ(versionOf(*m), static_cast<uint64_t>(versions + 1));
  }
  EXPECT_LE(versions, 20) << "at most one version per change";
}

TEST_F(PushServerTest, EndpointsOnlyChangeIsAnEndpointsUpdate) {
  auto ipNode = [](const std::string& ip) {
    return R"({"listeners":[{"portMapping":{"port":8080,"protocol":"http"}}],)"
           R"("serviceDiscovery":{"dns":{"hostname":")" +
           ip + R"("}}})";
  };
  ASSERT_EQ(summary(createNode("pay", ipNode("10.0.0.1"))), "200");
  ASSERT_EQ(summary(call("PUT", "/v20190125/meshes/m/virtualServices",
                         R"({"virtualServiceName":"pay.local","spec":{"provider":)"
                         R"({"virtualNode":{"virtualNodeName":"pay"}}}})")),
            "200");
  ASSERT_EQ(summary(updateNode(
                "n", nodeSpec(8080, R"([{"virtualService":{"virtualServiceName":"pay.local"}}])"))),
            "200");
  auto p = connected();
  ASSERT_EQ(p->hash(), expectedHash("n"));
  ASSERT_EQ(summary(updateNode("pay", ipNode("10.0.0.2"))), "200");
  auto m = p->read();
  ASSERT_TRUE(m.has_value()) << "expected version 2; stream ended: " << p->finish().error_message();
  ASSERT_TRUE(m->has_endpoints()) << "expected an EndpointsUpdate, got " << m->DebugString();
  EXPECT_EQ(m->endpoints().version(), 2u);
  ASSERT_EQ(m->endpoints().clusters_size(), 1) << m->DebugString();
  EXPECT_EQ(m->endpoints().clusters(0).cluster(), "cds_egress_m_pay_http_8080");
  ASSERT_EQ(m->endpoints().clusters(0).endpoints_size(), 1);
  EXPECT_EQ(m->endpoints().clusters(0).endpoints(0).address(), "10.0.0.2");
  EXPECT_EQ(m->endpoints().hash(), expectedHash("n"));
  EXPECT_EQ(compile::configHash(p->running()), expectedHash("n"))
      << "the delta applied to version 1 must give the compiled config";
  // A change beyond endpoints is a whole config again.
  ASSERT_EQ(summary(updateNode("pay", R"({"listeners":[{"portMapping":{"port":8081,)"
                                      R"("protocol":"http"}}],"serviceDiscovery":{"dns":)"
                                      R"({"hostname":"10.0.0.2"}}})")),
            "200");
  m = p->read();
  ASSERT_TRUE(m.has_value());
  EXPECT_TRUE(m->has_config()) << m->DebugString();
  EXPECT_EQ(p->hash(), expectedHash("n"));
}

TEST_F(PushServerTest, WrongResourceTokenIsPermissionDenied) {
  ASSERT_EQ(summary(createNode("n2", nodeSpec(8081))), "200");
  grpc::Status st = refused("mesh/m/virtualNode/n", token("mesh/m/virtualNode/n2"));
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED) << st.error_message();
  EXPECT_NE(st.error_message().find("mesh/m/virtualNode/n2"), std::string::npos)
      << st.error_message();
}

TEST_F(PushServerTest, RevokedUnknownAndMissingTokensAreUnauthenticated) {
  std::string t = token("mesh/m/virtualNode/n");
  ASSERT_TRUE(tokens.revoke(t));
  grpc::Status st = refused("mesh/m/virtualNode/n", t);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED) << st.error_message();
  EXPECT_NE(st.error_message().find("revoked"), std::string::npos) << st.error_message();
  st = refused("mesh/m/virtualNode/n", "garbage");
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED) << st.error_message();
  st = refused("mesh/m/virtualNode/n", "");
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED) << st.error_message();
}

TEST_F(PushServerTest, MalformedHelloIsInvalidArgument) {
  grpc::Status st = refused("not a resource", token("mesh/m/virtualNode/n"));
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
  Proxy p(port_);
  ASSERT_TRUE(p.ack(1));
  EXPECT_FALSE(p.read().has_value());
  st = p.finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
  EXPECT_NE(st.error_message().find("Hello"), std::string::npos) << st.error_message();
}

TEST_F(PushServerTest, NackIsRecorded) {
  auto p = connected();
  ASSERT_TRUE(p->nack(1, "listener port in use"));
  ASSERT_TRUE(eventually([&] {
    auto s = statusOf("mesh/m/virtualNode/n");
    return s && s->last_nack_version == 1;
  })) << "expected proxies() to show the NACK of version 1";
  auto s = *statusOf("mesh/m/virtualNode/n");
  EXPECT_EQ(s.last_nack_reason, "listener port in use");
  EXPECT_EQ(s.version_acked, 0u);
}

TEST_F(PushServerTest, ResourceCreatedAfterConnectGetsItsConfig) {
  Proxy p(port_);
  ASSERT_TRUE(p.hello("mesh/m/virtualNode/later", token("mesh/m/virtualNode/later")));
  ASSERT_TRUE(eventually([&] { return statusOf("mesh/m/virtualNode/later").has_value(); }))
      << "expected the waiting proxy in proxies()";
  EXPECT_EQ(statusOf("mesh/m/virtualNode/later")->version_sent, 0u);
  ASSERT_EQ(summary(createNode("later", nodeSpec(8082))), "200");
  auto m = p.read();
  ASSERT_TRUE(m.has_value()) << "expected the config once the node exists; stream ended: "
                             << p.finish().error_message();
  ASSERT_TRUE(m->has_config());
  EXPECT_EQ(m->config().version(), 1u);
  EXPECT_EQ(m->config().config().node(), "mesh/m/virtualNode/later");
}

TEST_F(PushServerTest, ArnResourceIsAccepted) {
  Proxy p(port_);
  ASSERT_TRUE(p.hello("arn:aws:appmesh:us-west-2:111122223333:mesh/m/virtualNode/n",
                      token("mesh/m/virtualNode/n")));
  auto m = p.read();
  ASSERT_TRUE(m.has_value()) << p.finish().error_message();
  EXPECT_EQ(m->config().config().node(), "mesh/m/virtualNode/n");
}

TEST_F(PushServerTest, RevokingAConnectedProxysTokenDisconnectsIt) {
  Proxy p(port_);
  std::string t = token("mesh/m/virtualNode/n");
  ASSERT_TRUE(p.hello("mesh/m/virtualNode/n", t));
  ASSERT_TRUE(p.read().has_value());
  ASSERT_TRUE(tokens.revoke(t));
  EXPECT_FALSE(p.read().has_value()) << "expected the stream to end";
  grpc::Status st = p.finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED) << st.error_message();
  EXPECT_TRUE(eventually([&] { return server->proxies().empty(); }))
      << "expected the proxy gone from proxies()";
}

TEST_F(PushServerTest, DisconnectedProxyLeavesTheList) {
  {
    auto p = connected();
    ASSERT_EQ(server->proxies().size(), 1u);
  }
  EXPECT_TRUE(eventually([&] { return server->proxies().empty(); }))
      << "expected an empty list after the proxy hung up";
}

TEST_F(PushServerTest, StopEndsStreamsWithUnavailable) {
  auto p = connected();
  server->stop();
  EXPECT_FALSE(p->read().has_value());
  grpc::Status st = p->finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
}

// ---- mesh identities over the stream ----

class PushServerIdentityTest : public PushServerTest {
 protected:
  void SetUp() override {
    identities_ = &signer;
    PushServerTest::SetUp();
    ASSERT_EQ(summary(createNode("other", nodeSpec(9090))), "200");
  }
  // A CSR for a fresh P-256 key with the given subjectAltName text (OpenSSL syntax; "" none).
  static std::string csr(const std::string& sans) {
    auto key = ca::generateKey(ca::KeyAlgorithm::kEcP256).value();
    X509_REQ* req = X509_REQ_new();
    X509_REQ_set_pubkey(req, key.get());
    if (!sans.empty()) {
      STACK_OF(X509_EXTENSION)* exts = sk_X509_EXTENSION_new_null();
      sk_X509_EXTENSION_push(
          exts, X509V3_EXT_conf_nid(nullptr, nullptr, NID_subject_alt_name, sans.c_str()));
      X509_REQ_add_extensions(req, exts);
      sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    }
    X509_REQ_sign(req, key.get(), EVP_sha256());
    std::string pem = ca::csrToPem(req);
    X509_REQ_free(req);
    return pem;
  }
  static bool request(Proxy& p, const std::string& csr_pem) {
    v1::ProxyMessage m;
    m.mutable_certificate_request()->set_csr_pem(csr_pem);
    return p.write(m);
  }
  // The next IdentityUpdate (configs on the way are skipped).
  static std::optional<v1::IdentityUpdate> identity(Proxy& p) {
    while (auto m = p.read())
      if (m->has_identity()) return m->identity();
    return std::nullopt;
  }

  ca::Kek kek = ca::Kek::fromBytes(std::string(32, 'k')).value();
  ca::MeshIdentityIssuer issuer{notifying, kek, time};
  MeshIdentitySigner signer{notifying, issuer, std::chrono::seconds(600)};
};

TEST_F(PushServerIdentityTest, CsrGetsTheTokensIdentity) {
  auto p = connected("n");
  ASSERT_TRUE(request(*p, csr("URI:spiffe://m/virtualNode/n")));
  auto u = identity(*p);
  ASSERT_TRUE(u.has_value()) << "expected an IdentityUpdate, the stream ended: "
                             << p->finish().error_message();
  EXPECT_EQ(u->error(), "");
  EXPECT_EQ(u->spiffe_id(), "spiffe://m/virtualNode/n");
  EXPECT_EQ(u->expiry_warning_seconds(), 600u);
  auto cert = ca::parseCert(u->certificate_chain_pem());
  ASSERT_TRUE(cert.has_value()) << cert.error().message;
  auto root = ca::parseCert(u->trust_bundle_pem());
  ASSERT_TRUE(root.has_value());
  EXPECT_EQ(X509_verify(cert->get(), X509_get0_pubkey(root->get())), 1)
      << "the certificate must be signed by the pushed trust bundle";
  EXPECT_TRUE(eventually([&] {
    auto st = statusOf("mesh/m/virtualNode/n");
    return st && st->identity == "spiffe://m/virtualNode/n" && st->identity_expires_at > 0;
  })) << "weft proxies shows the issued identity";
  // The stream goes on: configs still flow.
  ASSERT_EQ(summary(updateNode("n", nodeSpec(8081))), "200");
  auto next = p->read();
  ASSERT_TRUE(next.has_value());
  EXPECT_TRUE(next->has_config() || next->has_endpoints());
}

TEST_F(PushServerIdentityTest, CsrRightAfterHelloBeforeTheFirstConfig) {
  // A proxy that reconnects asks for its certificate at once: the identity is often written
  // before the stream's first config (the push thread's config then waits for that write).
  for (int i = 0; i < 30; ++i) {
    Proxy p(port_);
    ASSERT_TRUE(p.hello("mesh/m/virtualNode/n", token("mesh/m/virtualNode/n")));
    ASSERT_TRUE(request(p, csr("")));
    bool config = false, id = false;
    while (!(config && id)) {
      auto m = p.read();
      ASSERT_TRUE(m.has_value()) << "round " << i << ": expected version 1 and an identity, the "
                                 << "stream ended: " << p.finish().error_message();
      config = config || m->has_config();
      if (m->has_identity()) {
        EXPECT_EQ(m->identity().error(), "") << m->identity().error();
        id = true;
      }
    }
  }
}

TEST_F(PushServerIdentityTest, CsrForAnotherNodeEndsTheStreamWithPermissionDenied) {
  auto p = connected("n");
  ASSERT_TRUE(request(*p, csr("URI:spiffe://m/virtualNode/other")));
  auto u = identity(*p);
  EXPECT_FALSE(u.has_value()) << "expected no certificate for another node's name, got "
                              << u->DebugString();
  grpc::Status st = p->finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED) << st.error_message();
  EXPECT_NE(st.error_message().find("spiffe://m/virtualNode/other"), std::string::npos)
      << st.error_message();
}

TEST_F(PushServerIdentityTest, RefusalsThatKeepTheStream) {
  compile::MeshPolicy off;
  off.mtls = compile::MtlsMode::kOff;
  ASSERT_TRUE(notifying.commit({StoreOp::put(
      compile::meshPolicyKey("m"), compile::meshPolicyJson(off), StoreOp::kAnyRevision)}));
  auto p = connected("n");
  ASSERT_TRUE(request(*p, csr("")));
  auto u = identity(*p);
  ASSERT_TRUE(u.has_value()) << p->finish().error_message();
  EXPECT_NE(u->error().find("mesh identities are off"), std::string::npos) << u->error();
  EXPECT_EQ(u->certificate_chain_pem(), "");
  // The stream stays open: configs still flow.
  ASSERT_EQ(summary(updateNode("n", nodeSpec(8082))), "200");
  auto next = p->read();
  ASSERT_TRUE(next.has_value()) << p->finish().error_message();

  // A garbage CSR (identities on again), on another stream: an error naming the request.
  ASSERT_TRUE(notifying.commit(
      {StoreOp::put(compile::meshPolicyKey("m"), compile::meshPolicyJson(compile::MeshPolicy{}),
                    StoreOp::kAnyRevision)}));
  auto q = connected("n");
  ASSERT_TRUE(request(*q, "not a csr"));
  u = identity(*q);
  ASSERT_TRUE(u.has_value()) << q->finish().error_message();
  EXPECT_NE(u->error().find("certificate request"), std::string::npos) << u->error();
  // And a second request within a second is refused as too frequent.
  ASSERT_TRUE(request(*q, csr("")));
  u = identity(*q);
  ASSERT_TRUE(u.has_value());
  EXPECT_NE(u->error().find("too often"), std::string::npos) << u->error();
}

}  // namespace
}  // namespace weft::control::push
