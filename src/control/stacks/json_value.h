#pragma once
// A JSON value, shared by StackApi (stack records) and the CLI (manifests, CloudFormation
// templates and API responses all become a Value; the CLI includes it from here because weft_cli
// links weft_control, not the other way round).
// Objects keep their keys in insertion order (so output reads like the input); equality
// ignores key order. Numbers are kept as their (normalised) JSON text, so 64-bit integers and
// decimals survive a round trip exactly.
//
// Thread-safety: a Value is a plain value type; distinct objects may be used from any threads.

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "common/result.h"

namespace weft::control::stacks {

class Value {
 public:
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };
  using Array = std::vector<Value>;
  using Member = std::pair<std::string, Value>;
  using Object = std::vector<Member>;

  Value() = default;  // null
  static Value null() { return Value(); }
  static Value boolean(bool b);
  // `text` must be a valid JSON number (see isJsonNumber()).
  static Value number(std::string text);
  static Value number(int64_t n);
  static Value string(std::string s);
  static Value array(Array items = {});
  static Value object(Object members = {});

  Type type() const { return type_; }
  bool isNull() const { return type_ == Type::kNull; }
  bool isBool() const { return type_ == Type::kBool; }
  bool isNumber() const { return type_ == Type::kNumber; }
  bool isString() const { return type_ == Type::kString; }
  bool isArray() const { return type_ == Type::kArray; }
  bool isObject() const { return type_ == Type::kObject; }
  bool isScalar() const { return !isArray() && !isObject(); }

  bool asBool() const { return bool_; }
  // Number text ("8080", "1.5e3") or the string's contents.
  const std::string& text() const { return text_; }
  const Array& items() const { return array_; }
  Array& items() { return array_; }
  const Object& members() const { return object_; }
  Object& members() { return object_; }

  // Object member lookup; nullptr when absent or when this is not an object.
  const Value* find(std::string_view key) const;
  Value* find(std::string_view key);
  // Sets (replacing) a member; this must be an object.
  void set(std::string key, Value v);
  bool erase(std::string_view key);
  void push(Value v) { array_.push_back(std::move(v)); }

  // The string if this is a string, else "".
  std::string_view str() const { return type_ == Type::kString ? std::string_view(text_) : ""; }
  // Scalar as text the way CloudFormation stringifies it: strings as-is, numbers as written,
  // booleans "true"/"false", null "".
  std::string scalarText() const;

  // Structural equality: object key order is ignored, numbers compare by value.
  bool operator==(const Value& o) const;

 private:
  Type type_ = Type::kNull;
  bool bool_ = false;
  std::string text_;
  Array array_;
  Object object_;
};

struct JsonOptions {
  int indent = 0;  // 0 = compact on one line
};

// Serialises as JSON (valid UTF-8 output whatever the strings hold).
std::string toJson(const Value& v, JsonOptions options = {});
// Serialises as block-style YAML (strings quoted when they would read as something else).
std::string toYaml(const Value& v);

// Parses one JSON text (RFC 8259; nesting at most kMaxDepth). Errors name the line and column.
inline constexpr int kMaxDepth = 200;
Result<Value> parseJson(std::string_view text);

// True if `s` is a JSON number.
bool isJsonNumber(std::string_view s);

}  // namespace weft::control::stacks
