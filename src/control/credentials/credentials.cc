#include "control/credentials/credentials.h"

#include <fcntl.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/file_util.h"
#include "common/json.h"
#include "common/json_limits.h"
#include "common/log.h"
#include "control/api/crypto_util.h"

namespace weft::control::credentials {
namespace {

constexpr std::string_view kKeyPrefix = "weft/credentials/";
constexpr std::string_view kApiPath = "/weft/v1/credentials";
constexpr size_t kMaxDescription = 256;
constexpr size_t kMaxCreateBody = 1024;
constexpr int kMaxRetries = 20;

std::string toJson(const AccessKey& k, bool with_secret) {
  std::string out = "{\"accessKeyId\": " + jsonString(k.access_key_id);
  if (with_secret) out += ", \"secretAccessKey\": " + jsonString(k.secret_access_key);
  out += ", \"accountId\": " + jsonString(k.account_id) +
         ", \"createdAt\": " + std::to_string(k.created_at) +
         ", \"description\": " + jsonString(k.description) + "}";
  return out;
}

// The body of POST /weft/v1/credentials: one optional string. A message built at first use
// (not google.protobuf.Struct, whose parser is slow on deep nesting and accepts any member);
// the body is also capped at kMaxCreateBody and its nesting checked before parsing.
const google::protobuf::Message& createInputPrototype() {
  static const google::protobuf::Message* prototype = [] {
    namespace pb = google::protobuf;
    pb::FileDescriptorProto file;
    file.set_name("weft/credentials_input.proto");
    file.set_package("weft.credentials");
    file.set_syntax("proto3");
    pb::DescriptorProto* msg = file.add_message_type();
    msg->set_name("CreateAccessKeyInput");
    pb::FieldDescriptorProto* f = msg->add_field();
    f->set_name("description");
    f->set_json_name("description");
    f->set_number(1);
    f->set_label(pb::FieldDescriptorProto::LABEL_OPTIONAL);
    f->set_type(pb::FieldDescriptorProto::TYPE_STRING);
    static pb::DescriptorPool pool;
    const pb::FileDescriptor* fd = pool.BuildFile(file);
    WEFT_CHECK(fd != nullptr, "building the CreateAccessKeyInput descriptor failed");
    static pb::DynamicMessageFactory factory(&pool);
    return factory.GetPrototype(fd->message_type(0));
  }();
  return *prototype;
}

// The description of a create request's body; BadRequest-worthy errors as messages.
Result<std::string> parseCreateBody(std::string_view body) {
  if (body.size() > kMaxCreateBody)
    return makeError("the body must be at most " + std::to_string(kMaxCreateBody) + " bytes");
  size_t first = body.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return std::string();
  if (body[first] != '{') return makeError("the body must be a JSON object");
  if (Status st = checkJsonDepth(body); !st) return Unexpected<Error>{st.error()};
  std::unique_ptr<google::protobuf::Message> input(createInputPrototype().New());
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  auto status = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(body.data(), body.size()), input.get(), options);
  if (!status.ok())
    return makeError(
        "the body must be {} or {\"description\": \"...\"} (the only field is 'description', "
        "a string)");
  const google::protobuf::FieldDescriptor* f = input->GetDescriptor()->field(0);
  return input->GetReflection()->GetString(*input, f);
}

Result<google::protobuf::Struct> parseObject(std::string_view json) {
  google::protobuf::Struct s;
  if (json.find_first_not_of(" \t\r\n") == std::string_view::npos) return s;
  auto status = google::protobuf::util::JsonStringToMessage(std::string(json), &s);
  if (!status.ok()) return makeError("the body must be a JSON object: " + status.ToString());
  return s;
}

std::string stringField(const google::protobuf::Struct& s, const std::string& name) {
  auto it = s.fields().find(name);
  if (it == s.fields().end() || !it->second.has_string_value()) return {};
  return it->second.string_value();
}

Result<AccessKey> fromRecord(std::string_view json) {
  auto s = parseObject(json);
  if (!s) return makeError("stored credential record is corrupt: " + s.error().message);
  AccessKey k;
  k.access_key_id = stringField(*s, "accessKeyId");
  k.secret_access_key = stringField(*s, "secretAccessKey");
  k.account_id = stringField(*s, "accountId");
  k.description = stringField(*s, "description");
  auto it = s->fields().find("createdAt");
  if (it != s->fields().end()) k.created_at = static_cast<int64_t>(it->second.number_value());
  if (k.access_key_id.empty() || k.secret_access_key.empty())
    return makeError("stored credential record lacks accessKeyId or secretAccessKey");
  return k;
}

bool validKeyId(std::string_view id) {
  return !id.empty() && id.size() <= 128 && std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  });
}

ApiResponse ok(std::string body) {
  ApiResponse r;
  r.body = std::move(body);
  return r;
}

// A store failure: the details (paths, keys, SQLite's words) go to the log, the client gets a
// generic message with the request's id to find them.
ApiResponse internalError(const ApiRequest& request, const Error& e) {
  return internalServerError(request, "credentials: " + e.message);
}

}  // namespace

Credentials::Credentials(Store& store, const TimeSource& time, std::string account_id)
    : store_(store), time_(time), account_id_(std::move(account_id)) {}

AccessKey Credentials::generate(std::string description) const {
  AccessKey k;
  k.access_key_id = "WKIA" + randomString(16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567");
  k.secret_access_key =
      randomString(40, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/");
  k.account_id = account_id_;
  k.description = std::move(description);
  k.created_at =
      std::chrono::duration_cast<std::chrono::seconds>(time_.systemNow().time_since_epoch())
          .count();
  return k;
}

Result<AccessKey> Credentials::store(AccessKey key) {
  std::string record = "{\"accessKeyId\": " + jsonString(key.access_key_id) +
                       ", \"secretAccessKey\": " + jsonString(key.secret_access_key) +
                       ", \"accountId\": " + jsonString(key.account_id) +
                       ", \"createdAt\": " + std::to_string(key.created_at) +
                       ", \"description\": " + jsonString(key.description) + "}";
  auto r = store_.commit(
      {StoreOp::put(std::string(kKeyPrefix) + key.access_key_id, record, StoreOp::kAbsent)});
  if (!r) return Unexpected<Error>{r.error()};
  return key;
}

Result<AccessKey> Credentials::create(std::string description) {
  if (description.size() > kMaxDescription)
    return makeError("description must be at most " + std::to_string(kMaxDescription) +
                     " characters");
  return store(generate(std::move(description)));
}

Result<std::optional<AccessKey>> Credentials::find(std::string_view access_key_id) {
  if (!validKeyId(access_key_id)) return std::optional<AccessKey>();
  auto kv = store_.get(std::string(kKeyPrefix) + std::string(access_key_id));
  if (!kv) return Unexpected<Error>{kv.error()};
  if (!kv->has_value()) return std::optional<AccessKey>();
  auto k = fromRecord((*kv)->value);
  if (!k) return Unexpected<Error>{k.error()};
  return std::optional<AccessKey>(std::move(*k));
}

Result<std::vector<AccessKey>> Credentials::list() {
  auto kvs = store_.list(kKeyPrefix, "", 0);
  if (!kvs) return Unexpected<Error>{kvs.error()};
  std::vector<AccessKey> out;
  for (const KeyValue& kv : *kvs) {
    auto k = fromRecord(kv.value);
    if (!k) return makeError(kv.key + ": " + k.error().message);
    out.push_back(std::move(*k));
  }
  return out;
}

Status Credentials::remove(std::string_view access_key_id) {
  for (int attempt = 0; attempt < kMaxRetries; ++attempt) {
    auto kvs = store_.list(kKeyPrefix, "", 0);
    if (!kvs) return Unexpected<Error>{kvs.error()};
    std::string key = std::string(kKeyPrefix) + std::string(access_key_id);
    auto it =
        std::find_if(kvs->begin(), kvs->end(), [&](const KeyValue& kv) { return kv.key == key; });
    if (it == kvs->end())
      return makeError("no access key " + std::string(access_key_id), kNotFound);
    if (kvs->size() == 1)
      return makeError("refusing to delete " + std::string(access_key_id) +
                           ", the last access key: nobody could sign a request afterwards. "
                           "Create another key first",
                       kLastKey);
    // Delete it only if every other key is still there, so two concurrent deletes cannot
    // remove the last two keys.
    std::vector<StoreOp> ops;
    for (const KeyValue& kv : *kvs) {
      if (kv.key == key)
        ops.push_back(StoreOp::remove(kv.key, kv.revision));
      else
        ops.push_back(StoreOp::check(kv.key, kv.revision));
    }
    auto r = store_.commit(ops);
    if (r) return {};
    if (r.error().code != kStoreConflict) return Unexpected<Error>{r.error()};
  }
  return makeError("too many concurrent changes to the access keys; try again");
}

Result<std::optional<AccessKey>> Credentials::ensureAdminKey(
    const std::function<Status(const AccessKey&)>& before_commit) {
  auto existing = store_.list(kKeyPrefix, "", 1);
  if (!existing) return Unexpected<Error>{existing.error()};
  if (!existing->empty()) return std::optional<AccessKey>();
  AccessKey key = generate("admin key made on first start");
  if (before_commit) {
    if (auto st = before_commit(key); !st) return Unexpected<Error>{st.error()};
  }
  auto stored = store(std::move(key));
  if (!stored) return Unexpected<Error>{stored.error()};
  return std::optional<AccessKey>(std::move(*stored));
}

bool Credentials::handles(std::string_view path) {
  return path == kApiPath ||
         (path.size() > kApiPath.size() && path.substr(0, kApiPath.size()) == kApiPath &&
          path[kApiPath.size()] == '/');
}

ApiResponse Credentials::handle(const ApiRequest& request) {
  std::string_view path = request.path;
  std::string_view rest = path.substr(std::min(path.size(), kApiPath.size()));
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.empty()) {
    if (request.method == "POST") {
      auto body = parseCreateBody(request.body);
      if (!body) return apiError(400, "BadRequestException", body.error().message);
      std::string description = std::move(*body);
      if (description.size() > kMaxDescription)
        return apiError(
            400, "BadRequestException",
            "description must be at most " + std::to_string(kMaxDescription) + " characters");
      auto k = create(std::move(description));
      if (!k) return internalError(request, k.error());
      return ok(toJson(*k, true));
    }
    if (request.method == "GET") {
      auto keys = list();
      if (!keys) return internalError(request, keys.error());
      std::string out = "{\"credentials\": [";
      for (size_t i = 0; i < keys->size(); ++i) {
        if (i) out += ", ";
        out += toJson((*keys)[i], false);
      }
      out += "]}";
      return ok(std::move(out));
    }
    return apiError(405, "MethodNotAllowedException",
                    "use POST to create an access key or GET to list them");
  }
  std::string_view id = rest.substr(1);
  if (rest[0] != '/' || id.find('/') != std::string_view::npos)
    return apiError(404, "NotFoundException", "no such path " + std::string(path));
  if (request.method != "DELETE")
    return apiError(405, "MethodNotAllowedException",
                    "use DELETE /weft/v1/credentials/<id> to delete an access key");
  if (!validKeyId(id))
    return apiError(404, "NotFoundException", "no access key " + std::string(id));
  auto st = remove(id);
  if (!st) {
    if (st.error().code == kNotFound) return apiError(404, "NotFoundException", st.error().message);
    if (st.error().code == kLastKey) return apiError(409, "ConflictException", st.error().message);
    return internalError(request, st.error());
  }
  return ok("{}");
}

Status writeSharedCredentialsFile(const std::string& path, std::string_view profile,
                                  const AccessKey& key) {
  std::string text = "# weft control plane credentials (account " + key.account_id +
                     "). Use with AWS_SHARED_CREDENTIALS_FILE=" + path + " and --profile " +
                     std::string(profile) + ".\n[" + std::string(profile) +
                     "]\naws_access_key_id = " + key.access_key_id +
                     "\naws_secret_access_key = " + key.secret_access_key + "\n";
  return writeFileAtomically(path, text, 0600);
}

Status writeAwsConfigFile(const std::string& path, std::string_view profile,
                          std::string_view region) {
  std::string text = "# weft control plane: use with AWS_CONFIG_FILE=" + path + "\n[profile " +
                     std::string(profile) + "]\nregion = " + std::string(region) + "\n";
  return writeFileAtomically(path, text, 0600);
}

}  // namespace weft::control::credentials
