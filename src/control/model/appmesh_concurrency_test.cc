// Several threads create, update and delete against one AppMeshApi over a MemoryStore; whatever
// the interleaving, the model's invariants hold afterwards: no resource outlives its mesh or
// parent, every virtual service's provider exists, every quota holds, every answer is one the
// operation may give.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "aws/appmesh/v20190125/records.pb.h"
#include "control/model/appmesh_test_support.h"
#include "control/model/resource_keys.h"

namespace weft::control::appmesh {
namespace {

namespace am = ::aws::appmesh::v20190125;
using testing::Harness;
using testing::summary;

// Every resource key's parents exist and every service's provider exists.
void expectInvariants(MemoryStore& store, const Quotas& quotas) {
  auto all = store.list("appmesh/", "", 0);
  ASSERT_TRUE(all.has_value());
  std::set<std::string> keys;
  for (const auto& kv : *all) keys.insert(kv.key);
  std::map<std::string, int> children;
  for (const auto& kv : *all) {
    auto id = parseResourceKey(kv.key);
    if (!id) continue;
    if (id->kind != Kind::kMesh) {
      ResourceId mesh{Kind::kMesh, id->mesh, "", id->mesh};
      EXPECT_TRUE(keys.count(resourceKey(mesh))) << kv.key << " outlived its mesh";
      ++children[std::string(kindName(id->kind)) + "@" + id->mesh + "/" + id->parent];
    }
    if (id->kind == Kind::kRoute) {
      ResourceId router{Kind::kVirtualRouter, id->mesh, "", id->parent};
      EXPECT_TRUE(keys.count(resourceKey(router))) << kv.key << " outlived its router";
    }
    if (id->kind == Kind::kVirtualService) {
      am::StoredResource rec;
      ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(kv.value, &rec).ok());
      const auto& p = rec.virtualservice().spec().provider();
      if (p.has_virtualnode()) {
        ResourceId node{Kind::kVirtualNode, id->mesh, "", p.virtualnode().virtualnodename()};
        EXPECT_TRUE(keys.count(resourceKey(node)))
            << kv.key << " has a deleted provider node " << node.name;
      }
      if (p.has_virtualrouter()) {
        ResourceId router{Kind::kVirtualRouter, id->mesh, "",
                          p.virtualrouter().virtualroutername()};
        EXPECT_TRUE(keys.count(resourceKey(router))) << kv.key << " has a deleted provider router";
      }
    }
  }
  for (const auto& [what, n] : children) {
    if (what.rfind("virtualNode@", 0) == 0) {
      EXPECT_LE(n, quotas.virtual_nodes_per_mesh) << what;
    }
    if (what.rfind("route@", 0) == 0) {
      EXPECT_LE(n, quotas.routes_per_virtual_router) << what;
    }
  }
}

TEST(ConcurrencyTest, RandomOperationsKeepInvariants) {
  Options options;
  options.quotas.virtual_nodes_per_mesh = 4;
  options.quotas.routes_per_virtual_router = 3;
  Harness h(options);
  constexpr int kThreads = 8;
  constexpr int kOpsPerThread = 300;
  std::atomic<int> unexpected{0};
  std::atomic<int> successes{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(1234 + t);
      auto pick = [&](int n) {
        return std::to_string(std::uniform_int_distribution<int>(0, n - 1)(rng));
      };
      for (int i = 0; i < kOpsPerThread; ++i) {
        std::string mesh = "m" + pick(2);
        std::string base = "/v20190125/meshes/" + mesh;
        ApiResponse r;
        int op = std::uniform_int_distribution<int>(0, 11)(rng);
        switch (op) {
          case 0:
            r = h.call("PUT", "/v20190125/meshes", R"({"meshName":")" + mesh + "\"}");
            break;
          case 1:
            r = h.call("DELETE", base);
            break;
          case 2:
          case 3:
            r = h.call("PUT", base + "/virtualNodes",
                       R"({"virtualNodeName":"n)" + pick(6) + R"(","spec":{}})");
            break;
          case 4:
            r = h.call("DELETE", base + "/virtualNodes/n" + pick(6));
            break;
          case 5:
            r = h.call("PUT", base + "/virtualServices",
                       R"({"virtualServiceName":"s)" + pick(3) +
                           R"(","spec":{"provider":{"virtualNode":{"virtualNodeName":"n)" +
                           pick(6) + R"("}}}})");
            break;
          case 6:
            r = h.call("PUT", base + "/virtualServices/s" + pick(3),
                       R"({"spec":{"provider":{"virtualRouter":{"virtualRouterName":"r0"}}}})");
            break;
          case 7:
            r = h.call("DELETE", base + "/virtualServices/s" + pick(3));
            break;
          case 8:
            r = h.call("PUT", base + "/virtualRouters", R"({"virtualRouterName":"r0","spec":{}})");
            break;
          case 9:
            r = h.call("DELETE", base + "/virtualRouters/r0");
            break;
          case 10:
            r = h.call(
                "PUT", base + "/virtualRouter/r0/routes",
                R"({"routeName":"x)" + pick(5) +
                    R"(","spec":{"tcpRoute":{"action":{"weightedTargets":[{"virtualNode":"n)" +
                    pick(6) + R"(","weight":1}]}}}})");
            break;
          case 11:
            r = h.call("DELETE", base + "/virtualRouter/r0/routes/x" + pick(5));
            break;
        }
        std::string type = testing::errorTypeOf(r);
        bool ok = r.status == 200 || type == "NotFoundException" || type == "ConflictException" ||
                  type == "ResourceInUseException" || type == "LimitExceededException" ||
                  type == "TooManyRequestsException";
        if (r.status == 200) ++successes;
        if (!ok) {
          ++unexpected;
          ADD_FAILURE() << "unexpected answer to op " << op << ": " << summary(r);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(unexpected.load(), 0);
  EXPECT_GT(successes.load(), kThreads * kOpsPerThread / 10)
      << "the workload should mostly make progress";
  expectInvariants(h.store, options.quotas);
}

// Racing creates never exceed a quota: exactly `quota` of them succeed.
TEST(ConcurrencyTest, QuotaHoldsUnderRacingCreates) {
  Options options;
  options.quotas.virtual_nodes_per_mesh = 10;
  Harness h(options);
  ASSERT_EQ(summary(h.call("PUT", "/v20190125/meshes", R"({"meshName":"m"})")), "200");
  std::atomic<int> created{0}, limited{0}, other{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 5; ++i) {
        ApiResponse r;
        do {
          r = h.call("PUT", "/v20190125/meshes/m/virtualNodes",
                     R"({"virtualNodeName":"n)" + std::to_string(t) + "-" + std::to_string(i) +
                         R"(","spec":{}})");
        } while (testing::errorTypeOf(r) == "TooManyRequestsException");  // botocore retries these
        if (r.status == 200)
          ++created;
        else if (testing::errorTypeOf(r) == "LimitExceededException")
          ++limited;
        else
          ++other;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(created.load(), 10);
  EXPECT_EQ(limited.load(), 20);
  EXPECT_EQ(other.load(), 0);
}

// A mesh delete racing with creates inside it: either the create wins (and the delete answers
// ResourceInUse) or the delete wins (and the create answers NotFound); never a child without mesh.
TEST(ConcurrencyTest, MeshDeleteRacingWithChildCreates) {
  for (int round = 0; round < 50; ++round) {
    Harness h;
    ASSERT_EQ(summary(h.call("PUT", "/v20190125/meshes", R"({"meshName":"m"})")), "200");
    std::thread creator([&] {
      for (int i = 0; i < 5; ++i)
        (void)h.call("PUT", "/v20190125/meshes/m/virtualNodes",
                     R"({"virtualNodeName":"n)" + std::to_string(i) + R"(","spec":{}})");
    });
    std::thread deleter([&] {
      for (int i = 0; i < 5; ++i) (void)h.call("DELETE", "/v20190125/meshes/m");
    });
    creator.join();
    deleter.join();
    expectInvariants(h.store, Quotas{});
  }
}

}  // namespace
}  // namespace weft::control::appmesh
