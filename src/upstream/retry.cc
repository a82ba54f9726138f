#include "upstream/retry.h"

#include <algorithm>

namespace weft::upstream {

namespace {

using Kind = AttemptOutcome::Kind;

constexpr std::string_view kHttpEvents =
    "server-error, gateway-error, client-error, stream-error, 503";
constexpr std::string_view kTcpEvents = "connection-error";
constexpr std::string_view kGrpcEvents =
    "cancelled, deadline-exceeded, internal, resource-exhausted, unavailable";

}  // namespace

std::string_view retryDecisionName(RetryDecision d) {
  switch (d) {
    case RetryDecision::kRetry:
      return "retry";
    case RetryDecision::kNotRetriable:
      return "not retriable";
    case RetryDecision::kRetriesExhausted:
      return "retries exhausted";
  }
  return "?";
}

Result<RetryPolicy> RetryPolicy::compile(const RetryPolicyConfig& config) {
  RetryPolicy p;
  p.max_retries_ = config.max_retries;
  if (config.per_try_timeout.count() < 0) return makeError("per_try_timeout must not be negative");
  p.per_try_timeout_ = config.per_try_timeout;
  if (config.backoff_base.count() < 0 || config.backoff_max.count() < 0)
    return makeError("retry back-off intervals must not be negative");
  p.backoff_base_ = config.backoff_base.count() > 0 ? config.backoff_base : kDefaultBackoffBase;
  p.backoff_max_ = config.backoff_max.count() > 0 ? config.backoff_max
                                                  : p.backoff_base_ * kDefaultBackoffMaxFactor;
  if (p.backoff_max_ < p.backoff_base_)
    return makeError("retry back-off max interval must be at least the base interval");

  // Envoy's "reset": the upstream did not answer at all.
  const uint8_t reset = bit(Kind::kConnectFailure) | bit(Kind::kReset) | bit(Kind::kRefusedStream) |
                        bit(Kind::kPerTryTimeout);
  for (const std::string& e : config.http_retry_events) {
    if (e == "server-error") {
      for (int s = 500; s <= 508; ++s) p.statuses_.set(s);
      p.statuses_.set(510);
      p.statuses_.set(511);
      p.failures_ |= reset;
    } else if (e == "gateway-error") {
      for (int s = 502; s <= 504; ++s) p.statuses_.set(s);
      p.failures_ |= reset;
    } else if (e == "client-error") {
      p.statuses_.set(409);
    } else if (e == "stream-error") {
      p.failures_ |= bit(Kind::kRefusedStream);
    } else if (e == "503") {
      p.statuses_.set(503);
    } else {
      return makeError("unknown http retry event \"" + e +
                       "\" (valid: " + std::string(kHttpEvents) + ")");
    }
  }
  for (const std::string& e : config.tcp_retry_events) {
    if (e == "connection-error") {
      p.failures_ |= bit(Kind::kConnectFailure) | bit(Kind::kReset);
    } else {
      return makeError("unknown tcp retry event \"" + e + "\" (valid: " + std::string(kTcpEvents) +
                       ")");
    }
  }
  for (const std::string& e : config.grpc_retry_events) {
    int code;
    if (e == "cancelled") {
      code = grpc_status::kCancelled;
    } else if (e == "deadline-exceeded") {
      code = grpc_status::kDeadlineExceeded;
    } else if (e == "internal") {
      code = grpc_status::kInternal;
    } else if (e == "resource-exhausted") {
      code = grpc_status::kResourceExhausted;
    } else if (e == "unavailable") {
      code = grpc_status::kUnavailable;
    } else {
      return makeError("unknown grpc retry event \"" + e +
                       "\" (valid: " + std::string(kGrpcEvents) + ")");
    }
    p.grpc_statuses_ |= 1u << code;
  }
  return p;
}

RetryPolicy RetryPolicy::meshDefault() {
  RetryPolicy p;
  p.max_retries_ = 2;
  p.statuses_.set(503);
  p.failures_ = bit(Kind::kConnectFailure) | bit(Kind::kReset) | bit(Kind::kRefusedStream);
  return p;
}

bool RetryPolicy::retriable(const AttemptOutcome& o) const {
  if (o.kind != Kind::kResponse) return (failures_ & bit(o.kind)) != 0;
  // A gRPC answer is retried on its grpc-status (grpc events) or on its HTTP status (http
  // events: e.g. a 503 from something in front of the gRPC server).
  if (o.grpc_status >= 0 && o.grpc_status < 32 && (grpc_statuses_ & (1u << o.grpc_status)) != 0)
    return true;
  return o.http_status >= 0 && o.http_status < int(statuses_.size()) &&
         statuses_.test(size_t(o.http_status));
}

RetryDecision RetryPolicy::decide(const AttemptOutcome& outcome, uint32_t retries_done) const {
  if (!retriable(outcome)) return RetryDecision::kNotRetriable;
  if (retries_done >= max_retries_) return RetryDecision::kRetriesExhausted;
  return RetryDecision::kRetry;
}

Duration RetryPolicy::backoff(uint32_t retry, Random& random) const {
  if (retry == 0) retry = 1;
  // base * (2^retry - 1), saturating: past 2^20 the cap has long been reached.
  uint64_t base = uint64_t(backoff_base_.count());
  uint64_t cap = uint64_t(backoff_max_.count());
  uint64_t multiplier = retry >= 20 ? (1ull << 20) - 1 : (1ull << retry) - 1;
  uint64_t ceiling = base > cap / multiplier ? cap : std::min(cap, base * multiplier);
  if (ceiling == 0) return Duration(0);
  return Duration(int64_t(random.uniform(ceiling)));
}

int httpStatusForGrpc(int grpc_status) {
  switch (grpc_status) {
    case 0:
      return 200;  // OK
    case 1:
      return 499;  // CANCELLED
    case 2:
      return 500;  // UNKNOWN
    case 3:
      return 400;  // INVALID_ARGUMENT
    case 4:
      return 504;  // DEADLINE_EXCEEDED
    case 5:
      return 404;  // NOT_FOUND
    case 6:
      return 409;  // ALREADY_EXISTS
    case 7:
      return 403;  // PERMISSION_DENIED
    case 8:
      return 429;  // RESOURCE_EXHAUSTED
    case 9:
      return 400;  // FAILED_PRECONDITION
    case 10:
      return 409;  // ABORTED
    case 11:
      return 400;  // OUT_OF_RANGE
    case 12:
      return 501;  // UNIMPLEMENTED
    case 13:
      return 500;  // INTERNAL
    case 14:
      return 503;  // UNAVAILABLE
    case 15:
      return 500;  // DATA_LOSS
    case 16:
      return 401;  // UNAUTHENTICATED
    default:
      return 500;
  }
}

const Host* pickForRetry(LoadBalancer& lb, std::span<const net::Address> tried,
                         uint32_t max_picks) {
  const Host* h = nullptr;
  for (uint32_t i = 0; i < std::max<uint32_t>(max_picks, 1); ++i) {
    h = lb.pick();
    if (!h) return nullptr;
    bool seen = false;
    for (const net::Address& a : tried) {
      if (addressEqual(a, h->address())) {
        seen = true;
        break;
      }
    }
    if (!seen) return h;
  }
  return h;
}

}  // namespace weft::upstream
