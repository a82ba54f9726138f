#include "control/model/schema.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <re2/re2.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "aws/appmesh/v20190125/appmesh.pb.h"
#include "common/text.h"
#include "control/model/errors.h"

namespace weft::control::appmesh {
namespace {

namespace pb = google::protobuf;
namespace am = aws::appmesh::v20190125;

// The compiled RE2 of a (pattern) option. Patterns come from the generated descriptors (a fixed,
// small set), so each is compiled once and kept for the life of the process. Thread-safe.
const RE2& compiledPattern(const std::string& pattern) {
  static std::mutex mu;
  static std::map<std::string, std::unique_ptr<RE2>> cache;
  std::lock_guard lock(mu);
  auto& re = cache[pattern];
  if (!re) re = std::make_unique<RE2>(pattern, RE2::Quiet);
  return *re;
}

// The largest magnitude weft accepts in an App Mesh long member (a double with (integral)).
constexpr int64_t kMaxLong = 999'999'999'999'999;

std::string formatWhole(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.0f", v);
  return buf;
}

std::string rangeText(bool has_min, bool has_max, int64_t min, int64_t max) {
  if (has_min && has_max) return "out of range " + std::to_string(min) + "-" + std::to_string(max);
  if (has_min) return "below the minimum " + std::to_string(min);
  return "above the maximum " + std::to_string(max);
}

Status checkInteger(int64_t v, const pb::FieldOptions& o, const std::string& path) {
  bool has_min = o.HasExtension(am::min_value), has_max = o.HasExtension(am::max_value);
  int64_t min = o.GetExtension(am::min_value), max = o.GetExtension(am::max_value);
  if ((has_min && v < min) || (has_max && v > max))
    return badRequest(path + ": " + std::to_string(v) + " is " +
                      rangeText(has_min, has_max, min, max));
  return {};
}

Status checkString(const std::string& v, const pb::FieldOptions& o, const std::string& path) {
  if (o.HasExtension(am::enum_values)) {
    const std::string& values = o.GetExtension(am::enum_values);
    size_t start = 0;
    bool found = false;
    while (start <= values.size()) {
      size_t comma = values.find(',', start);
      if (comma == std::string::npos) comma = values.size();
      if (std::string_view(values).substr(start, comma - start) == v) {
        found = true;
        break;
      }
      start = comma + 1;
    }
    if (!found) {
      std::string list = values;
      for (size_t i = 0; (i = list.find(',', i)) != std::string::npos; i += 2)
        list.replace(i, 1, ", ");
      return badRequest(path + ": " + quoted(v) + " is not one of " + list);
    }
  }
  bool has_min = o.HasExtension(am::min_length), has_max = o.HasExtension(am::max_length);
  int64_t min = o.GetExtension(am::min_length), max = o.GetExtension(am::max_length);
  int64_t len = static_cast<int64_t>(v.size());
  if ((has_min && len < min) || (has_max && len > max)) {
    if (has_min && min == 1 && len == 0) return badRequest(path + ": must not be empty");
    return badRequest(path + ": length " + std::to_string(len) + " is " +
                      rangeText(has_min, has_max, min, max));
  }
  if (o.HasExtension(am::pattern)) {
    const RE2& re = compiledPattern(o.GetExtension(am::pattern));
    if (re.ok() && !RE2::FullMatch(v, re))
      return badRequest(path + ": " + quoted(v) + " does not match the pattern " +
                        o.GetExtension(am::pattern));
  }
  return {};
}

Status checkScalar(const pb::Message& m, const pb::FieldDescriptor* f, int index,
                   const std::string& path) {
  const pb::Reflection* r = m.GetReflection();
  const pb::FieldOptions& o = f->options();
  switch (f->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_INT32:
      return checkInteger(index < 0 ? r->GetInt32(m, f) : r->GetRepeatedInt32(m, f, index), o,
                          path);
    case pb::FieldDescriptor::CPPTYPE_DOUBLE: {
      if (!o.GetExtension(am::integral)) return {};  // a timestamp
      double v = index < 0 ? r->GetDouble(m, f) : r->GetRepeatedDouble(m, f, index);
      if (!std::isfinite(v) || std::trunc(v) != v) return badRequest(path + ": must be an integer");
      // Up to 15 digits: exact in a double, and printed back as digits (not 1e+15).
      if (std::fabs(v) > kMaxLong)
        return badRequest(path + ": " + formatWhole(v) + " is out of range -" +
                          std::to_string(kMaxLong) + "-" + std::to_string(kMaxLong));
      return checkInteger(static_cast<int64_t>(v), o, path);
    }
    case pb::FieldDescriptor::CPPTYPE_STRING: {
      std::string scratch;
      const std::string& v = index < 0 ? r->GetStringReference(m, f, &scratch)
                                       : r->GetRepeatedStringReference(m, f, index, &scratch);
      return checkString(v, o, path);
    }
    default:
      return {};
  }
}

bool isSet(const pb::Message& m, const pb::FieldDescriptor* f) {
  const pb::Reflection* r = m.GetReflection();
  return f->is_repeated() ? r->FieldSize(m, f) > 0 : r->HasField(m, f);
}

}  // namespace

std::string joinPath(std::string_view prefix, std::string_view field) {
  std::string out(prefix);
  if (!out.empty()) out += '.';
  out.append(field);
  return out;
}

Status checkSchema(const pb::Message& message, std::string_view path) {
  const pb::Descriptor* d = message.GetDescriptor();
  const pb::Reflection* r = message.GetReflection();
  if (d->options().GetExtension(am::union_)) {
    std::vector<std::string> set;
    std::string all;
    for (int i = 0; i < d->field_count(); ++i) {
      if (isSet(message, d->field(i))) set.push_back(d->field(i)->name());
      all += (i ? ", " : "") + d->field(i)->name();
    }
    if (set.size() != 1) {
      std::string where = path.empty() ? std::string("request") : std::string(path);
      if (set.empty()) return badRequest(where + ": exactly one of " + all + " must be set");
      return badRequest(where + ": exactly one of " + all + " must be set, but " + set[0] +
                        " and " + set[1] + " are both set");
    }
  }
  for (int i = 0; i < d->field_count(); ++i) {
    const pb::FieldDescriptor* f = d->field(i);
    const pb::FieldOptions& o = f->options();
    std::string fpath = joinPath(path, f->name());
    bool required = o.GetExtension(am::required);
    if (f->is_repeated()) {
      int n = r->FieldSize(message, f);
      if (n == 0) {
        if (required) return badRequest(fpath + ": is required");
        continue;
      }
      if (o.HasExtension(am::min_items) && n < o.GetExtension(am::min_items))
        return badRequest(fpath + ": has " + std::to_string(n) + " items; at least " +
                          std::to_string(o.GetExtension(am::min_items)) + " are required");
      if (o.HasExtension(am::max_items) && n > o.GetExtension(am::max_items))
        return badRequest(fpath + ": has " + std::to_string(n) + " items; at most " +
                          std::to_string(o.GetExtension(am::max_items)) + " are allowed");
      for (int j = 0; j < n; ++j) {
        std::string epath = fpath + "[" + std::to_string(j) + "]";
        Status s = f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE
                       ? checkSchema(r->GetRepeatedMessage(message, f, j), epath)
                       : checkScalar(message, f, j, epath);
        if (!s) return s;
      }
      continue;
    }
    if (!r->HasField(message, f)) {
      if (required) return badRequest(fpath + ": is required");
      continue;
    }
    Status s = f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE
                   ? checkSchema(r->GetMessage(message, f), fpath)
                   : checkScalar(message, f, -1, fpath);
    if (!s) return s;
  }
  return {};
}

}  // namespace weft::control::appmesh
