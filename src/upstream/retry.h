#pragma once
// Retry policy: which attempt outcomes are retried, how many times, after what back-off, and how
// much request body may be held back for a retry. See docs/resilience.md.
//
// A RetryPolicy is compiled once (on the main thread, from the route's config) into bit sets and
// is immutable afterwards: it is shared by every worker as part of the Snapshot and read without
// locks. decide() and backoff() are pure functions of their arguments (backoff() draws from the
// caller's Random), so a session asks them on its own worker with no shared state.
//
// Event names are App Mesh's (HttpRetryPolicy / GrpcRetryPolicy):
//   http  server-error   responses 500-508, 510, 511, and Envoy's "reset" (see below)
//         gateway-error  responses 502, 503, 504, and Envoy's "reset"
//         client-error   response 409
//         stream-error   HTTP/2 REFUSED_STREAM
//         503            response 503 only (weft's; App Mesh's implicit default retry uses it)
//   tcp   connection-error  connect failure (including connect timeout), and the connection
//                           closing or resetting before any response byte
//   grpc  cancelled (1), deadline-exceeded (4), resource-exhausted (8), internal (13),
//         unavailable (14): the grpc-status of the attempt
// "reset" (App Mesh: "Both server-error and gateway-error include the Envoy reset policy") means
// the upstream did not answer at all: connect failure, reset or close before the response head,
// refused stream, per-try timeout.

#include <bitset>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "common/time.h"
#include "net/socket.h"
#include "upstream/load_balancer.h"

namespace weft::upstream {

// How one attempt ended, as far as retrying is concerned.
struct AttemptOutcome {
  enum class Kind : uint8_t {
    kResponse,        // a response head arrived: `http_status`, and `grpc_status` if known
    kConnectFailure,  // TCP/TLS connect failed or timed out; nothing was sent
    kReset,           // the connection or stream closed/reset before any response byte
    kRefusedStream,   // HTTP/2 RST_STREAM REFUSED_STREAM (or GOAWAY past the stream id)
    kPerTryTimeout,   // no response head within the policy's per_try_timeout
  };
  Kind kind = Kind::kResponse;
  int http_status = 0;
  // grpc-status from the response headers (a trailers-only response) or from the trailers;
  // -1 when absent (not gRPC, or not yet known).
  int grpc_status = -1;

  static AttemptOutcome response(int http_status, int grpc_status = -1) {
    return {Kind::kResponse, http_status, grpc_status};
  }
  static AttemptOutcome failure(Kind kind) { return {kind, 0, -1}; }
};

enum class RetryDecision : uint8_t {
  kRetry,             // retry (after backoff(); another host if there is one)
  kNotRetriable,      // the outcome is not one the policy retries (includes success)
  kRetriesExhausted,  // retriable, but max_retries retries were already made
};
std::string_view retryDecisionName(RetryDecision d);

// The configuration as App Mesh spells it.
struct RetryPolicyConfig {
  uint32_t max_retries = 0;
  // Timeout of each attempt (first one included). Zero: none, the request timeout bounds it.
  Duration per_try_timeout{};
  std::vector<std::string> http_retry_events;
  std::vector<std::string> tcp_retry_events;
  std::vector<std::string> grpc_retry_events;
  // Back-off between attempts: full jitter over base * (2^n - 1), capped at max. Zero max means
  // 10 * base (Envoy's default); zero base means kDefaultBackoffBase.
  Duration backoff_base{};
  Duration backoff_max{};
};

class RetryPolicy {
 public:
  static constexpr Duration kDefaultBackoffBase = milliseconds(25);
  static constexpr uint32_t kDefaultBackoffMaxFactor = 10;

  // A policy that never retries.
  RetryPolicy() = default;
  // Validates and compiles. Errors name the offending event and list the valid ones.
  static Result<RetryPolicy> compile(const RetryPolicyConfig& config);
  // The virtual-node route default (DESIGN §3, App Mesh's): 2 retries on 503, connect failure,
  // reset before response and refused stream; no per-try timeout.
  static RetryPolicy meshDefault();

  // `retries_done`: how many retries were already made for this request (0 after the first
  // attempt). The caller asks only while nothing of this attempt's response has been sent
  // downstream (a response whose body already streamed to the client cannot be retried).
  RetryDecision decide(const AttemptOutcome& outcome, uint32_t retries_done) const;
  // Whether the outcome is one this policy retries, ignoring the attempt count.
  bool retriable(const AttemptOutcome& outcome) const;

  // Delay before retry number `retry` (1 for the first retry): uniform in
  // [0, min(base * (2^retry - 1), max)). Never negative, never above max.
  Duration backoff(uint32_t retry, Random& random) const;

  uint32_t maxRetries() const { return max_retries_; }
  Duration perTryTimeout() const { return per_try_timeout_; }
  Duration backoffBase() const { return backoff_base_; }
  Duration backoffMax() const { return backoff_max_; }
  bool enabled() const { return max_retries_ > 0; }

 private:
  // Local failures the policy retries, one bit per AttemptOutcome::Kind (kResponse unused).
  static constexpr uint8_t bit(AttemptOutcome::Kind k) { return uint8_t(1u << uint8_t(k)); }
  uint32_t max_retries_ = 0;
  Duration per_try_timeout_{};
  Duration backoff_base_ = kDefaultBackoffBase;
  Duration backoff_max_ = kDefaultBackoffBase * kDefaultBackoffMaxFactor;
  std::bitset<600> statuses_;   // HTTP statuses retried (100..599)
  uint32_t grpc_statuses_ = 0;  // bit n: grpc-status n retried (0..16)
  uint8_t failures_ = 0;        // bit(kind) for local failures retried
};

// gRPC status codes the policy knows by name.
namespace grpc_status {
inline constexpr int kOk = 0;
inline constexpr int kCancelled = 1;
inline constexpr int kUnknown = 2;
inline constexpr int kDeadlineExceeded = 4;
inline constexpr int kResourceExhausted = 8;
inline constexpr int kInternal = 13;
inline constexpr int kUnavailable = 14;
}  // namespace grpc_status

// The HTTP status a gRPC status corresponds to (Google API / grpc-gateway mapping), for outlier
// detection and stats of gRPC calls, which are HTTP 200 whatever their grpc-status: OK 200,
// CANCELLED 499, UNKNOWN 500, INVALID_ARGUMENT 400, DEADLINE_EXCEEDED 504, NOT_FOUND 404,
// ALREADY_EXISTS 409, PERMISSION_DENIED 403, RESOURCE_EXHAUSTED 429, FAILED_PRECONDITION 400,
// ABORTED 409, OUT_OF_RANGE 400, UNIMPLEMENTED 501, INTERNAL 500, UNAVAILABLE 503,
// DATA_LOSS 500, UNAUTHENTICATED 401; anything else 500.
int httpStatusForGrpc(int grpc_status);

// Retry budget (Envoy's retry_budget): at most max(min_concurrency, budget_percent % of the
// active requests) retries may be in flight at once per cluster (per worker here). Stops retries
// from multiplying the load when a whole cluster fails. Enforced by CircuitBreaker (kRetries).
struct RetryBudget {
  uint32_t budget_percent = 20;
  uint32_t min_concurrency = 3;
  // Retries allowed in flight when `active_requests` requests are.
  uint32_t limit(uint32_t active_requests) const {
    uint64_t by_percent = uint64_t(active_requests) * budget_percent / 100;
    return by_percent > min_concurrency ? uint32_t(by_percent) : min_concurrency;
  }
};

// Request bodies are buffered for a retry only up to this many bytes. A body known (by
// content-length) to be larger is streamed and its request is not retried; a chunked body is
// buffered while it fits and the request stops being retriable the moment it does not. 64 KiB
// per request in flight keeps a sidecar's worst case bounded (1000 concurrent requests: 64 MiB).
inline constexpr uint64_t kMaxRetryBodyBytes = 64 * 1024;
// Whether a request whose body has `content_length` bytes (nullopt: chunked, unknown) can be
// buffered for retry, judged before any body byte arrived.
inline bool bodyFitsRetryBuffer(std::optional<uint64_t> content_length) {
  return !content_length || *content_length <= kMaxRetryBodyBytes;
}
// While a chunked body streams in: still retriable after `buffered` body bytes?
inline bool stillRetriable(uint64_t buffered) { return buffered <= kMaxRetryBodyBytes; }

// Picks a host for a retry that is none of `tried` (compared by address) when the balancer can
// give one: up to `max_picks` picks, the first untried one wins, else the last pick. nullptr
// only if the balancer has no host. (App Mesh/Envoy: "another endpoint on each retry when there
// is one", Envoy's previous_hosts predicate with host_selection_retry_max_attempts.)
const Host* pickForRetry(LoadBalancer& lb, std::span<const net::Address> tried,
                         uint32_t max_picks = 3);

}  // namespace weft::upstream
