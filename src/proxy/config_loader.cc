#include "proxy/config_loader.h"

#include <arpa/inet.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/util/json_util.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <set>

#include "common/json.h"
#include "net/socket.h"
#include "net/tls/ssl_util.h"
#include "proxy/config_defaults.h"

namespace weft::proxy {
namespace {

namespace pb = google::protobuf;

// Stop listing after this many errors; a file this broken is better fixed in rounds.
constexpr size_t kMaxReportedErrors = 50;
// Refuse to read config files larger than this (a typo'd path to a log file, say).
constexpr std::streamoff kMaxConfigFileBytes = 64 << 20;
// protobuf's Duration range: +-10000 years.
constexpr int64_t kMaxDurationSeconds = 315'576'000'000;

// 1-based position in the source text.
struct Location {
  int line = 0;
  int column = 0;
};

// Field path (proto names) -> where it was written. Filled while converting YAML; used to put
// line:column on semantic errors.
using LocationMap = std::map<std::string, Location, std::less<>>;

std::string childPath(std::string_view parent, std::string_view field) {
  if (parent.empty()) return std::string(field);
  std::string p(parent);
  p += '.';
  p += field;
  return p;
}

std::string indexPath(std::string_view parent, size_t index) {
  std::string p(parent);
  p += '[';
  p += std::to_string(index);
  p += ']';
  return p;
}

std::string quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned char>(c));
      out += buf;
      continue;
    }
    out += c;
  }
  out += '"';
  return out;
}

std::string join(const std::vector<std::string>& parts, std::string_view sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i) out += sep;
    out += parts[i];
  }
  return out;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

size_t editDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      size_t cost = std::tolower(static_cast<unsigned char>(a[i - 1])) ==
                            std::tolower(static_cast<unsigned char>(b[j - 1]))
                        ? 0
                        : 1;
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + cost});
      diag = up;
    }
  }
  return row[b.size()];
}

// "unknown field "prot" in weft.v1.Listener; did you mean "port"?" (or the list of valid fields).
std::string unknownFieldMessage(std::string_view name, const pb::Descriptor* desc) {
  std::string msg = "unknown field " + quote(name) + " in " + desc->full_name();
  const pb::FieldDescriptor* best = nullptr;
  size_t best_distance = std::numeric_limits<size_t>::max();
  std::vector<std::string> names;
  for (int i = 0; i < desc->field_count(); ++i) {
    const pb::FieldDescriptor* f = desc->field(i);
    names.push_back(f->name());
    for (const std::string& candidate : {f->name(), f->json_name()}) {
      size_t d = editDistance(name, candidate);
      if (d < best_distance) {
        best_distance = d;
        best = f;
      }
    }
  }
  if (best != nullptr && best_distance <= std::max<size_t>(2, name.size() / 3)) {
    msg += "; did you mean " + quote(best->name()) + "?";
  } else {
    msg += "; valid fields: " + join(names, ", ");
  }
  return msg;
}

const pb::FieldDescriptor* findField(const pb::Descriptor* desc, std::string_view name) {
  for (int i = 0; i < desc->field_count(); ++i) {
    const pb::FieldDescriptor* f = desc->field(i);
    if (f->name() == name || f->json_name() == name) return f;
  }
  return nullptr;
}

std::string enumValueList(const pb::EnumDescriptor* e) {
  std::vector<std::string> names;
  for (int i = 0; i < e->value_count(); ++i) names.push_back(e->value(i)->name());
  return join(names, ", ");
}

// Parses protobuf's JSON Duration form: optional '-', decimal seconds with up to 9 fractional
// digits, then 's'.
bool isDurationText(std::string_view s) {
  if (s.empty() || s.back() != 's') return false;
  s.remove_suffix(1);
  if (!s.empty() && s.front() == '-') s.remove_prefix(1);
  size_t dot = s.find('.');
  std::string_view whole = s.substr(0, dot);
  std::string_view frac = dot == std::string_view::npos ? std::string_view() : s.substr(dot + 1);
  if (whole.empty() || whole.size() > 12) return false;
  if (dot != std::string_view::npos && (frac.empty() || frac.size() > 9)) return false;
  auto digits = [](std::string_view d) {
    return std::all_of(d.begin(), d.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  if (!digits(whole) || !digits(frac)) return false;
  int64_t secs = 0;
  std::from_chars(whole.data(), whole.data() + whole.size(), secs);
  return secs <= kMaxDurationSeconds;
}

std::string formatSeconds(double seconds) {
  char buf[64];
  snprintf(buf, sizeof buf, "%.9g", seconds);
  return buf;
}

// Explains a bad duration and, for common unit spellings ("500ms", "5m", "1h"), gives the
// equivalent in protobuf's seconds form.
std::string durationHint(std::string_view s) {
  std::string hint =
      "expected a duration in seconds with an \"s\" suffix, like \"15s\" or \"0.5s\"";
  size_t i = 0;
  while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
  std::string_view number = s.substr(0, i);
  std::string_view unit = s.substr(i);
  double factor = 0;
  if (unit == "ms") factor = 0.001;
  if (unit == "m" || unit == "min") factor = 60;
  if (unit == "h") factor = 3600;
  if (unit.empty()) factor = 1;
  if (!number.empty() && factor != 0) {
    char* end = nullptr;
    std::string n(number);
    double v = strtod(n.c_str(), &end);
    if (end == n.c_str() + n.size()) hint += "; write \"" + formatSeconds(v * factor) + "s\"";
  }
  return hint;
}

const char* nodeKind(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Scalar:
      return "a scalar";
    case YAML::NodeType::Null:
      return "null";
    default:
      return "nothing";
  }
}

Location toLocation(const YAML::Mark& m) { return Location{m.line + 1, m.column + 1}; }

// Converts a YAML document to protobuf JSON, guided by the message descriptors, so that:
//  - scalars get the JSON type the field needs (a plain `123` for a string field stays a string,
//    `true` for a bool becomes a JSON bool, integers are range-checked, enums name-checked);
//  - unknown fields, duplicate keys, two members of one oneof, wrong shapes (a mapping where a
//    list belongs) are reported with line:column and the field path — all of them, not the first;
//  - every field's position is recorded for later semantic errors.
// The JSON produced for a clean document is then parsed by protobuf's own JSON parser, which
// stays the single authority on the mapping.
class YamlToJson {
 public:
  explicit YamlToJson(std::string_view source) : source_(source) {}

  void convertDocument(const YAML::Node& root, std::string& out) {
    const pb::Descriptor* desc = v1::ProxyConfig::descriptor();
    if (!root.IsDefined() || root.IsNull()) {
      out = "{}";
      return;
    }
    if (!root.IsMap()) {
      error(root.Mark(), "",
            std::string("the top level must be a mapping of ProxyConfig fields (") +
                fieldNames(desc) + "), found " + nodeKind(root));
      return;
    }
    convertMessage(root, desc, "", out);
  }

  const std::vector<std::string>& errors() const { return errors_; }
  LocationMap takeLocations() { return std::move(locations_); }

 private:
  static std::string fieldNames(const pb::Descriptor* desc) {
    std::vector<std::string> names;
    for (int i = 0; i < desc->field_count(); ++i) names.push_back(desc->field(i)->name());
    return join(names, ", ");
  }

  void error(const YAML::Mark& mark, std::string_view path, std::string_view message) {
    Location loc = toLocation(mark);
    std::string e = std::string(source_) + ":" + std::to_string(loc.line) + ":" +
                    std::to_string(loc.column) + ": ";
    if (!path.empty()) {
      e += path;
      e += ": ";
    }
    e += message;
    errors_.push_back(std::move(e));
  }

  void convertMessage(const YAML::Node& node, const pb::Descriptor* desc, const std::string& path,
                      std::string& out) {
    if (desc->full_name() == "google.protobuf.Duration") {
      convertDuration(node, path, out);
      return;
    }
    if (desc->file()->package() == "google.protobuf") {
      convertUntyped(node, out);  // other well-known types: let protobuf judge
      return;
    }
    if (!node.IsMap()) {
      error(node.Mark(), path,
            std::string("expected a mapping (fields of ") + desc->full_name() + "), found " +
                nodeKind(node));
      return;
    }
    struct Seen {
      std::string key;
      int line;
    };
    std::map<const pb::FieldDescriptor*, Seen> seen;
    std::map<const pb::OneofDescriptor*, const pb::FieldDescriptor*> oneofs;
    out += '{';
    bool first = true;
    for (auto it = node.begin(); it != node.end(); ++it) {
      // Copies: `it->` yields a temporary proxy; YAML::Node is a cheap handle.
      const YAML::Node key = it->first;
      const YAML::Node value = it->second;
      if (!key.IsScalar()) {
        error(key.Mark(), path,
              "a field name must be a plain string, found " + std::string(nodeKind(key)));
        continue;
      }
      const std::string& name = key.Scalar();
      const pb::FieldDescriptor* f = findField(desc, name);
      if (f == nullptr) {
        error(key.Mark(), path, unknownFieldMessage(name, desc));
        // Lets a protobuf "Cannot find field" for JSON input point at the key itself.
        locations_.emplace(childPath(path, name), toLocation(key.Mark()));
        continue;
      }
      std::string fpath = childPath(path, f->name());
      Location loc = toLocation(key.Mark());
      locations_.emplace(fpath, loc);
      auto [prev, inserted] = seen.emplace(f, Seen{name, loc.line});
      if (!inserted) {
        error(key.Mark(), fpath,
              "set twice (as " + quote(prev->second.key) + " on line " +
                  std::to_string(prev->second.line) + " and as " + quote(name) + "); keep one");
        continue;
      }
      if (value.IsNull()) continue;  // `field:` with no value leaves it unset
      if (const pb::OneofDescriptor* o = f->real_containing_oneof()) {
        auto [other, fresh] = oneofs.emplace(o, f);
        if (!fresh) {
          std::vector<std::string> members;
          for (int i = 0; i < o->field_count(); ++i) members.push_back(o->field(i)->name());
          error(key.Mark(), fpath,
                "only one of " + join(members, ", ") + " may be set, but " +
                    quote(other->second->name()) + " is set too");
          continue;
        }
      }
      std::string value_json;
      size_t errors_before = errors_.size();
      convertField(value, f, fpath, value_json);
      if (errors_.size() != errors_before) continue;
      if (!first) out += ',';
      first = false;
      appendJsonString(out, f->name());
      out += ':';
      out += value_json;
    }
    out += '}';
  }

  void convertField(const YAML::Node& node, const pb::FieldDescriptor* f, const std::string& path,
                    std::string& out) {
    if (f->is_map()) {
      if (!node.IsMap()) {
        error(node.Mark(), path, "expected a mapping, found " + std::string(nodeKind(node)));
        return;
      }
      const pb::FieldDescriptor* value_field = f->message_type()->map_value();
      std::set<std::string> keys;
      out += '{';
      bool first = true;
      for (auto it = node.begin(); it != node.end(); ++it) {
        const YAML::Node key = it->first;
        const YAML::Node value = it->second;
        if (!key.IsScalar()) {
          error(key.Mark(), path, "map keys must be plain strings");
          continue;
        }
        const std::string k = key.Scalar();
        std::string epath = path + "[" + quote(k) + "]";
        locations_.emplace(epath, toLocation(key.Mark()));
        if (!keys.insert(k).second) {
          error(key.Mark(), epath, "key set twice; keep one");
          continue;
        }
        std::string v;
        size_t errors_before = errors_.size();
        convertSingle(value, value_field, epath, v);
        if (errors_.size() != errors_before) continue;
        if (!first) out += ',';
        first = false;
        appendJsonString(out, k);
        out += ':';
        out += v;
      }
      out += '}';
      return;
    }
    if (f->is_repeated()) {
      if (!node.IsSequence()) {
        error(node.Mark(), path,
              "expected a list, found " + std::string(nodeKind(node)) +
                  (node.IsScalar() ? "; write [" + node.Scalar() + "] or a \"- item\" list"
                                   : std::string("; start each item with \"- \"")));
        return;
      }
      out += '[';
      for (size_t i = 0; i < node.size(); ++i) {
        const YAML::Node& item = node[i];
        std::string ipath = indexPath(path, i);
        locations_.emplace(ipath, toLocation(item.Mark()));
        if (i) out += ',';
        if (item.IsNull()) {
          if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
            out += "{}";
          } else {
            error(item.Mark(), ipath, "empty list item");
          }
          continue;
        }
        convertSingle(item, f, ipath, out);
      }
      out += ']';
      return;
    }
    convertSingle(node, f, path, out);
  }

  // Converts one value of f's element type.
  void convertSingle(const YAML::Node& node, const pb::FieldDescriptor* f, const std::string& path,
                     std::string& out) {
    using CT = pb::FieldDescriptor::CppType;
    CT type = f->cpp_type();
    if (type == CT::CPPTYPE_MESSAGE) {
      convertMessage(node, f->message_type(), path, out);
      return;
    }
    if (node.IsNull()) {
      out += "null";
      return;
    }
    if (!node.IsScalar()) {
      error(node.Mark(), path,
            std::string("expected ") + expectedScalar(f) + ", found " + nodeKind(node));
      return;
    }
    const std::string& s = node.Scalar();
    switch (type) {
      case CT::CPPTYPE_STRING:
        appendJsonString(out, s);  // base64 for bytes fields is protobuf's to check
        return;
      case CT::CPPTYPE_BOOL: {
        std::string l = lower(s);
        if (l == "true" || l == "false") {
          out += l;
        } else {
          error(node.Mark(), path, "expected true or false, found " + quote(s));
        }
        return;
      }
      case CT::CPPTYPE_INT32:
        integer<int32_t>(node, path, out);
        return;
      case CT::CPPTYPE_INT64:
        integer<int64_t>(node, path, out);
        return;
      case CT::CPPTYPE_UINT32:
        integer<uint32_t>(node, path, out);
        return;
      case CT::CPPTYPE_UINT64:
        integer<uint64_t>(node, path, out);
        return;
      case CT::CPPTYPE_FLOAT:
      case CT::CPPTYPE_DOUBLE:
        floating(node, path, out);
        return;
      case CT::CPPTYPE_ENUM:
        enumValue(node, f->enum_type(), path, out);
        return;
      case CT::CPPTYPE_MESSAGE:
        return;  // handled above
    }
  }

  static std::string expectedScalar(const pb::FieldDescriptor* f) {
    using CT = pb::FieldDescriptor::CppType;
    switch (f->cpp_type()) {
      case CT::CPPTYPE_STRING:
        return "a string";
      case CT::CPPTYPE_BOOL:
        return "true or false";
      case CT::CPPTYPE_INT32:
      case CT::CPPTYPE_INT64:
        return "an integer";
      case CT::CPPTYPE_UINT32:
      case CT::CPPTYPE_UINT64:
        return "a non-negative integer";
      case CT::CPPTYPE_FLOAT:
      case CT::CPPTYPE_DOUBLE:
        return "a number";
      case CT::CPPTYPE_ENUM:
        return "one of " + enumValueList(f->enum_type());
      case CT::CPPTYPE_MESSAGE:
        return "a mapping";
    }
    return "a value";
  }

  template <class T>
  void integer(const YAML::Node& node, const std::string& path, std::string& out) {
    std::string_view s = node.Scalar();
    std::string_view digits = s;
    if (!digits.empty() && digits.front() == '+') digits.remove_prefix(1);
    T value{};
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    bool whole = !digits.empty() && end == digits.data() + digits.size();
    if (ec == std::errc() && whole) {
      // 64-bit integers go as JSON strings (protobuf's canonical form; no double rounding).
      if constexpr (sizeof(T) == 8) {
        out += '"' + std::to_string(value) + '"';
      } else {
        out += std::to_string(value);
      }
      return;
    }
    std::string what = std::is_signed_v<T> ? "an integer" : "a non-negative integer";
    if (ec == std::errc::result_out_of_range) {
      error(node.Mark(), path,
            quote(s) + " is out of range; expected " + what + " from " +
                std::to_string(std::numeric_limits<T>::min()) + " to " +
                std::to_string(std::numeric_limits<T>::max()));
    } else {
      error(node.Mark(), path, "expected " + what + ", found " + quote(s));
    }
  }

  void floating(const YAML::Node& node, const std::string& path, std::string& out) {
    std::string l = lower(node.Scalar());
    if (l == ".inf" || l == "+.inf") {
      out += "\"Infinity\"";
      return;
    }
    if (l == "-.inf") {
      out += "\"-Infinity\"";
      return;
    }
    if (l == ".nan") {
      out += "\"NaN\"";
      return;
    }
    const std::string& s = node.Scalar();
    char* end = nullptr;
    errno = 0;
    double v = strtod(s.c_str(), &end);
    if (s.empty() || end != s.c_str() + s.size() || errno == ERANGE || !std::isfinite(v)) {
      error(node.Mark(), path, "expected a number, found " + quote(s));
      return;
    }
    char buf[64];
    snprintf(buf, sizeof buf, "%.17g", v);
    out += buf;
  }

  void enumValue(const YAML::Node& node, const pb::EnumDescriptor* e, const std::string& path,
                 std::string& out) {
    const std::string& s = node.Scalar();
    if (const pb::EnumValueDescriptor* v = e->FindValueByName(s)) {
      appendJsonString(out, v->name());
      return;
    }
    int number = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), number);
    if (ec == std::errc() && end == s.data() + s.size()) {
      if (const pb::EnumValueDescriptor* v = e->FindValueByNumber(number)) {
        appendJsonString(out, v->name());
        return;
      }
    }
    std::string msg =
        quote(s) + " is not a valid " + e->name() + "; use one of " + enumValueList(e);
    for (int i = 0; i < e->value_count(); ++i) {
      if (lower(e->value(i)->name()) == lower(s)) {
        msg += " (names are upper case: " + e->value(i)->name() + ")";
        break;
      }
    }
    error(node.Mark(), path, msg);
  }

  void convertDuration(const YAML::Node& node, const std::string& path, std::string& out) {
    if (!node.IsScalar()) {
      error(node.Mark(), path,
            "expected a duration like \"15s\", found " + std::string(nodeKind(node)));
      return;
    }
    const std::string& s = node.Scalar();
    if (!isDurationText(s)) {
      error(node.Mark(), path, "invalid duration " + quote(s) + "; " + durationHint(s));
      return;
    }
    appendJsonString(out, s);
  }

  // Schema-less conversion, for well-known types other than Duration: plain scalars that look
  // like JSON numbers, booleans or null keep that type; everything else becomes a string.
  void convertUntyped(const YAML::Node& node, std::string& out) {
    switch (node.Type()) {
      case YAML::NodeType::Map: {
        out += '{';
        bool first = true;
        for (auto it = node.begin(); it != node.end(); ++it) {
          if (!first) out += ',';
          first = false;
          const YAML::Node key = it->first;
          const YAML::Node value = it->second;
          appendJsonString(out, key.IsScalar() ? key.Scalar() : std::string());
          out += ':';
          convertUntyped(value, out);
        }
        out += '}';
        return;
      }
      case YAML::NodeType::Sequence:
        out += '[';
        for (size_t i = 0; i < node.size(); ++i) {
          if (i) out += ',';
          convertUntyped(node[i], out);
        }
        out += ']';
        return;
      case YAML::NodeType::Scalar: {
        const std::string& s = node.Scalar();
        if (node.Tag() == "?") {
          if (s == "true" || s == "false") {
            out += s;
            return;
          }
          char* end = nullptr;
          strtod(s.c_str(), &end);
          if (!s.empty() && end == s.c_str() + s.size() && s.find_first_of("xXnN") == s.npos) {
            out += s;
            return;
          }
        }
        appendJsonString(out, s);
        return;
      }
      default:
        out += "null";
    }
  }

  std::string_view source_;
  std::vector<std::string> errors_;
  LocationMap locations_;
};

// Message descriptor at `path` ("listeners[0].tls"), or nullptr.
const pb::Descriptor* descriptorAt(std::string_view path) {
  const pb::Descriptor* desc = v1::ProxyConfig::descriptor();
  while (!path.empty() && desc != nullptr) {
    size_t dot = path.find('.');
    std::string_view part = path.substr(0, dot);
    path = dot == std::string_view::npos ? std::string_view() : path.substr(dot + 1);
    part = part.substr(0, part.find('['));
    const pb::FieldDescriptor* f = findField(desc, part);
    if (f == nullptr || f->cpp_type() != pb::FieldDescriptor::CPPTYPE_MESSAGE) return nullptr;
    desc = f->message_type();
  }
  return desc;
}

std::string locationPrefix(std::string_view source, const LocationMap* locations,
                           std::string_view path) {
  std::string prefix(source);
  if (locations != nullptr) {
    // The field itself, else its nearest enclosing field or list item that was written.
    std::string_view p = path;
    while (true) {
      auto it = locations->find(p);
      if (it != locations->end()) {
        prefix += ":" + std::to_string(it->second.line) + ":" + std::to_string(it->second.column);
        break;
      }
      size_t cut = p.find_last_of(".[");
      if (cut == std::string_view::npos || cut == 0) break;
      p = p.substr(0, cut);
    }
  }
  return prefix;
}

std::string formatIssue(std::string_view source, const LocationMap* locations,
                        std::string_view path, std::string_view message) {
  std::string line = locationPrefix(source, locations, path) + ": ";
  if (!path.empty()) {
    line += path;
    line += ": ";
  }
  line += message;
  return line;
}

// Turns protobuf 3.21's JSON parser errors into weft's style:
//   "(listeners[0]) foo: Cannot find field."        -> "<src>:L:C: listeners[0]: unknown field ..."
//   "(listeners[0].port): invalid value "x" for type TYPE_UINT32" -> "... expected ..."
//   "Expected , or } after key:value pair.\n<context>\n   ^"       -> "<src>:L:C: Expected ..."
// Anything else is kept, prefixed with the source name.
// `text` is the JSON that was parsed when it is also what the user wrote (else empty: no
// line:column for syntax errors).
std::string rewriteProtobufError(std::string_view raw, std::optional<std::string_view> text,
                                 std::string_view source, const LocationMap* locations) {
  std::string_view msg = raw;
  if (msg.substr(0, 2) == ": ") msg.remove_prefix(2);  // "Root element must be a message."

  // Syntax error with a context window and a caret: find the window in the text for line:col.
  size_t first_nl = msg.find('\n');
  size_t last_nl = msg.rfind('\n');
  if (first_nl != std::string_view::npos && last_nl > first_nl) {
    std::string_view head = msg.substr(0, first_nl);
    std::string_view context = msg.substr(first_nl + 1, last_nl - first_nl - 1);
    std::string_view caret = msg.substr(last_nl + 1);
    std::string out(source);
    size_t at = !text || context.empty() ? std::string_view::npos : text->find(context);
    if (text && !caret.empty() && caret.back() == '^' &&
        (at != std::string_view::npos || context.empty())) {
      size_t offset = (context.empty() ? text->size() : at) + caret.size() - 1;
      offset = std::min(offset, text->size());
      int line = 1, col = 1;
      for (size_t i = 0; i < offset; ++i) {
        if ((*text)[i] == '\n') {
          ++line;
          col = 1;
        } else {
          ++col;
        }
      }
      out += ":" + std::to_string(line) + ":" + std::to_string(col);
    }
    return out + ": " + std::string(head);
  }

  // "(path) name: Cannot find field." (path and parentheses absent at the top level).
  constexpr std::string_view kNoField = ": Cannot find field.";
  if (msg.size() > kNoField.size() && msg.substr(msg.size() - kNoField.size()) == kNoField) {
    std::string_view body = msg.substr(0, msg.size() - kNoField.size());
    std::string_view path;
    if (!body.empty() && body.front() == '(') {
      size_t close = body.find(") ");
      if (close != std::string_view::npos) {
        path = body.substr(1, close - 1);
        body = body.substr(close + 2);
      }
    }
    const pb::Descriptor* desc = descriptorAt(path);
    std::string what =
        desc != nullptr ? unknownFieldMessage(body, desc) : "unknown field " + quote(body);
    std::string line = locationPrefix(source, locations, childPath(path, body)) + ": ";
    if (!path.empty()) line += std::string(path) + ": ";
    return line + what;
  }

  // "(path): invalid value V for type T".
  constexpr std::string_view kInvalid = "): invalid value ";
  size_t iv = msg.find(kInvalid);
  if (!msg.empty() && msg.front() == '(' && iv != std::string_view::npos) {
    std::string_view path = msg.substr(1, iv - 1);
    std::string_view rest = msg.substr(iv + kInvalid.size());
    size_t ft = rest.rfind(" for type ");
    std::string_view value = rest.substr(0, ft);
    std::string_view type =
        ft == std::string_view::npos ? std::string_view() : rest.substr(ft + 10);
    constexpr std::string_view kTypeUrl = "type.googleapis.com/";
    if (type.substr(0, kTypeUrl.size()) == kTypeUrl) type.remove_prefix(kTypeUrl.size());
    std::string what;
    if (type == "google.protobuf.Duration") {
      // value is "Field 'x', <reason>"
      size_t comma = value.find("', ");
      std::string_view reason = comma == std::string_view::npos ? value : value.substr(comma + 3);
      what = "invalid duration (" + std::string(reason) +
             "); expected seconds with an \"s\" suffix, like \"15s\" or \"0.5s\"";
    } else if (type == "oneof") {
      what = std::string(value);  // "oneof field 'x' is already set. Cannot set 'y'"
      const pb::Descriptor* desc = descriptorAt(path);
      size_t q1 = value.find('\'');
      size_t q2 = q1 == std::string_view::npos ? q1 : value.find('\'', q1 + 1);
      if (desc != nullptr && q2 != std::string_view::npos) {
        if (const pb::OneofDescriptor* o =
                desc->FindOneofByName(std::string(value.substr(q1 + 1, q2 - q1 - 1)))) {
          std::vector<std::string> members;
          for (int i = 0; i < o->field_count(); ++i) members.push_back(o->field(i)->name());
          what = "only one of " + join(members, ", ") + " may be set";
        }
      }
    } else if (const pb::EnumDescriptor* e =
                   pb::DescriptorPool::generated_pool()->FindEnumTypeByName(std::string(type))) {
      what = "invalid value " + std::string(value) + "; use one of " + enumValueList(e);
    } else {
      std::string expected = "a value of type " + std::string(type);
      if (type == "TYPE_STRING") expected = "a string (in quotes)";
      if (type == "TYPE_BOOL") expected = "true or false";
      if (type == "TYPE_UINT32" || type == "TYPE_UINT64") expected = "a non-negative integer";
      if (type == "TYPE_INT32" || type == "TYPE_INT64") expected = "an integer";
      if (type == "TYPE_DOUBLE" || type == "TYPE_FLOAT") expected = "a number";
      what = "invalid value " + std::string(value) + "; expected " + expected;
    }
    return formatIssue(source, locations, path, what);
  }

  return std::string(source) + ": " + std::string(msg);
}

struct Parsed {
  v1::ProxyConfig config;
  LocationMap locations;
};

Unexpected<Error> joinedError(std::vector<std::string> lines, int code) {
  if (lines.size() > kMaxReportedErrors) {
    size_t more = lines.size() - kMaxReportedErrors;
    lines.resize(kMaxReportedErrors);
    lines.push_back("... and " + std::to_string(more) + " more errors");
  }
  return makeError(join(lines, "\n"), code);
}

// Best-effort field locations for JSON text (YAML is a superset of JSON for what we need).
LocationMap locateJson(std::string_view text) {
  try {
    YAML::Node root = YAML::Load(std::string(text));
    YamlToJson walker("");
    std::string ignored;
    walker.convertDocument(root, ignored);
    return walker.takeLocations();
  } catch (const std::exception&) {
    return {};
  }
}

Result<Parsed> parseWithLocations(std::string_view text, Format fmt, std::string_view source) {
  if (fmt == Format::kAuto) fmt = detectFormat("", text);
  std::string json;
  Parsed parsed;
  if (fmt == Format::kYaml) {
    try {
      std::vector<YAML::Node> docs = YAML::LoadAll(std::string(text));
      if (docs.size() > 1) {
        return makeError(std::string(source) + ": expected one YAML document, found " +
                             std::to_string(docs.size()) + " (separated by \"---\")",
                         kConfigSyntaxError);
      }
      YamlToJson walker(source);
      walker.convertDocument(docs.empty() ? YAML::Node() : docs[0], json);
      if (!walker.errors().empty()) return joinedError(walker.errors(), kConfigSyntaxError);
      parsed.locations = walker.takeLocations();
    } catch (const YAML::Exception& e) {
      return makeError(std::string(source) + ":" + std::to_string(e.mark.line + 1) + ":" +
                           std::to_string(e.mark.column + 1) + ": " + e.msg,
                       kConfigSyntaxError);
    } catch (const std::exception& e) {
      return makeError(std::string(source) + ": " + e.what(), kConfigSyntaxError);
    }
  } else {
    json.assign(text);
  }

  pb::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  pb::util::Status status = pb::util::JsonStringToMessage(json, &parsed.config, options);
  if (!status.ok()) {
    // For JSON input, locate fields only now: the happy path need not parse twice.
    if (fmt == Format::kJson) parsed.locations = locateJson(text);
    std::string message(status.message());
    std::optional<std::string_view> located;
    if (fmt == Format::kJson) located = text;
    return makeError(rewriteProtobufError(message, located, source, &parsed.locations),
                     kConfigSyntaxError);
  }
  return parsed;
}

bool isIpLiteral(const std::string& s) {
  unsigned char buf[16];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

// RFC 1123 host name (underscores tolerated, trailing dot allowed).
bool isHostname(std::string_view s) {
  if (!s.empty() && s.back() == '.') s.remove_suffix(1);
  if (s.empty() || s.size() > 253) return false;
  size_t start = 0;
  while (start <= s.size()) {
    size_t dot = s.find('.', start);
    std::string_view label = s.substr(start, dot == s.npos ? s.npos : dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return false;
    }
    for (char c : label) {
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') return false;
    }
    if (dot == s.npos) break;
    start = dot + 1;
  }
  return true;
}

std::string durationText(const pb::Duration& d) {
  std::string s = std::to_string(d.seconds());
  if (d.nanos() != 0) {
    char buf[16];
    snprintf(buf, sizeof buf, ".%09d", std::abs(d.nanos()));
    std::string frac(buf);
    while (frac.back() == '0') frac.pop_back();
    if (d.seconds() == 0 && d.nanos() < 0) s = "-0";
    s += frac;
  }
  return s + "s";
}

// An IP endpoint for the address-conflict check.
struct BindAddress {
  int family = 0;
  unsigned char bytes[16] = {};
  bool wildcard = false;
  uint32_t port = 0;
  std::string owner;  // "admin" or "listeners[i]"
  std::string shown;  // "127.0.0.1:80"
};

std::optional<BindAddress> bindAddress(const std::string& address, uint32_t port,
                                       std::string owner) {
  BindAddress b;
  if (inet_pton(AF_INET, address.c_str(), b.bytes) == 1) {
    b.family = AF_INET;
    b.wildcard = std::all_of(b.bytes, b.bytes + 4, [](unsigned char c) { return c == 0; });
    b.shown = address + ":" + std::to_string(port);
  } else if (inet_pton(AF_INET6, address.c_str(), b.bytes) == 1) {
    b.family = AF_INET6;
    b.wildcard = std::all_of(b.bytes, b.bytes + 16, [](unsigned char c) { return c == 0; });
    b.shown = "[" + address + "]:" + std::to_string(port);
  } else {
    return std::nullopt;
  }
  b.port = port;
  b.owner = std::move(owner);
  return b;
}

bool conflicts(const BindAddress& a, const BindAddress& b) {
  if (a.port == 0 || a.port != b.port || a.family != b.family) return false;
  if (a.wildcard || b.wildcard) return true;
  size_t n = a.family == AF_INET ? 4 : 16;
  return std::memcmp(a.bytes, b.bytes, n) == 0;
}

// Collects semantic problems. Paths use proto field names.
class Validator {
 public:
  explicit Validator(const ValidateOptions& options) : options_(options) {}

  std::vector<ConfigIssue> run(const v1::ProxyConfig& c) {
    for (const v1::Cluster& cluster : c.clusters()) cluster_names_.insert(cluster.name());
    checkDuration(c.has_drain_time(), c.drain_time(), "drain_time");
    std::vector<BindAddress> binds;
    checkAdmin(c, binds);
    std::map<std::string, int> listener_names;
    for (int i = 0; i < c.listeners_size(); ++i) {
      checkListener(c.listeners(i), i, listener_names, binds);
    }
    std::map<std::string, int> cluster_names;
    for (int i = 0; i < c.clusters_size(); ++i) {
      checkCluster(c.clusters(i), i, cluster_names);
    }
    return std::move(issues_);
  }

 private:
  void add(std::string path, std::string message) {
    issues_.push_back(ConfigIssue{std::move(path), std::move(message)});
  }

  void checkDuration(bool has, const pb::Duration& d, const std::string& path) {
    if (has && (d.seconds() < 0 || d.nanos() < 0)) {
      add(path, durationText(d) + " is negative; durations must be 0s or more");
    }
  }

  void checkReadable(const std::string& file, const std::string& path) {
    if (!options_.check_files || file.empty()) return;
    struct stat st {};
    if (stat(file.c_str(), &st) != 0) {
      add(path, "cannot read " + quote(file) + ": " + std::strerror(errno) +
                    "; check the path (relative paths are resolved from weft-proxy's working "
                    "directory)");
      return;
    }
    if (S_ISDIR(st.st_mode)) {
      add(path, quote(file) + " is a directory; give the path of a PEM file");
      return;
    }
    if (access(file.c_str(), R_OK) != 0) {
      add(path, "cannot read " + quote(file) + ": " + std::strerror(errno) +
                    "; make it readable by the user weft-proxy runs as");
    }
  }

  void checkPortRange(uint32_t port, const std::string& path, const char* advice) {
    if (port > 65535) add(path, std::to_string(port) + " is out of range; " + advice);
  }

  void checkBindAddress(const std::string& address, const std::string& path) {
    if (address.empty() || isIpLiteral(address)) return;
    if (address.size() > 2 && address.front() == '[' && address.back() == ']' &&
        isIpLiteral(address.substr(1, address.size() - 2))) {
      add(path,
          "write IPv6 addresses without brackets: " + quote(address.substr(1, address.size() - 2)));
      return;
    }
    add(path, quote(address) +
                  " is not an IPv4 or IPv6 address; use an IP literal such as \"0.0.0.0\" (all "
                  "IPv4 interfaces), \"127.0.0.1\" or \"::\"");
  }

  void addBind(const std::string& address, uint32_t port, const std::string& path,
               const std::string& owner, std::vector<BindAddress>& binds) {
    std::optional<BindAddress> b = bindAddress(address, port, owner);
    if (!b || port > 65535) return;
    for (const BindAddress& other : binds) {
      if (conflicts(*b, other)) {
        add(path, b->shown + " overlaps " + other.shown + " used by " + other.owner +
                      "; give each listener its own port (or port 0 for a free one)");
        break;
      }
    }
    binds.push_back(std::move(*b));
  }

  void checkAdmin(const v1::ProxyConfig& c, std::vector<BindAddress>& binds) {
    const v1::Admin& a = c.admin();
    checkBindAddress(a.address(), "admin.address");
    if (a.has_port()) {
      checkPortRange(a.port(), "admin.port", "use 1-65535, or 0 to pick a free port");
    }
    std::string address = a.address().empty() ? "127.0.0.1" : a.address();
    uint32_t port = a.has_port() ? a.port() : 9901;
    addBind(address, port, "admin.port", "admin", binds);
  }

  void checkListener(const v1::Listener& l, int index, std::map<std::string, int>& names,
                     std::vector<BindAddress>& binds) {
    const std::string lp = indexPath("listeners", index);
    if (l.name().empty()) {
      add(lp + ".name", "required; give every listener a unique name (it labels its metrics)");
    } else if (auto [it, fresh] = names.emplace(l.name(), index); !fresh) {
      add(lp + ".name", "duplicate listener name " + quote(l.name()) + " (also used by " +
                            indexPath("listeners", it->second) +
                            "); listener names must be unique");
    }
    checkBindAddress(l.address(), lp + ".address");
    checkPortRange(l.port(), lp + ".port", "use 1-65535, or 0 to pick a free port");
    addBind(l.address().empty() ? "0.0.0.0" : l.address(), l.port(), lp + ".port", lp, binds);

    if (l.has_tls()) checkListenerTls(l.tls(), lp + ".tls");
    if (l.has_http()) checkHttp(l.http(), lp + ".http");
    checkProtocol(l.route_config(), l.has_tcp_proxy(), l.tcp_proxy(), lp);
    if (!l.has_interception() && l.filter_chains_size() > 0) {
      add(lp + ".filter_chains",
          "only interception listeners have filter chains; set interception (direction OUTBOUND "
          "or INBOUND) or move the chain's route_config/tcp_proxy onto the listener");
    }
    if (l.has_interception() && (l.route_config().virtual_hosts_size() > 0 || l.has_tcp_proxy())) {
      add(lp + ".interception",
          "an interception listener dispatches by original destination to its filter_chains; "
          "move route_config/tcp_proxy into a filter chain");
    }
    std::map<std::string, int> chain_names;
    for (int i = 0; i < l.filter_chains_size(); ++i) {
      const v1::FilterChain& fc = l.filter_chains(i);
      const std::string fp = indexPath(lp + ".filter_chains", i);
      if (fc.name().empty()) {
        add(fp + ".name",
            "required; it labels the chain's metrics as listener=\"<listener>/<name>\"");
      } else if (auto [it, fresh] = chain_names.emplace(fc.name(), i); !fresh) {
        add(fp + ".name", "duplicate chain name " + quote(fc.name()));
      }
      for (int p = 0; p < fc.destination_ports_size(); ++p) {
        if (fc.destination_ports(p) == 0 || fc.destination_ports(p) > 65535) {
          add(indexPath(fp + ".destination_ports", p),
              std::to_string(fc.destination_ports(p)) + " is out of range; use 1-65535");
        }
      }
      for (int c = 0; c < fc.destination_cidrs_size(); ++c) {
        if (!net::parseCidr(fc.destination_cidrs(c))) {
          add(indexPath(fp + ".destination_cidrs", c),
              quote(fc.destination_cidrs(c)) +
                  " is not a CIDR prefix; write e.g. \"10.0.0.0/16\" or \"fd00::/8\"");
        }
      }
      if (fc.route_config().virtual_hosts_size() == 0 && !fc.has_tcp_proxy()) {
        add(fp, "set route_config (HTTP) or tcp_proxy (TCP)");
      }
      checkProtocol(fc.route_config(), fc.has_tcp_proxy(), fc.tcp_proxy(), fp);
    }
    for (int a = 0; a < l.access_logs_size(); ++a) {
      const v1::AccessLog& log = l.access_logs(a);
      std::string ap = indexPath(lp + ".access_logs", a);
      if (log.path().empty()) add(ap + ".path", "required; a file path or \"/dev/stdout\"");
      if (log.has_json_format() && log.json_format().fields().empty()) {
        add(ap + ".json_format.fields",
            "at least one field is required, e.g. {status: "
            "\"%RESPONSE_CODE%\"}");
      }
    }
  }

  // A listener or chain carries HTTP (route_config) or TCP (tcp_proxy), not both.
  void checkProtocol(const v1::RouteConfig& rc, bool has_tcp, const v1::TcpProxy& tcp,
                     const std::string& path) {
    std::map<std::string, std::string> domains;  // lower-cased domain -> virtual host path
    for (int v = 0; v < rc.virtual_hosts_size(); ++v) {
      checkVirtualHost(rc.virtual_hosts(v), indexPath(path + ".route_config.virtual_hosts", v),
                       domains);
    }
    if (!has_tcp) return;
    if (rc.virtual_hosts_size() > 0) {
      add(path + ".tcp_proxy",
          "a listener relays TCP (tcp_proxy) or routes HTTP (route_config), not both; use two "
          "listeners or two filter chains");
    }
    const std::string tp = path + ".tcp_proxy";
    if (tcp.cluster().empty()) {
      add(tp + ".cluster", "required; the name of a cluster defined under clusters");
    } else if (!cluster_names_.count(tcp.cluster())) {
      add(tp + ".cluster", "no cluster named " + quote(tcp.cluster()) + " is defined" +
                               (cluster_names_.empty() ? std::string("; define it under clusters")
                                                       : "; defined clusters: " + clusterList()));
    }
    checkDuration(tcp.has_idle_timeout(), tcp.idle_timeout(), tp + ".idle_timeout");
  }

  void checkTlsCommon(const v1::TlsValidation* validation, const std::string& validation_path,
                      const google::protobuf::RepeatedPtrField<std::string>& alpn,
                      v1::TlsVersion min, v1::TlsVersion max, const std::string& tp,
                      const std::string& trust_bundle_advice) {
    if (validation != nullptr) {
      const std::string& file = validation->trust_bundle_file();
      const std::string& pem = validation->trust_bundle_pem();
      if (file.empty() && pem.empty()) {
        add(validation_path + ".trust_bundle_file",
            trust_bundle_advice + " (or trust_bundle_pem to the PEM text)");
      } else if (!file.empty() && !pem.empty()) {
        add(validation_path + ".trust_bundle_pem",
            "trust_bundle_file and trust_bundle_pem are both set; give one of them");
      }
      checkReadable(file, validation_path + ".trust_bundle_file");
      if (!pem.empty()) {
        if (auto b = net::tls::parseCertBundle(pem, "trust_bundle_pem"); !b)
          add(validation_path + ".trust_bundle_pem",
              "is not a PEM bundle of CA certificates (" + b.error().message + ")");
      }
      if (!validation->crl_pem().empty()) {
        if (auto c = net::tls::parseCrlBundle(validation->crl_pem(), "crl_pem"); !c)
          add(validation_path + ".crl_pem",
              "is not a PEM bundle of CRLs (\"-----BEGIN X509 CRL-----\" blocks): " +
                  c.error().message);
      }
      for (int i = 0; i < validation->match_subject_alt_names_size(); ++i) {
        const v1::SanMatcher& m = validation->match_subject_alt_names(i);
        std::string mp = indexPath(validation_path + ".match_subject_alt_names", i);
        if (m.match_case() == v1::SanMatcher::MATCH_NOT_SET ||
            (m.match_case() == v1::SanMatcher::kDns && m.dns().empty()) ||
            (m.match_case() == v1::SanMatcher::kUri && m.uri().empty())) {
          add(mp,
              "set dns (e.g. \"api.example.com\") or uri (e.g. "
              "\"spiffe://mesh/ns/default/sa/web\") to a non-empty value");
        }
      }
    }
    for (int i = 0; i < alpn.size(); ++i) {
      if (alpn[i].empty() || alpn[i].size() > 255) {
        add(indexPath(tp + ".alpn", i),
            "ALPN protocol names are 1-255 bytes, e.g. \"h2\" or \"http/1.1\"");
      }
    }
    if (min != v1::TLS_AUTO && max != v1::TLS_AUTO && min > max) {
      add(tp + ".min_version", v1::TlsVersion_Name(min) + " is above max_version " +
                                   v1::TlsVersion_Name(max) +
                                   "; lower min_version or raise "
                                   "max_version");
    }
  }

  void checkCertificate(const v1::TlsCertificate& cert, const std::string& cp,
                        const std::string& why) {
    const std::string& chain_file = cert.certificate_chain_file();
    const std::string& chain_pem = cert.certificate_chain_pem();
    if (chain_file.empty() && chain_pem.empty()) {
      add(cp + ".certificate_chain_file",
          "required " + why +
              "; set it to the PEM file holding the certificate chain (or certificate_chain_pem "
              "to the PEM text)");
    } else if (!chain_file.empty() && !chain_pem.empty()) {
      add(cp + ".certificate_chain_pem",
          "certificate_chain_file and certificate_chain_pem are both set; give one of them");
    }
    checkReadable(chain_file, cp + ".certificate_chain_file");
    if (!chain_pem.empty()) {
      if (auto c = net::tls::parseCertChain(chain_pem, "certificate_chain_pem"); !c)
        add(cp + ".certificate_chain_pem",
            "is not a PEM certificate chain (" + c.error().message + ")");
    }
    const std::string& key_file = cert.private_key_file();
    const std::string& key_pem = cert.private_key_pem();
    if (key_file.empty() && key_pem.empty()) {
      add(cp + ".private_key_file",
          "required " + why +
              "; set it to the PEM file holding the certificate's private key (or "
              "private_key_pem to the PEM text)");
    } else if (!key_file.empty() && !key_pem.empty()) {
      add(cp + ".private_key_pem",
          "private_key_file and private_key_pem are both set; give one of them");
    }
    checkReadable(key_file, cp + ".private_key_file");
    if (!key_pem.empty()) {
      // The parser's message names the field only; key material never goes into an issue.
      if (auto k = net::tls::parsePrivateKey(key_pem, "private_key_pem"); !k)
        add(cp + ".private_key_pem",
            "is not an unencrypted PEM private key (" + k.error().message + ")");
    }
  }

  void checkListenerTls(const v1::ListenerTls& t, const std::string& tp) {
    if (t.mode() == v1::ListenerTls::DISABLED) {
      if (t.has_certificate() || t.has_validation()) {
        add(tp + ".mode",
            "is DISABLED (the default) but tls.certificate or tls.validation is set; set mode: "
            "STRICT (TLS only) or PERMISSIVE (TLS and plaintext), or remove them");
      }
      return;
    }
    std::string why = "when tls.mode is " + v1::ListenerTls::Mode_Name(t.mode());
    checkCertificate(t.certificate(), tp + ".certificate", why);
    checkTlsCommon(t.has_validation() ? &t.validation() : nullptr, tp + ".validation", t.alpn(),
                   t.min_version(), t.max_version(), tp,
                   "required when tls.validation is set (mutual TLS); set it to the PEM bundle "
                   "of the CAs that sign client certificates");
  }

  void checkHttp(const v1::HttpOptions& h, const std::string& hp) {
    if (h.max_request_headers_kb() > 1024) {
      add(hp + ".max_request_headers_kb",
          std::to_string(h.max_request_headers_kb()) +
              " is out of range; use 1-1024 (KiB), or leave it unset for 60");
    }
    checkDuration(h.has_request_timeout(), h.request_timeout(), hp + ".request_timeout");
    checkDuration(h.has_idle_timeout(), h.idle_timeout(), hp + ".idle_timeout");
  }

  static bool validDomainPattern(std::string_view d) {
    if (d.empty()) return false;
    if (d == "*") return true;
    for (char c : d) {
      if (std::isspace(static_cast<unsigned char>(c)) || c == '/' || c == '\\') return false;
    }
    size_t stars = std::count(d.begin(), d.end(), '*');
    if (stars == 0) return true;
    return stars == 1 && (d.front() == '*' || d.back() == '*');
  }

  void checkVirtualHost(const v1::VirtualHost& vh, const std::string& vp,
                        std::map<std::string, std::string>& domains) {
    if (vh.domains().empty()) {
      add(vp + ".domains", "at least one domain is required; use \"*\" to match any host");
    }
    for (int d = 0; d < vh.domains_size(); ++d) {
      const std::string& domain = vh.domains(d);
      std::string dp = indexPath(vp + ".domains", d);
      if (!validDomainPattern(domain)) {
        add(dp, quote(domain) +
                    " is not a valid domain pattern; use an exact name (\"api.example.com\"), a "
                    "suffix wildcard (\"*.example.com\"), a prefix wildcard (\"api.*\") or \"*\"");
        continue;
      }
      auto [it, fresh] = domains.emplace(lower(domain), vp);
      if (!fresh) {
        add(dp, quote(domain) + " is also listed by " + it->second +
                    "; a domain may appear in only one virtual host of a listener");
      }
    }
    for (int r = 0; r < vh.routes_size(); ++r)
      checkRoute(vh.routes(r), indexPath(vp + ".routes", r));
  }

  void checkRoute(const v1::Route& route, const std::string& rp) {
    const v1::RouteMatch& m = route.match();
    std::string mp = rp + ".match";
    switch (m.path_specifier_case()) {
      case v1::RouteMatch::kPrefix:
        if (m.prefix().empty() || m.prefix().front() != '/') {
          add(mp + ".prefix",
              quote(m.prefix()) + " must start with \"/\" (\"/\" matches every path)");
        }
        break;
      case v1::RouteMatch::kPath:
        if (m.path().empty() || m.path().front() != '/') {
          add(mp + ".path", quote(m.path()) + " must start with \"/\"");
        }
        break;
      case v1::RouteMatch::kRegex:
        if (m.regex().empty()) {
          add(mp + ".regex", "is empty; use prefix: \"/\" to match every path");
        }
        break;
      case v1::RouteMatch::PATH_SPECIFIER_NOT_SET:
        break;
    }
    if (!m.method().empty()) {
      bool token = std::all_of(m.method().begin(), m.method().end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || std::strchr("!#$%&'*+-.^_`|~", c);
      });
      std::string upper = m.method();
      for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      if (!token) {
        add(mp + ".method", quote(m.method()) + " is not an HTTP method name, e.g. \"GET\"");
      } else if (upper != m.method()) {
        add(mp + ".method", "methods are case-sensitive; write " + quote(upper));
      }
    }
    for (int h = 0; h < m.headers_size(); ++h) {
      const v1::HeaderMatcher& hm = m.headers(h);
      std::string hp = indexPath(mp + ".headers", h);
      if (hm.name().empty()) add(hp + ".name", "required; the header name to match");
      if (hm.has_range() && hm.range().start() >= hm.range().end()) {
        add(hp + ".range",
            "end (" + std::to_string(hm.range().end()) + ") must be greater than start (" +
                std::to_string(hm.range().start()) + "); start is inclusive, end exclusive");
      }
    }
    for (int q = 0; q < m.query_parameters_size(); ++q) {
      if (m.query_parameters(q).name().empty()) {
        add(indexPath(mp + ".query_parameters", q) + ".name",
            "required; the query parameter name to match");
      }
    }
    if (route.has_priority() && route.priority() > 1000) {
      add(rp + ".priority",
          std::to_string(route.priority()) + " is out of range; use 0 (highest) to 1000");
    }
    switch (route.action_case()) {
      case v1::Route::ACTION_NOT_SET:
        add(rp, "has no action; set route (forward to clusters) or direct_response");
        break;
      case v1::Route::kDirectResponse: {
        uint32_t status = route.direct_response().status();
        if (status < 200 || status > 599) {
          add(rp + ".direct_response.status",
              (status == 0 ? std::string("required") : std::to_string(status) + " is invalid") +
                  "; use an HTTP status from 200 to 599");
        }
        break;
      }
      case v1::Route::kRoute:
        checkRouteAction(route.route(), m, rp + ".route");
        break;
    }
  }

  void checkRouteAction(const v1::RouteAction& a, const v1::RouteMatch& m, const std::string& ap) {
    if (a.clusters().empty()) {
      add(ap + ".clusters", "at least one target is required, e.g. clusters: [{name: backend}]");
    }
    if (a.clusters_size() > 10) {
      add(ap + ".clusters", std::to_string(a.clusters_size()) + " targets; at most 10 are allowed");
    }
    uint64_t total = 0;
    std::map<std::string, int> seen;
    for (int i = 0; i < a.clusters_size(); ++i) {
      const v1::WeightedCluster& wc = a.clusters(i);
      std::string wp = indexPath(ap + ".clusters", i);
      total += wc.weight();
      if (wc.name().empty()) {
        add(wp + ".name", "required; the name of a cluster defined under clusters");
      } else if (!cluster_names_.count(wc.name())) {
        add(wp + ".name", "no cluster named " + quote(wc.name()) + " is defined" +
                              (cluster_names_.empty() ? std::string("; define it under clusters")
                                                      : "; defined clusters: " + clusterList()));
      } else if (auto [it, fresh] = seen.emplace(wc.name(), i); !fresh) {
        add(wp + ".name", "cluster " + quote(wc.name()) + " is already a target at " +
                              indexPath(ap + ".clusters", it->second) + "; merge the weights");
      }
      if (wc.weight() > 100) {
        add(wp + ".weight", std::to_string(wc.weight()) + " is out of range; use 0-100");
      }
    }
    if (a.clusters_size() > 1 && total == 0) {
      add(ap + ".clusters",
          "every weight is 0, so no target can be chosen; give at least one "
          "target a positive weight");
    }
    if (!a.prefix_rewrite().empty() && m.path_specifier_case() != v1::RouteMatch::kPrefix) {
      add(ap + ".prefix_rewrite",
          "applies only to prefix matches; this route's match has no prefix");
    }
    checkDuration(a.has_timeout(), a.timeout(), ap + ".timeout");
    checkDuration(a.has_idle_timeout(), a.idle_timeout(), ap + ".idle_timeout");
    if (a.has_retry_policy()) {
      const std::string rp = ap + ".retry_policy";
      checkDuration(a.retry_policy().has_per_try_timeout(), a.retry_policy().per_try_timeout(),
                    rp + ".per_try_timeout");
      auto compiled = upstream::RetryPolicy::compile(retryConfig(a.retry_policy()));
      if (!compiled) add(rp, compiled.error().message);
    }
  }

  std::string clusterList() const {
    std::vector<std::string> names;
    for (const std::string& n : cluster_names_) {
      if (!n.empty()) names.push_back(quote(n));
    }
    return join(names, ", ");
  }

  void checkCluster(const v1::Cluster& c, int index, std::map<std::string, int>& names) {
    const std::string cp = indexPath("clusters", index);
    if (c.name().empty()) {
      add(cp + ".name", "required; routes refer to clusters by name");
    } else if (auto [it, fresh] = names.emplace(c.name(), index); !fresh) {
      add(cp + ".name", "duplicate cluster name " + quote(c.name()) + " (also used by " +
                            indexPath("clusters", it->second) + "); cluster names must be unique");
    }
    if (c.endpoints().empty()) {
      add(cp + ".endpoints",
          "at least one endpoint is required, e.g. endpoints: [{address: 127.0.0.1, port: 8080}]");
    }
    for (int e = 0; e < c.endpoints_size(); ++e) {
      const v1::Endpoint& ep = c.endpoints(e);
      std::string epp = indexPath(cp + ".endpoints", e);
      const std::string& addr = ep.address();
      if (addr.empty()) {
        add(epp + ".address", c.type() == v1::Cluster::DNS
                                  ? "required; a DNS name such as \"backend.internal\""
                                  : "required; an IPv4 or IPv6 address such as \"127.0.0.1\"");
      } else if (c.type() == v1::Cluster::STATIC && !isIpLiteral(addr)) {
        add(epp + ".address",
            quote(addr) +
                " is not an IP address; STATIC clusters need IPv4/IPv6 literals (set "
                "type: DNS on the cluster to resolve host names)");
      } else if (c.type() == v1::Cluster::DNS && isIpLiteral(addr)) {
        add(epp + ".address", quote(addr) +
                                  " is an IP address; DNS clusters resolve host names "
                                  "(use type: STATIC for IP endpoints)");
      } else if (c.type() == v1::Cluster::DNS && !isHostname(addr)) {
        add(epp + ".address", quote(addr) + " is not a valid DNS name");
      }
      if (ep.port() == 0) {
        add(epp + ".port", "required; use 1-65535");
      } else if (ep.port() > 65535) {
        add(epp + ".port", std::to_string(ep.port()) + " is out of range; use 1-65535");
      }
    }
    checkDuration(c.has_connect_timeout(), c.connect_timeout(), cp + ".connect_timeout");
    if (c.has_connect_timeout() && c.connect_timeout().seconds() == 0 &&
        c.connect_timeout().nanos() == 0) {
      add(cp + ".connect_timeout", "must be more than 0s (default 5s)");
    }
    checkDuration(c.has_idle_timeout(), c.idle_timeout(), cp + ".idle_timeout");
    checkDuration(c.has_dns_min_refresh(), c.dns_min_refresh(), cp + ".dns_min_refresh");
    if (c.has_tls()) {
      const v1::UpstreamTls& t = c.tls();
      std::string tp = cp + ".tls";
      if (t.has_certificate()) {
        checkCertificate(t.certificate(), tp + ".certificate", "when tls.certificate is set");
      }
      checkTlsCommon(&t.validation(), tp + ".validation", t.alpn(), t.min_version(),
                     t.max_version(), tp,
                     "required when tls is set: weft does not originate unverified TLS; set it "
                     "to the PEM bundle of the CAs that sign the upstream's certificate");
    }
    if (c.has_health_check()) {
      const v1::HealthCheck& h = c.health_check();
      const std::string hp = cp + ".health_check";
      checkDuration(h.has_interval(), h.interval(), hp + ".interval");
      checkDuration(h.has_timeout(), h.timeout(), hp + ".timeout");
      // The checker's message is "<where>.<field> must be ...": keep our path format.
      Status ok = upstream::validateHealthCheck(healthCheckConfig(h), hp);
      if (!ok) {
        const std::string& m = ok.error().message;
        size_t sp = m.find(' ');
        add(m.substr(0, sp), sp == std::string::npos ? m : m.substr(sp + 1));
      }
      if (h.protocol() == v1::HealthCheck::HTTP && (h.path().empty() || h.path()[0] != '/')) {
        add(hp + ".path", "required for HTTP health checks; an absolute path such as \"/ping\"");
      }
      if (h.port() > 65535) add(hp + ".port", std::to_string(h.port()) + " is out of range");
    }
    if (c.has_outlier_detection()) {
      const v1::OutlierDetection& o = c.outlier_detection();
      const std::string op = cp + ".outlier_detection";
      checkDuration(o.has_interval(), o.interval(), op + ".interval");
      checkDuration(o.has_base_ejection_duration(), o.base_ejection_duration(),
                    op + ".base_ejection_duration");
      if (o.max_ejection_percent() > 100) {
        add(op + ".max_ejection_percent",
            std::to_string(o.max_ejection_percent()) + " is out of range; use 0-100");
      }
    }
    if (c.has_panic_threshold_percent() && c.panic_threshold_percent() > 100) {
      add(cp + ".panic_threshold_percent",
          std::to_string(c.panic_threshold_percent()) + " is out of range; use 0-100 (0: never)");
    }
  }

  const ValidateOptions& options_;
  std::set<std::string> cluster_names_;
  std::vector<ConfigIssue> issues_;
};

}  // namespace

Format detectFormat(std::string_view path, std::string_view text) {
  auto ends_with = [&](std::string_view suffix) {
    return path.size() >= suffix.size() &&
           lower(path.substr(path.size() - suffix.size())) == suffix;
  };
  if (ends_with(".json")) return Format::kJson;
  if (ends_with(".yaml") || ends_with(".yml")) return Format::kYaml;
  size_t i = text.find_first_not_of(" \t\r\n");
  if (i != std::string_view::npos && text[i] == '{') return Format::kJson;
  return Format::kYaml;
}

Result<v1::ProxyConfig> parseConfig(std::string_view text, Format fmt,
                                    std::string_view source_name) {
  Result<Parsed> parsed = parseWithLocations(text, fmt, source_name);
  if (!parsed) return Unexpected<Error>{parsed.error()};
  return std::move(parsed->config);
}

Result<v1::ProxyConfig> loadConfigText(std::string_view text, Format fmt,
                                       std::string_view source_name,
                                       const ValidateOptions& options) {
  if (fmt == Format::kAuto) fmt = detectFormat("", text);
  Result<Parsed> parsed = parseWithLocations(text, fmt, source_name);
  if (!parsed) return Unexpected<Error>{parsed.error()};
  std::vector<ConfigIssue> issues = findConfigIssues(parsed->config, options);
  if (issues.empty()) return std::move(parsed->config);
  if (fmt == Format::kJson) parsed->locations = locateJson(text);
  std::vector<std::string> lines;
  for (const ConfigIssue& issue : issues) {
    lines.push_back(formatIssue(source_name, &parsed->locations, issue.path, issue.message));
  }
  return joinedError(std::move(lines), kConfigInvalid);
}

Result<v1::ProxyConfig> loadConfigFile(const std::string& path, const ValidateOptions& options) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return makeError("cannot open config file " + quote(path) + ": " + std::strerror(errno),
                     kConfigReadError);
  }
  in.seekg(0, std::ios::end);
  std::streamoff size = in.tellg();
  in.seekg(0, std::ios::beg);
  if (size < 0) {
    return makeError("cannot read config file " + quote(path), kConfigReadError);
  }
  if (size > kMaxConfigFileBytes) {
    return makeError("config file " + quote(path) + " is " + std::to_string(size) +
                         " bytes; the limit is 64 MiB — is this the right file?",
                     kConfigReadError);
  }
  std::string text(static_cast<size_t>(size), '\0');
  if (!in.read(text.data(), size)) {
    return makeError("cannot read config file " + quote(path) + ": " + std::strerror(errno),
                     kConfigReadError);
  }
  return loadConfigText(text, detectFormat(path, text), path, options);
}

std::vector<ConfigIssue> findConfigIssues(const v1::ProxyConfig& config,
                                          const ValidateOptions& options) {
  return Validator(options).run(config);
}

Status validateConfig(const v1::ProxyConfig& config, const ValidateOptions& options) {
  std::vector<ConfigIssue> issues = findConfigIssues(config, options);
  if (issues.empty()) return {};
  std::vector<std::string> lines;
  for (const ConfigIssue& issue : issues) {
    lines.push_back(issue.path.empty() ? issue.message : issue.path + ": " + issue.message);
  }
  return joinedError(std::move(lines), kConfigInvalid);
}

std::string configToJson(const v1::ProxyConfig& config, bool redact_secrets) {
  const v1::ProxyConfig* shown = &config;
  v1::ProxyConfig redacted;
  if (redact_secrets) {
    redacted = config;
    auto redact = [](v1::TlsCertificate* cert) {
      if (!cert->private_key_file().empty()) cert->set_private_key_file("[redacted]");
      if (!cert->private_key_pem().empty()) cert->set_private_key_pem("[redacted]");
    };
    for (v1::Listener& l : *redacted.mutable_listeners()) {
      if (l.has_tls() && l.tls().has_certificate()) {
        redact(l.mutable_tls()->mutable_certificate());
      }
    }
    for (v1::Cluster& c : *redacted.mutable_clusters()) {
      if (c.has_tls() && c.tls().has_certificate()) {
        redact(c.mutable_tls()->mutable_certificate());
      }
    }
    shown = &redacted;
  }
  pb::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  std::string out;
  pb::util::Status status = pb::util::MessageToJsonString(*shown, &out, options);
  if (!status.ok()) {
    out.clear();
    out = "{\"error\": ";
    appendJsonString(out, "cannot print config: " + std::string(status.message()));
    out += "}\n";
  }
  return out;
}

}  // namespace weft::proxy
