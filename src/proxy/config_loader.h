#pragma once
// Loading and validating weft-proxy's configuration (schema: api/weft/v1/config.proto).
//
// Pipeline:
//   YAML text --(schema-aware YAML -> JSON, this module)--+
//   JSON text ---------------------------------------------+--> protobuf JSON parser -->
//   ProxyConfig ProxyConfig --> findConfigIssues / validateConfig (semantic rules)
//
// Field names may be written in snake_case (proto names) or lowerCamelCase (JSON names). Unknown
// fields are errors. Error messages name the source (file name), line:column where known, and the
// field path in proto names (e.g. `listeners[1].tls.certificate.certificate_chain_file`), and say
// how to fix the problem. Every error found in one pass is reported, one per line, so a user can
// fix everything at once.
//
// Defaults are NOT filled in by loading: the message holds what the user wrote (so /config_dump
// shows it); read effective values through the accessors in proxy/config_defaults.h.
//
// Thread-safety: every function is reentrant and touches no shared mutable state. These functions
// allocate freely and may touch the filesystem (file checks); they are for the control path, never
// for a worker's request path.

#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "weft/v1/config.pb.h"

namespace weft::proxy {

enum class Format {
  kAuto,  // by file extension (.yaml/.yml/.json), else by the first non-blank character ('{')
  kYaml,
  kJson,
};

// Values of weft::Error::code returned by this module.
inline constexpr int kConfigReadError = 1;  // the file could not be read
inline constexpr int kConfigSyntaxError =
    2;                                    // not well-formed YAML/JSON, or does not fit the schema
inline constexpr int kConfigInvalid = 3;  // fits the schema but breaks a semantic rule

struct ValidateOptions {
  // Check that certificate, key and trust bundle files exist and are readable by this process.
  // Turn off when validating a config meant for another machine (e.g. in the control plane).
  bool check_files = true;
};

// One semantic problem: `path` is the field path in proto names ("" for the whole config),
// `message` says what is wrong and what to do.
struct ConfigIssue {
  std::string path;
  std::string message;
};

// Picks the format for kAuto: extension of `path` (may be empty) first, then the first
// non-whitespace character of `text` ('{' means JSON).
Format detectFormat(std::string_view path, std::string_view text);

// Parses `text` into a ProxyConfig without semantic validation. `source_name` (usually the file
// name) prefixes every error message. Error code: kConfigSyntaxError.
Result<v1::ProxyConfig> parseConfig(std::string_view text, Format fmt,
                                    std::string_view source_name = "config");

// parseConfig followed by the semantic rules; semantic errors carry line:column when the field
// (or its nearest enclosing field) was written in the text. Error code: kConfigSyntaxError or
// kConfigInvalid.
Result<v1::ProxyConfig> loadConfigText(std::string_view text, Format fmt,
                                       std::string_view source_name = "config",
                                       const ValidateOptions& options = {});

// Reads `path` and calls loadConfigText with Format::kAuto. Error code: kConfigReadError,
// kConfigSyntaxError or kConfigInvalid.
Result<v1::ProxyConfig> loadConfigFile(const std::string& path,
                                       const ValidateOptions& options = {});

// Every semantic problem in `config`, in field order. Empty means valid.
std::vector<ConfigIssue> findConfigIssues(const v1::ProxyConfig& config,
                                          const ValidateOptions& options = {});

// findConfigIssues joined as "path: message" lines. Error code: kConfigInvalid.
Status validateConfig(const v1::ProxyConfig& config, const ValidateOptions& options = {});

// Pretty-printed JSON with proto field names, for the admin /config_dump. With redact_secrets
// every non-empty private_key_file and private_key_pem is replaced by "[redacted]" (the inline
// key is a secret; a key's path is not, but the admin page should not advertise where keys
// live).
std::string configToJson(const v1::ProxyConfig& config, bool redact_secrets);

}  // namespace weft::proxy
