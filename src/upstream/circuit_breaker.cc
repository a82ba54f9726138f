#include "upstream/circuit_breaker.h"

#include "common/log.h"

namespace weft::upstream {

std::string_view resourceLimitName(Resource r) {
  switch (r) {
    case Resource::kConnections:
      return "max_connections";
    case Resource::kPendingRequests:
      return "max_pending_requests";
    case Resource::kRequests:
      return "max_requests";
    case Resource::kRetries:
      return "max_retries";
  }
  return "?";
}

std::string_view CircuitBreaker::overflowMessage(Resource r) {
  switch (r) {
    case Resource::kConnections:
      return "upstream overflow: max_connections";
    case Resource::kPendingRequests:
      return "upstream overflow: max_pending_requests";
    case Resource::kRequests:
      return "upstream overflow: max_requests";
    case Resource::kRetries:
      return "upstream overflow: max_retries (retry budget)";
  }
  return "upstream overflow";
}

CircuitBreaker::CircuitBreaker(CircuitBreakerLimits limits, CircuitBreakerStats stats)
    : limits_(std::move(limits)), stats_(std::move(stats)) {}

uint32_t CircuitBreaker::limit(Resource r) const {
  switch (r) {
    case Resource::kConnections:
      return limits_.max_connections;
    case Resource::kPendingRequests:
      return limits_.max_pending_requests;
    case Resource::kRequests:
      return limits_.max_requests;
    case Resource::kRetries:
      return limits_.retry_budget ? limits_.retry_budget->limit(active(Resource::kRequests))
                                  : limits_.max_retries;
  }
  return 0;
}

bool CircuitBreaker::tryAcquire(Resource r) {
  if (active(r) < limit(r)) {
    ++active_[size_t(r)];
    return true;
  }
  stats::Counter* c = nullptr;
  switch (r) {
    case Resource::kConnections:
      c = stats_.cx_overflow.get();
      break;
    case Resource::kPendingRequests:
      c = stats_.rq_pending_overflow.get();
      break;
    case Resource::kRequests:
      c = stats_.rq_overflow.get();
      break;
    case Resource::kRetries:
      c = stats_.rq_retry_overflow.get();
      break;
  }
  if (c) c->inc();
  return false;
}

void CircuitBreaker::release(Resource r) {
  WEFT_DCHECK(active_[size_t(r)] > 0, "CircuitBreaker::release without acquire");
  if (active_[size_t(r)] > 0) --active_[size_t(r)];
}

CircuitBreaker::Guard CircuitBreaker::acquire(Resource r) {
  return tryAcquire(r) ? Guard(this, r) : Guard();
}

CircuitBreaker::Guard& CircuitBreaker::Guard::operator=(Guard&& o) noexcept {
  if (this != &o) {
    reset();
    breaker_ = o.breaker_;
    resource_ = o.resource_;
    o.breaker_ = nullptr;
  }
  return *this;
}

void CircuitBreaker::Guard::reset() {
  if (breaker_) breaker_->release(resource_);
  breaker_ = nullptr;
}

}  // namespace weft::upstream
