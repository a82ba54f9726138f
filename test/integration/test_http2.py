"""HTTP/2 downstream through the real proxy: h2c by prior knowledge and h2 by ALPN (curl, nghttp,
h2load), bodies both ways with flow control, many concurrent streams, RST_STREAM from the client,
GOAWAY on drain, header limits, gRPC-style local replies, and each known HTTP/2 flood sent as raw
frames: the proxy survives, counts it, and keeps serving other clients. Upstreams are the
harness's HTTP/1.1 Backend (HTTP/2 -> HTTP/1.1 translation)."""

import hashlib
import os
import signal
import socket
import struct
import subprocess
import tempfile
import unittest

import harness as h
from harness import Backend, Proxy, admin_cfg, cluster, listener, route_to, wait_until

# Frame types and flags (RFC 9113 §6).
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = (
    0x0, 0x1, 0x3, 0x4, 0x6, 0x7, 0x8, 0x9)
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
ENHANCE_YOUR_CALM = 0xB
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(ftype, flags, stream_id, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", stream_id & 0x7FFFFFFF) + payload


def _hpack_int(value, prefix_bits, first=0):
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack(headers):
    """Header block with every field a literal without indexing, new name, no Huffman."""
    out = b""
    for name, value in headers:
        n, v = name.encode(), value.encode()
        out += b"\x00" + _hpack_int(len(n), 7) + n + _hpack_int(len(v), 7) + v
    return out


def request_headers(port, path="/", method="GET", extra=()):
    return [(":method", method), (":scheme", "http"), (":authority", "127.0.0.1:%d" % port),
            (":path", path)] + list(extra)


class RawH2:
    """A minimal HTTP/2 client over a plain socket, for what real clients will not do."""

    def __init__(self, port, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.sock.sendall(PREFACE + frame(SETTINGS, 0, 0))

    def send(self, data):
        self.sock.sendall(data)

    def read_frame(self):
        """(type, flags, stream_id, payload), or None at EOF."""
        while len(self.buf) < 9:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        length = struct.unpack(">I", b"\x00" + self.buf[:3])[0]
        while len(self.buf) < 9 + length:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        ftype, flags = self.buf[3], self.buf[4]
        sid = struct.unpack(">I", self.buf[5:9])[0] & 0x7FFFFFFF
        payload = self.buf[9:9 + length]
        self.buf = self.buf[9 + length:]
        return ftype, flags, sid, payload

    def frames_until(self, pred, limit=100000):
        """Reads frames until pred(frame) is true: that frame, or None at EOF."""
        for _ in range(limit):
            f = self.read_frame()
            if f is None or pred(f):
                return f
        return None

    def goaway(self):
        """Reads until GOAWAY or EOF: (last_stream_id, error_code) or None."""
        while True:
            try:
                f = self.read_frame()
            except (ConnectionResetError, socket.timeout):
                return None
            if f is None:
                return None
            if f[0] == GOAWAY:
                last, code = struct.unpack(">II", f[3][:8])
                return last & 0x7FFFFFFF, code

    def close(self):
        self.sock.close()


def h2_config(backend_port, **listener_extra):
    cfg = h.simple_config(backend_port, **listener_extra)
    # The Python backend has a short accept queue: at most 16 upstream connections per worker,
    # the rest of the streams wait in the pool's queue.
    cfg["clusters"][0]["max_connections"] = 16
    return cfg


def curl_h2(url, *args, timeout=20, data=None):
    return h.curl(url, "--http2-prior-knowledge", *args, timeout=timeout, data=data)


def http_version(url, *args):
    """The HTTP version curl used for `url` ("2", "1.1")."""
    r = subprocess.run(["curl", "-sS", "--max-time", "10", "-o", "/dev/null", "-w",
                        "%{http_version}"] + list(args) + [url],
                       capture_output=True, text=True, timeout=20)
    return r.stdout.strip()


class Http2DownstreamTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.backend = Backend()
        cls.proxy = Proxy(h2_config(cls.backend.server_address[1])).start()
        cls.port = cls.proxy.port()

    @classmethod
    def tearDownClass(cls):
        cls.proxy.stop()
        cls.backend.close()

    def assert_serves(self):
        r = curl_h2(self.proxy.url("/still-serving"))
        self.assertEqual((r.rc, r.status), (0, 200),
                         "another client must still be served; got %r\nlog:\n%s"
                         % (r, self.proxy.log_text()))

    def test_get_prior_knowledge_is_translated_to_http1(self):
        r = curl_h2(self.proxy.url("/hello?x=1"), "-H", "cookie: a=1", "-H", "cookie: b=2",
                    "-H", "x-custom: yes")
        self.assertEqual((r.rc, r.status), (0, 200), r)
        self.assertEqual(http_version(self.proxy.url("/v"), "--http2-prior-knowledge"), "2")
        self.assertEqual(r.headers.get("server"), "weft")
        self.assertIn("x-weft-upstream-service-time", r.headers)
        seen = r.json()
        self.assertEqual(seen["version"], "HTTP/1.1", "the upstream speaks HTTP/1.1")
        self.assertEqual(seen["path"], "/hello?x=1")
        self.assertEqual(seen["h"]["host"], "127.0.0.1:%d" % self.port, seen["h"])
        self.assertEqual(seen["h"]["cookie"], "a=1; b=2", "cookies joined (RFC 9113 §8.2.3)")
        self.assertEqual(seen["h"]["x-custom"], "yes")
        self.assertEqual(seen["h"]["x-forwarded-proto"], "http")
        self.assertRegex(seen["h"]["x-request-id"], h.UUID_RE)

    def test_http1_still_works_on_the_same_listener(self):
        r = h.curl(self.proxy.url("/h1"), "--http1.1")
        self.assertEqual((r.rc, r.status), (0, 200), r)
        self.assertEqual(http_version(self.proxy.url("/v"), "--http1.1"), "1.1")

    def test_large_post_with_length_and_without(self):
        payload = os.urandom(3 << 20) + b"end"
        digest = hashlib.sha256(payload).hexdigest()
        r = curl_h2(self.proxy.url("/upload"), "--data-binary", "@-", "-H",
                    "content-type: application/octet-stream", data=payload)
        self.assertEqual((r.rc, r.status), (0, 200), r)
        seen = r.json()
        self.assertEqual((seen["body_len"], seen["body_sha256"]), (len(payload), digest))
        self.assertFalse(seen["chunked"], "a content-length body keeps its length")
        # Unknown length (curl streams stdin with -T -): chunked towards the HTTP/1.1 upstream.
        r = curl_h2(self.proxy.url("/upload-chunked"), "-T", "-", "-X", "POST", data=payload)
        self.assertEqual((r.rc, r.status), (0, 200), r)
        seen = r.json()
        self.assertEqual((seen["body_len"], seen["body_sha256"]), (len(payload), digest))
        self.assertTrue(seen["chunked"], "a body without length goes chunked: %r" % seen["h"])

    def test_large_responses_length_and_chunked(self):
        size = 8 << 20
        for extra in ([], ["-H", "x-backend-chunked: 1"]):
            r = curl_h2(self.proxy.url("/big"), "-H", "x-backend-body-size: %d" % size, *extra)
            self.assertEqual((r.rc, r.status, len(r.body)), (0, 200, size),
                             "8 MiB response %s: %r" % (extra, r))

    def test_many_concurrent_streams_h2load(self):
        r = subprocess.run(["h2load", "-n", "2000", "-c", "4", "-m", "100",
                            self.proxy.url("/load")], capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("2000 succeeded, 0 failed, 0 errored", r.stdout,
                      "all 2000 requests over 4 connections x 100 streams: %s" % r.stdout[-1200:])

    def test_nghttp_multiplexes_on_one_connection(self):
        url = self.proxy.url("/n")
        r = subprocess.run(["nghttp", "-n", "-s", url + "1", url + "2", url + "3"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("responseEnd", r.stdout)

    def test_client_reset_cancels_the_upstream_exchange(self):
        before = self.backend.count()
        c = RawH2(self.port)
        try:
            c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1,
                         hpack(request_headers(self.port, "/held",
                                               extra=[("x-backend-gate", "rst")]))))
            wait_until(lambda: self.backend.count() > before, what="the request to reach the "
                       "backend")
            active = lambda: self.proxy.metric("weft_listener_downstream_rq_active",
                                               listener="main")
            self.assertEqual(active(), 1)
            c.send(frame(RST_STREAM, 0, 1, struct.pack(">I", 0x8)))  # CANCEL
            wait_until(lambda: active() == 0, what="the reset stream to end its exchange")
            wait_until(lambda: self.proxy.metric("weft_cluster_upstream_cx_active",
                                                 cluster="backend") == 0,
                       what="the upstream connection of the cancelled exchange to close")
        finally:
            self.backend.release("rst")
            c.close()
        self.assert_serves()

    def test_request_header_limit(self):
        # Real clients refuse to send more than SETTINGS_MAX_HEADER_LIST_SIZE: raw frames.
        before = self.proxy.metric("weft_listener_http2_header_overflow_total", listener="main")
        c = RawH2(self.port)
        try:
            block = hpack(request_headers(self.port, "/big-head", extra=[("x-big", "a" * 62000)]))
            pieces = [block[i:i + 16384] for i in range(0, len(block), 16384)]
            out = frame(HEADERS, END_STREAM, 1, pieces[0])
            for i, p in enumerate(pieces[1:]):
                out += frame(CONTINUATION, END_HEADERS if i == len(pieces) - 2 else 0, 1, p)
            c.send(out)
            f = c.frames_until(lambda f: f[0] in (HEADERS, GOAWAY) and f[2] in (0, 1))
            self.assertIsNotNone(f, "expected an answer to a 62 KB header list")
            self.assertEqual(f[0], HEADERS, "a 431 response, not a GOAWAY: %r" % (f,))
            self.assertIn(b"431", f[3], "status 431 in the (literal or indexed) block: %r"
                          % (f,))
            # The connection stays usable.
            c.send(frame(HEADERS, END_HEADERS | END_STREAM, 3,
                         hpack(request_headers(self.port, "/after-431"))))
            f = c.frames_until(lambda f: f[0] == HEADERS and f[2] == 3)
            self.assertIsNotNone(f, "stream 3 on the same connection is answered")
        finally:
            c.close()
        self.assertEqual(self.proxy.metric("weft_listener_http2_header_overflow_total",
                                           listener="main"), before + 1)
        self.assert_serves()

    def test_no_route_for_a_grpc_caller_is_grpc_status(self):
        cfg = h2_config(self.backend.server_address[1])
        cfg["listeners"][0]["route_config"]["virtual_hosts"][0]["routes"] = [
            route_to("backend", prefix="/only/")]
        with Proxy(cfg) as p:
            # No request body: with one, the proxy may answer before the body arrives and then
            # reset the client's half (RST_STREAM NO_ERROR, RFC 9113 §8.1), which curl sometimes
            # reports as a framing error instead of reading the complete answer.
            r = curl_h2(p.url("/pkg.Svc/Method"), "-X", "POST", "-H",
                        "content-type: application/grpc")
            self.assertEqual(r.status, 200, "gRPC local replies are HTTP 200: %r" % r)
            self.assertEqual(r.headers.get("grpc-status"), "12", "404 -> UNIMPLEMENTED: %r"
                             % r.headers)
            self.assertIn("no route", r.headers.get("grpc-message", ""))
            r = curl_h2(p.url("/nothing"))
            self.assertEqual(r.status, 404, "a plain HTTP/2 client gets the 404: %r" % r)

    def test_retries_and_timeouts_per_stream(self):
        cfg = h2_config(self.backend.server_address[1])
        cfg["listeners"][0]["route_config"]["virtual_hosts"][0]["routes"] = [
            route_to("backend", prefix="/retry/",
                     retry_policy={"max_retries": 2, "http_retry_events": ["server-error"]}),
            route_to("backend", prefix="/slow/", timeout="0.3s"),
            route_to("backend", prefix="/")]
        with Proxy(cfg) as p:
            before = self.backend.count()
            r = curl_h2(p.url("/retry/x"), "-H", "x-backend-status: 503")
            self.assertEqual(r.status, 503, r)
            self.assertEqual(self.backend.count() - before, 3, "first attempt + 2 retries")
            self.assertEqual(p.metric("weft_cluster_upstream_rq_retry_total", cluster="backend"),
                             2)
            r = curl_h2(p.url("/slow/x"), "-H", "x-backend-delay-ms: 3000")
            self.assertEqual(r.status, 504, "route timeout 0.3 s: %r" % r)
            # A gRPC caller's deadline (grpc-timeout) is the request timeout, and the proxy's
            # 504 reaches it as grpc-status 4 DEADLINE_EXCEEDED.
            r = curl_h2(p.url("/grpc/x"), "-X", "POST", "-H", "content-type: application/grpc",
                        "-H", "grpc-timeout: 200m", "-H", "x-backend-delay-ms: 3000",
                        "--data-binary", "@-", data=b"\x00\x00\x00\x00\x00")
            self.assertEqual((r.status, r.headers.get("grpc-status")), (200, "4"),
                             "grpc-timeout 200m against a 3 s backend: %r %r" % (r, r.headers))
            self.assertEqual(p.metric("weft_listener_downstream_rq_timeout_total",
                                      listener="main"), 2)

    # -- floods ------------------------------------------------------------------------------
    def flood_metric(self, name):
        return self.proxy.metric("weft_listener_http2_%s_total" % name, listener="main") or 0

    def assert_flood_ends_connection(self, name, send):
        before = self.flood_metric(name)
        c = RawH2(self.port)
        try:
            try:
                send(c)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the proxy may hang up while we are still sending
            got = c.goaway()
        finally:
            c.close()
        if got is not None:
            self.assertEqual(got[1], ENHANCE_YOUR_CALM,
                             "%s: expected GOAWAY(ENHANCE_YOUR_CALM), got %r" % (name, got))
        wait_until(lambda: self.flood_metric(name) > before,
                   what="weft_listener_http2_%s_total to count the flood" % name)
        self.assert_serves()

    def test_rapid_reset_flood(self):
        def send(c):
            out = b""
            for i in range(1500):
                sid = 2 * i + 1
                out += frame(HEADERS, END_HEADERS, sid,
                             hpack(request_headers(self.port, "/rr", method="POST")))
                out += frame(RST_STREAM, 0, sid, struct.pack(">I", 0x8))
            c.send(out)
        self.assert_flood_ends_connection("rapid_reset", send)

    def test_ping_flood(self):
        def send(c):
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            ping = frame(PING, 0, 0, b"12345678")
            for _ in range(200):
                c.send(ping * 500)  # never reads the ACKs
        self.assert_flood_ends_connection("ping_flood", send)

    def test_settings_flood(self):
        def send(c):
            settings = frame(SETTINGS, 0, 0, struct.pack(">HI", 0x3, 100))
            for _ in range(200):
                c.send(settings * 500)
        self.assert_flood_ends_connection("settings_flood", send)

    def test_continuation_flood(self):
        def send(c):
            block = hpack(request_headers(self.port, "/cont"))
            out = frame(HEADERS, 0, 1, block)
            for _ in range(50):
                out += frame(CONTINUATION, 0, 1, hpack([("x-a", "b")]))
            c.send(out)
        self.assert_flood_ends_connection("continuation_flood", send)


class Http2TlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.certs = h.Certs()
        cls.backend = Backend()
        tls = {"mode": "STRICT", "certificate": {
            "certificate_chain_file": cls.certs.pem("server"),
            "private_key_file": cls.certs.key("server")}}
        cls.proxy = Proxy(h2_config(cls.backend.server_address[1], tls=tls)).start()

    @classmethod
    def tearDownClass(cls):
        cls.proxy.stop()
        cls.backend.close()
        cls.certs.close()

    def url(self, path):
        return "https://www.example.test:%d%s" % (self.proxy.port(), path)

    def resolve(self):
        return ["--resolve", "www.example.test:%d:127.0.0.1" % self.proxy.port(),
                "--cacert", self.certs.pem("ca")]

    def test_alpn_h2_and_http1(self):
        r = h.curl(self.url("/tls"), "--http2", *self.resolve())
        self.assertEqual((r.rc, r.status), (0, 200), r)
        self.assertEqual(http_version(self.url("/v"), "--http2", *self.resolve()), "2",
                         "ALPN chose h2")
        self.assertEqual(r.json()["h"]["x-forwarded-proto"], "https")
        r = h.curl(self.url("/tls1"), "--http1.1", *self.resolve())
        self.assertEqual((r.rc, r.status), (0, 200), r)
        self.assertEqual(http_version(self.url("/v"), "--http1.1", *self.resolve()), "1.1")

    def test_h2load_over_tls(self):
        r = subprocess.run(["h2load", "-n", "400", "-c", "2", "-m", "50",
                            "https://127.0.0.1:%d/tls-load" % self.proxy.port()],
                           capture_output=True, text=True, timeout=120)
        self.assertIn("400 succeeded, 0 failed", r.stdout, r.stdout[-1200:] + r.stderr)
        self.assertIn("h2", r.stdout, "h2load negotiated h2: %s" % r.stdout[:600])


class Http2DrainTest(unittest.TestCase):
    def test_goaway_on_sigterm_and_in_flight_stream_finishes(self):
        backend = Backend()
        try:
            with Proxy(h2_config(backend.server_address[1])) as p:
                port = p.port()
                c = RawH2(port)
                c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1,
                             hpack(request_headers(port, "/slow",
                                                   extra=[("x-backend-gate", "drain")]))))
                wait_until(lambda: backend.count() == 1, what="the request at the backend")
                p.signal(signal.SIGTERM)
                got = c.goaway()
                self.assertIsNotNone(got, "expected a GOAWAY on SIGTERM")
                self.assertEqual(got, (1, 0), "GOAWAY(NO_ERROR) naming stream 1 as processed")
                backend.release("drain")
                f = c.frames_until(lambda f: f[0] == HEADERS and f[2] == 1)
                self.assertIsNotNone(f, "the in-flight stream is answered after the GOAWAY")
                f = c.frames_until(lambda f: f[2] == 1 and f[1] & END_STREAM)
                self.assertIsNotNone(f, "and completes")
                c.close()
                self.assertEqual(p.wait_exit(10), 0, p.log_text())
        finally:
            backend.close()


if __name__ == "__main__":
    unittest.main()
