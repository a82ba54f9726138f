#include "cli/cfn_template.h"

#include <algorithm>
#include <cctype>

namespace weft::cli::cfn {

namespace {

constexpr int kUnknownCondition = 7001;

Unexpected<Error> err(std::string message) { return makeError(std::move(message)); }

std::string trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}

// The single key of an intrinsic-function object ("Ref", "Fn::Sub"...), or "".
std::string_view intrinsicName(const Value& v) {
  if (!v.isObject() || v.members().size() != 1) return "";
  const std::string& k = v.members()[0].first;
  if (k == "Ref" || k.rfind("Fn::", 0) == 0) return k;
  return "";
}

bool isPseudo(std::string_view name) { return name.rfind("AWS::", 0) == 0; }

std::string base64(std::string_view in) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  while (i + 2 < in.size()) {
    uint32_t n = (static_cast<uint8_t>(in[i]) << 16) | (static_cast<uint8_t>(in[i + 1]) << 8) |
                 static_cast<uint8_t>(in[i + 2]);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += kAlphabet[(n >> 6) & 63];
    out += kAlphabet[n & 63];
    i += 3;
  }
  if (i + 1 == in.size()) {
    uint32_t n = static_cast<uint8_t>(in[i]) << 16;
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += "==";
  } else if (i + 2 == in.size()) {
    uint32_t n = (static_cast<uint8_t>(in[i]) << 16) | (static_cast<uint8_t>(in[i + 1]) << 8);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += kAlphabet[(n >> 6) & 63];
    out += '=';
  }
  return out;
}

// Pieces of an Fn::Sub string: literal text and ${name} variables.
struct SubPiece {
  bool variable = false;
  std::string text;  // literal text, or the variable name
};

Result<std::vector<SubPiece>> splitSub(std::string_view s) {
  std::vector<SubPiece> out;
  std::string literal;
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] == '$' && i + 1 < s.size() && s[i + 1] == '{') {
      size_t close = s.find('}', i + 2);
      if (close == std::string_view::npos)
        return err("Fn::Sub: unterminated ${ in \"" + std::string(s) + "\"");
      std::string_view inner = s.substr(i + 2, close - i - 2);
      if (!inner.empty() && inner[0] == '!') {
        literal += "${";
        literal += inner.substr(1);
        literal += '}';
      } else {
        std::string name = trim(inner);
        if (name.empty()) return err("Fn::Sub: empty ${} in \"" + std::string(s) + "\"");
        if (!literal.empty()) out.push_back({false, std::move(literal)});
        literal.clear();
        out.push_back({true, std::move(name)});
      }
      i = close + 1;
      continue;
    }
    literal += s[i++];
  }
  if (!literal.empty()) out.push_back({false, std::move(literal)});
  return out;
}

class Evaluator {
 public:
  explicit Evaluator(const EvalContext& ctx) : ctx_(ctx) {}

  Result<std::optional<Value>> eval(const Value& v, int depth) {
    if (depth > kMaxDepth) return err("template nested too deeply");
    std::string_view fn = intrinsicName(v);
    if (!fn.empty()) return intrinsic(fn, v.members()[0].second, depth);
    if (v.isObject()) {
      Value out = Value::object();
      for (const auto& [k, m] : v.members()) {
        auto r = eval(m, depth + 1);
        if (!r) return r;
        if (*r) out.set(k, std::move(**r));
      }
      return std::optional<Value>(std::move(out));
    }
    if (v.isArray()) {
      Value out = Value::array();
      for (const Value& item : v.items()) {
        auto r = eval(item, depth + 1);
        if (!r) return r;
        if (*r) out.push(std::move(**r));
      }
      return std::optional<Value>(std::move(out));
    }
    return std::optional<Value>(v);
  }

  // A condition operand: {"Condition": name}, or a function evaluating to a boolean.
  Result<bool> condition(const Value& v, int depth) {
    if (v.isObject() && v.members().size() == 1 && v.members()[0].first == "Condition") {
      const Value& name = v.members()[0].second;
      if (!name.isString()) return err("Condition: expected a condition name");
      auto it = ctx_.conditions.find(name.text());
      if (it == ctx_.conditions.end())
        return makeError("unknown condition '" + name.text() + "'", kUnknownCondition);
      return it->second;
    }
    auto r = eval(v, depth + 1);
    if (!r) return Unexpected<Error>{r.error()};
    if (!*r) return err("a condition evaluated to AWS::NoValue");
    const Value& b = **r;
    if (b.isBool()) return b.asBool();
    if (b.isString() && (b.text() == "true" || b.text() == "false")) return b.text() == "true";
    return err(
        "a condition must be a boolean (Fn::Equals, Fn::And, Fn::Or, Fn::Not or "
        "Condition), got " +
        toJson(b));
  }

 private:
  Result<std::optional<Value>> some(Value v) { return std::optional<Value>(std::move(v)); }

  // Evaluates `v` and requires a value (not NoValue).
  Result<Value> need(const Value& v, int depth, std::string_view fn) {
    auto r = eval(v, depth + 1);
    if (!r) return Unexpected<Error>{r.error()};
    if (!*r) return err(std::string(fn) + ": an argument evaluated to AWS::NoValue");
    return std::move(**r);
  }

  Result<std::string> needScalar(const Value& v, int depth, std::string_view fn) {
    auto r = need(v, depth, fn);
    if (!r) return Unexpected<Error>{r.error()};
    if (!r->isScalar()) return err(std::string(fn) + ": expected a string, got " + toJson(*r));
    return r->scalarText();
  }

  Result<const Value::Array*> args(const Value& arg, std::string_view fn, size_t min, size_t max) {
    if (!arg.isArray() || arg.items().size() < min || arg.items().size() > max) {
      std::string n =
          min == max ? std::to_string(min) : std::to_string(min) + " to " + std::to_string(max);
      return err(std::string(fn) + ": expected a list of " + n + " arguments, got " + toJson(arg));
    }
    return &arg.items();
  }

  Result<std::optional<Value>> ref(const std::string& name) {
    if (isPseudo(name)) {
      const PseudoParameters& p = ctx_.pseudo;
      if (name == "AWS::NoValue") return std::optional<Value>();
      if (name == "AWS::Region") return some(Value::string(p.region));
      if (name == "AWS::AccountId") return some(Value::string(p.account_id));
      if (name == "AWS::StackName") return some(Value::string(p.stack_name));
      if (name == "AWS::StackId")
        return some(Value::string("arn:" + p.partition + ":cloudformation:" + p.region + ":" +
                                  p.account_id + ":stack/" + p.stack_name + "/weft"));
      if (name == "AWS::Partition") return some(Value::string(p.partition));
      if (name == "AWS::URLSuffix") return some(Value::string(p.url_suffix));
      if (name == "AWS::NotificationARNs") return some(Value::array());
      return err("Ref: unknown pseudo parameter " + name);
    }
    if (auto it = ctx_.parameters.find(name); it != ctx_.parameters.end()) return some(it->second);
    if (auto it = ctx_.resources.find(name); it != ctx_.resources.end()) {
      if (it->second.skipped)
        return err("Ref " + name + ": resource type " + it->second.type +
                   " is not handled by weft yet (skipped)");
      return some(it->second.ref);
    }
    return err("Ref " + name + ": no parameter or deployed resource with that name");
  }

  Result<Value> getAtt(const std::string& resource, const std::string& attribute) {
    auto it = ctx_.resources.find(resource);
    if (it == ctx_.resources.end())
      return err("Fn::GetAtt " + resource + "." + attribute +
                 ": no deployed resource with that name");
    const ResourceState& st = it->second;
    if (st.skipped)
      return err("Fn::GetAtt " + resource + "." + attribute + ": resource type " + st.type +
                 " is not handled by weft yet (skipped)");
    if (const Value* a = st.attributes.find(attribute)) return *a;
    std::string known;
    for (const auto& [k, v] : st.attributes.members()) known += (known.empty() ? "" : ", ") + k;
    return err("Fn::GetAtt " + resource + "." + attribute + ": " + st.type + " has no attribute " +
               attribute + " (it has: " + known + ")");
  }

  Result<std::optional<Value>> intrinsic(std::string_view fn, const Value& arg, int depth) {
    if (fn == "Ref") {
      if (!arg.isString()) return err("Ref: expected a parameter or resource name");
      return ref(arg.text());
    }
    if (fn == "Fn::GetAtt") {
      std::string resource, attribute;
      if (arg.isString()) {
        size_t dot = arg.text().find('.');
        if (dot == std::string::npos) return err("Fn::GetAtt: expected \"Resource.Attribute\"");
        resource = arg.text().substr(0, dot);
        attribute = arg.text().substr(dot + 1);
      } else {
        auto a = args(arg, fn, 2, 2);
        if (!a) return Unexpected<Error>{a.error()};
        if (!(**a)[0].isString()) return err("Fn::GetAtt: the resource must be a name");
        resource = (**a)[0].text();
        auto at = needScalar((**a)[1], depth, fn);
        if (!at) return Unexpected<Error>{at.error()};
        attribute = *at;
      }
      auto v = getAtt(resource, attribute);
      if (!v) return Unexpected<Error>{v.error()};
      return some(std::move(*v));
    }
    if (fn == "Fn::Sub") return sub(arg, depth);
    if (fn == "Fn::Join") {
      auto a = args(arg, fn, 2, 2);
      if (!a) return Unexpected<Error>{a.error()};
      auto delim = needScalar((**a)[0], depth, fn);
      if (!delim) return Unexpected<Error>{delim.error()};
      auto list = need((**a)[1], depth, fn);
      if (!list) return Unexpected<Error>{list.error()};
      if (!list->isArray()) return err("Fn::Join: the second argument must be a list");
      std::string out;
      bool first = true;
      for (const Value& item : list->items()) {
        if (!item.isScalar()) return err("Fn::Join: list items must be strings");
        if (!first) out += *delim;
        first = false;
        out += item.scalarText();
      }
      return some(Value::string(std::move(out)));
    }
    if (fn == "Fn::Select") {
      auto a = args(arg, fn, 2, 2);
      if (!a) return Unexpected<Error>{a.error()};
      auto index = needScalar((**a)[0], depth, fn);
      if (!index) return Unexpected<Error>{index.error()};
      auto list = need((**a)[1], depth, fn);
      if (!list) return Unexpected<Error>{list.error()};
      if (!list->isArray()) return err("Fn::Select: the second argument must be a list");
      size_t i = 0;
      bool ok = !index->empty() && index->size() < 10;
      for (char c : *index) {
        if (!std::isdigit(static_cast<unsigned char>(c))) ok = false;
        i = i * 10 + static_cast<size_t>(c - '0');
      }
      if (!ok) return err("Fn::Select: index '" + *index + "' is not a non-negative integer");
      if (i >= list->items().size())
        return err("Fn::Select: index " + *index + " is out of range for a list of " +
                   std::to_string(list->items().size()));
      return some(list->items()[i]);
    }
    if (fn == "Fn::Split") {
      auto a = args(arg, fn, 2, 2);
      if (!a) return Unexpected<Error>{a.error()};
      auto delim = needScalar((**a)[0], depth, fn);
      if (!delim) return Unexpected<Error>{delim.error()};
      auto source = needScalar((**a)[1], depth, fn);
      if (!source) return Unexpected<Error>{source.error()};
      if (delim->empty()) return err("Fn::Split: the delimiter is empty");
      Value out = Value::array();
      size_t pos = 0;
      while (true) {
        size_t next = source->find(*delim, pos);
        out.push(Value::string(source->substr(pos, next - pos)));
        if (next == std::string::npos) break;
        pos = next + delim->size();
      }
      return some(std::move(out));
    }
    if (fn == "Fn::ImportValue") {
      auto name = needScalar(arg, depth, fn);
      if (!name) return Unexpected<Error>{name.error()};
      auto it = ctx_.exports.find(*name);
      if (it == ctx_.exports.end()) return err("Fn::ImportValue: no stack exports '" + *name + "'");
      if (ctx_.imports_used) ctx_.imports_used->insert(*name);
      return some(Value::string(it->second));
    }
    if (fn == "Fn::If") {
      auto a = args(arg, fn, 3, 3);
      if (!a) return Unexpected<Error>{a.error()};
      if (!(**a)[0].isString()) return err("Fn::If: the first argument must be a condition name");
      auto it = ctx_.conditions.find((**a)[0].text());
      if (it == ctx_.conditions.end())
        return makeError("Fn::If: unknown condition '" + (**a)[0].text() + "'", kUnknownCondition);
      return eval((**a)[it->second ? 1 : 2], depth + 1);
    }
    if (fn == "Fn::Equals") {
      auto a = args(arg, fn, 2, 2);
      if (!a) return Unexpected<Error>{a.error()};
      auto x = need((**a)[0], depth, fn);
      if (!x) return Unexpected<Error>{x.error()};
      auto y = need((**a)[1], depth, fn);
      if (!y) return Unexpected<Error>{y.error()};
      bool eq = (x->isScalar() && y->isScalar()) ? x->scalarText() == y->scalarText() : *x == *y;
      return some(Value::boolean(eq));
    }
    if (fn == "Fn::And" || fn == "Fn::Or") {
      auto a = args(arg, fn, 2, 10);
      if (!a) return Unexpected<Error>{a.error()};
      bool is_and = fn == "Fn::And";
      bool result = is_and;
      for (const Value& c : **a) {
        auto b = condition(c, depth + 1);
        if (!b) return Unexpected<Error>{b.error()};
        result = is_and ? (result && *b) : (result || *b);
      }
      return some(Value::boolean(result));
    }
    if (fn == "Fn::Not") {
      auto a = args(arg, fn, 1, 1);
      if (!a) return Unexpected<Error>{a.error()};
      auto b = condition((**a)[0], depth + 1);
      if (!b) return Unexpected<Error>{b.error()};
      return some(Value::boolean(!*b));
    }
    if (fn == "Fn::FindInMap") {
      auto a = args(arg, fn, 3, 3);
      if (!a) return Unexpected<Error>{a.error()};
      std::string keys[3];
      for (int i = 0; i < 3; ++i) {
        auto k = needScalar((**a)[static_cast<size_t>(i)], depth, fn);
        if (!k) return Unexpected<Error>{k.error()};
        keys[i] = *k;
      }
      const Value* m = ctx_.mappings.find(keys[0]);
      const Value* top = m ? m->find(keys[1]) : nullptr;
      const Value* leaf = top ? top->find(keys[2]) : nullptr;
      if (leaf == nullptr)
        return err("Fn::FindInMap: no " + keys[0] + "/" + keys[1] + "/" + keys[2] + " in Mappings");
      return some(*leaf);
    }
    if (fn == "Fn::Base64") {
      auto s = needScalar(arg, depth, fn);
      if (!s) return Unexpected<Error>{s.error()};
      return some(Value::string(base64(*s)));
    }
    return err(std::string(fn) + " is not supported by weft");
  }

  Result<std::optional<Value>> sub(const Value& arg, int depth) {
    std::string text;
    std::map<std::string, std::string> vars;
    if (arg.isString()) {
      text = arg.text();
    } else {
      auto a = args(arg, "Fn::Sub", 2, 2);
      if (!a) return Unexpected<Error>{a.error()};
      if (!(**a)[0].isString()) return err("Fn::Sub: the first argument must be a string");
      text = (**a)[0].text();
      if (!(**a)[1].isObject()) return err("Fn::Sub: the second argument must be a mapping");
      for (const auto& [k, v] : (**a)[1].members()) {
        auto s = needScalar(v, depth, "Fn::Sub");
        if (!s) return Unexpected<Error>{s.error()};
        vars[k] = *s;
      }
    }
    auto pieces = splitSub(text);
    if (!pieces) return Unexpected<Error>{pieces.error()};
    std::string out;
    for (const SubPiece& p : *pieces) {
      if (!p.variable) {
        out += p.text;
        continue;
      }
      if (auto it = vars.find(p.text); it != vars.end()) {
        out += it->second;
        continue;
      }
      Value v;
      size_t dot = p.text.find('.');
      if (dot != std::string::npos && !isPseudo(p.text)) {
        auto a = getAtt(p.text.substr(0, dot), p.text.substr(dot + 1));
        if (!a) return Unexpected<Error>{a.error()};
        v = std::move(*a);
      } else {
        auto r = ref(p.text);
        if (!r) return Unexpected<Error>{r.error()};
        if (!*r) return err("Fn::Sub: ${" + p.text + "} is AWS::NoValue");
        v = std::move(**r);
      }
      if (!v.isScalar())
        return err("Fn::Sub: ${" + p.text + "} is a list, not a string (use Fn::Join)");
      out += v.scalarText();
    }
    return some(Value::string(std::move(out)));
  }

  const EvalContext& ctx_;
};

void collectRefs(const Value& v, std::set<std::string>& out, int depth) {
  if (depth > kMaxDepth) return;
  std::string_view fn = intrinsicName(v);
  if (fn == "Ref" && v.members()[0].second.isString()) {
    const std::string& name = v.members()[0].second.text();
    if (!isPseudo(name)) out.insert(name);
    return;
  }
  if (fn == "Fn::GetAtt") {
    const Value& a = v.members()[0].second;
    if (a.isString()) {
      out.insert(a.text().substr(0, a.text().find('.')));
      return;
    }
    if (a.isArray() && !a.items().empty() && a.items()[0].isString())
      out.insert(a.items()[0].text());
    if (a.isArray() && a.items().size() > 1) collectRefs(a.items()[1], out, depth + 1);
    return;
  }
  if (fn == "Fn::Sub") {
    const Value& a = v.members()[0].second;
    const Value* text = &a;
    const Value* vars = nullptr;
    if (a.isArray() && a.items().size() == 2) {
      text = &a.items()[0];
      vars = &a.items()[1];
      collectRefs(*vars, out, depth + 1);
    }
    if (text->isString()) {
      auto pieces = splitSub(text->text());
      if (pieces) {
        for (const SubPiece& p : *pieces) {
          if (!p.variable || isPseudo(p.text)) continue;
          if (vars && vars->find(p.text)) continue;
          out.insert(p.text.substr(0, p.text.find('.')));
        }
      }
    }
    return;
  }
  if (v.isObject()) {
    for (const auto& [k, m] : v.members()) collectRefs(m, out, depth + 1);
  } else if (v.isArray()) {
    for (const Value& item : v.items()) collectRefs(item, out, depth + 1);
  }
}

Result<std::vector<std::string>> stringList(const Value& v, std::string_view what) {
  std::vector<std::string> out;
  if (v.isString()) {
    out.push_back(v.text());
    return out;
  }
  if (!v.isArray()) return err(std::string(what) + " must be a string or a list of strings");
  for (const Value& item : v.items()) {
    if (!item.isScalar() || item.isNull())
      return err(std::string(what) + " must be a string or a list of strings");
    out.push_back(item.scalarText());
  }
  return out;
}

bool contains(const std::vector<std::string_view>& keys, std::string_view k) {
  return std::find(keys.begin(), keys.end(), k) != keys.end();
}

}  // namespace

Result<Template> parseTemplate(std::string_view text) {
  auto docs = parseDocuments(text);
  if (!docs) return Unexpected<Error>{docs.error()};
  if (docs->size() != 1 || !(*docs)[0].isObject())
    return err("a template must be one YAML or JSON mapping");
  const Value& root = (*docs)[0];
  Template t;
  for (const auto& [k, v] : root.members()) {
    static const std::vector<std::string_view> kSections = {"AWSTemplateFormatVersion",
                                                            "Description",
                                                            "Metadata",
                                                            "Parameters",
                                                            "Mappings",
                                                            "Conditions",
                                                            "Resources",
                                                            "Outputs",
                                                            "Rules"};
    if (k == "Transform") return err("Transform (" + toJson(v) + ") is not supported by weft");
    if (!contains(kSections, k)) return err("unknown template section '" + k + "'");
  }
  if (const Value* d = root.find("Description")) t.description = d->scalarText();
  if (const Value* m = root.find("Mappings")) {
    if (!m->isObject()) return err("Mappings must be a mapping");
    t.mappings = *m;
  } else {
    t.mappings = Value::object();
  }
  if (const Value* params = root.find("Parameters"); params && !params->isNull()) {
    if (!params->isObject()) return err("Parameters must be a mapping");
    for (const auto& [name, p] : params->members()) {
      if (!p.isObject()) return err("parameter " + name + " must be a mapping");
      Parameter param;
      param.name = name;
      const Value* type = p.find("Type");
      if (type == nullptr || !type->isString()) return err("parameter " + name + ": missing Type");
      param.type = type->text();
      if (const Value* d = p.find("Default")) {
        if (d->isArray()) {
          std::string joined;
          for (const Value& item : d->items()) {
            joined += (joined.empty() ? "" : ",") + item.scalarText();
          }
          param.default_value = joined;
        } else if (d->isScalar()) {
          param.default_value = d->scalarText();
        } else {
          return err("parameter " + name + ": Default must be a string");
        }
      }
      if (const Value* av = p.find("AllowedValues")) {
        auto list = stringList(*av, "parameter " + name + ": AllowedValues");
        if (!list) return Unexpected<Error>{list.error()};
        param.allowed_values = std::move(*list);
      }
      if (const Value* d = p.find("Description")) param.description = d->scalarText();
      t.parameters.push_back(std::move(param));
    }
  }
  if (const Value* conds = root.find("Conditions"); conds && !conds->isNull()) {
    if (!conds->isObject()) return err("Conditions must be a mapping");
    for (const auto& [name, c] : conds->members()) t.conditions.emplace_back(name, c);
  }
  const Value* resources = root.find("Resources");
  if (resources == nullptr || !resources->isObject() || resources->members().empty())
    return err("the template has no Resources");
  std::set<std::string> ids;
  for (const auto& [id, r] : resources->members()) {
    if (!r.isObject()) return err("resource " + id + " must be a mapping");
    for (const auto& [k, v] : r.members()) {
      static const std::vector<std::string_view> kKeys = {
          "Type",      "Properties",     "DependsOn",
          "Condition", "DeletionPolicy", "UpdateReplacePolicy",
          "Metadata",  "CreationPolicy", "UpdatePolicy"};
      if (!contains(kKeys, k)) return err("resource " + id + ": unknown attribute '" + k + "'");
    }
    Resource res;
    res.logical_id = id;
    const Value* type = r.find("Type");
    if (type == nullptr || !type->isString() || type->text().empty())
      return err("resource " + id + ": missing Type");
    res.type = type->text();
    const Value* props = r.find("Properties");
    if (props == nullptr || props->isNull()) {
      res.properties = Value::object();
    } else if (!props->isObject()) {
      return err("resource " + id + ": Properties must be a mapping");
    } else {
      res.properties = *props;
    }
    if (const Value* d = r.find("DependsOn")) {
      auto list = stringList(*d, "resource " + id + ": DependsOn");
      if (!list) return Unexpected<Error>{list.error()};
      res.depends_on = std::move(*list);
    }
    if (const Value* c = r.find("Condition")) {
      if (!c->isString()) return err("resource " + id + ": Condition must be a name");
      res.condition = c->text();
    }
    ids.insert(id);
    t.resources.push_back(std::move(res));
  }
  if (const Value* outs = root.find("Outputs"); outs && !outs->isNull()) {
    if (!outs->isObject()) return err("Outputs must be a mapping");
    for (const auto& [name, o] : outs->members()) {
      if (!o.isObject() || o.find("Value") == nullptr)
        return err("output " + name + ": missing Value");
      Output out;
      out.name = name;
      out.value = *o.find("Value");
      if (const Value* e = o.find("Export")) {
        const Value* n = e->find("Name");
        if (n == nullptr) return err("output " + name + ": Export needs a Name");
        out.export_name = *n;
      }
      if (const Value* c = o.find("Condition")) out.condition = c->scalarText();
      if (const Value* d = o.find("Description")) out.description = d->scalarText();
      t.outputs.push_back(std::move(out));
    }
  }

  // References must name a parameter or a resource; conditions must exist.
  std::set<std::string> params;
  for (const Parameter& p : t.parameters) params.insert(p.name);
  std::set<std::string> cond_names;
  for (const auto& [n, c] : t.conditions) cond_names.insert(n);
  auto checkRefs = [&](const Value& v, const std::string& where) -> Status {
    std::set<std::string> refs;
    collectRefs(v, refs, 0);
    for (const std::string& r : refs) {
      if (!ids.count(r) && !params.count(r))
        return err(where + " references '" + r + "', which is neither a parameter nor a resource");
    }
    return {};
  };
  for (const Resource& r : t.resources) {
    if (auto s = checkRefs(r.properties, "resource " + r.logical_id); !s)
      return Unexpected<Error>{s.error()};
    for (const std::string& d : r.depends_on)
      if (!ids.count(d))
        return err("resource " + r.logical_id + ": DependsOn names unknown resource '" + d + "'");
    if (!r.condition.empty() && !cond_names.count(r.condition))
      return err("resource " + r.logical_id + ": unknown condition '" + r.condition + "'");
  }
  for (const Output& o : t.outputs) {
    if (auto s = checkRefs(o.value, "output " + o.name); !s) return Unexpected<Error>{s.error()};
    if (auto s = checkRefs(o.export_name, "output " + o.name); !s)
      return Unexpected<Error>{s.error()};
    if (!o.condition.empty() && !cond_names.count(o.condition))
      return err("output " + o.name + ": unknown condition '" + o.condition + "'");
  }
  return t;
}

Result<std::map<std::string, Value>> resolveParameters(
    const Template& tmpl, const std::map<std::string, std::string>& overrides) {
  std::map<std::string, Value> out;
  for (const auto& entry : overrides) {
    const std::string& k = entry.first;
    bool known = std::any_of(tmpl.parameters.begin(), tmpl.parameters.end(),
                             [&](const Parameter& p) { return p.name == k; });
    if (!known) return err("--parameter-overrides: the template has no parameter '" + k + "'");
  }
  for (const Parameter& p : tmpl.parameters) {
    std::optional<std::string> text = p.default_value;
    if (auto it = overrides.find(p.name); it != overrides.end()) text = it->second;
    if (!text)
      return err("parameter " + p.name +
                 " has no value: give it a Default or pass "
                 "--parameter-overrides " +
                 p.name + "=VALUE");
    bool is_list = p.type == "CommaDelimitedList" || p.type.rfind("List<", 0) == 0;
    std::vector<std::string> parts;
    if (is_list) {
      size_t pos = 0;
      while (true) {
        size_t comma = text->find(',', pos);
        parts.push_back(trim(std::string_view(*text).substr(pos, comma - pos)));
        if (comma == std::string::npos) break;
        pos = comma + 1;
      }
    } else {
      parts.push_back(*text);
    }
    if (!p.allowed_values.empty()) {
      for (const std::string& part : parts) {
        if (std::find(p.allowed_values.begin(), p.allowed_values.end(), part) ==
            p.allowed_values.end()) {
          std::string allowed;
          for (const auto& a : p.allowed_values) allowed += (allowed.empty() ? "" : ", ") + a;
          return err("parameter " + p.name + ": '" + part + "' is not one of the AllowedValues (" +
                     allowed + ")");
        }
      }
    }
    bool numbers = p.type == "Number" || p.type == "List<Number>";
    if (p.type.rfind("AWS::SSM::Parameter", 0) == 0)
      return err("parameter " + p.name + ": Type " + p.type + " is not supported by weft");
    if (!is_list && p.type != "String" && p.type != "Number" && p.type.rfind("AWS::", 0) != 0)
      return err("parameter " + p.name + ": unknown Type " + p.type);
    Value::Array values;
    for (const std::string& part : parts) {
      if (numbers) {
        std::string n = trim(part);
        if (!isJsonNumber(n)) {
          // Accept what YAML would (leading '+', ".5").
          auto docs = parseDocuments(n);
          if (docs && docs->size() == 1 && (*docs)[0].isNumber()) {
            n = (*docs)[0].text();
          } else {
            return err("parameter " + p.name + ": '" + part + "' is not a number");
          }
        }
        values.push_back(Value::number(n));
      } else {
        values.push_back(Value::string(part));
      }
    }
    out[p.name] = is_list ? Value::array(std::move(values)) : std::move(values[0]);
  }
  return out;
}

Result<std::optional<Value>> evaluate(const Value& v, const EvalContext& ctx) {
  return Evaluator(ctx).eval(v, 0);
}

Result<std::map<std::string, bool>> evaluateConditions(const Template& tmpl,
                                                       const EvalContext& ctx) {
  EvalContext local = ctx;
  local.resources.clear();  // conditions may not reference resources
  std::map<std::string, bool> done;
  std::set<std::string> names;
  for (const auto& [n, c] : tmpl.conditions) names.insert(n);
  // Repeated passes: a condition naming one not evaluated yet waits for the next pass.
  while (done.size() < tmpl.conditions.size()) {
    bool progress = false;
    Error last;
    std::string last_name;
    for (const auto& [name, c] : tmpl.conditions) {
      if (done.count(name)) continue;
      local.conditions = done;
      auto b = Evaluator(local).condition(c, 0);
      if (b) {
        done[name] = *b;
        progress = true;
        continue;
      }
      if (b.error().code != kUnknownCondition)
        return err("condition " + name + ": " + b.error().message);
      last = b.error();
      last_name = name;
    }
    if (!progress) {
      // Either a reference to a condition that does not exist, or a cycle.
      for (const auto& [name, c] : tmpl.conditions) {
        if (done.count(name)) continue;
        std::string_view m = last.message;
        size_t q = m.find('\'');
        std::string ref = q == std::string_view::npos
                              ? ""
                              : std::string(m.substr(q + 1, m.find('\'', q + 1) - q - 1));
        if (!ref.empty() && !names.count(ref))
          return err("condition " + last_name + ": " + last.message);
      }
      std::string cycle;
      for (const auto& [name, c] : tmpl.conditions)
        if (!done.count(name)) cycle += (cycle.empty() ? "" : ", ") + name;
      return err("circular dependency between conditions: " + cycle);
    }
  }
  return done;
}

std::set<std::string> referencedResources(const Value& v) {
  std::set<std::string> out;
  collectRefs(v, out, 0);
  return out;
}

Result<std::vector<std::string>> deployOrder(const Template& tmpl,
                                             const std::map<std::string, bool>& conditions) {
  std::vector<const Resource*> active;
  std::set<std::string> active_ids;
  for (const Resource& r : tmpl.resources) {
    if (!r.condition.empty()) {
      auto it = conditions.find(r.condition);
      if (it == conditions.end() || !it->second) continue;
    }
    active.push_back(&r);
    active_ids.insert(r.logical_id);
  }
  std::map<std::string, std::set<std::string>> deps;
  for (const Resource* r : active) {
    std::set<std::string> d = referencedResources(r->properties);
    d.insert(r->depends_on.begin(), r->depends_on.end());
    std::set<std::string>& mine = deps[r->logical_id];
    for (const std::string& x : d)
      if (active_ids.count(x)) mine.insert(x);
    if (mine.count(r->logical_id))
      return err("circular dependency: resource " + r->logical_id + " references itself");
  }
  std::vector<std::string> order;
  std::set<std::string> placed;
  while (order.size() < active.size()) {
    bool progress = false;
    for (const Resource* r : active) {
      if (placed.count(r->logical_id)) continue;
      const auto& d = deps[r->logical_id];
      if (std::all_of(d.begin(), d.end(), [&](const std::string& x) { return placed.count(x); })) {
        order.push_back(r->logical_id);
        placed.insert(r->logical_id);
        progress = true;
        break;  // restart so template order decides ties
      }
    }
    if (progress) continue;
    // Walk unplaced dependencies from the first unplaced resource until one repeats.
    std::string start;
    for (const Resource* r : active)
      if (!placed.count(r->logical_id)) {
        start = r->logical_id;
        break;
      }
    std::vector<std::string> path;
    std::string cur = start;
    while (std::find(path.begin(), path.end(), cur) == path.end()) {
      path.push_back(cur);
      for (const std::string& x : deps[cur]) {
        if (!placed.count(x)) {
          cur = x;
          break;
        }
      }
    }
    auto from = std::find(path.begin(), path.end(), cur);
    std::string cycle;
    for (auto it = from; it != path.end(); ++it) cycle += *it + " -> ";
    cycle += cur;
    return err("circular dependency between resources: " + cycle);
  }
  return order;
}

// ---- App Mesh ----

std::string camelKey(std::string_view pascal) {
  std::string out(pascal);
  size_t run = 0;
  while (run < out.size() && std::isupper(static_cast<unsigned char>(out[run]))) ++run;
  if (run == 0) return out;
  size_t lower_to = run;
  if (run > 1 && run < out.size() && std::islower(static_cast<unsigned char>(out[run])))
    lower_to = run - 1;  // "AWSCloudMap": keep the 'C' of "Cloud"
  for (size_t i = 0; i < lower_to; ++i)
    out[i] = static_cast<char>(std::tolower(static_cast<unsigned char>(out[i])));
  return out;
}

namespace {

bool isNumericKey(std::string_view k) {
  static constexpr std::string_view kKeys[] = {"port",
                                               "weight",
                                               "priority",
                                               "maxRetries",
                                               "healthyThreshold",
                                               "unhealthyThreshold",
                                               "intervalMillis",
                                               "timeoutMillis",
                                               "maxConnections",
                                               "maxPendingRequests",
                                               "maxRequests",
                                               "maxServerErrors",
                                               "maxEjectionPercent",
                                               "start",
                                               "end"};
  return std::find(std::begin(kKeys), std::end(kKeys), k) != std::end(kKeys);
}

bool isBoolKey(std::string_view k) { return k == "enforce" || k == "invert"; }

Value apiShape(const Value& v, int depth) {
  if (depth > kMaxDepth) return v;
  if (v.isArray()) {
    Value out = Value::array();
    for (const Value& item : v.items()) out.push(apiShape(item, depth + 1));
    return out;
  }
  if (!v.isObject()) return v;
  Value out = Value::object();
  bool duration = v.find("Unit") != nullptr || v.find("unit") != nullptr;
  for (const auto& [k, m] : v.members()) {
    std::string key = camelKey(k);
    Value val = apiShape(m, depth + 1);
    if (val.isString()) {
      if ((isNumericKey(key) || (duration && key == "value")) && isJsonNumber(val.text()))
        val = Value::number(val.text());
      else if (isBoolKey(key) && (val.text() == "true" || val.text() == "false"))
        val = Value::boolean(val.text() == "true");
    }
    out.set(std::move(key), std::move(val));
  }
  return out;
}

}  // namespace

Value toApiShape(const Value& cfn_spec) { return apiShape(cfn_spec, 0); }

Value AppMeshCall::toValue() const {
  Value v = Value::object();
  v.set("kind", Value::string(std::string(kind->name)));
  v.set("mesh", Value::string(mesh));
  if (!parent.empty()) v.set("parent", Value::string(parent));
  v.set("name", Value::string(name));
  v.set("spec", spec);
  v.set("tags", tags);
  return v;
}

Result<AppMeshCall> appMeshCallFor(const Resource& resource, const Value& properties,
                                   std::string_view generated_name) {
  const KindInfo* kind = kindForCfnType(resource.type);
  if (kind == nullptr) return err(resource.type + " is not an App Mesh resource type");
  std::string name_prop = kind->isMesh() ? "MeshName" : std::string(kind->name) + "Name";
  std::string parent_prop = kind->hasParent() ? camelKey(kind->parent_field) : "";
  if (!parent_prop.empty()) parent_prop[0] = static_cast<char>(std::toupper(parent_prop[0]));
  std::string where = resource.logical_id + " (" + resource.type + ")";
  for (const auto& [k, v] : properties.members()) {
    bool known = k == "MeshName" || k == name_prop || k == "Spec" || k == "Tags" ||
                 k == "MeshOwner" || (!parent_prop.empty() && k == parent_prop);
    if (!known) return err(where + ": unknown property " + k);
  }
  auto str = [&](const std::string& prop) -> Result<std::string> {
    const Value* v = properties.find(prop);
    if (v == nullptr) return std::string();
    if (!v->isScalar() || v->isNull()) return err(where + ": " + prop + " must be a string");
    return v->scalarText();
  };
  AppMeshCall call;
  call.kind = kind;
  auto name = str(name_prop);
  if (!name) return Unexpected<Error>{name.error()};
  call.name = name->empty() ? std::string(generated_name) : *name;
  if (kind->isMesh()) {
    call.mesh = call.name;
  } else {
    auto mesh = str("MeshName");
    if (!mesh) return Unexpected<Error>{mesh.error()};
    if (mesh->empty()) return err(where + ": missing property MeshName");
    call.mesh = *mesh;
  }
  if (kind->hasParent()) {
    auto parent = str(parent_prop);
    if (!parent) return Unexpected<Error>{parent.error()};
    if (parent->empty()) return err(where + ": missing property " + parent_prop);
    call.parent = *parent;
  }
  const Value* spec = properties.find("Spec");
  if (spec == nullptr) {
    if (!kind->isMesh()) return err(where + ": missing property Spec");
    call.spec = Value::object();
  } else {
    if (!spec->isObject()) return err(where + ": Spec must be a mapping");
    call.spec = toApiShape(*spec);
  }
  call.tags = Value::array();
  if (const Value* tags = properties.find("Tags")) {
    if (!tags->isArray()) return err(where + ": Tags must be a list of {Key, Value}");
    for (const Value& t : tags->items()) {
      const Value* k = t.find("Key");
      const Value* v = t.find("Value");
      if (k == nullptr || !k->isScalar() || (v && !v->isScalar()))
        return err(where + ": Tags must be a list of {Key, Value}");
      Value tag = Value::object();
      tag.set("key", Value::string(k->scalarText()));
      tag.set("value", Value::string(v ? v->scalarText() : ""));
      call.tags.push(std::move(tag));
    }
  }
  return call;
}

ResourceState appMeshState(const KindInfo& kind, const Value& data) {
  ResourceState st;
  st.type = std::string(kind.cfn_type);
  st.attributes = Value::object();
  const Value* md = data.find("metadata");
  auto fromMeta = [&](std::string_view key) {
    const Value* v = md ? md->find(key) : nullptr;
    return v ? Value::string(v->scalarText()) : Value::string("");
  };
  st.attributes.set("Arn", fromMeta("arn"));
  st.attributes.set("Uid", fromMeta("uid"));
  const Value* mesh = data.find("meshName");
  st.attributes.set("MeshName", Value::string(mesh ? mesh->scalarText() : ""));
  st.attributes.set("MeshOwner", fromMeta("meshOwner"));
  st.attributes.set("ResourceOwner", fromMeta("resourceOwner"));
  if (!kind.isMesh()) {
    const Value* n = data.find(kind.name_field);
    st.attributes.set(std::string(kind.name) + "Name", Value::string(n ? n->scalarText() : ""));
  }
  if (kind.hasParent()) {
    const Value* p = data.find(kind.parent_field);
    std::string attr = std::string(kind.parent_field);
    attr[0] = static_cast<char>(std::toupper(attr[0]));
    st.attributes.set(attr, Value::string(p ? p->scalarText() : ""));
  }
  st.ref = *st.attributes.find("Arn");
  return st;
}

}  // namespace weft::cli::cfn
