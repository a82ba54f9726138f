#include "proxy/access_log.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "weft/v1/config.pb.h"

namespace weft::proxy {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;

// 2026-01-02T03:04:05.678901234Z
std::chrono::system_clock::time_point testStart() {
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::seconds(1767323045) + nanoseconds(678901234)));
}

// An entry with every field set.
struct FullEntry {
  HeaderList request{{"User-Agent", "curl/8.0"},
                     {"X-Forwarded-For", "198.18.0.9"},
                     {"x-request-id", "abc-123"},
                     {"X-Custom", "0123456789"}};
  HeaderList response{{"Content-Type", "text/plain"}};
  AccessLogEntry entry;
  FullEntry() {
    entry.start_time = testStart();
    entry.request_duration = microseconds(1500);
    entry.response_duration = milliseconds(12);
    entry.duration = nanoseconds(15'999'999);
    entry.upstream_service_time = milliseconds(9);
    entry.method = "GET";
    entry.path = "/api/v1?x=1";
    entry.authority = "svc.example";
    entry.scheme = "https";
    entry.protocol = "HTTP/1.1";
    entry.response_code = 200;
    entry.response_flags = "UF,URX";
    entry.bytes_received = 17;
    entry.bytes_sent = 4096;
    entry.upstream_host = "198.18.1.2:8080";
    entry.upstream_cluster = "backend";
    entry.upstream_transport_failure_reason = "tls: certificate verify failed";
    entry.route_name = "r-api";
    entry.downstream_remote_address = "198.18.0.9:54321";
    entry.downstream_local_address = "[2001:db8::1]:443";
    entry.requested_server_name = "svc.example";
    entry.request_headers = &request;
    entry.response_headers = &response;
  }
};

std::string formatText(std::string_view fmt, const AccessLogEntry& e) {
  auto f = AccessLogFormatter::compileText(fmt);
  EXPECT_TRUE(f.has_value()) << "format \"" << fmt
                             << "\" should compile, got: " << (f ? "" : f.error().message);
  if (!f) return {};
  std::string out;
  f->format(e, out);
  return out;
}

std::string compileError(std::string_view fmt) {
  auto f = AccessLogFormatter::compileText(fmt);
  EXPECT_FALSE(f.has_value()) << "format \"" << fmt << "\" should not compile";
  return f ? std::string() : f.error().message;
}

TEST(AccessLogFormat, EveryCommand) {
  FullEntry full;
  const AccessLogEntry& e = full.entry;
  struct Case {
    const char* format;
    const char* expected;
  } cases[] = {
      {"%START_TIME%", "2026-01-02T03:04:05.678Z"},
      {"%REQ(:METHOD)%", "GET"},
      {"%REQ(:PATH)%", "/api/v1?x=1"},
      {"%REQ(:AUTHORITY)%", "svc.example"},
      {"%REQ(HOST)%", "svc.example"},
      {"%REQ(:SCHEME)%", "https"},
      {"%REQ(USER-AGENT)%", "curl/8.0"},
      {"%REQ(user-agent)%", "curl/8.0"},
      {"%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%", "/api/v1?x=1"},
      {"%REQ(X-MISSING?USER-AGENT)%", "curl/8.0"},
      {"%REQ(X-MISSING?X-ALSO-MISSING)%", "-"},
      {"%REQ(X-CUSTOM):4%", "0123"},
      {"%REQ(X-MISSING?X-CUSTOM):3%", "012"},
      {"%RESP(CONTENT-TYPE)%", "text/plain"},
      {"%RESP(:STATUS)%", "200"},
      {"%RESP(X-WEFT-UPSTREAM-SERVICE-TIME)%", "9"},
      {"%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%", "9"},
      {"%PROTOCOL%", "HTTP/1.1"},
      {"%RESPONSE_CODE%", "200"},
      {"%RESPONSE_FLAGS%", "UF,URX"},
      {"%BYTES_RECEIVED%", "17"},
      {"%BYTES_SENT%", "4096"},
      {"%DURATION%", "15"},
      {"%REQUEST_DURATION%", "1"},
      {"%RESPONSE_DURATION%", "12"},
      {"%UPSTREAM_HOST%", "198.18.1.2:8080"},
      {"%UPSTREAM_CLUSTER%", "backend"},
      {"%UPSTREAM_TRANSPORT_FAILURE_REASON%", "tls: certificate verify failed"},
      {"%DOWNSTREAM_REMOTE_ADDRESS%", "198.18.0.9:54321"},
      {"%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%", "198.18.0.9"},
      {"%DOWNSTREAM_LOCAL_ADDRESS%", "[2001:db8::1]:443"},
      {"%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%", "2001:db8::1"},
      {"%ROUTE_NAME%", "r-api"},
      {"%REQUEST_ID%", "abc-123"},
      {"%REQUESTED_SERVER_NAME%", "svc.example"},
      {"%UPSTREAM_HOST:9%", "198.18.1."},
      {"100%% %PROTOCOL%", "100% HTTP/1.1"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(formatText(c.format, e), std::string(c.expected) + "\n") << "format " << c.format;
  }
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  EXPECT_EQ(formatText("%HOSTNAME%", e), std::string(host) + "\n");
}

TEST(AccessLogFormat, MissingValuesPrintDash) {
  AccessLogEntry e;  // nothing set, no header sources
  EXPECT_EQ(formatText("%REQ(:METHOD)% %REQ(USER-AGENT)% %RESP(CONTENT-TYPE)% %RESP(:STATUS)% "
                       "%DURATION% %RESPONSE_DURATION% %UPSTREAM_HOST% %ROUTE_NAME% "
                       "%REQUEST_ID% %RESPONSE_FLAGS% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
                       e),
            "- - - - - - - - - - -\n");
  EXPECT_EQ(formatText("%RESPONSE_CODE% %BYTES_RECEIVED% %BYTES_SENT%", e), "0 0 0\n")
      << "numeric counters are 0, not missing, as in Envoy";
}

TEST(AccessLogFormat, DefaultFormat) {
  FullEntry full;
  EXPECT_EQ(formatText(kDefaultAccessLogFormat, full.entry),
            "[2026-01-02T03:04:05.678Z] \"GET /api/v1?x=1 HTTP/1.1\" 200 UF,URX 17 4096 15 9 "
            "\"198.18.0.9\" \"curl/8.0\" \"abc-123\" \"svc.example\" \"198.18.1.2:8080\"\n");
  AccessLogEntry empty;
  empty.start_time = testStart();
  EXPECT_EQ(formatText(kDefaultAccessLogFormat, empty),
            "[2026-01-02T03:04:05.678Z] \"- - -\" 0 - 0 0 - - \"-\" \"-\" \"-\" \"-\" \"-\"\n");
}

TEST(AccessLogFormat, StartTimeFormats) {
  AccessLogEntry e;
  e.start_time = testStart();
  EXPECT_EQ(formatText("%START_TIME(%Y/%m/%d %H:%M:%S)%", e), "2026/01/02 03:04:05\n");
  EXPECT_EQ(formatText("%START_TIME(%s.%3f)%", e), "1767323045.678\n");
  EXPECT_EQ(formatText("%START_TIME(%f)%", e), "678901234\n");
  EXPECT_EQ(formatText("%START_TIME(%6f)%", e), "678901\n");
  EXPECT_EQ(formatText("%START_TIME(%H:%M:%E3S)%", e), "03:04:05.678\n");
  EXPECT_EQ(formatText("%START_TIME(%%Y)%", e), "%Y\n") << "%% is strftime's literal percent";
}

TEST(AccessLogFormat, NewlineAppendedOnlyWhenMissing) {
  AccessLogEntry e;
  EXPECT_EQ(formatText("a", e), "a\n");
  EXPECT_EQ(formatText("a\n", e), "a\n");
  EXPECT_EQ(formatText("%PROTOCOL%", e), "-\n");
  EXPECT_EQ(formatText("", e), "\n");
}

TEST(AccessLogFormat, ControlCharactersInValuesCannotSplitLines) {
  HeaderList req{{"user-agent", "evil\nforged line\r\x7f\ttab"}};
  AccessLogEntry e;
  e.request_headers = &req;
  EXPECT_EQ(formatText("ua=%REQ(USER-AGENT)%", e), "ua=evil\\x0aforged line\\x0d\\x7f\ttab\n");
}

TEST(AccessLogFormat, CompileErrorsNameTheProblem) {
  EXPECT_EQ(compileError("x %FOO_BAR% y"), "access log format: unknown command %FOO_BAR%");
  EXPECT_EQ(compileError("%FOO(x)%"), "access log format: unknown command %FOO(x)%");
  EXPECT_EQ(compileError("%REQ%"), "access log format: %REQ% needs (HEADER)");
  EXPECT_EQ(compileError("%REQ()%"), "access log format: %REQ(...)% needs a header name");
  EXPECT_EQ(compileError("%REQ(:FOO)%"),
            "access log format: unknown pseudo-header :FOO in %REQ(...)%");
  EXPECT_EQ(compileError("%REQ(a b)%"),
            "access log format: invalid header name \"a b\" in %REQ(...)%");
  EXPECT_EQ(compileError("%PROTOCOL(x)%"),
            "access log format: command %PROTOCOL% takes no argument, got %PROTOCOL(x)%");
  EXPECT_EQ(compileError("ab %PROTOCOL"),
            "access log format: command %PROTOCOL at position 3 is not closed by '%'");
  EXPECT_EQ(compileError("%REQ(X:10%"),
            "access log format: command %REQ at position 0 has no closing ')'");
  EXPECT_EQ(compileError("%REQ(X):%"),
            "access log format: command %REQ at position 0 has ':' without a length");
  EXPECT_EQ(compileError("50% off"),
            "access log format: '%' at position 2 does not start a command (write %% for a "
            "literal '%')");
}

TEST(AccessLogFormat, JsonTypedValuesAndSortedKeys) {
  FullEntry full;
  full.entry.upstream_host = {};  // missing -> null
  auto f = AccessLogFormatter::compileJson({
      {"status", "%RESPONSE_CODE%"},
      {"bytes", "%BYTES_SENT%"},
      {"duration", "%DURATION%"},
      {"upstream", "%UPSTREAM_HOST%"},
      {"method", "%REQ(:METHOD)%"},
      {"line", "%REQ(:METHOD)% %REQ(:PATH)% %UPSTREAM_HOST%"},
      {"const", "weft"},
      {"start", "%START_TIME%"},
      {"svc_time", "%RESP(X-WEFT-UPSTREAM-SERVICE-TIME)%"},
      {"rsp_dur", "%RESPONSE_DURATION%"},
  });
  ASSERT_TRUE(f.has_value()) << f.error().message;
  std::string out;
  f->format(full.entry, out);
  EXPECT_EQ(out,
            "{\"bytes\":4096,\"const\":\"weft\",\"duration\":15,"
            "\"line\":\"GET /api/v1?x=1 -\",\"method\":\"GET\",\"rsp_dur\":12,"
            "\"start\":\"2026-01-02T03:04:05.678Z\",\"status\":200,\"svc_time\":9,"
            "\"upstream\":null}\n");
  AccessLogEntry empty;
  out.clear();
  f->format(empty, out);
  EXPECT_EQ(out,
            "{\"bytes\":0,\"const\":\"weft\",\"duration\":null,\"line\":\"- - -\","
            "\"method\":null,\"rsp_dur\":null,\"start\":\"1970-01-01T00:00:00.000Z\","
            "\"status\":0,\"svc_time\":null,\"upstream\":null}\n");
}

TEST(AccessLogFormat, JsonEscaping) {
  HeaderList req{{"user-agent", "q\"b\\s\n\r\t\x01\x7f"},
                 {"x-utf8", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"},
                 {"x-bad",
                  "a\xff"
                  "b\xc3(\xed\xa0\x80"}};
  AccessLogEntry e;
  e.request_headers = &req;
  auto f = AccessLogFormatter::compileJson({{"ua", "%REQ(USER-AGENT)%"},
                                            {"utf8", "%REQ(X-UTF8)%"},
                                            {"bad", "<%REQ(X-BAD)%>"},
                                            {"k\"ey", "lit\"eral"}});
  ASSERT_TRUE(f.has_value()) << f.error().message;
  std::string out;
  f->format(e, out);
  EXPECT_EQ(out,
            "{\"bad\":\"<a\\u00ffb\\u00c3(\\u00ed\\u00a0\\u0080>\","
            "\"k\\\"ey\":\"lit\\\"eral\","
            "\"ua\":\"q\\\"b\\\\s\\n\\r\\t\\u0001\\u007f\","
            "\"utf8\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"}\n")
      << "valid UTF-8 passes through, invalid bytes become \\u00XX";
}

TEST(AccessLogFormat, JsonErrors) {
  auto none = AccessLogFormatter::compileJson({});
  ASSERT_FALSE(none.has_value());
  EXPECT_EQ(none.error().message, "access log json_format has no fields");
  auto bad = AccessLogFormatter::compileJson({{"a", "%NOPE%"}});
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().message,
            "access log format: unknown command %NOPE% (json_format key \"a\")");
}

TEST(AccessLogFormat, FromConfig) {
  FullEntry full;
  std::string out;

  v1::AccessLog text;
  text.set_path("/dev/stdout");
  text.set_text_format("%RESPONSE_CODE% %REQ(:PATH)%");
  auto f1 = AccessLogFormatter::fromConfig(text);
  ASSERT_TRUE(f1.has_value()) << f1.error().message;
  f1->format(full.entry, out);
  EXPECT_EQ(out, "200 /api/v1?x=1\n");

  v1::AccessLog json;
  (*json.mutable_json_format()->mutable_fields())["code"] = "%RESPONSE_CODE%";
  (*json.mutable_json_format()->mutable_fields())["a_path"] = "%REQ(:PATH)%";
  auto f2 = AccessLogFormatter::fromConfig(json);
  ASSERT_TRUE(f2.has_value()) << f2.error().message;
  out.clear();
  f2->format(full.entry, out);
  EXPECT_EQ(out, "{\"a_path\":\"/api/v1?x=1\",\"code\":200}\n");

  v1::AccessLog neither;
  auto f3 = AccessLogFormatter::fromConfig(neither);
  ASSERT_TRUE(f3.has_value()) << f3.error().message;
  out.clear();
  f3->format(full.entry, out);
  std::string expected;
  AccessLogFormatter::compileText(kDefaultAccessLogFormat)->format(full.entry, expected);
  EXPECT_EQ(out, expected) << "no format configured means the default format";
}

TEST(AccessLogFormat, ReferencedHeaderNames) {
  auto text = AccessLogFormatter::compileText(kDefaultAccessLogFormat);
  ASSERT_TRUE(text.has_value());
  EXPECT_EQ(text->requestHeaderNames(),
            (std::vector<std::string>{"user-agent", "x-forwarded-for", "x-request-id"}))
      << "pseudo-headers and aliases are not header lookups";
  EXPECT_TRUE(text->responseHeaderNames().empty());
  auto json = AccessLogFormatter::compileJson(
      {{"a", "%REQ(X-A?X-B)% %REQUEST_ID%"}, {"b", "%RESP(Content-Type)%"}, {"c", "%REQ(x-a)%"}});
  ASSERT_TRUE(json.has_value());
  EXPECT_EQ(json->requestHeaderNames(), (std::vector<std::string>{"x-a", "x-b", "x-request-id"}));
  EXPECT_EQ(json->responseHeaderNames(), (std::vector<std::string>{"content-type"}));
}

// ---- ring -------------------------------------------------------------------------------------

std::string readAll(const SpscByteRing::Readable& r) {
  return std::string(r.first) + std::string(r.second);
}

TEST(SpscByteRing, PushPeekConsumeAndWrapAround) {
  SpscByteRing ring(64);
  EXPECT_EQ(ring.capacity(), 64u);
  EXPECT_TRUE(ring.tryPush(std::string(40, 'a')));
  EXPECT_FALSE(ring.tryPush(std::string(25, 'b'))) << "40 + 25 > 64: all or nothing";
  EXPECT_EQ(readAll(ring.peek()), std::string(40, 'a')) << "a failed push changes nothing";
  ring.consume(40);
  EXPECT_EQ(ring.peek().size(), 0u);
  EXPECT_TRUE(ring.tryPush(std::string(30, 'c')));  // 40..70: wraps at 64
  SpscByteRing::Readable r = ring.peek();
  EXPECT_EQ(r.first.size(), 24u);
  EXPECT_EQ(r.second.size(), 6u);
  EXPECT_EQ(readAll(r), std::string(30, 'c'));
  EXPECT_TRUE(ring.tryPush(std::string(34, 'd'))) << "exactly fills the ring";
  EXPECT_FALSE(ring.tryPush("x"));
  ring.consume(30);
  EXPECT_EQ(readAll(ring.peek()), std::string(34, 'd'));
  EXPECT_EQ(SpscByteRing(100).capacity(), 128u) << "rounded up to a power of two";
}

TEST(SpscByteRing, ConcurrentProducerConsumerKeepsOrder) {
  SpscByteRing ring(1024);  // small, so the producer often finds it full and wraps many times
  constexpr int kLines = 50000;
  std::thread producer([&] {
    for (int i = 0; i < kLines; ++i) {
      std::string line = std::to_string(i) + "\n";
      while (!ring.tryPush(line)) std::this_thread::yield();
    }
  });
  std::string got;
  int lines = 0;
  while (lines < kLines) {
    SpscByteRing::Readable r = ring.peek();
    if (r.size() == 0) {
      std::this_thread::yield();
      continue;
    }
    std::string chunk = readAll(r);
    for (char c : chunk) lines += c == '\n';
    got += chunk;
    ring.consume(r.size());
  }
  producer.join();
  std::istringstream in(got);
  std::string line;
  for (int i = 0; i < kLines; ++i) {
    ASSERT_TRUE(std::getline(in, line)) << "line " << i << " missing";
    ASSERT_EQ(line, std::to_string(i)) << "lines out of order or corrupted";
  }
}

// ---- writer -----------------------------------------------------------------------------------

class AccessLogWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/weft-access-log-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::string cmd = "rm -rf '" + dir_ + "'";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
  }
  static std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  std::string dir_;
  stats::Registry registry_{4};
};

TEST_F(AccessLogWriterTest, EveryLineWrittenInOrderPerWorker) {
  const std::string path = dir_ + "/access.log";
  auto dropped = registry_.counter("dropped_total");
  AccessLogWriterOptions options;
  options.ring_bytes = 1 << 20;  // holds every line, so nothing may be dropped
  auto writer = AccessLogWriter::open(path, 4, options, dropped, nullptr);
  ASSERT_TRUE(writer.has_value()) << writer.error().message;
  constexpr int kLines = 5000;
  std::vector<std::thread> threads;
  for (int w = 0; w < 5; ++w) {  // workers 0..3 and one unbound thread (w == 4)
    threads.emplace_back([&, w] {
      std::optional<stats::ScopedWorkerBinding> bind;
      if (w < 4) bind.emplace(w);
      for (int i = 0; i < kLines; ++i) {
        (*writer)->write("w" + std::to_string(w) + " " + std::to_string(i) + "\n");
      }
    });
  }
  for (auto& t : threads) t.join();
  (*writer)->stop();
  EXPECT_EQ(dropped->value(), 0u);

  std::istringstream in(slurp(path));
  std::string line;
  std::vector<int> next(5, 0);
  int total = 0;
  while (std::getline(in, line)) {
    int w = -1, i = -1;
    ASSERT_EQ(std::sscanf(line.c_str(), "w%d %d", &w, &i), 2) << "corrupt line: " << line;
    ASSERT_TRUE(w >= 0 && w < 5) << line;
    ASSERT_EQ(i, next[w]) << "worker " << w << ": expected line " << next[w] << ", got " << i;
    ++next[w];
    ++total;
  }
  EXPECT_EQ(total, 5 * kLines) << "expected every line once";
}

TEST_F(AccessLogWriterTest, FullRingDropsAndCounts) {
  // The writer thread writes into a pipe nobody reads, so it blocks once the pipe is full and
  // the worker's small ring fills up behind it.
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const std::string path = "/dev/fd/" + std::to_string(fds[1]);
  auto dropped = registry_.counter("dropped_total");
  AccessLogWriterOptions options;
  options.ring_bytes = 4096;
  auto writer = AccessLogWriter::open(path, 1, options, dropped, nullptr);
  ASSERT_TRUE(writer.has_value()) << writer.error().message;
  close(fds[1]);

  stats::ScopedWorkerBinding bind(0);
  std::vector<std::string> accepted;
  uint64_t failures = 0;
  const std::string pad(90, 'x');
  for (int i = 0; failures < 50; ++i) {
    std::string line = std::to_string(i) + " " + pad + "\n";
    if ((*writer)->write(line)) {
      accepted.push_back(line);
    } else {
      ++failures;
    }
  }
  EXPECT_EQ(dropped->value(), failures) << "every refused line is counted once";

  // Unblock the writer: read everything until it closes the pipe on stop().
  std::string received;
  std::thread reader([&] {
    char buf[8192];
    ssize_t n;
    while ((n = read(fds[0], buf, sizeof buf)) > 0) received.append(buf, static_cast<size_t>(n));
  });
  (*writer)->stop();
  writer->reset();  // closes the write end
  reader.join();
  close(fds[0]);
  std::string expected;
  for (const auto& l : accepted) expected += l;
  EXPECT_EQ(received.size(), expected.size()) << "every accepted line, nothing else";
  EXPECT_TRUE(received == expected) << "accepted lines arrive whole and in order";
}

TEST_F(AccessLogWriterTest, FlushReopenAndStop) {
  const std::string path = dir_ + "/a.log";
  auto dropped = registry_.counter("dropped_total");
  AccessLogWriterOptions options;
  options.flush_interval = std::chrono::hours(1);  // only flush(), kicks and stop() write
  auto writer = AccessLogWriter::open(path, 1, options, dropped, nullptr);
  ASSERT_TRUE(writer.has_value()) << writer.error().message;
  AccessLogWriter& w = **writer;

  w.write("one\n");
  w.flush();
  EXPECT_EQ(slurp(path), "one\n") << "flush() returns after queued lines are written";

  ASSERT_EQ(std::rename(path.c_str(), (path + ".1").c_str()), 0);
  w.write("two\n");
  w.reopen();
  w.flush();  // the reopen has happened once this returns
  w.write("three\n");
  w.flush();
  EXPECT_EQ(slurp(path + ".1"), "one\ntwo\n") << "lines queued before reopen() go to the old file";
  EXPECT_EQ(slurp(path), "three\n") << "lines after the reopen go to the new file";

  w.write("four\n");
  w.stop();
  EXPECT_EQ(slurp(path), "three\nfour\n") << "stop() drains what is queued";
  EXPECT_FALSE(w.write("five\n")) << "writes after stop() are refused";
  EXPECT_EQ(dropped->value(), 1u) << "and counted as dropped";
  w.stop();   // idempotent
  w.flush();  // returns at once after stop
}

TEST_F(AccessLogWriterTest, BrokenPipeIsCountedNotFatal) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  auto errors = registry_.counter("errors_total");
  auto writer = AccessLogWriter::open("/dev/fd/" + std::to_string(fds[1]), 1, {}, nullptr, errors);
  ASSERT_TRUE(writer.has_value()) << writer.error().message;
  close(fds[1]);
  close(fds[0]);  // no reader any more
  EXPECT_TRUE((*writer)->write("lost\n"));
  (*writer)->flush();
  EXPECT_EQ(errors->value(), 1u) << "the EPIPE is counted as a write error (and SIGPIPE ignored)";
  (*writer)->stop();
}

TEST_F(AccessLogWriterTest, OpenFailureIsAnError) {
  auto writer = AccessLogWriter::open(dir_ + "/no/such/dir/a.log", 1, {}, nullptr, nullptr);
  ASSERT_FALSE(writer.has_value());
  EXPECT_NE(writer.error().message.find("cannot open for appending: No such file or directory"),
            std::string::npos)
      << writer.error().message;
}

TEST_F(AccessLogWriterTest, ManagerSharesWritersPerPathAndReleasesUnused) {
  AccessLogManager manager(registry_);
  auto a1 = manager.writerFor(dir_ + "/a.log");
  auto a2 = manager.writerFor(dir_ + "/a.log");
  auto b = manager.writerFor(dir_ + "/b.log");
  ASSERT_TRUE(a1 && a2 && b);
  EXPECT_EQ(a1->get(), a2->get()) << "same path, same writer";
  EXPECT_NE(a1->get(), b->get());
  (*b)->write("b\n");
  b->reset();
  EXPECT_EQ(manager.releaseUnused(), 1u) << "only b.log is unreferenced";
  EXPECT_EQ(slurp(dir_ + "/b.log"), "b\n") << "releasing stops the writer, which drains it";
  auto b2 = manager.writerFor(dir_ + "/b.log");
  ASSERT_TRUE(b2);
  (*b2)->write("b2\n");
  manager.stopAll();
  EXPECT_EQ(slurp(dir_ + "/b.log"), "b\nb2\n") << "a reopened path appends";
  EXPECT_NE(
      registry_.renderText().find("weft_access_log_dropped_total{path=\"" + dir_ + "/a.log\"}: 0"),
      std::string::npos)
      << registry_.renderText();
}

TEST_F(AccessLogWriterTest, AccessLogFromConfigEndToEnd) {
  AccessLogManager manager(registry_);
  v1::AccessLog config;
  config.set_path(dir_ + "/e2e.log");
  config.set_text_format("%REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE%");
  auto log = AccessLog::create(config, manager);
  ASSERT_TRUE(log.has_value()) << log.error().message;
  FullEntry full;
  {
    stats::ScopedWorkerBinding bind(2);
    (*log)->log(full.entry);
  }
  (*log)->writer().flush();
  EXPECT_EQ(slurp(dir_ + "/e2e.log"), "GET /api/v1?x=1 200\n");

  config.set_text_format("%REQ(:METHOD)% %BOGUS%");
  auto bad = AccessLog::create(config, manager);
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().message,
            "access log " + dir_ + "/e2e.log: access log format: unknown command %BOGUS%");

  v1::AccessLog no_path;
  auto empty = AccessLog::create(no_path, manager);
  ASSERT_FALSE(empty.has_value());
  EXPECT_EQ(empty.error().message, "access log: path is empty");
}

}  // namespace
}  // namespace weft::proxy
