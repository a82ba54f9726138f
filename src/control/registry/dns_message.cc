#include "control/registry/dns_message.h"

namespace weft::control::registry::dns {
namespace {

constexpr size_t kMaxNameWire = 255;
constexpr size_t kMaxLabel = 63;

uint16_t u16At(std::string_view w, size_t at) {
  return static_cast<uint16_t>((static_cast<uint8_t>(w[at]) << 8) |
                               static_cast<uint8_t>(w[at + 1]));
}

uint32_t u32At(std::string_view w, size_t at) {
  return (static_cast<uint32_t>(u16At(w, at)) << 16) | u16At(w, at + 2);
}

bool plainLabelByte(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

void appendLabel(std::string& out, std::string_view label) {
  if (!out.empty()) out.push_back('.');
  for (unsigned char c : label) {
    if (c >= 'A' && c <= 'Z') c = static_cast<unsigned char>(c - 'A' + 'a');
    if (plainLabelByte(c)) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('\\');
      out.push_back(static_cast<char>('0' + c / 100));
      out.push_back(static_cast<char>('0' + c / 10 % 10));
      out.push_back(static_cast<char>('0' + c % 10));
    }
  }
}

unsigned char lowerByte(unsigned char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<unsigned char>(c - 'A' + 'a') : c;
}

Result<ResourceRecord> readRecord(std::string_view w, size_t* off) {
  ResourceRecord rr;
  auto name = readName(w, off);
  if (!name) return Unexpected<Error>{name.error()};
  rr.name = std::move(*name);
  if (*off + 10 > w.size()) return makeError("truncated resource record header");
  rr.type = u16At(w, *off);
  rr.klass = u16At(w, *off + 2);
  rr.ttl = u32At(w, *off + 4);
  uint16_t rdlength = u16At(w, *off + 8);
  *off += 10;
  if (*off + rdlength > w.size()) return makeError("RDATA runs past the end of the message");
  rr.rdata_offset = *off;
  rr.rdata.assign(w.substr(*off, rdlength));
  *off += rdlength;
  return rr;
}

}  // namespace

std::string lowerAscii(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

Result<std::string> readName(std::string_view w, size_t* offset) {
  std::string out;
  size_t pos = *offset;
  size_t wire_len = 0;
  bool jumped = false;
  // Every pointer must go strictly below the lowest position reached so far, so the walk ends.
  size_t floor = pos;
  while (true) {
    if (pos >= w.size()) return makeError("name runs past the end of the message");
    uint8_t len = static_cast<uint8_t>(w[pos]);
    uint8_t kind = len & 0xC0;
    if (kind == 0xC0) {
      if (pos + 1 >= w.size()) return makeError("truncated compression pointer");
      size_t target = static_cast<size_t>(u16At(w, pos) & 0x3FFF);
      if (target >= floor) return makeError("compression pointer does not point backwards");
      if (!jumped) *offset = pos + 2;
      jumped = true;
      floor = target;
      pos = target;
      continue;
    }
    if (kind != 0) return makeError("reserved label type");
    if (len > kMaxLabel) return makeError("label longer than 63 bytes");
    wire_len += 1 + len;
    if (wire_len > kMaxNameWire) return makeError("name longer than 255 bytes");
    if (len == 0) {
      if (!jumped) *offset = pos + 1;
      return out;
    }
    if (pos + 1 + len > w.size()) return makeError("label runs past the end of the message");
    appendLabel(out, w.substr(pos + 1, len));
    pos += 1 + len;
  }
}

const ResourceRecord* Message::opt() const {
  for (const auto& rr : additional)
    if (rr.type == kTypeOpt) return &rr;
  return nullptr;
}

Result<Message> parseMessage(std::string_view w) {
  if (w.size() < kHeaderSize) return makeError("message shorter than the 12-byte header");
  Message m;
  m.id = u16At(w, 0);
  m.flags = u16At(w, 2);
  uint16_t qd = u16At(w, 4), an = u16At(w, 6), ns = u16At(w, 8), ar = u16At(w, 10);
  size_t off = kHeaderSize;
  for (int i = 0; i < qd; ++i) {
    Question q;
    auto name = readName(w, &off);
    if (!name) return Unexpected<Error>{name.error()};
    q.name = std::move(*name);
    if (off + 4 > w.size()) return makeError("truncated question");
    q.type = u16At(w, off);
    q.klass = u16At(w, off + 2);
    off += 4;
    m.questions.push_back(std::move(q));
  }
  struct Sec {
    uint16_t count;
    std::vector<ResourceRecord>* into;
  } secs[] = {{an, &m.answers}, {ns, &m.authority}, {ar, &m.additional}};
  for (auto& s : secs) {
    for (int i = 0; i < s.count; ++i) {
      auto rr = readRecord(w, &off);
      if (!rr) return Unexpected<Error>{rr.error()};
      s.into->push_back(std::move(*rr));
    }
  }
  if (off != w.size()) return makeError("trailing bytes after the last record");
  int opts = 0;
  for (const auto& rr : m.additional) {
    if (rr.type != kTypeOpt) continue;
    if (++opts > 1 || !rr.name.empty()) return makeError("malformed OPT record");
  }
  return m;
}

MessageWriter::MessageWriter(uint16_t id, uint16_t flags) {
  out_.reserve(512);
  putU16(id);
  putU16(flags);
  for (int i = 0; i < 4; ++i) putU16(0);
}

void MessageWriter::setFlags(uint16_t flags) {
  out_[2] = static_cast<char>(flags >> 8);
  out_[3] = static_cast<char>(flags & 0xFF);
}

void MessageWriter::putU16(uint16_t v) {
  out_.push_back(static_cast<char>(v >> 8));
  out_.push_back(static_cast<char>(v & 0xFF));
}

void MessageWriter::putU32(uint32_t v) {
  putU16(static_cast<uint16_t>(v >> 16));
  putU16(static_cast<uint16_t>(v & 0xFFFF));
}

void MessageWriter::bump(int index) {
  size_t at = 4 + 2 * static_cast<size_t>(index);
  uint16_t v = u16At(out_, at) + 1;
  out_[at] = static_cast<char>(v >> 8);
  out_[at + 1] = static_cast<char>(v & 0xFF);
}

bool MessageWriter::sameName(size_t at, std::string_view name) const {
  size_t pos = 0;
  while (true) {
    uint8_t len = static_cast<uint8_t>(out_[at]);
    if ((len & 0xC0) == 0xC0) {  // our own pointers only point backwards
      at = static_cast<size_t>(u16At(out_, at) & 0x3FFF);
      continue;
    }
    if (len == 0) return pos >= name.size();
    if (pos >= name.size()) return false;
    for (size_t i = 0; i < len; ++i) {
      if (pos >= name.size() || name[pos] == '.') return false;
      unsigned char c = static_cast<unsigned char>(name[pos]);
      if (c == '\\' && pos + 3 < name.size()) {
        c = static_cast<unsigned char>((name[pos + 1] - '0') * 100 + (name[pos + 2] - '0') * 10 +
                                       (name[pos + 3] - '0'));
        pos += 4;
      } else {
        ++pos;
      }
      if (lowerByte(c) != lowerByte(static_cast<unsigned char>(out_[at + 1 + i]))) return false;
    }
    at += 1 + len;
    if (pos < name.size()) {
      if (name[pos] != '.') return false;
      ++pos;
    }
  }
}

void MessageWriter::writeName(std::string_view name, bool compress) {
  size_t pos = 0;
  while (pos < name.size()) {
    std::string_view suffix = name.substr(pos);
    if (compress)
      for (uint16_t at : offsets_)
        if (sameName(at, suffix)) {
          putU16(static_cast<uint16_t>(0xC000 | at));
          return;
        }
    if (out_.size() < 0x3FFF) offsets_.push_back(static_cast<uint16_t>(out_.size()));
    size_t len_at = out_.size();
    out_.push_back('\0');
    size_t bytes = 0;
    while (pos < name.size() && name[pos] != '.') {
      char c = name[pos];
      if (c == '\\' && pos + 3 < name.size()) {
        c = static_cast<char>((name[pos + 1] - '0') * 100 + (name[pos + 2] - '0') * 10 +
                              (name[pos + 3] - '0'));
        pos += 4;
      } else {
        ++pos;
      }
      out_.push_back(c);
      ++bytes;
    }
    out_[len_at] = static_cast<char>(bytes);
    ++pos;  // the dot
  }
  out_.push_back('\0');
}

void MessageWriter::addQuestion(std::string_view name, uint16_t type, uint16_t klass) {
  writeName(name, true);
  putU16(type);
  putU16(klass);
  bump(0);
}

void MessageWriter::beginRecord(Section section, std::string_view name, uint16_t type,
                                uint16_t klass, uint32_t ttl) {
  section_ = section;
  writeName(name, true);
  putU16(type);
  putU16(klass);
  putU32(ttl);
  rdlength_at_ = out_.size();
  putU16(0);
}

void MessageWriter::rdataBytes(std::string_view bytes) { out_ += bytes; }
void MessageWriter::rdataU16(uint16_t v) { putU16(v); }
void MessageWriter::rdataU32(uint32_t v) { putU32(v); }
void MessageWriter::rdataName(std::string_view name, bool compress) { writeName(name, compress); }

void MessageWriter::endRecord() {
  size_t len = out_.size() - rdlength_at_ - 2;
  out_[rdlength_at_] = static_cast<char>(len >> 8);
  out_[rdlength_at_ + 1] = static_cast<char>(len & 0xFF);
  bump(1 + static_cast<int>(section_));
}

void MessageWriter::addOpt(uint16_t udp_size) {
  beginRecord(Section::kAdditional, "", kTypeOpt, udp_size, 0);
  endRecord();
}

}  // namespace weft::control::registry::dns
