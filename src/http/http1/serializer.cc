#include "http/http1/serializer.h"

#include <charconv>
#include <cstring>

namespace weft::http1 {

using http::HeaderField;
using http::HeaderToken;

namespace {

// Writes into space the caller reserved by resizing the string; finish() trims to what was
// written. The reserved size is an upper bound computed from field sizes, so a head costs one
// (amortised) reallocation and no per-field capacity checks.
class SpanWriter {
 public:
  SpanWriter(std::string& out, size_t max_bytes) : out_(out), old_size_(out.size()) {
    out_.resize(old_size_ + max_bytes);
    p_ = out_.data() + old_size_;
  }
  void put(std::string_view s) {
    if (s.empty()) return;
    std::memcpy(p_, s.data(), s.size());
    p_ += s.size();
  }
  void put(char c) { *p_++ = c; }
  void field(std::string_view name, std::string_view value) {
    put(name);
    put(':');
    put(' ');
    put(value);
    put('\r');
    put('\n');
  }
  void finish() { out_.resize(static_cast<size_t>(p_ - out_.data())); }

 private:
  std::string& out_;
  size_t old_size_;
  char* p_;
};

constexpr size_t kFieldOverhead = 4;  // ": " and CRLF

size_t fieldsBound(std::span<const HeaderField> fields) {
  size_t n = 0;
  for (const HeaderField& f : fields) n += f.name.size() + f.value.size() + kFieldOverhead;
  return n;
}

void writeStatus(SpanWriter& w, Version version, int status, std::string_view reason) {
  w.put(versionString(version));
  w.put(' ');
  if (status < 100 || status > 999) status = 500;  // precondition violated; never emit garbage
  w.put(static_cast<char>('0' + status / 100));
  w.put(static_cast<char>('0' + status / 10 % 10));
  w.put(static_cast<char>('0' + status % 10));
  w.put(' ');
  w.put(reason);
  w.put("\r\n");
}

void writeFields(SpanWriter& w, const MessageHead& head, const HeadRewrite& rw,
                 std::string_view content_length) {
  bool cl_written = false;
  for (const HeaderField& f : head.headers) {
    if (rw.drop.contains(f.token)) continue;
    if (rw.drop_connection_nominated && head.isConnectionNominated(f)) continue;
    if (f.token == HeaderToken::kContentLength && !content_length.empty()) {
      if (cl_written) continue;
      cl_written = true;
      w.field(f.name, content_length);
      continue;
    }
    w.field(f.name, f.value);
  }
  for (const HeaderField& f : rw.extra) w.field(f.name, f.value);
  w.put("\r\n");
}

struct DecimalBuffer {
  char bytes[24];
  std::string_view view;
};

// The canonical Content-Length value when rw asks for it; empty otherwise.
void canonicalContentLength(const MessageHead& head, const HeadRewrite& rw, DecimalBuffer& buf) {
  if (!rw.normalize_content_length || !head.has_content_length) return;
  auto r = std::to_chars(buf.bytes, buf.bytes + sizeof(buf.bytes), head.content_length);
  buf.view = std::string_view(buf.bytes, static_cast<size_t>(r.ptr - buf.bytes));
}

size_t headBound(const MessageHead& head, const HeadRewrite& rw, const DecimalBuffer& cl) {
  return fieldsBound(head.headers) + fieldsBound(rw.extra) + cl.view.size() + 2;
}

}  // namespace

void appendRequestLine(std::string& out, std::string_view method, std::string_view target,
                       Version version) {
  SpanWriter w(out, method.size() + target.size() + 12);
  w.put(method);
  w.put(' ');
  w.put(target);
  w.put(' ');
  w.put(versionString(version));
  w.put("\r\n");
  w.finish();
}

void appendStatusLine(std::string& out, Version version, int status, std::string_view reason) {
  SpanWriter w(out, reason.size() + 15);
  writeStatus(w, version, status, reason);
  w.finish();
}

void appendFields(std::string& out, std::span<const HeaderField> fields) {
  SpanWriter w(out, fieldsBound(fields) + 2);
  for (const HeaderField& f : fields) w.field(f.name, f.value);
  w.put("\r\n");
  w.finish();
}

void appendFields(std::string& out, const MessageHead& head, const HeadRewrite& rw) {
  DecimalBuffer cl;
  canonicalContentLength(head, rw, cl);
  SpanWriter w(out, headBound(head, rw, cl));
  writeFields(w, head, rw, cl.view);
  w.finish();
}

void appendRequestHead(std::string& out, const RequestHead& head, const HeadRewrite& rw) {
  std::string_view target = head.target;
  std::string_view prefix;
  if (rw.origin_form && head.target_form == TargetForm::kAbsolute) {
    target = head.pathAndQuery();
    // RFC 9112 §3.2.1/§3.2.4: an empty path is sent as "/", or as "*" for OPTIONS.
    if (target.empty() && head.method_id == Method::kOptions) {
      target = "*";
    } else if (target.empty() || target[0] == '?') {
      prefix = "/";
    }
  }
  DecimalBuffer cl;
  canonicalContentLength(head, rw, cl);
  SpanWriter w(out,
               head.method.size() + prefix.size() + target.size() + 12 + headBound(head, rw, cl));
  w.put(head.method);
  w.put(' ');
  w.put(prefix);
  w.put(target);
  w.put(' ');
  w.put(versionString(rw.version.value_or(head.version)));
  w.put("\r\n");
  writeFields(w, head, rw, cl.view);
  w.finish();
}

void appendResponseHead(std::string& out, const ResponseHead& head, const HeadRewrite& rw) {
  DecimalBuffer cl;
  canonicalContentLength(head, rw, cl);
  SpanWriter w(out, head.reason.size() + 15 + headBound(head, rw, cl));
  writeStatus(w, rw.version.value_or(head.version), head.status, head.reason);
  writeFields(w, head, rw, cl.view);
  w.finish();
}

}  // namespace weft::http1
