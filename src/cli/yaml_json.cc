#include "cli/yaml_json.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <cctype>
#include <exception>
#include <map>
#include <sstream>

namespace weft::cli {

namespace {

constexpr size_t kMaxNodes = 1'000'000;

bool allDigits(std::string_view s, int base) {
  if (s.empty()) return false;
  for (char c : s) {
    bool ok = base == 8    ? (c >= '0' && c <= '7')
              : base == 16 ? std::isxdigit(static_cast<unsigned char>(c)) != 0
                           : std::isdigit(static_cast<unsigned char>(c)) != 0;
    if (!ok) return false;
  }
  return true;
}

std::string stripZeros(std::string_view digits) {
  size_t i = 0;
  while (i + 1 < digits.size() && digits[i] == '0') ++i;
  return std::string(digits.substr(i));
}

// The JSON number a YAML 1.2 core-schema plain scalar denotes, or "" if it is not one.
std::string coreNumber(std::string_view s) {
  if (s.empty()) return "";
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o')) {
    int base = s[1] == 'x' ? 16 : 8;
    std::string_view digits = s.substr(2);
    if (!allDigits(digits, base) || digits.size() > 15) return "";
    return std::to_string(std::stoll(std::string(digits), nullptr, base));
  }
  std::string out;
  size_t i = 0;
  if (s[0] == '-' || s[0] == '+') {
    if (s[0] == '-') out += '-';
    i = 1;
  }
  size_t int_start = i;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
  std::string_view int_part = s.substr(int_start, i - int_start);
  std::string_view frac;
  bool has_dot = false;
  if (i < s.size() && s[i] == '.') {
    has_dot = true;
    size_t f = ++i;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
    frac = s.substr(f, i - f);
  }
  if (int_part.empty() && frac.empty()) return "";
  if (int_part.empty() && !has_dot) return "";
  std::string exp;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    exp = "e";
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) exp += s[i++];
    size_t e = i;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
    if (i == e) return "";
    exp += s.substr(e, i - e);
  }
  if (i != s.size()) return "";
  out += int_part.empty() ? "0" : stripZeros(int_part);
  if (!frac.empty()) {
    out += '.';
    out += frac;
  }
  out += exp;
  if (!isJsonNumber(out)) return "";
  return out;
}

bool isCoreNull(std::string_view s) {
  return s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL";
}

int coreBool(std::string_view s) {  // 1 true, 0 false, -1 neither
  if (s == "true" || s == "True" || s == "TRUE") return 1;
  if (s == "false" || s == "False" || s == "FALSE") return 0;
  return -1;
}

// CloudFormation's short-form tag name → the long-form key, or "" if not one.
std::string intrinsicKey(std::string_view tag) {
  if (tag == "!Ref") return "Ref";
  if (tag == "!Condition") return "Condition";
  static constexpr std::string_view kFns[] = {
      "Sub",    "GetAtt", "Join",   "Select", "Split",       "ImportValue",
      "If",     "Equals", "And",    "Or",     "Not",         "FindInMap",
      "Base64", "Cidr",   "GetAZs", "Length", "ToJsonString"};
  for (std::string_view f : kFns) {
    if (tag.size() == f.size() + 1 && tag.substr(1) == f) return "Fn::" + std::string(f);
  }
  return "";
}

std::string markText(const YAML::Mark& m) {
  return "line " + std::to_string(m.line + 1) + " column " + std::to_string(m.column + 1);
}

Unexpected<Error> failAt(const YAML::Mark& m, const std::string& what) {
  if (m.line < 0) return makeError(what);
  return makeError(markText(m) + ": " + what);
}

// The value of a scalar with tag `tag` ("?" plain, "!" quoted or non-specific, "tag:yaml.org,
// 2002:..." a standard tag, or a local tag whose content is taken as a string).
Result<Value> resolveScalar(const std::string& s, const std::string& tag, bool quoted,
                            const YAML::Mark& mark) {
  if (quoted || tag == "tag:yaml.org,2002:str") return Value::string(s);
  bool plain = tag == "?" || tag.empty();
  if (plain || tag == "tag:yaml.org,2002:null") {
    if (isCoreNull(s)) return Value();
  }
  if (plain || tag == "tag:yaml.org,2002:bool") {
    int b = coreBool(s);
    if (b >= 0) return Value::boolean(b == 1);
  }
  if (plain || tag == "tag:yaml.org,2002:int" || tag == "tag:yaml.org,2002:float") {
    std::string n = coreNumber(s);
    if (!n.empty()) return Value::number(std::move(n));
  }
  if (!plain && tag.rfind("tag:yaml.org,2002:", 0) == 0 && tag != "tag:yaml.org,2002:binary" &&
      tag != "tag:yaml.org,2002:timestamp")
    return failAt(mark, "value '" + s + "' does not match its tag " + tag);
  return Value::string(s);
}

bool isLocalTag(const std::string& tag) { return !tag.empty() && tag[0] == '!' && tag != "!"; }

// Wraps the content of a node tagged with a CloudFormation short form into its long form.
Result<Value> wrapIntrinsic(const std::string& tag, Value arg, const YAML::Mark& mark) {
  std::string key = intrinsicKey(tag);
  if (key.empty()) return failAt(mark, "unknown tag " + tag);
  if (key == "Fn::GetAtt" && arg.isString()) {
    std::string str = arg.text();
    size_t dot = str.find('.');
    if (dot == std::string::npos) return failAt(mark, "!GetAtt needs Resource.Attribute");
    arg = Value::array({Value::string(str.substr(0, dot)), Value::string(str.substr(dot + 1))});
  }
  Value out = Value::object();
  out.set(key, std::move(arg));
  return out;
}

class Converter {
 public:
  Result<Value> convert(const YAML::Node& node, int depth) {
    if (depth > kMaxDepth) return fail(node, "nested too deeply");
    if (++nodes_ > kMaxNodes) return fail(node, "too many nodes (alias expansion?)");
    const std::string& tag = node.Tag();
    if (isLocalTag(tag)) {
      if (intrinsicKey(tag).empty()) return fail(node, "unknown tag " + tag);
      auto inner = convertUntagged(node, depth, /*quoted=*/true);
      if (!inner) return inner;
      return wrapIntrinsic(tag, std::move(*inner), node.Mark());
    }
    return convertUntagged(node, depth, tag == "!");
  }

 private:
  static Unexpected<Error> fail(const YAML::Node& node, const std::string& what) {
    return failAt(node.Mark(), what);
  }

  Result<Value> convertUntagged(const YAML::Node& node, int depth, bool quoted) {
    switch (node.Type()) {
      case YAML::NodeType::Undefined:
      case YAML::NodeType::Null:
        return quoted ? Value::string("") : Value();
      case YAML::NodeType::Scalar:
        return scalar(node, quoted);
      case YAML::NodeType::Sequence: {
        Value arr = Value::array();
        for (const YAML::Node& item : node) {
          auto v = convert(item, depth + 1);
          if (!v) return v;
          arr.push(std::move(*v));
        }
        return arr;
      }
      case YAML::NodeType::Map: {
        Value obj = Value::object();
        for (auto it = node.begin(); it != node.end(); ++it) {
          if (!it->first.IsScalar()) return fail(it->first, "a mapping key must be a scalar");
          auto v = convert(it->second, depth + 1);
          if (!v) return v;
          obj.set(it->first.Scalar(), std::move(*v));
        }
        return obj;
      }
    }
    return Value();
  }

  Result<Value> scalar(const YAML::Node& node, bool quoted) {
    return resolveScalar(node.Scalar(), node.Tag(), quoted, node.Mark());
  }

  size_t nodes_ = 0;
};

// Builds Values straight from yaml-cpp's parse events, so that parseDocuments() drives the
// document loop itself: yaml-cpp 0.7's LoadAll() loops forever (allocating) on some invalid
// input such as "[a]\n,\n:" (jbeder/yaml-cpp#1040, fixed upstream by #1319), because
// HandleNextDocument() keeps answering an empty document without consuming input. Errors are
// thrown as BuildError and caught in parseDocuments().
struct BuildError {
  Error error;
};

class ValueBuilder final : public YAML::EventHandler {
 public:
  // The finished document; null for an empty one.
  Value take() { return std::move(doc_); }
  YAML::Mark lastMark() const { return last_mark_; }
  bool sawContent() const { return saw_content_; }

  void OnDocumentStart(const YAML::Mark& mark) override {
    stack_.clear();
    doc_ = Value();
    saw_content_ = false;
    last_mark_ = mark;
  }
  void OnDocumentEnd() override {}

  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    last_mark_ = mark;
    finish(Value(), mark, "?", anchor);
  }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    last_mark_ = mark;
    saw_content_ = true;
    auto it = anchors_.find(anchor);
    if (it == anchors_.end()) throw BuildError{failAt(mark, "alias to an unfinished node").error};
    count(it->second.second, mark);
    add(it->second.first, mark);
  }
  void OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                const std::string& value) override {
    last_mark_ = mark;
    saw_content_ = true;
    count(1, mark);
    bool local = isLocalTag(tag);
    auto v = resolveScalar(value, tag, local || tag == "!", mark);
    if (!v) throw BuildError{v.error()};
    finish(std::move(*v), mark, tag, anchor);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    open(Value::array(), mark, tag, anchor);
  }
  void OnSequenceEnd() override { close(); }
  void OnMapStart(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    open(Value::object(), mark, tag, anchor);
  }
  void OnMapEnd() override { close(); }

 private:
  struct Frame {
    Value value;
    std::string tag;
    YAML::Mark mark;
    YAML::anchor_t anchor;
    size_t nodes_before;  // nodes_ when the collection started (its size for aliases)
    bool have_key = false;
    std::string key;
  };

  void count(size_t n, const YAML::Mark& mark) {
    nodes_ += n;
    if (nodes_ > kMaxNodes)
      throw BuildError{failAt(mark, "too many nodes (alias expansion?)").error};
  }

  void open(Value v, const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor) {
    last_mark_ = mark;
    saw_content_ = true;
    count(1, mark);
    if (static_cast<int>(stack_.size()) >= kMaxDepth)
      throw BuildError{failAt(mark, "nested too deeply").error};
    stack_.push_back({std::move(v), tag, mark, anchor, nodes_ - 1, false, std::string()});
  }

  void close() {
    Frame f = std::move(stack_.back());
    stack_.pop_back();
    if (f.value.isObject() && f.have_key)
      throw BuildError{failAt(f.mark, "a mapping key has no value").error};
    size_t size = nodes_ - f.nodes_before;
    finish(std::move(f.value), f.mark, f.tag, f.anchor, size);
  }

  // A complete node: apply its tag, remember its anchor, add it to its parent.
  void finish(Value v, const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
              size_t size = 1) {
    if (isLocalTag(tag)) {
      if (v.isNull()) v = Value::string("");
      auto wrapped = wrapIntrinsic(tag, std::move(v), mark);
      if (!wrapped) throw BuildError{wrapped.error()};
      v = std::move(*wrapped);
    }
    if (anchor != YAML::NullAnchor) anchors_.insert_or_assign(anchor, std::make_pair(v, size));
    add(std::move(v), mark);
  }

  void add(Value v, const YAML::Mark& mark) {
    if (stack_.empty()) {
      doc_ = std::move(v);
      return;
    }
    Frame& parent = stack_.back();
    if (parent.value.isArray()) {
      parent.value.push(std::move(v));
      return;
    }
    if (!parent.have_key) {
      if (!v.isScalar()) throw BuildError{failAt(mark, "a mapping key must be a scalar").error};
      parent.key = v.isNull() ? "" : v.scalarText();
      parent.have_key = true;
      return;
    }
    parent.value.set(std::move(parent.key), std::move(v));
    parent.have_key = false;
  }

  std::vector<Frame> stack_;
  std::map<YAML::anchor_t, std::pair<Value, size_t>> anchors_;
  Value doc_;
  size_t nodes_ = 0;
  YAML::Mark last_mark_;
  bool saw_content_ = false;
};

size_t firstNonBlank(std::string_view text) {
  size_t i = 0;
  if (text.substr(0, 3) == "\xEF\xBB\xBF") i = 3;  // UTF-8 BOM
  while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
  return i;
}

}  // namespace

Result<Value> yamlToValue(const YAML::Node& node) {
  try {
    return Converter().convert(node, 0);
  } catch (const std::exception& e) {
    return makeError(std::string("YAML: ") + e.what());
  }
}

Result<std::string> yamlToJson(const YAML::Node& node) {
  auto v = yamlToValue(node);
  if (!v) return Unexpected<Error>{v.error()};
  return toJson(*v);
}

Result<std::vector<Value>> parseDocuments(std::string_view text) {
  size_t start = firstNonBlank(text);
  if (start < text.size() && (text[start] == '{' || text[start] == '[')) {
    auto json = parseJson(text.substr(start));
    if (json) return std::vector<Value>{std::move(*json)};
  }
  try {
    std::string copy(text);
    std::istringstream in(copy);
    YAML::Parser parser(in);
    ValueBuilder builder;
    std::vector<Value> docs;
    // Every document but an empty one consumes input, and an empty one at least "---": more
    // documents than bytes means the parser is stuck (see ValueBuilder).
    size_t handled = 0;
    while (parser.HandleNextDocument(builder)) {
      if (++handled > text.size() + 1)
        return makeError("YAML " + markText(builder.lastMark()) + ": unexpected token");
      Value v = builder.take();
      if (!v.isNull()) docs.push_back(std::move(v));
    }
    return docs;
  } catch (const YAML::Exception& e) {
    if (e.mark.line >= 0)
      return makeError("YAML line " + std::to_string(e.mark.line + 1) + " column " +
                       std::to_string(e.mark.column + 1) + ": " + e.msg);
    return makeError("YAML: " + e.msg);
  } catch (const BuildError& e) {
    return Unexpected<Error>{e.error};
  } catch (const std::exception& e) {
    return makeError(std::string("YAML: ") + e.what());
  }
}

}  // namespace weft::cli
