#pragma once
// `weft demo`'s state file, <state-dir>/demo.json: what `up` made, journaled before it is made,
// so that `down` removes it after a finished, failed or crashed `up`.

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"

namespace weft::demo {

// A process `up` started, detached (its own session): the control plane, one `weft run` per
// host, the gateway's weft-proxy. `start_ticks` is the process's start time (field 22 of
// /proc/PID/stat), so that a pid reused by another process after a crash is never signalled.
struct DemoProcess {
  std::string role;      // "server", "workload" or "gateway"
  std::string host;      // the lab host ("" for the server and the gateway)
  std::string resource;  // mesh/M/virtualNode/N or mesh/M/virtualGateway/G ("" for the server)
  int pid = 0;
  uint64_t start_ticks = 0;
  std::string log;  // stdout and stderr
};

struct DemoState {
  int version = 1;
  std::string name;        // the lab's name, prefix of the stacks' names
  bool complete = false;   // `up` finished
  int64_t created_at = 0;  // unix seconds
  std::string topology;    // the lab file
  std::string lab_state_dir;
  std::string data_dir;  // weft server --data-dir
  std::string api_url;   // "http://127.0.0.1:7080" once the server listens
  int stream_port = 0;
  int dns_port = 0;
  int gateway_port = 0;
  std::string gateway_url;  // "http://127.0.0.1:8080/"
  std::vector<DemoProcess> processes;
};

std::string stateToJson(const DemoState& s);
Result<DemoState> stateFromJson(std::string_view text);

}  // namespace weft::demo
