#include "control/stacks/json_value.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>

#include "common/json.h"

namespace weft::control::stacks {

Value Value::boolean(bool b) {
  Value v;
  v.type_ = Type::kBool;
  v.bool_ = b;
  return v;
}

Value Value::number(std::string text) {
  Value v;
  v.type_ = Type::kNumber;
  v.text_ = std::move(text);
  return v;
}

Value Value::number(int64_t n) { return number(std::to_string(n)); }

Value Value::string(std::string s) {
  Value v;
  v.type_ = Type::kString;
  v.text_ = std::move(s);
  return v;
}

Value Value::array(Array items) {
  Value v;
  v.type_ = Type::kArray;
  v.array_ = std::move(items);
  return v;
}

Value Value::object(Object members) {
  Value v;
  v.type_ = Type::kObject;
  v.object_ = std::move(members);
  return v;
}

const Value* Value::find(std::string_view key) const {
  if (type_ != Type::kObject) return nullptr;
  for (const auto& [k, v] : object_)
    if (k == key) return &v;
  return nullptr;
}

Value* Value::find(std::string_view key) {
  if (type_ != Type::kObject) return nullptr;
  for (auto& [k, v] : object_)
    if (k == key) return &v;
  return nullptr;
}

void Value::set(std::string key, Value v) {
  if (Value* existing = find(key)) {
    *existing = std::move(v);
    return;
  }
  object_.emplace_back(std::move(key), std::move(v));
}

bool Value::erase(std::string_view key) {
  auto it =
      std::find_if(object_.begin(), object_.end(), [&](const Member& m) { return m.first == key; });
  if (it == object_.end()) return false;
  object_.erase(it);
  return true;
}

std::string Value::scalarText() const {
  switch (type_) {
    case Type::kBool:
      return bool_ ? "true" : "false";
    case Type::kNumber:
    case Type::kString:
      return text_;
    default:
      return "";
  }
}

bool Value::operator==(const Value& o) const {
  if (type_ != o.type_) return false;
  switch (type_) {
    case Type::kNull:
      return true;
    case Type::kBool:
      return bool_ == o.bool_;
    case Type::kNumber:
      return text_ == o.text_ ||
             std::strtod(text_.c_str(), nullptr) == std::strtod(o.text_.c_str(), nullptr);
    case Type::kString:
      return text_ == o.text_;
    case Type::kArray:
      return array_ == o.array_;
    case Type::kObject: {
      if (object_.size() != o.object_.size()) return false;
      for (const auto& [k, v] : object_) {
        const Value* other = o.find(k);
        if (other == nullptr || !(*other == v)) return false;
      }
      return true;
    }
  }
  return false;
}

// ---- JSON output ----

namespace {

void newline(std::string& out, int indent, int depth) {
  if (indent == 0) return;
  out += '\n';
  out.append(static_cast<size_t>(indent * depth), ' ');
}

void writeJson(std::string& out, const Value& v, int indent, int depth) {
  switch (v.type()) {
    case Value::Type::kNull:
      out += "null";
      return;
    case Value::Type::kBool:
      out += v.asBool() ? "true" : "false";
      return;
    case Value::Type::kNumber:
      out += v.text();
      return;
    case Value::Type::kString:
      appendJsonString(out, v.text());
      return;
    case Value::Type::kArray: {
      if (v.items().empty()) {
        out += "[]";
        return;
      }
      out += '[';
      bool first = true;
      for (const Value& item : v.items()) {
        if (!first) out += ',';
        first = false;
        newline(out, indent, depth + 1);
        writeJson(out, item, indent, depth + 1);
      }
      newline(out, indent, depth);
      out += ']';
      return;
    }
    case Value::Type::kObject: {
      if (v.members().empty()) {
        out += "{}";
        return;
      }
      out += '{';
      bool first = true;
      for (const auto& [k, m] : v.members()) {
        if (!first) out += ',';
        first = false;
        newline(out, indent, depth + 1);
        appendJsonString(out, k);
        out += indent ? ": " : ":";
        writeJson(out, m, indent, depth + 1);
      }
      newline(out, indent, depth);
      out += '}';
      return;
    }
  }
}

// A string YAML would read back as the same string when written plain.
bool plainSafe(std::string_view s) {
  if (s.empty() || s.size() > 200) return false;
  static constexpr std::string_view kReserved[] = {
      "true", "True", "TRUE", "false", "False", "FALSE", "null", "Null", "NULL", "~",
      "yes",  "Yes",  "YES",  "no",    "No",    "NO",    "on",   "On",   "ON",   "off",
      "Off",  "OFF",  "y",    "Y",     "n",     "N",     ".inf", ".nan", "-.inf"};
  for (std::string_view r : kReserved)
    if (s == r) return false;
  char c0 = s[0];
  if (!(std::isalpha(static_cast<unsigned char>(c0)) || c0 == '/' || c0 == '_')) return false;
  for (char c : s) {
    bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.' ||
              c == '/' || c == '*' || c == '@' || c == '+' || c == '=' || c == ',';
    if (!ok && c != ':') return false;
  }
  // ": " can't occur (no spaces); a ':' inside (an ARN) is fine in block context.
  return true;
}

void writeYamlScalar(std::string& out, const Value& v) {
  if (v.isString()) {
    if (plainSafe(v.text())) {
      out += v.text();
    } else {
      appendJsonString(out, v.text());  // a JSON string is a YAML double-quoted scalar
    }
    return;
  }
  writeJson(out, v, 0, 0);
}

bool emptyCollection(const Value& v) {
  return (v.isArray() && v.items().empty()) || (v.isObject() && v.members().empty());
}

void writeYaml(std::string& out, const Value& v, int depth);

// Writes `v` after "key:" or "-": inline for scalars and empty collections, else on new lines.
void writeYamlChild(std::string& out, const Value& v, int depth, bool after_dash) {
  if (v.isScalar() || emptyCollection(v)) {
    out += ' ';
    if (v.isScalar()) {
      writeYamlScalar(out, v);
    } else {
      out += v.isArray() ? "[]" : "{}";
    }
    out += '\n';
    return;
  }
  if (after_dash && v.isObject()) {
    // "- key: value" with the following keys aligned under the first.
    std::string nested;
    writeYaml(nested, v, depth);
    size_t pad = static_cast<size_t>(depth * 2);
    out += ' ';
    out += nested.substr(pad);
    return;
  }
  out += '\n';
  writeYaml(out, v, depth);
}

void writeYaml(std::string& out, const Value& v, int depth) {
  std::string pad(static_cast<size_t>(depth * 2), ' ');
  if (v.isArray() && !v.items().empty()) {
    for (const Value& item : v.items()) {
      out += pad;
      out += '-';
      writeYamlChild(out, item, depth + 1, true);
    }
    return;
  }
  if (v.isObject() && !v.members().empty()) {
    for (const auto& [k, m] : v.members()) {
      out += pad;
      std::string key;
      if (plainSafe(k)) {
        key = k;
      } else {
        appendJsonString(key, k);
      }
      if (key.size() > 1000) {
        // An implicit key may not exceed 1024 characters: use the explicit "? key" form.
        out += "? " + key + "\n" + pad;
      } else {
        out += key;
      }
      out += ':';
      writeYamlChild(out, m, depth + 1, false);
    }
    return;
  }
  out += pad;
  if (v.isScalar()) {
    writeYamlScalar(out, v);
  } else {
    out += v.isArray() ? "[]" : "{}";
  }
  out += '\n';
}

}  // namespace

std::string toJson(const Value& v, JsonOptions options) {
  std::string out;
  writeJson(out, v, options.indent, 0);
  return out;
}

std::string toYaml(const Value& v) {
  std::string out;
  writeYaml(out, v, 0);
  return out;
}

// ---- JSON input ----

bool isJsonNumber(std::string_view s) {
  size_t i = 0, n = s.size();
  if (i < n && s[i] == '-') ++i;
  if (i >= n) return false;
  if (s[i] == '0') {
    ++i;
  } else if (s[i] >= '1' && s[i] <= '9') {
    while (i < n && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
  } else {
    return false;
  }
  if (i < n && s[i] == '.') {
    ++i;
    size_t start = i;
    while (i < n && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
    if (i == start) return false;
  }
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < n && (s[i] == '+' || s[i] == '-')) ++i;
    size_t start = i;
    while (i < n && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
    if (i == start) return false;
  }
  return i == n;
}

namespace {

class JsonParser {
 public:
  explicit JsonParser(std::string_view text) : s_(text) {}

  Result<Value> parseDocument() {
    skipWs();
    auto v = parseValue(0);
    if (!v) return v;
    skipWs();
    if (pos_ != s_.size()) return fail("unexpected text after the JSON value");
    return v;
  }

 private:
  Unexpected<Error> fail(std::string_view what) {
    size_t line = 1, col = 1;
    for (size_t i = 0; i < pos_ && i < s_.size(); ++i) {
      if (s_[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    return makeError("JSON line " + std::to_string(line) + " column " + std::to_string(col) + ": " +
                     std::string(what));
  }

  void skipWs() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r'))
      ++pos_;
  }

  bool consume(std::string_view lit) {
    if (s_.substr(pos_, lit.size()) != lit) return false;
    pos_ += lit.size();
    return true;
  }

  Result<Value> parseValue(int depth) {
    if (depth > kMaxDepth) return fail("nested too deeply");
    if (pos_ >= s_.size()) return fail("unexpected end of input");
    char c = s_[pos_];
    if (c == '{') return parseObject(depth);
    if (c == '[') return parseArray(depth);
    if (c == '"') {
      auto s = parseString();
      if (!s) return Unexpected<Error>{s.error()};
      return Value::string(std::move(*s));
    }
    if (consume("true")) return Value::boolean(true);
    if (consume("false")) return Value::boolean(false);
    if (consume("null")) return Value();
    if (c == '-' || (c >= '0' && c <= '9')) {
      size_t start = pos_;
      while (pos_ < s_.size() &&
             (std::isdigit(static_cast<unsigned char>(s_[pos_])) || s_[pos_] == '-' ||
              s_[pos_] == '+' || s_[pos_] == '.' || s_[pos_] == 'e' || s_[pos_] == 'E'))
        ++pos_;
      std::string_view num = s_.substr(start, pos_ - start);
      if (!isJsonNumber(num)) {
        pos_ = start;
        return fail("bad number");
      }
      return Value::number(std::string(num));
    }
    return fail(std::string("unexpected character '") + c + "'");
  }

  Result<Value> parseObject(int depth) {
    ++pos_;  // '{'
    Value obj = Value::object();
    skipWs();
    if (consume("}")) return obj;
    while (true) {
      skipWs();
      if (pos_ >= s_.size() || s_[pos_] != '"') return fail("expected a string key");
      auto key = parseString();
      if (!key) return Unexpected<Error>{key.error()};
      skipWs();
      if (!consume(":")) return fail("expected ':' after an object key");
      skipWs();
      auto v = parseValue(depth + 1);
      if (!v) return v;
      obj.set(std::move(*key), std::move(*v));  // a duplicate key: the last one wins
      skipWs();
      if (consume("}")) return obj;
      if (!consume(",")) return fail("expected ',' or '}' in an object");
    }
  }

  Result<Value> parseArray(int depth) {
    ++pos_;  // '['
    Value arr = Value::array();
    skipWs();
    if (consume("]")) return arr;
    while (true) {
      skipWs();
      auto v = parseValue(depth + 1);
      if (!v) return v;
      arr.push(std::move(*v));
      skipWs();
      if (consume("]")) return arr;
      if (!consume(",")) return fail("expected ',' or ']' in an array");
    }
  }

  static void appendUtf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  bool hex4(uint32_t& out) {
    if (pos_ + 4 > s_.size()) return false;
    out = 0;
    for (int i = 0; i < 4; ++i) {
      char c = s_[pos_++];
      out <<= 4;
      if (c >= '0' && c <= '9') {
        out |= static_cast<uint32_t>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        out |= static_cast<uint32_t>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        out |= static_cast<uint32_t>(c - 'A' + 10);
      } else {
        return false;
      }
    }
    return true;
  }

  Result<std::string> parseString() {
    ++pos_;  // '"'
    std::string out;
    while (true) {
      if (pos_ >= s_.size()) return fail("unterminated string");
      char c = s_[pos_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) return fail("control character in a string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= s_.size()) return fail("unterminated string");
      char e = s_[pos_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out += e;
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          uint32_t cp;
          if (!hex4(cp)) return fail("bad \\u escape");
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            uint32_t lo;
            if (consume("\\u") && hex4(lo) && lo >= 0xDC00 && lo <= 0xDFFF) {
              cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else {
              return fail("unpaired surrogate in a \\u escape");
            }
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return fail("unpaired surrogate in a \\u escape");
          }
          appendUtf8(out, cp);
          break;
        }
        default:
          return fail("bad escape in a string");
      }
    }
  }

  std::string_view s_;
  size_t pos_ = 0;
};

}  // namespace

Result<Value> parseJson(std::string_view text) { return JsonParser(text).parseDocument(); }

}  // namespace weft::control::stacks
