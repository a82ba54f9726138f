// Fuzzes the CA's request handling: the first byte picks an operation of ACM PCA or ACM, the
// rest is the JSON body. Every answer must be a 200 or an AWS-shaped 400/500, never a crash.
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/time.h"
#include "control/ca/ca_api.h"
#include "control/store/memory_store.h"

namespace {

const char* const kOps[] = {
    "ACMPrivateCA.CreateCertificateAuthority",
    "ACMPrivateCA.DescribeCertificateAuthority",
    "ACMPrivateCA.ListCertificateAuthorities",
    "ACMPrivateCA.GetCertificateAuthorityCsr",
    "ACMPrivateCA.ImportCertificateAuthorityCertificate",
    "ACMPrivateCA.GetCertificateAuthorityCertificate",
    "ACMPrivateCA.IssueCertificate",
    "ACMPrivateCA.GetCertificate",
    "ACMPrivateCA.RevokeCertificate",
    "ACMPrivateCA.DeleteCertificateAuthority",
    "ACMPrivateCA.UpdateCertificateAuthority",
    "ACMPrivateCA.RestoreCertificateAuthority",
    "CertificateManager.RequestCertificate",
    "CertificateManager.DescribeCertificate",
    "CertificateManager.ListCertificates",
    "CertificateManager.GetCertificate",
    "CertificateManager.ExportCertificate",
    "CertificateManager.RenewCertificate",
    "CertificateManager.DeleteCertificate",
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace weft::control;
  static MemoryStore store;
  static weft::SimTimeSource time;
  static auto kek = ca::Kek::fromBytes(std::string(32, 'f'));
  static ca::CaApi api(store, time, *kek, {});
  if (size == 0) return 0;
  std::string target = kOps[data[0] % (sizeof kOps / sizeof kOps[0])];
  ApiRequest r;
  r.method = "POST";
  r.path = "/";
  r.headers = {{"x-amz-target", target}};
  r.body.assign(reinterpret_cast<const char*>(data + 1), size - 1);
  ApiResponse resp = target.rfind("ACMPrivateCA.", 0) == 0 ? api.handlePca(r) : api.handleAcm(r);
  if (resp.status != 200 && resp.status != 400 && resp.status != 500) __builtin_trap();
  return 0;
}
