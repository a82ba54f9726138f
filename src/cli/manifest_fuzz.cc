// Fuzz target for the CLI's YAML/JSON intake: the bytes are parsed as manifests and as a
// CloudFormation template, and a template that parses is run through the whole engine
// (parameters, conditions, dependency order, evaluation of every resource and output, the App
// Mesh mapping). Nothing may crash, hang or throw. Properties checked (abort on failure):
//  - a parsed document written as JSON parses back; that value (invalid UTF-8 in the input has
//    become \u00XX escapes by then) survives further JSON and YAML round trips unchanged.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "cli/cfn_template.h"
#include "cli/manifest.h"

namespace {

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "property failed: %s\n", what);
    std::abort();
  }
}

void runTemplate(std::string_view text) {
  using namespace weft::cli;
  auto tmpl = cfn::parseTemplate(text);
  if (!tmpl) return;
  auto params = cfn::resolveParameters(*tmpl, {});
  cfn::EvalContext ctx;
  ctx.pseudo.stack_name = "fuzz";
  ctx.mappings = tmpl->mappings;
  ctx.exports["e"] = "v";
  if (params) ctx.parameters = *params;
  auto conds = cfn::evaluateConditions(*tmpl, ctx);
  if (conds) ctx.conditions = *conds;
  auto order = cfn::deployOrder(*tmpl, ctx.conditions);
  if (!order) return;
  int n = 0;
  for (const cfn::Resource& r : tmpl->resources) {
    auto props = cfn::evaluate(r.properties, ctx);
    if (props && *props && kindForCfnType(r.type)) {
      auto call = cfn::appMeshCallFor(r, **props, "fuzz-" + r.logical_id);
      if (call) (void)call->toValue();
    }
    cfn::ResourceState st;
    st.type = r.type;
    st.ref = Value::string("arn:" + std::to_string(n++));
    st.attributes = Value::object();
    st.attributes.set("Arn", st.ref);
    ctx.resources[r.logical_id] = st;
  }
  for (const cfn::Output& o : tmpl->outputs) {
    (void)cfn::evaluate(o.value, ctx);
    (void)cfn::evaluate(o.export_name, ctx);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace weft::cli;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto docs = parseDocuments(text);
  if (docs) {
    for (const Value& doc : *docs) {
      auto clean = parseJson(toJson(doc));
      check(bool(clean), "JSON output parses");
      auto again = parseJson(toJson(*clean));
      check(again && *again == *clean, "JSON round trip");
      auto yaml = parseDocuments(toYaml(*clean));
      check(yaml && yaml->size() == 1 && (*yaml)[0] == *clean, "YAML round trip");
    }
  }
  (void)parseManifests(text, "fuzz");
  runTemplate(text);
  return 0;
}
