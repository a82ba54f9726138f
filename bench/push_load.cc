// weft-push-load: N simulated proxies on the config stream (api/weft/v1/stream.proto), for
// bench/push (docs/benchmarks.md, "Config push").
//
// Each simulated proxy opens one ConfigStream.Stream, sends a Hello (--resource, --token, host
// "<--host-prefix><index>"), and ACKs every ConfigUpdate / EndpointsUpdate as soon as it arrives,
// in order. By default every stream has its own channel and its own TCP (and TLS) connection
// (a local subchannel pool per channel, so gRPC never shares one); --streams-per-conn K puts K
// streams on each channel instead.
//
// Control protocol (a driver script on the other end of stdin/stdout; one line each):
//   out "ready <n>"          every stream has received its first version
//   out "error <text>"       some streams ended before becoming ready (the run is unusable)
//   in  "mark"               snapshot each stream's count of received versions and take t0 = now;
//                            then wait (in the background) until every stream has ACKed one more
//                            version than it had at the mark, or --round-timeout-ms passes
//   out "marked <ns>"        the snapshot is taken (at CLOCK_MONOTONIC <ns>): make the change now
//   in  "t0 <ns>"            (optional, during a mark) the round's t0 as CLOCK_MONOTONIC
//                            nanoseconds, e.g. when the API acknowledged the change
//   out {"n":..,"p50_ms":..,"p99_ms":..,"max_ms":..,"missing":k,...}  the round's result: per
//                            stream, the time from t0 until its ACK of that next version was
//                            handed to the transport; "missing" streams got none in time
//   in  "quit" or EOF        cancel every stream and exit
// Anything else on stdout is never printed; diagnostics go to stderr.
//
// Threading: gRPC runs the reactions (OnReadDone, OnWriteDone, OnDone) on its own threads, possibly
// two of one stream at once; each Stream's mutex guards its ack queue and mark fields. The main
// thread opens streams (at most --connect-window waiting for their first version at a time) and
// then reads stdin; a round's waiter thread prints its result.
// Memory per stream: the reactor, its ClientContext, one incoming message buffer, a small queue of
// versions to ACK; no per-version history.

#include <absl/synchronization/mutex.h>
#include <grpcpp/grpcpp.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "weft/v1/stream.grpc.pb.h"

namespace weft::bench {
namespace {

using Clock = std::chrono::steady_clock;  // CLOCK_MONOTONIC on Linux, as Python's monotonic_ns

int64_t nowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

struct Options {
  std::string target;  // HOST:PORT
  std::string resource;
  std::string token;
  std::string ca_file;
  bool insecure = false;
  std::string authority;  // TLS name to verify instead of the target host
  int streams = 1;
  int streams_per_conn = 1;
  int connect_window = 256;
  int first_index = 0;
  std::string host_prefix = "sim-";
  int64_t ready_timeout_ms = 120000;
  int64_t round_timeout_ms = 10000;
  bool emit_latencies = false;
};

constexpr const char* kUsage =
    R"(usage: weft-push-load --target HOST:PORT --resource R (--token T | --token-file F)
                      (--ca-file F | --insecure) [options]

Opens N config streams to a weft server as N simulated proxies, ACKs every version they get, and
measures, on "mark" from stdin, how long each stream takes to ACK its next version.

options:
  --streams N             streams to open (default 1)
  --streams-per-conn K    streams sharing one channel/connection (default 1: one connection each)
  --connect-window W      at most W streams waiting for their first version at once (default 256)
  --first-index I         hosts are <prefix>I, <prefix>I+1, ... (default 0; for several processes)
  --host-prefix P         Hello.host prefix (default sim-)
  --authority NAME        TLS server name to verify (default: the target's host)
  --ready-timeout-ms T    give up when not every stream has its first version by then (120000)
  --round-timeout-ms T    a round's wait for the next version (default 10000)
  --emit-latencies        add "lat_us": [per-stream latency in microseconds] to each result
stdin/stdout protocol: see the comment at the top of bench/push_load.cc.
)";

std::optional<std::string> readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Parses argv; prints the problem and answers nullopt on a usage error.
std::optional<Options> parseArgs(int argc, char** argv) {
  Options o;
  std::string token_file;
  auto need = [&](int& i) -> const char* {
    if (i + 1 >= argc) {
      std::fprintf(stderr, "weft-push-load: %s needs a value\n", argv[i]);
      return nullptr;
    }
    return argv[++i];
  };
  auto toInt = [](const char* s, int64_t& out) {
    char* end = nullptr;
    long long v = std::strtoll(s, &end, 10);
    if (end == s || *end != '\0' || v < 0) return false;
    out = v;
    return true;
  };
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (a == "--insecure") {
      o.insecure = true;
      continue;
    }
    if (a == "--emit-latencies") {
      o.emit_latencies = true;
      continue;
    }
    const char* v = need(i);
    if (v == nullptr) return std::nullopt;
    int64_t n = 0;
    bool numeric = a == "--streams" || a == "--streams-per-conn" || a == "--connect-window" ||
                   a == "--first-index" || a == "--ready-timeout-ms" || a == "--round-timeout-ms";
    if (numeric && !toInt(v, n)) {
      std::fprintf(stderr, "weft-push-load: %s wants a non-negative integer, got '%s'\n", a.c_str(),
                   v);
      return std::nullopt;
    }
    if (a == "--target") {
      o.target = v;
    } else if (a == "--resource") {
      o.resource = v;
    } else if (a == "--token") {
      o.token = v;
    } else if (a == "--token-file") {
      token_file = v;
    } else if (a == "--ca-file") {
      o.ca_file = v;
    } else if (a == "--authority") {
      o.authority = v;
    } else if (a == "--host-prefix") {
      o.host_prefix = v;
    } else if (a == "--streams") {
      o.streams = static_cast<int>(n);
    } else if (a == "--streams-per-conn") {
      o.streams_per_conn = static_cast<int>(n);
    } else if (a == "--connect-window") {
      o.connect_window = static_cast<int>(n);
    } else if (a == "--first-index") {
      o.first_index = static_cast<int>(n);
    } else if (a == "--ready-timeout-ms") {
      o.ready_timeout_ms = n;
    } else if (a == "--round-timeout-ms") {
      o.round_timeout_ms = n;
    } else {
      std::fprintf(stderr, "weft-push-load: unknown option %s (see --help)\n", a.c_str());
      return std::nullopt;
    }
  }
  if (!token_file.empty()) {
    auto t = readFile(token_file);
    if (!t) {
      std::fprintf(stderr, "weft-push-load: cannot read --token-file %s\n", token_file.c_str());
      return std::nullopt;
    }
    while (!t->empty() && (t->back() == '\n' || t->back() == '\r' || t->back() == ' '))
      t->pop_back();
    o.token = *t;
  }
  std::string missing;
  if (o.target.empty()) missing = "--target";
  if (o.resource.empty()) missing = "--resource";
  if (o.token.empty()) missing = "--token or --token-file";
  if (o.ca_file.empty() && !o.insecure) missing = "--ca-file or --insecure";
  if (!missing.empty()) {
    std::fprintf(stderr, "weft-push-load: %s is required (see --help)\n", missing.c_str());
    return std::nullopt;
  }
  if (o.streams < 1 || o.streams_per_conn < 1 || o.connect_window < 1) {
    std::fprintf(stderr,
                 "weft-push-load: --streams, --streams-per-conn and --connect-window must be "
                 "at least 1\n");
    return std::nullopt;
  }
  return o;
}

class Load;

// One simulated proxy. Owned by Load; lives until Load is destroyed (after OnDone).
class Stream : public grpc::ClientBidiReactor<v1::ProxyMessage, v1::ServerMessage> {
 public:
  Stream(Load& load, int index) : load_(load), index_(index) {}

  void start(v1::ConfigStream::Stub& stub, const Options& o);
  void cancel() { context_.TryCancel(); }

  // Round bookkeeping, under mu_. A mark sets target_ = received_ + 1; the latency is recorded
  // when the ACK of the target_-th received message has been handed to the transport.
  void mark() {
    std::lock_guard<std::mutex> lock(mu_);
    target_ = received_ + 1;
    acked_at_ns_ = 0;
  }
  // The ACK time of the marked version, 0 when none came (yet).
  int64_t markedAckNs() {
    std::lock_guard<std::mutex> lock(mu_);
    return acked_at_ns_;
  }
  bool done() const { return done_.load(std::memory_order_acquire); }
  bool started() const { return started_; }  // main thread only

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

 private:
  // Starts the next queued ACK if no write is in flight. Requires mu_.
  void writeNextLocked();

  Load& load_;
  const int index_;
  grpc::ClientContext context_;
  v1::ServerMessage in_;
  v1::ProxyMessage out_;  // the message being written; untouched until OnWriteDone

  std::mutex mu_;
  struct PendingAck {
    uint64_t version;
    uint32_t ordinal;  // 1 for the first message received on this stream
  };
  std::deque<PendingAck> acks_;
  bool writing_ = false;
  uint32_t writing_ordinal_ = 0;  // 0: the Hello
  uint32_t received_ = 0;
  uint32_t target_ = 0;  // 0: no mark yet
  int64_t acked_at_ns_ = 0;
  std::atomic<bool> done_{false};
  bool started_ = false;
};

// All streams and the counters the control protocol reports.
class Load {
 public:
  explicit Load(Options o) : options_(std::move(o)) {}

  // Opens every stream; answers false (after printing "error ...") when they did not all get a
  // first version within --ready-timeout-ms.
  bool connectAll();
  // One "mark": snapshot, then a waiter thread prints the result.
  void mark();
  void setT0(int64_t ns) { t0_ns_.store(ns); }
  // Waits for a running round to print its result.
  void joinRound() {
    if (waiter_.joinable()) waiter_.join();
  }
  void shutdown();

  // From the streams' reactions.
  void onFirstVersion() {
    std::lock_guard<std::mutex> lock(mu_);
    ++ready_;
    cv_.notify_all();
  }
  void onMarkedAck() {
    std::lock_guard<std::mutex> lock(mu_);
    ++round_acked_;
    cv_.notify_all();
  }
  void onStreamDone(int index, bool was_ready, const grpc::Status& status) {
    std::lock_guard<std::mutex> lock(mu_);
    ++finished_;
    if (!was_ready) ++failed_before_ready_;
    if (!stopping_ && !status.ok() && errors_logged_ < 5) {
      ++errors_logged_;
      std::fprintf(stderr, "weft-push-load: stream %d ended: %d %s\n", index,
                   static_cast<int>(status.error_code()), status.error_message().c_str());
      if (first_error_.empty())
        first_error_ =
            std::to_string(static_cast<int>(status.error_code())) + " " + status.error_message();
    } else if (!stopping_ && status.ok() && errors_logged_ < 5) {
      ++errors_logged_;
      std::fprintf(stderr, "weft-push-load: stream %d closed by the server (OK)\n", index);
      if (first_error_.empty()) first_error_ = "stream closed by the server";
    }
    cv_.notify_all();
  }

 private:
  void runRound(int64_t mark_ns);

  Options options_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<v1::ConfigStream::Stub>> stubs_;
  std::vector<std::unique_ptr<Stream>> streams_;

  std::mutex mu_;
  std::condition_variable cv_;
  int ready_ = 0;
  int finished_ = 0;
  int failed_before_ready_ = 0;
  int round_acked_ = 0;
  int errors_logged_ = 0;
  bool stopping_ = false;
  std::string first_error_;
  std::atomic<int64_t> t0_ns_{0};
  std::thread waiter_;
};

void Stream::start(v1::ConfigStream::Stub& stub, const Options& o) {
  started_ = true;
  stub.async()->Stream(&context_, this);
  v1::Hello* hello = out_.mutable_hello();
  hello->set_resource(o.resource);
  hello->set_token(o.token);
  hello->set_host(o.host_prefix + std::to_string(o.first_index + index_));
  hello->set_proxy_version("weft-push-load");
  {
    std::lock_guard<std::mutex> lock(mu_);
    writing_ = true;
    writing_ordinal_ = 0;
  }
  StartWrite(&out_);
  StartRead(&in_);
  StartCall();
}

void Stream::OnReadDone(bool ok) {
  if (!ok) return;  // the stream is ending; OnDone follows
  uint64_t version = 0;
  switch (in_.kind_case()) {
    case v1::ServerMessage::kConfig:
      version = in_.config().version();
      break;
    case v1::ServerMessage::kEndpoints:
      version = in_.endpoints().version();
      break;
    default:
      break;
  }
  in_.Clear();
  bool first = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++received_;
    first = received_ == 1;
    if (version != 0) {
      acks_.push_back(PendingAck{version, received_});
      writeNextLocked();
    } else if (target_ != 0 && received_ == target_) {
      // Nothing to ACK (an unknown message kind): count its arrival.
      acked_at_ns_ = nowNs();
    }
  }
  if (first) load_.onFirstVersion();
  StartRead(&in_);
}

void Stream::writeNextLocked() {
  if (writing_ || acks_.empty()) return;
  PendingAck next = acks_.front();
  acks_.pop_front();
  out_.Clear();
  out_.mutable_ack()->set_version(next.version);
  writing_ = true;
  writing_ordinal_ = next.ordinal;
  StartWrite(&out_);
}

void Stream::OnWriteDone(bool ok) {
  if (!ok) return;
  bool marked = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    writing_ = false;
    if (target_ != 0 && writing_ordinal_ == target_ && acked_at_ns_ == 0) {
      acked_at_ns_ = nowNs();
      marked = true;
    }
    writeNextLocked();
  }
  if (marked) load_.onMarkedAck();
}

void Stream::OnDone(const grpc::Status& status) {
  bool was_ready = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    was_ready = received_ > 0;
  }
  done_.store(true, std::memory_order_release);
  load_.onStreamDone(index_, was_ready, status);
}

bool Load::connectAll() {
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (options_.insecure) {
    creds = grpc::InsecureChannelCredentials();
  } else {
    auto ca = readFile(options_.ca_file);
    if (!ca) {
      std::printf("error cannot read --ca-file %s\n", options_.ca_file.c_str());
      std::fflush(stdout);
      return false;
    }
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = *ca;
    creds = grpc::SslCredentials(ssl);
  }
  const int n = options_.streams;
  const int k = options_.streams_per_conn;
  streams_.reserve(n);
  for (int i = 0; i < n; ++i) streams_.push_back(std::make_unique<Stream>(*this, i));

  const auto deadline = Clock::now() + std::chrono::milliseconds(options_.ready_timeout_ms);
  int started = 0;
  while (started < n) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      bool ok = cv_.wait_until(lock, deadline, [&] {
        return (started - ready_ - failed_before_ready_) < options_.connect_window;
      });
      if (!ok) break;
      if (failed_before_ready_ > 0) break;
    }
    if (started % k == 0) {
      grpc::ChannelArguments args;
      // A channel of its own subchannels: one TCP/TLS connection per channel, as N proxies have.
      args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
      args.SetInt("weft.bench.id", started / k);
      args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
      if (!options_.authority.empty()) args.SetSslTargetNameOverride(options_.authority);
      channels_.push_back(grpc::CreateCustomChannel(options_.target, creds, args));
      stubs_.push_back(v1::ConfigStream::NewStub(channels_.back()));
    }
    streams_[started]->start(*stubs_.back(), options_);
    ++started;
  }

  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_until(lock, deadline,
                 [&] { return ready_ == n || failed_before_ready_ > 0 || started < n; });
  if (ready_ == n && started == n) {
    std::printf("ready %d\n", n);
    std::fflush(stdout);
    return true;
  }
  std::string why = failed_before_ready_ > 0
                        ? std::to_string(failed_before_ready_) +
                              " streams ended before their first version; first: " + first_error_
                        : "timed out after " + std::to_string(options_.ready_timeout_ms) +
                              " ms: " + std::to_string(ready_) + " of " + std::to_string(n) +
                              " streams have their first version (" + std::to_string(started) +
                              " started)";
  std::printf("error %s\n", why.c_str());
  std::fflush(stdout);
  return false;
}

void Load::mark() {
  joinRound();
  {
    std::lock_guard<std::mutex> lock(mu_);
    round_acked_ = 0;
  }
  for (auto& s : streams_) s->mark();
  int64_t mark_ns = nowNs();
  t0_ns_.store(mark_ns);
  std::printf("marked %lld\n", static_cast<long long>(mark_ns));
  std::fflush(stdout);
  waiter_ = std::thread([this, mark_ns] { runRound(mark_ns); });
}

double percentileMs(const std::vector<int64_t>& sorted_ns, double p) {
  if (sorted_ns.empty()) return 0;
  // Nearest rank: the smallest value with at least p of the samples at or below it.
  size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(sorted_ns.size())));
  if (rank < 1) rank = 1;
  return static_cast<double>(sorted_ns[rank - 1]) / 1e6;
}

void Load::runRound(int64_t mark_ns) {
  const int n = static_cast<int>(streams_.size());
  {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_until(lock, Clock::now() + std::chrono::milliseconds(options_.round_timeout_ms),
                   [&] { return round_acked_ >= n || finished_ >= n; });
  }
  const int64_t t0 = t0_ns_.load();
  int ended = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ended = finished_;
  }
  std::vector<int64_t> lat;
  lat.reserve(n);
  int missing = 0, early = 0;
  for (auto& s : streams_) {
    int64_t at = s->markedAckNs();
    if (at == 0) {
      ++missing;
      continue;
    }
    int64_t d = at - t0;
    if (d < 0) {  // ACKed before the given t0 (t0 set after the change reached the stream)
      ++early;
      d = 0;
    }
    lat.push_back(d);
  }
  std::vector<int64_t> sorted = lat;
  std::sort(sorted.begin(), sorted.end());
  std::ostringstream out;
  out.setf(std::ios::fixed);
  out.precision(3);
  out << "{\"n\":" << n << ",\"p50_ms\":" << percentileMs(sorted, 0.50)
      << ",\"p99_ms\":" << percentileMs(sorted, 0.99)
      << ",\"max_ms\":" << (sorted.empty() ? 0.0 : static_cast<double>(sorted.back()) / 1e6)
      << ",\"missing\":" << missing << ",\"early\":" << early << ",\"ended\":" << ended
      << ",\"t0_after_mark_ms\":" << static_cast<double>(t0 - mark_ns) / 1e6;
  if (options_.emit_latencies) {
    out << ",\"lat_us\":[";
    for (size_t i = 0; i < lat.size(); ++i) out << (i ? "," : "") << lat[i] / 1000;
    out << "]";
  }
  out << "}\n";
  std::string line = out.str();
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fflush(stdout);
}

void Load::shutdown() {
  joinRound();
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  for (auto& s : streams_)
    if (s->started()) s->cancel();
  // Streams never started have no OnDone to wait for.
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, std::chrono::seconds(10), [&] {
    for (auto& s : streams_)
      if (s->started() && !s->done()) return false;
    return true;
  });
}

void raiseFileLimit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

}  // namespace
}  // namespace weft::bench

int main(int argc, char** argv) {
  using weft::bench::Load;
  auto options = weft::bench::parseArgs(argc, argv);
  if (!options) return 2;
  weft::bench::raiseFileLimit();
  // Debian's abseil is built without NDEBUG, so every absl::Mutex gRPC locks goes through the
  // deadlock detector (its graph lookups show in profiles with thousands of calls). The load
  // generator is not under test: make it as cheap as it can be. The servers keep gRPC's default.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  auto load = std::make_unique<Load>(*options);
  if (!load->connectAll()) {
    load->shutdown();
    // Streams that never started leave nothing pending; exit without waiting on gRPC further.
    std::_Exit(1);
  }
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line == "mark") {
      load->mark();
    } else if (line.rfind("t0 ", 0) == 0) {
      load->setT0(std::strtoll(line.c_str() + 3, nullptr, 10));
    } else if (line == "quit") {
      break;
    } else if (!line.empty()) {
      std::fprintf(stderr, "weft-push-load: unknown command '%s' (mark, t0 NS, quit)\n",
                   line.c_str());
    }
  }
  load->shutdown();
  std::fflush(stdout);
  // gRPC's global state outlives our objects otherwise; the streams are all done or cancelled.
  std::_Exit(0);
}
