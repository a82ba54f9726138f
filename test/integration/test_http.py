"""HTTP/1.1 proxying through weft-proxy: methods, connection reuse, framing, headers, and the
requests a proxy must refuse (smuggling and malformed input)."""

import hashlib
import os
import re
import shutil
import socket
import tempfile
import time
import unittest

import harness as h

LIMITED_HEADERS_KB = 4
LIMITED_BODY_BYTES = 1000


class HttpTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.backend = h.Backend("b1")
        cls.addClassCleanup(cls.backend.close)
        cfg = h.simple_config(cls.backend.port)
        cfg["listeners"].append(h.listener(
            "limited", [h.route_to("backend")],
            http={"max_request_headers_kb": LIMITED_HEADERS_KB,
                  "max_request_body_bytes": LIMITED_BODY_BYTES,
                  "idle_timeout": "1s"}))
        # "cold": a backend that closes after every response, so each request opens a new
        # upstream connection and its body arrives while that connection is being set up.
        cls.cold = h.Backend("cold", keep_alive=False)
        cls.addClassCleanup(cls.cold.close)
        cfg["listeners"].append(h.listener("cold", [h.route_to("cold")],
                                           http={"request_timeout": "8s"}))
        cfg["clusters"].append(h.cluster("cold", [cls.cold.port]))
        cls.proxy = h.Proxy(cfg, name="http")
        cls.addClassCleanup(cls.proxy.stop)
        cls.proxy.start()
        cls.port = cls.proxy.port("main")
        cls.limited_port = cls.proxy.port("limited")
        cls.cold_port = cls.proxy.port("cold")
        cls.tmp = tempfile.mkdtemp(prefix="weft-it-http-")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, True)

    # ---------------------------------------------------------------------------------------
    # helpers

    def url(self, path="/"):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def assertStatus(self, got, expected, context="", result=None):
        """got: a status code, or a CurlResult (whose body and curl's stderr are then shown)."""
        if isinstance(got, h.CurlResult):
            got, result = got.status, got
        self.assertEqual(got, expected, "%sexpected HTTP %d, got %d%s; proxy log tail:\n%s"
                         % (context + ": " if context else "", expected, got,
                            " (%r)" % result if result is not None else "",
                            self.proxy.log_text(1500)))

    def assertStillServing(self, port=None):
        """A fresh, well-formed request on a new connection still gets 200."""
        r = h.curl("http://127.0.0.1:%d/still-alive" % (port or self.port))
        self.assertEqual(r.status, 200, "proxy should keep serving after a refused request; "
                         "expected 200, got %r" % r)

    def echo_of(self, request_id):
        """The backend's record of the request carrying x-request-id: request_id."""
        recs = self.backend.find(lambda r: r["h"].get("x-request-id") == request_id)
        self.assertEqual(len(recs), 1, "expected the backend to see exactly one request with "
                         "x-request-id %s, saw %d" % (request_id, len(recs)))
        return recs[0]

    # ---------------------------------------------------------------------------------------
    # basic proxying

    def test_get(self):
        r = h.curl(self.url("/hello/world?x=1&y=2"))
        self.assertStatus(r, 200, "GET")
        echo = r.json()
        self.assertEqual(echo["method"], "GET")
        self.assertEqual(echo["path"], "/hello/world?x=1&y=2",
                         "backend should see the path and query unchanged")
        self.assertEqual(echo["backend"], "b1")

    def test_post(self):
        payload = b'{"hello": "post body", "n": 42}'
        r = h.curl(self.url("/post"), "-X", "POST", "-H", "content-type: application/json",
                   "--data-binary", "@-", data=payload)
        self.assertStatus(r, 200, "POST")
        echo = r.json()
        self.assertEqual(echo["method"], "POST")
        self.assertEqual(echo["body"], payload.decode(), "backend should receive the body verbatim")
        self.assertEqual(echo["h"].get("content-length"), str(len(payload)))
        self.assertEqual(echo["h"].get("content-type"), "application/json")

    def test_head_and_other_methods(self):
        for method in ("PUT", "DELETE", "PATCH", "OPTIONS"):
            r = h.curl(self.url("/m"), "-X", method)
            self.assertStatus(r, 200, method)
            self.assertEqual(r.json()["method"], method)
        s = h.connect(self.port)
        try:
            s.sendall(b"HEAD /head HTTP/1.1\r\nHost: a\r\n\r\nGET /after-head HTTP/1.1\r\n"
                      b"Host: a\r\n\r\n")
            rd = h.SockReader(s)
            head = rd.read_response(head_request=True)
            self.assertStatus(head.status, 200, "HEAD")
            self.assertIsNotNone(head.header("content-length"),
                                 "HEAD keeps the upstream's content-length: %r" % head.headers)
            # If the proxy sent a body after the HEAD response, it would be parsed as the next
            # status line here.
            nxt = rd.read_response()
            self.assertStatus(nxt.status, 200, "GET after HEAD on the same connection")
            self.assertEqual(nxt.json()["path"], "/after-head")
        finally:
            s.close()

    def test_keep_alive_reuses_connection(self):
        # curl fetching two URLs reuses one connection: num_connects 1 then 0.
        rc, out, err = h.curl_multi([self.url("/ka1"), self.url("/ka2")])
        self.assertEqual(rc, 0, "curl failed: " + err)
        marks = re.findall(r"@@(\d+) (\d+)", out)
        self.assertEqual(marks, [("200", "1"), ("200", "0")],
                         "expected two 200s over one connection (connects 1, 0), got %r" % marks)
        # And on a raw socket: two sequential requests on the same connection.
        s = h.connect(self.port)
        try:
            r = h.SockReader(s)
            for path in ("/raw1", "/raw2"):
                s.sendall(b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % path.encode())
                resp = r.read_response()
                self.assertStatus(resp.status, 200, path)
                self.assertEqual(resp.json()["path"], path)
                self.assertNotEqual((resp.header("connection") or "").lower(), "close",
                                    "keep-alive should not be refused")
        finally:
            s.close()

    def test_upstream_connection_reused(self):
        # Sequential requests from separate clients share one pooled upstream connection, with
        # and without a request body.
        for method, extra in (("GET", []), ("POST", ["--data-binary", "abc"])):
            path = "/reuse-" + method.lower()
            for _ in range(4):
                r = h.curl(self.url(path), *extra)
                self.assertStatus(r, 200, method)
            ports = {rec["client_port"] for rec in self.backend.find(lambda x: x["path"] == path)}
            self.assertEqual(len(ports), 1, "4 sequential %ss should reuse one upstream "
                             "connection; the backend saw them on %d connections"
                             % (method, len(ports)))

    def test_pipelining(self):
        s = h.connect(self.port)
        try:
            s.sendall(b"GET /pipe1 HTTP/1.1\r\nHost: a\r\n\r\n"
                      b"POST /pipe2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
                      b"GET /pipe3 HTTP/1.1\r\nHost: a\r\n\r\n")
            r = h.SockReader(s)
            paths = []
            for _ in range(3):
                resp = r.read_response()
                self.assertStatus(resp.status, 200, "pipelined request")
                paths.append(resp.json()["path"])
            self.assertEqual(paths, ["/pipe1", "/pipe2", "/pipe3"],
                             "pipelined responses must come back in request order")
        finally:
            s.close()

    def test_chunked_request_body(self):
        payload = os.urandom(200_000)
        f = os.path.join(self.tmp, "chunked.bin")
        with open(f, "wb") as fh:
            fh.write(payload)
        rid = "chunked-req-1"
        r = h.curl(self.url("/chunked-up"), "-H", "Transfer-Encoding: chunked",
                   "-H", "x-request-id: " + rid, "--data-binary", "@" + f)
        self.assertStatus(r, 200, "chunked upload")
        echo = self.echo_of(rid)
        self.assertEqual(echo["body_len"], len(payload), "backend body length")
        self.assertEqual(echo["body_sha256"], hashlib.sha256(payload).hexdigest(),
                         "backend body sha256 should match what curl sent")
        self.assertTrue(echo["chunked"] or echo["h"].get("content-length") == str(len(payload)),
                        "backend should get a framed body (chunked or content-length): %r"
                        % echo["h"])

    def test_chunked_request_raw_with_extensions_and_trailers(self):
        body = (b"5;ext=1\r\nhello\r\n"
                b"6\r\n world\r\n"
                b"0\r\nx-trailer: t\r\n\r\n")
        (resp,), _ = h.send_raw(self.port, b"POST /chunked-raw HTTP/1.1\r\nHost: a\r\n"
                                b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + body)
        self.assertStatus(resp.status, 200, "raw chunked upload")
        self.assertEqual(resp.json()["body"], "hello world")

    def test_chunked_response(self):
        r = h.curl(self.url("/chunked-down"), "-H", "x-backend-chunked: 1",
                   "-H", "x-backend-body-size: 100000")
        self.assertStatus(r, 200, "chunked response")
        self.assertEqual(r.body, b"x" * 100000, "client should get the whole chunked body")
        self.assertEqual(r.headers.get("transfer-encoding"), "chunked",
                         "an HTTP/1.1 client should get the body chunked, headers: %r" % r.headers)
        # An HTTP/1.0 client cannot read chunked: the proxy must de-chunk and close.
        (resp,), closed = h.send_raw(self.port, b"GET /chunked-10 HTTP/1.0\r\nHost: a\r\n"
                                     b"x-backend-chunked: 1\r\nx-backend-body-size: 5000\r\n\r\n")
        self.assertEqual(resp.version, "HTTP/1.0")
        self.assertIsNone(resp.header("transfer-encoding"),
                          "no transfer-encoding to an HTTP/1.0 client, got %r" % resp.headers)
        self.assertEqual(resp.body, b"x" * 5000)
        self.assertTrue(closed, "the proxy should close after a close-delimited 1.0 response")

    def test_expect_100_continue(self):
        # curl sends Expect: 100-continue for bodies over 1 MiB and waits for the interim reply.
        payload = os.urandom(1_500_000)
        f = os.path.join(self.tmp, "expect.bin")
        with open(f, "wb") as fh:
            fh.write(payload)
        rid = "expect-1"
        r = h.curl(self.url("/expect"), "-H", "x-request-id: " + rid, "--data-binary", "@" + f,
                   "--expect100-timeout", "10")
        self.assertStatus(r, 200, "POST with Expect: 100-continue")
        statuses = [s for s, _ in r.all_heads]
        self.assertEqual(statuses, [100, 200],
                         "expected an interim 100 Continue then 200, got heads %r" % statuses)
        echo = self.echo_of(rid)
        self.assertEqual(echo["body_sha256"], hashlib.sha256(payload).hexdigest())
        self.assertNotIn("expect", echo["h"], "Expect is answered by the proxy, not forwarded")

        # Raw: the body is only sent after the 100.
        s = h.connect(self.port)
        try:
            s.sendall(b"POST /expect-raw HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n"
                      b"Expect: 100-continue\r\n\r\n")
            rd = h.SockReader(s)
            interim = rd.read_response(skip_interim=False)
            self.assertEqual(interim.status, 100, "expected 100 Continue before the body was "
                             "sent, got %r" % interim)
            s.sendall(b"ping")
            final = rd.read_response()
            self.assertStatus(final.status, 200, "after 100-continue")
            self.assertEqual(final.json()["body"], "ping")
        finally:
            s.close()

    def test_large_body_is_streamed(self):
        size = 50 * 1024 * 1024
        f = os.path.join(self.tmp, "large.bin")
        block = hashlib.sha256(b"seed").digest() * 32768  # 1 MiB, not all one byte
        digest = hashlib.sha256()
        with open(f, "wb") as fh:
            for _ in range(size // len(block)):
                fh.write(block)
                digest.update(block)
        rss_before = _vm_kb(self.proxy.proc.pid, "VmRSS")
        rid = "large-upload"
        r = h.curl(self.url("/large"), "-H", "x-request-id: " + rid, "--data-binary", "@" + f,
                   "-H", "Expect:", timeout=60)
        self.assertStatus(r, 200, "50 MiB upload")
        echo = self.echo_of(rid)
        self.assertEqual(echo["body_len"], size, "backend body length")
        self.assertEqual(echo["body_sha256"], digest.hexdigest(),
                         "sha256 of the 50 MiB body seen by the backend")
        # And a large download.
        r = h.curl(self.url("/large-down"), "-H", "x-backend-body-size: %d" % (20 * 1024 * 1024),
                   timeout=60)
        self.assertStatus(r, 200, "20 MiB download")
        self.assertEqual(len(r.body), 20 * 1024 * 1024, "downloaded size")
        # Streaming, not buffering: peak memory grows far less than the body.
        hwm = _vm_kb(self.proxy.proc.pid, "VmHWM")
        if os.environ.get("WEFT_SANITIZE", "") in ("address", "thread"):
            return  # sanitizer builds hold freed memory in quarantine: RSS says nothing here
        self.assertLess(hwm - rss_before, 32 * 1024,
                        "proxy peak RSS grew by %d KiB while moving 50 MiB; expected a streaming "
                        "proxy to stay well under 32 MiB" % (hwm - rss_before))

    def test_body_while_upstream_connects(self):
        # Regression: a request body larger than the 64 KiB read-ahead that arrives before the
        # upstream connection is established must still be forwarded (the proxy stops reading
        # the client while connecting and has to resume once connected).
        for size in (100_000, 1_500_000):
            for framing in ([], ["-H", "Transfer-Encoding: chunked"]):
                payload = os.urandom(size)
                f = os.path.join(self.tmp, "cold.bin")
                with open(f, "wb") as fh:
                    fh.write(payload)
                rid = "cold-%d-%d" % (size, len(framing))
                r = h.curl("http://127.0.0.1:%d/cold" % self.cold_port, "-H", "Expect:",
                           "-H", "x-request-id: " + rid, "--data-binary", "@" + f,
                           *framing, timeout=12)
                self.assertEqual(r.status, 200, "%d-byte %s body on a new upstream connection: "
                                 "expected 200, got %r" % (size, "chunked" if framing else
                                                           "content-length", r))
                recs = self.cold.find(lambda x: x["h"].get("x-request-id") == rid)
                self.assertEqual([x["body_sha256"] for x in recs],
                                 [hashlib.sha256(payload).hexdigest()],
                                 "backend should get the whole body once")

    def test_pipelined_body_waiting_for_upstream_connection(self):
        # Deterministic form of the case above: request 2 (1 MB body) is pipelined behind
        # request 1, which the backend holds. The proxy reads ahead more than 64 KiB of request
        # 2 meanwhile (the rest stays in the socket). When request 1 ends, request 2 needs a new
        # upstream connection (the cold backend closes after each response) while more than
        # 64 KiB of its body is buffered.
        body = os.urandom(1_000_000)
        req1 = b"GET /held HTTP/1.1\r\nHost: a\r\nx-backend-gate: pipelined-cold\r\n\r\n"
        req2 = (b"POST /second HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body)
                + body)
        s = h.connect(self.cold_port, timeout=12)
        try:
            s.sendall(req1)
            h.wait_until(lambda: self.cold.find(lambda r: r["path"] == "/held"), 10,
                         what="request 1 to reach the backend")
            s.sendall(req2)
            h.wait_until(lambda: (h.bytes_read_by_peer(s, len(req1) + len(req2)) or 0)
                         > len(req1) + (64 << 10), 10,
                         what="the proxy to read ahead over 64 KiB of the pipelined request")
            self.cold.release("pipelined-cold")
            rd = h.SockReader(s)
            first = rd.read_response()
            self.assertEqual(first.status, 200, "request 1: %r" % first)
            try:
                second = rd.read_response()
            except (OSError, ConnectionError) as e:
                self.fail("request 2 (1 MB body, partly buffered while its upstream connection "
                          "was being opened): expected 200, got no response (%s); backend saw %d "
                          "bytes of it" % (e, sum(r["body_len"] for r in self.cold.find(
                              lambda r: r["path"] == "/second"))))
            self.assertEqual(second.status, 200, "request 2: expected 200, got %r (a 504 means "
                             "the body stalled: the proxy stopped reading the client while "
                             "connecting upstream and never resumed)" % second)
            self.assertEqual(second.json()["body_sha256"], hashlib.sha256(body).hexdigest())
        finally:
            self.cold.release("pipelined-cold")
            s.close()

    def test_slow_client_download(self):
        # Regression: a response larger than the proxy's 1 MiB output high watermark to a client
        # that reads slowly must resume once the client catches up.
        size = 12 * 1024 * 1024
        r = h.curl(self.url("/slow-reader"), "--limit-rate", "8M",
                   "-H", "x-backend-body-size: %d" % size, timeout=12)
        self.assertEqual((r.status, len(r.body)), (200, size),
                         "a slow client (8 MB/s) downloading 12 MiB: expected (200, %d), got "
                         "(%d, %d); curl: %s" % (size, r.status, len(r.body), r.stderr.strip()))

    def test_http10_client(self):
        (resp,), closed = h.send_raw(self.port, b"GET /ten HTTP/1.0\r\nHost: a\r\n\r\n")
        self.assertStatus(resp.status, 200, "HTTP/1.0 request")
        self.assertEqual(resp.version, "HTTP/1.0", "answer an HTTP/1.0 client in HTTP/1.0")
        self.assertEqual(resp.json()["path"], "/ten")
        self.assertTrue(closed, "without keep-alive a 1.0 connection is closed after the response")
        # HTTP/1.0 with keep-alive asked for: connection stays open for a second request.
        s = h.connect(self.port)
        try:
            rd = h.SockReader(s)
            for p in (b"/ten-ka1", b"/ten-ka2"):
                s.sendall(b"GET " + p + b" HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n")
                resp = rd.read_response()
                self.assertStatus(resp.status, 200, "HTTP/1.0 keep-alive")
                self.assertEqual((resp.header("connection") or "").lower(), "keep-alive",
                                 "a 1.0 keep-alive response says connection: keep-alive; got %r"
                                 % resp.headers)
        finally:
            s.close()
        r = h.curl(self.url("/ten-curl"), "--http1.0")
        self.assertStatus(r, 200, "curl --http1.0")

    # ---------------------------------------------------------------------------------------
    # headers

    def test_server_header_replaces_upstream(self):
        r = h.curl(self.url("/server"))
        self.assertEqual(r.headers.get("server"), "weft",
                         "expected server: weft (the backend says 'backend'), got %r"
                         % r.headers.get("server"))

    def test_request_id_generated_and_preserved(self):
        h.curl(self.url("/rid-gen"))
        rec = self.backend.find(lambda x: x["path"] == "/rid-gen")[-1]
        rid = rec["h"].get("x-request-id")
        self.assertIsNotNone(rid, "backend should receive a generated x-request-id")
        self.assertRegex(rid, h.UUID_RE, "generated x-request-id should be a UUID")
        h.curl(self.url("/rid-gen"))
        rid2 = self.backend.find(lambda x: x["path"] == "/rid-gen")[-1]["h"]["x-request-id"]
        self.assertNotEqual(rid, rid2, "each request gets its own id")

        h.curl(self.url("/rid-keep"), "-H", "x-request-id: my-own-id-123")
        rec = self.backend.find(lambda x: x["path"] == "/rid-keep")[-1]
        ids = [v for k, v in rec["headers"] if k.lower() == "x-request-id"]
        self.assertEqual(ids, ["my-own-id-123"],
                         "a client's x-request-id is kept, once; got %r" % ids)

    def test_upstream_service_time(self):
        r = h.curl(self.url("/svc-time"))
        v = r.headers.get("x-weft-upstream-service-time")
        self.assertIsNotNone(v, "x-weft-upstream-service-time missing; headers %r" % r.headers)
        self.assertRegex(v, r"^\d+$", "service time should be whole milliseconds")

    def test_forwarded_proto_and_traceparent(self):
        tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        r = h.curl(self.url("/trace"), "-H", "traceparent: " + tp,
                   "-H", "tracestate: vendor=1", "-H", "x-forwarded-proto: https")
        echo = r.json()
        self.assertEqual(echo["h"].get("traceparent"), tp, "traceparent passes through unchanged")
        self.assertEqual(echo["h"].get("tracestate"), "vendor=1")
        protos = [v for k, v in echo["headers"] if k.lower() == "x-forwarded-proto"]
        self.assertEqual(protos, ["http"],
                         "x-forwarded-proto is set by the proxy (client's value replaced); got %r"
                         % protos)

    def test_hop_by_hop_removed(self):
        r = h.curl(self.url("/hop"), "-H", "Connection: x-foo, keep-alive",
                   "-H", "X-Foo: secret", "-H", "Keep-Alive: timeout=5",
                   "-H", "Proxy-Connection: keep-alive", "-H", "TE: trailers",
                   "-H", "Upgrade-Insecure-Requests: 1", "-H", "X-End-To-End: yes")
        self.assertStatus(r, 200, "request with hop-by-hop headers")
        got = r.json()["h"]
        for name in ("x-foo", "keep-alive", "proxy-connection"):
            self.assertNotIn(name, got, "hop-by-hop header %r reached the backend: %r"
                             % (name, got))
        self.assertNotIn("x-foo", (got.get("connection") or "").lower(),
                         "the client's Connection options must not be forwarded: %r" % got)
        self.assertEqual(got.get("x-end-to-end"), "yes", "end-to-end headers pass through")
        self.assertEqual(got.get("upgrade-insecure-requests"), "1")
        # Response direction: the backend's Connection-named header is dropped too.
        r = h.curl(self.url("/hop-resp"), "-H", "x-backend-header: Connection: x-bar",
                   "-H", "x-backend-header: X-Bar: 1", "-H", "x-backend-header: X-Keep: 2")
        self.assertNotIn("x-bar", r.headers,
                         "a header named in the backend's Connection reached the client: %r"
                         % r.headers)
        self.assertEqual(r.headers.get("x-keep"), "2")

    # ---------------------------------------------------------------------------------------
    # refused requests

    def assertRefused(self, raw, expected, what, port=None):
        port = port or self.port
        before = self.backend.count()
        (resp,), closed = h.send_raw(port, raw)
        self.assertEqual(resp.status, expected, "%s: expected %d, got %r" % (what, expected, resp))
        self.assertEqual(resp.header("server"), "weft", "%s: a local reply says server: weft"
                         % what)
        self.assertTrue(closed, "%s: the proxy should close the connection after %d"
                        % (what, expected))
        self.assertStillServing(port)
        return before

    def test_cl_and_te_is_refused(self):
        smuggle = (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 41\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n"
                   b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertRefused(smuggle, 400, "Content-Length with Transfer-Encoding")
        self.assertEqual(self.backend.find(lambda r: r["path"] == "/smuggled"), [],
                         "the smuggled request must never reach the backend")

    def test_two_content_lengths_refused(self):
        self.assertRefused(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                           b"Content-Length: 6\r\n\r\nhello!", 400, "two different Content-Length")

    def test_content_length_list_refused(self):
        self.assertRefused(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhello!",
                           400, "Content-Length: 5, 6")

    def test_bad_transfer_encoding_refused(self):
        self.assertRefused(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
                           400, "Transfer-Encoding not ending in chunked")

    def test_obs_fold_refused(self):
        self.assertRefused(b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n  folded\r\n\r\n", 400,
                           "obs-fold")

    def test_bare_lf_refused(self):
        self.assertRefused(b"GET / HTTP/1.1\nHost: a\n\n", 400, "bare LF line endings")

    def test_bad_chunk_size_refused(self):
        self.assertRefused(b"POST /badchunk HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                           b"\r\nzz\r\nhello\r\n0\r\n\r\n", 400, "invalid chunk size")

    def test_chunk_size_overflow_refused(self):
        self.assertRefused(b"POST /badchunk HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                           b"\r\n1ffffffffffffffff\r\nhello\r\n0\r\n\r\n", 400,
                           "chunk size overflowing 64 bits")

    def test_invalid_header_name_refused(self):
        self.assertRefused(b"GET / HTTP/1.1\r\nHost: a\r\nBad(Name: x\r\n\r\n", 400,
                           "'(' in a header name")

    def test_space_before_colon_refused(self):
        self.assertRefused(b"GET / HTTP/1.1\r\nHost: a\r\nX-Space : x\r\n\r\n", 400,
                           "whitespace between header name and colon")

    def test_invalid_request_line_refused(self):
        self.assertRefused(b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400, "space inside target")

    def test_missing_host_http11_refused(self):
        self.assertRefused(b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n", 400, "HTTP/1.1 without Host")

    def test_oversized_headers_431(self):
        big = b"X-Big: " + b"a" * (LIMITED_HEADERS_KB * 1024 + 100) + b"\r\n"
        self.assertRefused(b"GET / HTTP/1.1\r\nHost: a\r\n" + big + b"\r\n", 431,
                           "headers over max_request_headers_kb", port=self.limited_port)
        # Within the limit is fine.
        ok = b"X-Small: " + b"a" * 1000 + b"\r\n"
        (resp,), _ = h.send_raw(self.limited_port, b"GET /ok HTTP/1.1\r\nHost: a\r\n" + ok +
                                b"Connection: close\r\n\r\n")
        self.assertStatus(resp.status, 200, "headers within the limit")

    def test_body_over_limit_413(self):
        body = b"a" * (LIMITED_BODY_BYTES + 1)
        self.assertRefused(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n"
                           % len(body) + body, 413, "Content-Length over max_request_body_bytes",
                           port=self.limited_port)
        chunks = b"".join(b"64\r\n" + b"b" * 100 + b"\r\n" for _ in range(12)) + b"0\r\n\r\n"
        (resp,), _ = h.send_raw(self.limited_port, b"POST /chunky HTTP/1.1\r\nHost: a\r\n"
                                b"Transfer-Encoding: chunked\r\n\r\n" + chunks)
        self.assertEqual(resp.status, 413, "chunked body over max_request_body_bytes: expected "
                         "413, got %r" % resp)
        self.assertStillServing(self.limited_port)
        # At the limit is fine.
        body = b"c" * LIMITED_BODY_BYTES
        (resp,), _ = h.send_raw(self.limited_port, b"POST /atlimit HTTP/1.1\r\nHost: a\r\n"
                                b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
                                + body)
        self.assertStatus(resp.status, 200, "body exactly max_request_body_bytes")

    def test_idle_timeout_closes_connection(self):
        s = h.connect(self.limited_port)
        try:
            s.sendall(b"GET /idle HTTP/1.1\r\nHost: a\r\n\r\n")
            rd = h.SockReader(s)
            self.assertStatus(rd.read_response().status, 200, "request before going idle")
            t0 = time.monotonic()
            s.settimeout(10)
            try:
                rest = rd.read_to_close()
            except socket.timeout:
                self.fail("the proxy did not close a connection idle for 10 s "
                          "(idle_timeout is 1s)")
            elapsed = time.monotonic() - t0
            self.assertEqual(rest, b"", "nothing is sent on an idle close")
            self.assertTrue(0.8 <= elapsed < 5, "idle connection closed after %.2fs; expected "
                            "about 1s (idle_timeout)" % elapsed)
        finally:
            s.close()

    def test_protocol_errors_counted(self):
        before = self.proxy.metric("weft_listener_downstream_cx_protocol_error_total",
                                   listener="main")
        h.send_raw(self.port, b"GET / HTTP/1.1\r\nHost: a\r\nX : y\r\n\r\n")
        after = self.proxy.metric("weft_listener_downstream_cx_protocol_error_total",
                                  listener="main")
        self.assertEqual(after, before + 1, "protocol error counter: expected %d, got %d"
                         % (before + 1, after))


def _vm_kb(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s in /proc/%d/status" % (field, pid))


if __name__ == "__main__":
    unittest.main()


class HttpRobustnessTest(unittest.TestCase):
    """Clients that vanish, refuse to read, or flood: the proxy keeps every byte it owes and
    never falls over (regressions found in review)."""

    @classmethod
    def setUpClass(cls):
        cls.backend = h.Backend("rb")
        cls.addClassCleanup(cls.backend.close)
        cfg = h.simple_config(cls.backend.port)
        cfg["listeners"][0]["route_config"]["virtual_hosts"][0]["routes"].insert(
            0, {"match": {"path": "/direct"}, "direct_response": {"status": 200, "body": "d"}})
        cls.proxy = h.Proxy(cfg, name="robust")
        cls.addClassCleanup(cls.proxy.stop)
        cls.proxy.start()
        cls.port = cls.proxy.port("main")

    def alive(self):
        r = h.curl("http://127.0.0.1:%d/alive" % self.port)
        self.assertEqual(r.status, 200, "the proxy should still serve; got %r" % r)

    def test_reset_right_after_expect_continue(self):
        # The proxy answers "100 Continue" into a socket the client has already reset.
        for _ in range(20):
            s = h.connect(self.port)
            s.sendall(b"POST /expect HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                      b"Content-Length: 10\r\n\r\n")
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()  # RST
        self.alive()

    def test_connection_close_response_is_not_truncated(self):
        # The session ends with the response still queued; the bytes must all arrive.
        size = 24 * 1024 * 1024
        r = h.curl("http://127.0.0.1:%d/big-close" % self.port, "--limit-rate", "40M",
                   "-H", "Connection: close", "-H", "x-backend-body-size: %d" % size, timeout=20)
        self.assertEqual((r.status, len(r.body)), (200, size),
                         "Connection: close with a %d-byte body read slowly: expected all of it, "
                         "got status %d and %d bytes" % (size, r.status, len(r.body)))

    def test_pipelined_flood_of_local_replies(self):
        n = 3000
        s = h.connect(self.port, timeout=20)
        try:
            s.sendall(b"GET /direct HTTP/1.1\r\nHost: a\r\n\r\n" * n)
            rd = h.SockReader(s)
            for i in range(n):
                resp = rd.read_response()
                self.assertEqual(resp.status, 200, "pipelined request %d of %d" % (i + 1, n))
        finally:
            s.close()
        self.alive()


class EarlyResponseTest(unittest.TestCase):
    """An upstream that answers before the request body has arrived: the rest of that body must
    never be read as a new request (request smuggling through a desynchronised connection)."""

    def test_unread_body_ends_the_connection(self):
        lst = socket.socket()
        lst.bind(("127.0.0.1", 0))
        lst.listen(8)
        self.addCleanup(lst.close)
        seen = []

        def serve():
            while True:
                try:
                    c, _ = lst.accept()
                except OSError:
                    return
                with c:
                    data = b""
                    while b"\r\n\r\n" not in data:
                        chunk = c.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                    seen.append(data.split(b"\r\n", 1)[0])
                    # Answer at once, without reading the body, and keep reading what follows.
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    c.settimeout(2)
                    try:
                        while True:
                            more = c.recv(4096)
                            if not more:
                                break
                            if b"HTTP/1.1" in more:
                                seen.append(more.split(b"\r\n", 1)[0])
                    except OSError:
                        pass

        import threading
        t = threading.Thread(target=serve, daemon=True)
        t.start()
        cfg = h.simple_config(lst.getsockname()[1])
        proxy = h.Proxy(cfg, name="early")
        self.addCleanup(proxy.stop)
        proxy.start()
        s = h.connect(proxy.port(), timeout=5)
        self.addCleanup(s.close)
        smuggled = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
        body = b"x" * 10 + smuggled
        s.sendall(b"POST /early HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % (len(body) + 50)
                  + b"x" * 10)
        resp = h.SockReader(s).read_response()
        self.assertEqual(resp.status, 200)
        self.assertEqual((resp.header("connection") or "").lower(), "close",
                         "a response sent before the request body ended must close the "
                         "connection; headers %r" % resp.headers)
        try:
            s.sendall(smuggled)
            rest = s.recv(4096)
        except OSError:
            rest = b""
        self.assertEqual(rest, b"", "nothing may follow on that connection; got %r" % rest)
        self.assertNotIn(b"GET /smuggled HTTP/1.1", seen,
                         "the rest of the body was forwarded as a request: %r" % seen)
