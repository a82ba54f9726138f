#include "control/compile/registry_hostname.h"

#include <gtest/gtest.h>

namespace weft::control::compile {
namespace {

std::string show(const std::optional<RegistryHostname>& r) {
  return r ? "{" + r->service + ", " + r->namespace_name + "}" : "nullopt";
}

TEST(RegistryHostname, SplitsFirstLabelFromNamespace) {
  EXPECT_EQ(show(splitRegistryHostname("pay.corp.local")), "{pay, corp.local}");
  EXPECT_EQ(show(splitRegistryHostname("Pay.Corp.Local.")), "{Pay, Corp.Local}");
  EXPECT_EQ(show(splitRegistryHostname("a.b")), "{a, b}");
}

TEST(RegistryHostname, RejectsIpLiteralsSingleLabelsAndEmptyLabels) {
  for (const char* host : {"10.0.0.1", "::1", "fd00::5", "localhost", "", ".", ".corp.local",
                           "pay..local", "pay.corp..local"})
    EXPECT_EQ(show(splitRegistryHostname(host)), "nullopt") << "hostname '" << host << "'";
}

}  // namespace
}  // namespace weft::control::compile
