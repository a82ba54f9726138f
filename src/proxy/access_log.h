#pragma once
// Access logging: a format compiled once from config (Envoy-compatible command syntax, text or
// JSON), an AccessLogEntry filled by the proxy per request, and an AccessLogWriter that gets the
// formatted lines to a file without ever blocking a worker. See docs/access-log.md.
//
// Data flow: worker thread -> AccessLog::log() formats the entry into a thread-local buffer ->
// AccessLogWriter::write() copies the line into that worker's single-producer/single-consumer
// byte ring (no lock, no atomic read-modify-write) -> one background thread per output path
// gathers complete lines from every ring and write(2)s them in batches. A full ring drops the
// line and counts it in weft_access_log_dropped_total{path=...}; a slow disk never slows requests.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "common/result.h"
#include "common/stats.h"

namespace weft::v1 {
class AccessLog;
}

namespace weft::proxy {

// ---------------------------------------------------------------------------------------------
// The entry.

// Header lookup the formatter calls for %REQ(...)% and %RESP(...)%. The proxy implements it over
// its own header map, so nothing is copied for logging. `lower_name` is lowercase; return the
// first value of that header, or nullopt.
class HeaderSource {
 public:
  virtual std::optional<std::string_view> get(std::string_view lower_name) const = 0;

 protected:
  ~HeaderSource() = default;
};

// A HeaderSource that owns copies of its headers; names are matched case-insensitively. For
// tests and for callers without a header map of their own.
class HeaderList final : public HeaderSource {
 public:
  HeaderList() = default;
  HeaderList(std::initializer_list<std::pair<std::string_view, std::string_view>> headers);
  void add(std::string_view name, std::string_view value);
  std::optional<std::string_view> get(std::string_view lower_name) const override;

 private:
  std::vector<std::pair<std::string, std::string>> headers_;
};

// Everything a format can print about one request. Filled by the proxy when the request ends and
// passed to AccessLog::log(), which reads it synchronously and retains nothing: the views and
// header sources only need to stay valid for the duration of that call. An empty string_view or
// an unset optional means "not known" and prints as "-" (null in JSON).
struct AccessLogEntry {
  std::chrono::system_clock::time_point start_time{};  // first byte of the request received
  // Durations measured from start_time.
  std::optional<std::chrono::nanoseconds> request_duration;   // last request byte received
  std::optional<std::chrono::nanoseconds> response_duration;  // first upstream response byte
  std::optional<std::chrono::nanoseconds> duration;           // last response byte sent
  // Upstream request sent to upstream response headers received; printed for
  // %RESP(X-WEFT-UPSTREAM-SERVICE-TIME)% (and its Envoy spelling).
  std::optional<std::chrono::nanoseconds> upstream_service_time;

  std::string_view method;          // :METHOD
  std::string_view path;            // :PATH as the client sent it (before any prefix rewrite)
  std::string_view authority;       // :AUTHORITY / Host
  std::string_view scheme;          // :SCHEME
  std::string_view protocol;        // "HTTP/1.0", "HTTP/1.1", "HTTP/2"
  int response_code = 0;            // 0 when no response was sent
  std::string_view response_flags;  // Envoy-style short flags, e.g. "UF,URX"; empty for none
  uint64_t bytes_received = 0;      // request body bytes
  uint64_t bytes_sent = 0;          // response body bytes
  std::string_view upstream_host;   // "ip:port" of the endpoint used
  std::string_view upstream_cluster;
  std::string_view upstream_transport_failure_reason;
  std::string_view route_name;
  std::string_view downstream_remote_address;  // "ip:port" / "[ip6]:port"
  std::string_view downstream_local_address;
  std::string_view requested_server_name;  // TLS SNI
  // URI SAN of the client's verified certificate (a caller's mesh identity, spiffe://...).
  std::string_view downstream_peer_uri_san;

  const HeaderSource* request_headers = nullptr;   // not owned; may be null
  const HeaderSource* response_headers = nullptr;  // not owned; may be null
};

// ---------------------------------------------------------------------------------------------
// The format.

// Envoy's default format with weft's names; %REQ(:PATH)% is already the original path.
inline constexpr std::string_view kDefaultAccessLogFormat =
    "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" "
    "%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% "
    "%RESP(X-WEFT-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" "
    "\"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\"\n";

// A compiled format. Immutable after compilation, so one instance may be used by every worker
// concurrently.
class AccessLogFormatter {
 public:
  // Text format: literal text with %COMMAND% substitutions; "%%" is a literal '%'. A '\n' is
  // appended if the format does not end with one, so every entry is one line.
  static Result<AccessLogFormatter> compileText(std::string_view format);
  // JSON format: key -> format string. Output is one JSON object per line with keys sorted. A
  // value that is exactly one command is typed (numbers as numbers, missing as null); any other
  // value is a string with commands substituted ("-" for missing).
  static Result<AccessLogFormatter> compileJson(
      const std::vector<std::pair<std::string, std::string>>& fields);
  // From config: json_format if set, else text_format if non-empty, else the default format.
  static Result<AccessLogFormatter> fromConfig(const v1::AccessLog& config);

  // Appends exactly one formatted entry, ending in '\n', to `out`.
  void format(const AccessLogEntry& entry, std::string& out) const;

  // Lowercase names of the regular (non-pseudo) headers the format reads through
  // AccessLogEntry::request_headers / response_headers, sorted and unique. A proxy that does not
  // keep its header map until the request ends can keep just these.
  std::vector<std::string> requestHeaderNames() const;
  std::vector<std::string> responseHeaderNames() const;

  // Opaque compiled pieces (public so that access_log.cc's helpers can name them).
  struct Source;
  struct Piece;
  struct Field;

  AccessLogFormatter(AccessLogFormatter&&) noexcept;
  AccessLogFormatter& operator=(AccessLogFormatter&&) noexcept;
  ~AccessLogFormatter();

 private:
  AccessLogFormatter();
  bool json_ = false;
  std::vector<Field> fields_;  // text: exactly one field with an empty key
};

// ---------------------------------------------------------------------------------------------
// The writer.

// Bounded single-producer/single-consumer byte ring. The producer pushes whole records (lines) or
// nothing; the consumer reads what has been published and releases it after use. Producer and
// consumer each touch only their own index (plain atomic loads and stores, no read-modify-write).
// Thread-safety: exactly one producer thread and one consumer thread at a time.
class SpscByteRing {
 public:
  // `capacity` is rounded up to a power of two (minimum 64 bytes).
  explicit SpscByteRing(size_t capacity);
  SpscByteRing(const SpscByteRing&) = delete;
  SpscByteRing& operator=(const SpscByteRing&) = delete;

  // Producer. Copies all of `bytes` and publishes it, or returns false (ring too full) and
  // changes nothing.
  bool tryPush(std::string_view bytes);
  // Producer. Bytes in the ring as last seen by the producer (an upper bound on the truth).
  size_t producerUsed() const { return head_.load(std::memory_order_relaxed) - cached_tail_; }

  // Consumer. The published bytes in order, in at most two pieces (the second after wrap-around).
  struct Readable {
    std::string_view first;
    std::string_view second;
    size_t size() const { return first.size() + second.size(); }
  };
  Readable peek() const;
  // Consumer. Releases the first `n` bytes of what peek() returned.
  void consume(size_t n);

  size_t capacity() const { return mask_ + 1; }

 private:
  // Producer-owned line: head_ (published end) and the producer's cached copy of tail_.
  alignas(64) std::atomic<uint64_t> head_{0};
  uint64_t cached_tail_ = 0;
  // Consumer-owned line.
  alignas(64) std::atomic<uint64_t> tail_{0};
  alignas(64) size_t mask_;
  std::unique_ptr<char[]> buf_;
};

struct AccessLogWriterOptions {
  // Ring size per worker (and one more for unbound threads). A line that does not fit is dropped.
  size_t ring_bytes = 256 * 1024;
  // Longest time a line waits in a ring before the writer thread writes it. The writer also
  // wakes as soon as any ring is half full.
  std::chrono::milliseconds flush_interval{100};
};

// One output (file or /dev/stdout, /dev/stderr) with one background writer thread. Shared by
// every access log that names the same path (see AccessLogManager).
class AccessLogWriter {
 public:
  // Opens (creating, appending) the file and starts the writer thread. `num_workers`: worker
  // threads bound with stats::bindWorkerThread; each gets its own ring. Counters may be null.
  static Result<std::shared_ptr<AccessLogWriter>> open(
      std::string path, uint32_t num_workers, AccessLogWriterOptions options,
      std::shared_ptr<stats::Counter> dropped, std::shared_ptr<stats::Counter> write_errors);
  // Calls stop().
  ~AccessLogWriter();
  AccessLogWriter(const AccessLogWriter&) = delete;
  AccessLogWriter& operator=(const AccessLogWriter&) = delete;

  // Request path. Queues `line` (which should end in '\n') for writing. A bound worker thread
  // uses its own ring: no lock, no syscall except a rare wake-up when its ring passes half full.
  // Unbound threads share one ring guarded by a mutex (they are never on the request path).
  // Returns false, and counts the line as dropped, when the ring is full or after stop().
  bool write(std::string_view line);

  // Asks the writer thread to close and reopen the file (log rotation) after writing what is
  // queued. Returns immediately. Async-signal-safe, so it may be called from a signal handler.
  // A no-op for /dev/stdout and /dev/stderr.
  void reopen();
  // Blocks until every line queued before the call has been written (or dropped on a write error).
  // Not for the request path.
  void flush();
  // Writes everything queued, then joins the writer thread. Idempotent; later write()s drop.
  void stop();

  const std::string& path() const { return path_; }

  struct Ring;  // a SpscByteRing plus its wake-up flag; defined in access_log.cc

 private:
  AccessLogWriter(std::string path, uint32_t num_workers, AccessLogWriterOptions options,
                  std::shared_ptr<stats::Counter> dropped,
                  std::shared_ptr<stats::Counter> write_errors);
  void kick();
  void run();
  void drainAll();
  void reopenFile();
  void countDrop();

  const std::string path_;
  const AccessLogWriterOptions options_;
  const std::shared_ptr<stats::Counter> dropped_;
  const std::shared_ptr<stats::Counter> write_errors_;
  // rings_[0]: unbound threads (producer side under shared_mu_); rings_[w + 1]: worker w.
  std::vector<std::unique_ptr<Ring>> rings_;
  std::mutex shared_mu_;

  int fd_ = -1;
  bool owns_fd_ = false;   // false for stdout/stderr
  int wake_fd_ = -1;       // eventfd
  bool in_error_ = false;  // writer thread only: suppresses repeated error logs

  std::atomic<bool> stopping_{false};
  std::atomic<bool> stopped_{false};
  std::atomic<bool> reopen_requested_{false};

  std::mutex flush_mu_;  // guards the flush counters and `exited_`
  std::condition_variable flush_cv_;
  uint64_t flush_requested_ = 0;
  uint64_t flush_done_ = 0;
  bool exited_ = false;

  std::mutex stop_mu_;  // serialises stop()
  std::thread thread_;
};

// Hands out one writer per path, so listeners that log to the same file share its thread and
// interleave whole lines. Thread-safe; used at config load on the main thread.
class AccessLogManager {
 public:
  // Writers get one ring per worker of `registry` (Registry::numWorkers()), and their counters
  // (weft_access_log_dropped_total, weft_access_log_write_errors_total, label path) from it.
  explicit AccessLogManager(stats::Registry& registry, AccessLogWriterOptions options = {});
  // Stops every writer (see stopAll()).
  ~AccessLogManager();

  // The writer for `path`, opened on first use.
  Result<std::shared_ptr<AccessLogWriter>> writerFor(const std::string& path);
  // reopen() on every writer (e.g. on SIGUSR1, from the main thread).
  void reopenAll();
  // Stops and forgets writers that nobody but the manager holds any more; call after a config
  // reload has released the old snapshot. The stop (drain and join) runs on the calling thread,
  // never on a worker. Returns how many were released.
  size_t releaseUnused();
  // Drains and stops every writer (shutdown). Writers still referenced elsewhere drop later lines.
  void stopAll();

 private:
  stats::Registry& registry_;
  const AccessLogWriterOptions options_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<AccessLogWriter>> writers_;
};

// One configured access log: a compiled format plus the writer of its path.
class AccessLog {
 public:
  // Compiles the format and gets the writer from `manager`. Errors name the problem (unknown
  // command, unopenable file).
  static Result<std::unique_ptr<AccessLog>> create(const v1::AccessLog& config,
                                                   AccessLogManager& manager);
  AccessLog(AccessLogFormatter formatter, std::shared_ptr<AccessLogWriter> writer);

  // Worker thread, at the end of a request. Formats into a thread-local buffer (no allocation
  // once warm) and queues the line; never blocks.
  void log(const AccessLogEntry& entry) const;

  const AccessLogFormatter& formatter() const { return formatter_; }
  AccessLogWriter& writer() const { return *writer_; }

 private:
  AccessLogFormatter formatter_;
  std::shared_ptr<AccessLogWriter> writer_;
};

}  // namespace weft::proxy
