#pragma once
// Result<T>: a value or an Error, shaped like std::expected<T, Error> so that moving to C++23 is
// a one-line change (`template <class T> using Result = std::expected<T, Error>`).
// The data plane never throws; every fallible function returns Result or std::error_code.

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace weft {

// A failure with a human-readable message that says what was wrong (and, where it can, how to
// fix it). `code` is free for callers that branch on the kind of failure.
struct Error {
  int code = 0;
  std::string message;
};

template <class E>
struct Unexpected {
  E error;
};

inline Unexpected<Error> makeError(std::string message, int code = 0) {
  return {Error{code, std::move(message)}};
}

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}
  Result(Unexpected<Error> e) : v_(std::in_place_index<1>, std::move(e.error)) {}

  bool has_value() const { return v_.index() == 0; }
  explicit operator bool() const { return has_value(); }
  T& value() & {
    assert(has_value());
    return std::get<0>(v_);
  }
  const T& value() const& {
    assert(has_value());
    return std::get<0>(v_);
  }
  T&& value() && {
    assert(has_value());
    return std::get<0>(std::move(v_));
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const Error& error() const {
    assert(!has_value());
    return std::get<1>(v_);
  }

 private:
  std::variant<T, Error> v_;
};

// Result<void>.
template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Unexpected<Error> e) : error_(std::move(e.error)), ok_(false) {}
  bool has_value() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return error_; }

 private:
  Error error_;
  bool ok_ = true;
};

using Status = Result<void>;

}  // namespace weft
