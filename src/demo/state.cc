#include "demo/state.h"

#include "control/stacks/json_value.h"

namespace weft::demo {
namespace {

using control::stacks::Value;

std::string str(const Value& v, std::string_view key) {
  const Value* m = v.find(key);
  return m ? std::string(m->str()) : std::string();
}

int64_t num(const Value& v, std::string_view key) {
  const Value* m = v.find(key);
  return m && m->isNumber() ? std::strtoll(m->text().c_str(), nullptr, 10) : 0;
}

}  // namespace

std::string stateToJson(const DemoState& s) {
  Value procs = Value::array();
  for (const DemoProcess& p : s.processes)
    procs.push(Value::object({{"role", Value::string(p.role)},
                              {"host", Value::string(p.host)},
                              {"resource", Value::string(p.resource)},
                              {"pid", Value::number(static_cast<int64_t>(p.pid))},
                              {"start_ticks", Value::number(static_cast<int64_t>(p.start_ticks))},
                              {"log", Value::string(p.log)}}));
  Value v = Value::object({{"version", Value::number(static_cast<int64_t>(s.version))},
                           {"name", Value::string(s.name)},
                           {"complete", Value::boolean(s.complete)},
                           {"created_at", Value::number(s.created_at)},
                           {"topology", Value::string(s.topology)},
                           {"lab_state_dir", Value::string(s.lab_state_dir)},
                           {"data_dir", Value::string(s.data_dir)},
                           {"api_url", Value::string(s.api_url)},
                           {"stream_port", Value::number(static_cast<int64_t>(s.stream_port))},
                           {"dns_port", Value::number(static_cast<int64_t>(s.dns_port))},
                           {"gateway_port", Value::number(static_cast<int64_t>(s.gateway_port))},
                           {"gateway_url", Value::string(s.gateway_url)},
                           {"processes", std::move(procs)}});
  return control::stacks::toJson(v, {2}) + "\n";
}

Result<DemoState> stateFromJson(std::string_view text) {
  auto v = control::stacks::parseJson(text);
  if (!v) return makeError("not JSON: " + v.error().message);
  if (!v->isObject()) return makeError("not a JSON object");
  DemoState s;
  s.version = static_cast<int>(num(*v, "version"));
  if (s.version != 1) return makeError("unknown version " + std::to_string(s.version));
  s.name = str(*v, "name");
  const Value* c = v->find("complete");
  s.complete = c && c->isBool() && c->asBool();
  s.created_at = num(*v, "created_at");
  s.topology = str(*v, "topology");
  s.lab_state_dir = str(*v, "lab_state_dir");
  s.data_dir = str(*v, "data_dir");
  s.api_url = str(*v, "api_url");
  s.stream_port = static_cast<int>(num(*v, "stream_port"));
  s.dns_port = static_cast<int>(num(*v, "dns_port"));
  s.gateway_port = static_cast<int>(num(*v, "gateway_port"));
  s.gateway_url = str(*v, "gateway_url");
  if (const Value* procs = v->find("processes"); procs && procs->isArray())
    for (const Value& p : procs->items()) {
      DemoProcess d;
      d.role = str(p, "role");
      d.host = str(p, "host");
      d.resource = str(p, "resource");
      d.pid = static_cast<int>(num(p, "pid"));
      d.start_ticks = static_cast<uint64_t>(num(p, "start_ticks"));
      d.log = str(p, "log");
      s.processes.push_back(std::move(d));
    }
  if (s.name.empty()) return makeError("no name");
  return s;
}

}  // namespace weft::demo
