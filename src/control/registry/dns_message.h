#pragma once
// DNS message codec (RFC 1035 §4, EDNS0 OPT from RFC 6891): a strict parser for messages from
// the network (untrusted bytes) and a writer with name compression.
//
// Names are handled as lower-case presentation text without the trailing dot ("" is the root).
// A label byte that is not a letter, digit, '-' or '_' is written as \DDD, so such a name never
// equals a registry name. The parser rejects: labels over 63 bytes, names over 255 bytes on the
// wire, the reserved label types 01 and 10, compression pointers that do not point strictly
// backwards (which rules out loops), truncated sections and trailing garbage.
//
// Thread-safety: plain values and functions; no shared state.

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace weft::control::registry::dns {

enum RrType : uint16_t {
  kTypeA = 1,
  kTypeNs = 2,
  kTypeCname = 5,
  kTypeSoa = 6,
  kTypeAaaa = 28,
  kTypeSrv = 33,
  kTypeOpt = 41,
  kTypeAny = 255,
};
inline constexpr uint16_t kClassIn = 1;

enum Rcode : uint8_t {
  kNoError = 0,
  kFormErr = 1,
  kServFail = 2,
  kNxDomain = 3,
  kNotImp = 4,
  kRefused = 5,
};

// Header flag bits (in Header::flags, the 16 bits after the id).
inline constexpr uint16_t kFlagQr = 0x8000;
inline constexpr uint16_t kFlagAa = 0x0400;
inline constexpr uint16_t kFlagTc = 0x0200;
inline constexpr uint16_t kFlagRd = 0x0100;
inline constexpr uint16_t kFlagRa = 0x0080;
inline constexpr uint16_t kFlagCd = 0x0010;
inline constexpr int kHeaderSize = 12;
inline constexpr size_t kMaxUdpSizeNoEdns = 512;

struct Question {
  std::string name;  // lower-case presentation form, no trailing dot
  uint16_t type = 0;
  uint16_t klass = kClassIn;
};

struct ResourceRecord {
  std::string name;
  uint16_t type = 0;
  uint16_t klass = kClassIn;
  uint32_t ttl = 0;
  std::string rdata;        // the raw RDATA bytes
  size_t rdata_offset = 0;  // where RDATA starts in the message (names inside may point back)
};

struct Message {
  uint16_t id = 0;
  uint16_t flags = 0;
  std::vector<Question> questions;
  std::vector<ResourceRecord> answers;
  std::vector<ResourceRecord> authority;
  std::vector<ResourceRecord> additional;

  uint8_t opcode() const { return (flags >> 11) & 0xF; }
  uint8_t rcode() const { return flags & 0xF; }
  bool isResponse() const { return flags & kFlagQr; }
  // The OPT record of the additional section, if any.
  const ResourceRecord* opt() const;
};

// Parses a whole message. Every section is read; the bytes must end with the last record.
Result<Message> parseMessage(std::string_view wire);

// Reads a (possibly compressed) name at `*offset` of `wire`; advances *offset past it.
Result<std::string> readName(std::string_view wire, size_t* offset);

// Builds a message. Records are appended section by section (answers, then authority, then
// additional) — the writer counts them in that order.
class MessageWriter {
 public:
  MessageWriter(uint16_t id, uint16_t flags);

  void addQuestion(std::string_view name, uint16_t type, uint16_t klass);
  enum class Section { kAnswer, kAuthority, kAdditional };
  // Starts a record; RDATA is written with the rdata*() calls, then finished with endRecord().
  void beginRecord(Section section, std::string_view name, uint16_t type, uint16_t klass,
                   uint32_t ttl);
  void rdataBytes(std::string_view bytes);
  void rdataU16(uint16_t v);
  void rdataU32(uint32_t v);
  // A name inside RDATA; compressed only when `compress` (RFC 3597 §4: only for the well-known
  // types; SRV's target must not be compressed, RFC 2782).
  void rdataName(std::string_view name, bool compress);
  void endRecord();
  // An OPT pseudo-record (additional section) advertising `udp_size`.
  void addOpt(uint16_t udp_size);

  void setFlags(uint16_t flags);
  size_t size() const { return out_.size(); }
  const std::string& bytes() const { return out_; }

 private:
  void writeName(std::string_view name, bool compress);
  // Whether the (possibly compressed) name written at `at` equals presentation `name`, ignoring
  // ASCII case.
  bool sameName(size_t at, std::string_view name) const;
  void putU16(uint16_t v);
  void putU32(uint32_t v);
  void bump(int index);

  std::string out_;
  std::vector<uint16_t> offsets_;  // where each written name suffix starts (compression targets)
  size_t rdlength_at_ = 0;
  Section section_ = Section::kAnswer;
};

// Lower-cases ASCII letters.
std::string lowerAscii(std::string_view s);

}  // namespace weft::control::registry::dns
