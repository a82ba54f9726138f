#include "control/server_rekey.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <string>

#include "control/ca/kek.h"
#include "control/ca/rekey.h"
#include "control/server.h"
#include "control/store/sqlite_store.h"

namespace weft::control {
namespace {

constexpr const char* kRekeyHelp =
    "Usage: weft server rekey [--data-dir DIR] [--ca-key-file OLD] [--new-ca-key-file NEW]\n"
    "\n"
    "Changes the key-encryption key (KEK) that seals the CA's private keys at rest: every\n"
    "sealed key in DIR's store (CA keys, ACM certificate keys, mesh identity CAs, the config\n"
    "stream's CA) is opened with the current KEK and sealed with the new one, in one store\n"
    "transaction. The server must be stopped (rekey takes the data directory's lock).\n"
    "\n"
    "  --data-dir DIR         the server's data directory (default ./weft-data)\n"
    "  --ca-key-file OLD      the current KEK, as `weft server` takes it (default: env\n"
    "                         WEFT_CA_KEY, else DIR/ca-kek)\n"
    "  --new-ca-key-file NEW  the new KEK (32 bytes: raw, 64 hex digits or base64; make one\n"
    "                         with: openssl rand -hex 32). Start the server with\n"
    "                         --ca-key-file NEW afterwards. Without it, when the current KEK\n"
    "                         is DIR/ca-kek, a new random DIR/ca-kek replaces it (written to\n"
    "                         DIR/ca-kek.new first; a server start completes an interrupted\n"
    "                         change)\n"
    "  -h, --help             this text\n"
    "\n"
    "No key material is printed or logged. After the change the old KEK opens nothing in the\n"
    "store, and a server started with it refuses to start.\n";

int usage(const std::string& message) {
  std::cerr << "weft server rekey: " << message << " (see weft server rekey --help)\n";
  return 2;
}

int failed(const std::string& message) {
  std::cerr << "weft server rekey: " << message << "\n";
  return 1;
}

}  // namespace

int runRekey(int argc, char** argv) {
  std::string data_dir = "./weft-data", key_file, new_key_file;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help" || arg == "help") {
      std::cout << kRekeyHelp;
      return 0;
    }
    if (arg.rfind("--", 0) != 0) return usage("unexpected argument '" + arg + "'");
    std::string name = arg.substr(2), value;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    } else {
      if (i + 1 >= argc) return usage("--" + name + " needs a value");
      value = argv[++i];
    }
    if (name == "data-dir") {
      data_dir = value;
    } else if (name == "ca-key-file") {
      key_file = value;
    } else if (name == "new-ca-key-file") {
      new_key_file = value;
    } else {
      return usage("unknown flag --" + name);
    }
  }
  while (data_dir.size() > 1 && data_dir.back() == '/') data_dir.pop_back();
  if (data_dir.empty()) return usage("--data-dir must not be empty");
  const char* env = std::getenv("WEFT_CA_KEY");
  const bool default_kek = key_file.empty() && (env == nullptr || *env == '\0');
  if (!default_kek && new_key_file.empty())
    return usage(
        "the current KEK comes from --ca-key-file or WEFT_CA_KEY: give the new one with "
        "--new-ca-key-file (a new DIR/ca-kek is generated only when DIR/ca-kek is the current "
        "one)");
  // Never create a data directory or a store here: a mistyped --data-dir must fail.
  const std::string db = data_dir + "/weft.db";
  if (::access(db.c_str(), F_OK) != 0)
    return failed("no store in " + data_dir + " (" + db + " does not exist)");
  ::umask(077);
  auto lock_fd = lockDataDir(data_dir);
  if (!lock_fd) return failed(lock_fd.error().message);
  struct Unlock {
    int fd;
    ~Unlock() { ::close(fd); }
  } unlock{*lock_fd};
  auto store = SqliteStore::open(db);
  if (!store) return failed(store.error().message);

  const std::string kek_path = data_dir + "/ca-kek";
  const std::string pending = kek_path + ".new";
  if (default_kek) {
    // An earlier rekey stopped between its commit and its rename: finish it first.
    if (auto done = ca::finishKekChange(**store, data_dir); !done)
      return failed(done.error().message);
    if (::access(kek_path.c_str(), F_OK) != 0)
      return failed(kek_path +
                    " does not exist: give the current KEK with --ca-key-file or "
                    "WEFT_CA_KEY");
  }
  auto old_kek = ca::Kek::load(key_file, env, data_dir);
  if (!old_kek) return failed("the current KEK: " + old_kek.error().message);

  Result<ca::Kek> new_kek =
      new_key_file.empty() ? ca::Kek::generate() : ca::Kek::load(new_key_file, nullptr, data_dir);
  if (!new_kek) return failed("the new KEK: " + new_kek.error().message);
  if (new_kek->sameKey(*old_kek)) return failed("the new KEK is the current one");

  const bool generated = new_key_file.empty();
  if (generated) {
    if (auto st = new_kek->writeNewFile(pending); !st) return failed(st.error().message);
  }
  auto count = ca::resealStore(**store, *old_kek, *new_kek);
  if (!count) {
    if (generated) ::unlink(pending.c_str());
    return failed(count.error().message);
  }
  if (generated) {
    // The store is committed: from here a crash is finished by the next start.
    if (auto done = ca::finishKekChange(**store, data_dir); !done || !*done)
      return failed("the keys are re-sealed, but " + pending + " was not renamed to " + kek_path +
                    (done ? std::string() : ": " + done.error().message) +
                    "; the next server start completes it");
  }
  std::cout << "re-sealed " << count->keys << " keys in " << count->records
            << " store records with the new key-encryption key\n";
  if (generated) {
    std::cout << "the new key is " << kek_path << " (mode 0600); start the server as before\n";
  } else {
    std::cout << "start the server with --ca-key-file " << new_key_file
              << " (or WEFT_CA_KEY); the old key opens nothing any more";
    if (default_kek) std::cout << " (" << kek_path << " still holds it: remove it)";
    std::cout << "\n";
  }
  return 0;
}

}  // namespace weft::control
