"""HTTP/2 upstreams (Cluster.protocol HTTP2): HTTP/1.1 clients translated to HTTP/2, h2 -> h2
with trailers both ways, multiplexing up to the peer's SETTINGS_MAX_CONCURRENT_STREAMS, GOAWAY
retiring a connection, refused streams retried (stream-error), h2 over TLS by ALPN. The HTTP/2
server and client are python3-h2 (Debian's), driven by hand here. Then gRPC end to end with
python3-grpcio (client and server): unary, server streaming, status and trailing metadata,
deadlines (grpc-timeout) and retries on a trailers-only UNAVAILABLE."""

import hashlib
import json
import os
import socket
import ssl
import threading
import time
import unittest
from concurrent import futures

import harness as h

try:
    import h2.config
    import h2.connection
    import h2.errors
    import h2.events
    import h2.exceptions
    import h2.settings
    HAVE_H2 = True
except ImportError:  # python3-h2 is in scripts/setup.sh; say so rather than fail obscurely
    HAVE_H2 = False

try:
    import grpc  # Debian's python3-grpcio
    HAVE_GRPC = True
except ImportError:
    HAVE_GRPC = False


class H2Server:
    """An HTTP/2 server (h2c, or h2 over TLS with ALPN) on 127.0.0.1:0. It answers every request
    with a JSON echo of what it got; request headers choose the rest:
      x-h2-status: N          status (default 200)
      x-h2-body-size: N       N bytes of "x" instead of the echo
      x-h2-no-length: 1       no content-length
      x-h2-trailers: k=v,...  trailers after the body
      x-h2-gate: NAME         hold the answer until release(NAME)
      x-h2-goaway: 1          GOAWAY after this answer (the connection is then retired)
      x-h2-drop: 1            close the connection instead of answering
      x-h2-reset: 1           reset the stream (INTERNAL_ERROR) instead of answering
    `refuse_next` streams are refused (RST_STREAM REFUSED_STREAM) before anything else.
    `requests` records (connection number, stream id, headers dict, body bytes, trailers dict);
    `resets` counts streams the client reset;
    `max_concurrency` is the most streams seen open at once on one connection."""

    def __init__(self, tls=None, max_streams=None):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.tls = tls
        self.max_streams = max_streams
        self.lock = threading.Lock()
        self.requests = []
        self.connections = 0
        self.max_concurrency = 0
        self.refuse_next = 0
        self.refused = 0
        self.resets = 0  # streams the client reset
        self.gates = {}
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self.closed = True
        self.release()
        self.sock.close()

    def gate(self, name):
        with self.lock:
            return self.gates.setdefault(name, threading.Event())

    def release(self, name=None):
        with self.lock:
            gates = [self.gates.setdefault(name, threading.Event())] if name else \
                list(self.gates.values())
        for g in gates:
            g.set()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                n = self.connections
            threading.Thread(target=self._serve, args=(c, n), daemon=True).start()

    def _serve(self, sock, n):
        try:
            if self.tls:
                sock = self.tls.wrap_socket(sock, server_side=True)
            self._h2(sock, n)
        except (OSError, ssl.SSLError, h2.exceptions.ProtocolError):
            pass
        finally:
            sock.close()

    def _h2(self, sock, n):
        conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        if self.max_streams:
            conn.local_settings = h2.settings.Settings(
                client=False,
                initial_values={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.max_streams})
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        sock.settimeout(0.02)
        streams = {}    # id -> {"headers", "body", "trailers"}
        waiting = []    # ids whose answer waits for a gate
        outgoing = {}   # id -> [bytearray body, trailers or None]
        goaway_after = set()
        while not self.closed:
            try:
                data = sock.recv(65536)
                if not data:
                    return
            except (socket.timeout, ssl.SSLWantReadError):
                data = None
            if data:
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.RequestReceived):
                        if self.refuse_next > 0:
                            with self.lock:
                                self.refuse_next -= 1
                                self.refused += 1
                            conn.reset_stream(ev.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
                            continue
                        streams[ev.stream_id] = {"headers": dict(ev.headers), "body": bytearray(),
                                                 "trailers": {}}
                        with self.lock:
                            self.max_concurrency = max(self.max_concurrency, len(streams))
                    elif isinstance(ev, h2.events.DataReceived):
                        if ev.stream_id in streams:
                            streams[ev.stream_id]["body"] += ev.data
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.TrailersReceived):
                        if ev.stream_id in streams:
                            streams[ev.stream_id]["trailers"] = dict(ev.headers)
                    elif isinstance(ev, h2.events.StreamEnded):
                        if ev.stream_id in streams:
                            if streams[ev.stream_id]["headers"].get("x-h2-drop"):
                                return
                            waiting.append(ev.stream_id)
                    elif isinstance(ev, h2.events.StreamReset):
                        with self.lock:
                            self.resets += 1
                        streams.pop(ev.stream_id, None)
                        outgoing.pop(ev.stream_id, None)
                        if ev.stream_id in waiting:
                            waiting.remove(ev.stream_id)
            for sid in list(waiting):
                st = streams.get(sid)
                if st is None:
                    waiting.remove(sid)
                    continue
                gate = st["headers"].get("x-h2-gate")
                if gate and not self.gate(gate).is_set():
                    continue
                waiting.remove(sid)
                goaway = st["headers"].get("x-h2-goaway")  # _answer may clear st
                self._answer(conn, n, sid, st, outgoing)
                if goaway:
                    goaway_after.add(sid)
            for sid in list(outgoing):
                body, trailers = outgoing[sid]
                try:
                    while body:
                        room = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
                        if room <= 0:
                            break
                        conn.send_data(sid, bytes(body[:room]))
                        del body[:room]
                    if not body:
                        if trailers:
                            conn.send_headers(sid, trailers, end_stream=True)
                        else:
                            conn.send_data(sid, b"", end_stream=True)
                        del outgoing[sid]
                        streams.pop(sid, None)
                except h2.exceptions.StreamClosedError:
                    del outgoing[sid]
                    streams.pop(sid, None)
            for sid in list(goaway_after):
                if sid not in outgoing:
                    goaway_after.discard(sid)
                    conn.close_connection(last_stream_id=sid)
            out = conn.data_to_send()
            if out:
                sock.sendall(out)

    def _answer(self, conn, n, sid, st, outgoing):
        hd = st["headers"]
        body = bytes(st["body"])
        with self.lock:
            self.requests.append((n, sid, hd, body, st["trailers"]))
        if hd.get("x-h2-reset"):
            conn.reset_stream(sid, h2.errors.ErrorCodes.INTERNAL_ERROR)
            return
        status = hd.get("x-h2-status", "200")
        if hd.get("x-h2-body-size"):
            payload = b"x" * int(hd["x-h2-body-size"])
            ctype = "application/octet-stream"
        else:
            payload = json.dumps({"connection": n, "stream": sid, "headers": hd,
                                  "body_len": len(body),
                                  "body_sha256": hashlib.sha256(body).hexdigest(),
                                  "trailers": st["trailers"]}).encode()
            ctype = "application/json"
        headers = [(":status", status), ("content-type", ctype), ("server", "h2-backend")]
        if not hd.get("x-h2-no-length"):
            headers.append(("content-length", str(len(payload))))
        trailers = None
        if hd.get("x-h2-trailers"):
            trailers = [tuple(kv.split("=", 1)) for kv in hd["x-h2-trailers"].split(",")]
        if hd.get(":method") == "HEAD":
            payload = b""
        end = not payload and not trailers
        conn.send_headers(sid, headers, end_stream=end)
        if end:
            st.clear()
            return
        outgoing[sid] = [bytearray(payload), trailers]

    def records(self):
        with self.lock:
            return list(self.requests)


def h2_call(port, path, method="GET", headers=(), body=b"", trailers=None, ca=None,
            authority="h2.example.test", timeout=15):
    """One request over a fresh HTTP/2 connection (h2c, or h2 over TLS when `ca`): returns
    (status, headers dict, body bytes, trailers dict); raises on a reset stream."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if ca:
        ctx = ssl.create_default_context(cafile=ca)
        ctx.set_alpn_protocols(["h2"])
        raw = ctx.wrap_socket(raw, server_hostname="www.example.test")
    conn = h2.connection.H2Connection(
        config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    sid = conn.get_next_available_stream_id()
    req = [(":method", method), (":path", path), (":scheme", "https" if ca else "http"),
           (":authority", authority)] + list(headers)
    conn.send_headers(sid, req, end_stream=not body and not trailers)
    pending = bytearray(body)
    status, rh, rbody, rtrailers = None, {}, bytearray(), {}
    done = False
    sent_end = False
    try:
        while not done:
            while pending:
                room = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
                if room <= 0:
                    break
                conn.send_data(sid, bytes(pending[:room]))
                del pending[:room]
            if not pending and (body or trailers) and not sent_end:
                sent_end = True
                if trailers:
                    conn.send_headers(sid, list(trailers), end_stream=True)
                else:
                    conn.end_stream(sid)
            raw.sendall(conn.data_to_send())
            data = raw.recv(65536)
            if not data:
                raise ConnectionError("connection closed before the response ended")
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    rh = dict(ev.headers)
                    status = int(rh[":status"])
                elif isinstance(ev, h2.events.DataReceived):
                    rbody += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.TrailersReceived):
                    rtrailers = dict(ev.headers)
                elif isinstance(ev, h2.events.StreamEnded):
                    done = True
                elif isinstance(ev, h2.events.StreamReset):
                    raise ConnectionError("stream reset, error %s" % ev.error_code)
        return status, rh, bytes(rbody), rtrailers
    finally:
        raw.close()


def config(server_port, tls=None, max_connections=None, retry=None, **cluster_extra):
    c = h.cluster("h2up", [server_port], protocol="HTTP2", **cluster_extra)
    if tls:
        c["tls"] = tls
    if max_connections:
        c["max_connections"] = max_connections
    action = {"retry_policy": retry} if retry else {}
    return {"node": "it", "admin": h.admin_cfg(), "drain_time": "2s",
            "listeners": [h.listener("main", [h.route_to("h2up", **action)])],
            "clusters": [c]}


@unittest.skipUnless(HAVE_H2, "python3-h2 is not installed (scripts/setup.sh installs it)")
class Http2UpstreamTest(unittest.TestCase):
    def start(self, server, **kw):
        p = h.Proxy(config(server.port, **kw), name="h2up").start()
        self.addCleanup(p.stop)
        return p

    def server(self, **kw):
        s = H2Server(**kw)
        self.addCleanup(s.close)
        return s

    def test_http1_client_is_translated_to_http2(self):
        srv = self.server()
        p = self.start(srv)
        r = h.curl(p.url("/v1/items?x=1"), "-H", "x-custom: yes", "-H", "Connection: keep-alive")
        self.assertEqual(r.status, 200, r)
        echo = r.json()
        hd = echo["headers"]
        self.assertEqual((hd[":method"], hd[":path"], hd[":scheme"]),
                         ("GET", "/v1/items?x=1", "http"), hd)
        self.assertTrue(hd[":authority"].startswith("127.0.0.1:"), hd)
        self.assertEqual(hd.get("x-custom"), "yes")
        self.assertEqual(hd.get("x-forwarded-proto"), "http")
        self.assertRegex(hd.get("x-request-id", ""), h.UUID_RE)
        for hop in ("connection", "keep-alive", "host", "transfer-encoding"):
            self.assertNotIn(hop, hd, "connection-specific %r must not reach an h2 upstream" % hop)
        self.assertEqual(r.headers.get("server"), "weft")
        self.assertIn("x-weft-upstream-service-time", r.headers)
        self.assertEqual(r.headers.get("content-length"), str(len(r.body)))
        # No content-length upstream: chunked to an HTTP/1.1 client.
        r = h.curl(p.url("/nolen"), "-H", "x-h2-no-length: 1")
        self.assertEqual((r.status, r.headers.get("transfer-encoding")), (200, "chunked"), r)
        self.assertEqual(r.json()["headers"][":path"], "/nolen")
        self.assertEqual(p.metric("weft_cluster_upstream_rq_total", cluster="h2up"), 2)
        self.assertEqual(srv.connections, 1, "both requests should share one h2 connection")

    def test_http_health_check_of_an_h2_cluster_speaks_http2(self):
        srv = self.server()  # an h2-only server: an HTTP/1.1 probe would fail against it
        p = self.start(srv, health_check={"protocol": "HTTP", "path": "/health",
                                          "interval": "5s", "timeout": "2s",
                                          "healthy_threshold": 2, "unhealthy_threshold": 2})
        probes = h.wait_until(
            lambda: [r for r in srv.records() if r[2].get(":path") == "/health"],
            10, what="the health probe at the h2 backend")
        hd = probes[0][2]
        self.assertEqual(hd.get(":method"), "GET", hd)
        self.assertEqual(hd.get("user-agent"), "weft-health-check", hd)
        h.wait_until(lambda: p.metric("weft_cluster_health_check_attempt_total",
                                      cluster="h2up") >= 1, 10, what="a counted attempt")
        self.assertEqual(p.metric("weft_cluster_health_check_failure_total", cluster="h2up"), 0,
                         p.admin("/clusters")[1])

    def test_bodies_both_ways_with_flow_control(self):
        srv = self.server()
        p = self.start(srv)
        body = os.urandom(3 << 20)  # above the 1 MiB stream/connection windows
        for framing in ([], ["-H", "Transfer-Encoding: chunked"]):
            r = h.curl(p.url("/upload"), "--data-binary", "@-", *framing, data=body, timeout=30)
            self.assertEqual(r.status, 200, r)
            echo = r.json()
            self.assertEqual((echo["body_len"], echo["body_sha256"]),
                             (len(body), hashlib.sha256(body).hexdigest()),
                             "a %s 3 MiB upload arrived altered" % (framing and "chunked" or
                                                                     "content-length"))
        size = 8 << 20
        r = h.curl(p.url("/download"), "-H", "x-h2-body-size: %d" % size, timeout=30)
        self.assertEqual((r.status, len(r.body)), (200, size), r)
        r = h.curl(p.url("/slow"), "--limit-rate", "4M", "-H", "x-h2-body-size: %d" % size,
                   "-H", "x-h2-no-length: 1", timeout=30)
        self.assertEqual((r.status, len(r.body)), (200, size),
                         "a slow HTTP/1 reader of an 8 MiB chunked h2 response")

    def test_h2_client_to_h2_upstream_trailers_both_ways(self):
        srv = self.server()
        p = self.start(srv)
        status, hd, body, trailers = h2_call(
            p.port(), "/rpc", method="POST",
            headers=[("content-type", "application/grpc"), ("te", "trailers")],
            body=b"request-body", trailers=[("x-req-trailer", "up")],)
        self.assertEqual(status, 200, hd)
        echo = json.loads(body)
        self.assertEqual(echo["trailers"], {"x-req-trailer": "up"},
                         "request trailers must be forwarded h2 -> h2")
        self.assertEqual(echo["headers"].get("te"), "trailers")
        self.assertEqual(echo["body_len"], len(b"request-body"))
        status, hd, body, trailers = h2_call(
            p.port(), "/rpc2", headers=[("x-h2-trailers", "grpc-status=0,grpc-message=fine")])
        self.assertEqual(status, 200)
        self.assertEqual(trailers, {"grpc-status": "0", "grpc-message": "fine"},
                         "response trailers must be forwarded h2 -> h2; got %r" % trailers)
        # HTTP/1 clients: the body arrives, trailers are dropped.
        r = h.curl(p.url("/t"), "-H", "x-h2-trailers: a=b")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["headers"][":path"], "/t")

    def test_streams_are_multiplexed_up_to_the_peers_limit(self):
        srv = self.server(max_streams=2)
        p = self.start(srv)
        results = []

        def call(i):
            results.append(h.curl(p.url("/m%d" % i), "-H", "x-h2-gate: go", timeout=20))

        threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        # Six requests, at most two streams per connection: three connections.
        h.wait_until(lambda: p.metric("weft_cluster_upstream_rq_active", cluster="h2up") == 6,
                     what="six requests in flight")
        h.wait_until(lambda: srv.connections >= 3,
                     what="three upstream connections for six streams at two per connection")
        srv.release("go")
        for t in threads:
            t.join()
        self.assertEqual([r.status for r in results], [200] * 6, results)
        self.assertLessEqual(srv.max_concurrency, 2,
                             "the proxy opened more streams than SETTINGS_MAX_CONCURRENT_STREAMS")
        self.assertEqual(srv.connections, 3)
        # Without a limit, concurrent requests share one connection.
        srv2 = self.server()
        p2 = self.start(srv2)
        results.clear()
        threads = [threading.Thread(target=lambda i=i: results.append(
            h.curl(p2.url("/s%d" % i), "-H", "x-h2-gate: go2", timeout=20))) for i in range(8)]
        for t in threads:
            t.start()
        h.wait_until(lambda: p2.metric("weft_cluster_upstream_rq_active", cluster="h2up") == 8,
                     what="eight requests in flight")
        h.wait_until(lambda: srv2.max_concurrency == 8, what="eight streams on the upstream")
        srv2.release("go2")
        for t in threads:
            t.join()
        self.assertEqual(srv2.connections, 1, "eight streams should share one connection")

    def test_goaway_retires_the_connection(self):
        srv = self.server()
        p = self.start(srv)
        r = h.curl(p.url("/last"), "-H", "x-h2-goaway: 1")
        self.assertEqual(r.status, 200, r)
        first = r.json()["connection"]
        h.wait_until(lambda: p.metric("weft_cluster_upstream_cx_active", cluster="h2up") == 0,
                     what="the retired connection to be closed")
        r = h.curl(p.url("/next"))
        self.assertEqual(r.status, 200, r)
        self.assertNotEqual(r.json()["connection"], first,
                            "a request after GOAWAY must go on a new connection")

    def test_refused_stream_is_retried_as_stream_error(self):
        srv = self.server()
        p = self.start(srv, retry={"max_retries": 2, "http_retry_events": ["stream-error"]})
        srv.refuse_next = 1
        r = h.curl(p.url("/refused"))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(srv.refused, 1)
        self.assertEqual(p.metric("weft_cluster_upstream_rq_retry_total", cluster="h2up"), 1)
        # Without a retry policy a refused stream is a 503.
        srv2 = self.server()
        p2 = self.start(srv2)
        srv2.refuse_next = 1
        r = h.curl(p2.url("/refused"))
        self.assertEqual(r.status, 503, r)

    def test_h2_over_tls_by_alpn(self):
        certs = h.Certs()
        self.addCleanup(certs.close)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(certs.pem("server"), certs.key("server"))
        ctx.set_alpn_protocols(["h2"])
        srv = self.server(tls=ctx)
        p = self.start(srv, tls={"validation": {"trust_bundle_file": certs.pem("ca")},
                                 "sni": "api.example.test"})
        r = h.curl(p.url("/secure"))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["headers"][":scheme"], "https")
        self.assertEqual(p.metric("weft_cluster_ssl_handshake_total", cluster="h2up"), 1)
        status, _, body, _ = h2_call(p.port(), "/secure-h2")
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["connection"], r.json()["connection"],
                         "the second request should reuse the TLS h2 connection")

    def test_grpc_timeout_bounds_the_upstream_call(self):
        # This server ignores grpc-timeout: the proxy alone ends the call at the deadline, with
        # a trailers-only DEADLINE_EXCEEDED, and resets the upstream stream.
        srv = self.server()
        p = self.start(srv)
        started = time.monotonic()
        status, hd, _, trailers = h2_call(
            p.port(), "/svc/Slow", method="POST",
            headers=[("content-type", "application/grpc"), ("te", "trailers"),
                     ("grpc-timeout", "300m"), ("x-h2-gate", "never")],
            body=b"\x00\x00\x00\x00\x01x")
        elapsed = time.monotonic() - started
        self.assertEqual((status, hd.get("grpc-status")), (200, "4"),
                         "grpc-timeout 300m against a server that never answers: expected a "
                         "trailers-only grpc-status 4, got %r %r %r" % (status, hd, trailers))
        self.assertLess(elapsed, 3.0, "the proxy should end the call at the caller's deadline")
        self.assertEqual(p.metric("weft_listener_downstream_rq_timeout_total", listener="main"), 1)
        h.wait_until(lambda: srv.resets == 1, what="the upstream stream to be reset")
        self.assertEqual(srv.records(), [], "the server never answered")

    def test_upstream_connection_lost_before_the_response(self):
        srv = self.server()
        p = self.start(srv)
        r = h.curl(p.url("/drop"), "-H", "x-h2-drop: 1")
        self.assertEqual(r.status, 502, r)
        self.assertIn(b"upstream reset before response", r.body)
        status, _, _, _ = h2_call(p.port(), "/drop-h2", headers=[("x-h2-drop", "1")])
        self.assertEqual(status, 502)
        r = h.curl(p.url("/after"))
        self.assertEqual(r.status, 200, "a new connection after the lost one: %r" % r)

    def test_reset_of_the_last_request_on_a_retired_cluster(self):
        # A reload changes the cluster (its runtime is retired) while a request is in flight;
        # the upstream then resets that stream and the client asked for Connection: close, so
        # the session ends inside the retired runtime's HTTP/2 callback. The runtime must
        # outlive that callback (it used to be freed under it: SIGSEGV).
        srv = self.server()
        p = h.Proxy(config(srv.port), name="h2up", concurrency=1).start()
        self.addCleanup(p.stop)
        res = {}
        t = threading.Thread(target=lambda: res.setdefault("r", h.curl(
            p.url("/x"), "-H", "Connection: close", "-H", "x-h2-gate: g", "-H", "x-h2-reset: 1",
            timeout=10)))
        t.start()
        h.wait_until(lambda: p.metric("weft_cluster_upstream_rq_active", cluster="h2up") == 1,
                     what="the request to be in flight")
        p.reload(config(srv.port, connect_timeout="4s"))  # cluster changed: runtime retired
        srv.release("g")
        t.join(15)
        self.assertIn("r", res, "the client got no answer")
        self.assertEqual(res["r"].status, 502, "a reset stream: expected 502, got %r" % res["r"])
        r = h.curl(p.url("/after"))
        self.assertEqual(r.status, 200, "the proxy should still serve after the reset on the "
                         "retired cluster: %r (proxy log: %s)" % (r, p.log_text(600)))
        self.assertTrue(p.running(), "the proxy died: %s" % p.log_text(600))

    def test_upstream_that_does_not_speak_http2_fails_the_request_at_once(self):
        # The connection dies before the peer's SETTINGS: an HTTP/1.1 server (codec error) or
        # one that closes after accept. The waiting request fails like a connect failure (503,
        # retried on connect-failure) instead of waiting for the route timeout (or forever).
        class CloseAtOnce:
            def __init__(self):
                self.sock = socket.socket()
                self.sock.bind(("127.0.0.1", 0))
                self.sock.listen(16)
                self.port = self.sock.getsockname()[1]
                self.accepted = 0
                threading.Thread(target=self.run, daemon=True).start()

            def run(self):
                while True:
                    try:
                        c, _ = self.sock.accept()
                    except OSError:
                        return
                    self.accepted += 1
                    try:
                        c.recv(100)
                    except OSError:
                        pass
                    c.close()

        closer = CloseAtOnce()
        self.addCleanup(closer.sock.close)
        http1 = h.Backend()
        self.addCleanup(http1.close)
        for what, port in (("closes after accept", closer.port),
                           ("speaks HTTP/1.1", http1.port)):
            c = h.cluster("h2up", [port], protocol="HTTP2")
            route = h.route_to("h2up", timeout="0s",
                               retry_policy={"max_retries": 1,
                                             "tcp_retry_events": ["connection-error"]})
            cfg = {"node": "it", "admin": h.admin_cfg(), "drain_time": "1s",
                   "listeners": [h.listener("main", [route])], "clusters": [c]}
            p = h.Proxy(cfg, name="h2up", concurrency=1).start()
            self.addCleanup(p.stop)
            started = time.monotonic()
            r = h.curl(p.url("/x"), timeout=10)
            elapsed = time.monotonic() - started
            self.assertEqual(r.status, 503, "upstream %s: expected 503 at once, got %r after "
                             "%.1fs" % (what, r, elapsed))
            self.assertLess(elapsed, 3.0, "upstream %s: the request waited" % what)
            self.assertEqual(p.metric("weft_cluster_upstream_rq_retry_total", cluster="h2up"),
                             1, "upstream %s: expected one connect-failure retry" % what)
            self.assertEqual(p.metric("weft_cluster_upstream_rq_pending_active",
                                      cluster="h2up"), 0, "upstream %s: a waiter is left" % what)
            p.stop()

    def test_empty_response_ended_on_its_headers_is_framed_for_http1(self):
        # The h2 upstream ends the stream on HEADERS with no content-length: the HTTP/1.1
        # client must get content-length: 0 (no framing left it waiting for a body), and the
        # connection stays usable for the next request.
        srv = self.server()
        p = self.start(srv)
        empty = ("-H", "x-h2-body-size: 0", "-H", "x-h2-no-length: 1")
        r = h.curl(p.url("/empty"), *empty, "--next", p.url("/empty2"), *empty, timeout=5)
        self.assertEqual(r.rc, 0, "two empty responses on one keep-alive connection: %r" % r)
        heads = [(st, hd.get("content-length"), hd.get("transfer-encoding"))
                 for st, hd in r.all_heads]
        self.assertEqual(heads, [(200, "0", None), (200, "0", None)],
                         "expected two 200s with content-length: 0, got %r" % heads)
        r = h.curl(p.url("/nc"), "-H", "x-h2-status: 204", "-H", "x-h2-body-size: 0",
                   "-H", "x-h2-no-length: 1")
        self.assertEqual((r.status, r.headers.get("content-length")), (204, None), r)

    def test_slow_clients_do_not_stall_the_shared_upstream_connection(self):
        # Four HTTP/1 clients that never read hold their streams' windows on the one upstream
        # connection; another client's response on that connection must still flow (the
        # connection window used to be returned only when the slow clients drained).
        srv = self.server()
        p = self.start(srv)
        slow = []
        for i in range(4):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", p.port()))
            self.addCleanup(s.close)
            s.sendall(b"GET /slow%d HTTP/1.1\r\nHost: x\r\nx-h2-body-size: 16000000\r\n\r\n" % i)
            slow.append(s)
        h.wait_until(lambda: p.metric("weft_cluster_upstream_rq_active", cluster="h2up") == 4,
                     what="the four slow requests to be in flight")
        r = h.curl(p.url("/fast"), "-H", "x-h2-body-size: 300000", timeout=10)
        self.assertEqual((r.rc, r.status, len(r.body)), (0, 200, 300000),
                         "the fast client's response behind four slow readers: %r" % r)
        self.assertEqual(srv.connections, 1, "expected all streams on one upstream connection")


class GrpcBackend:
    """A gRPC server (python3-grpcio, generic handlers on raw bytes) for service test.Echo:
      Unary(b)          returns b; metadata x-fail-first: N fails the first N calls with a
                        trailers-only UNAVAILABLE; x-sleep-ms: N sleeps first; x-status: NAME
                        aborts with that status; trailing metadata x-served-by: echo
      Stream(b)         server streaming: int(b) messages of 16 KiB ("n:<i>" then padding)
    `calls` counts Unary calls."""

    def __init__(self):
        self.calls = 0
        self.cancelled = 0
        self.lock = threading.Lock()
        handler = grpc.method_handlers_generic_handler("test.Echo", {
            "Unary": grpc.unary_unary_rpc_method_handler(self._unary),
            "Stream": grpc.unary_stream_rpc_method_handler(self._stream),
        })
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def close(self):
        self.server.stop(0)

    def _unary(self, request, context):
        md = dict(context.invocation_metadata())
        with self.lock:
            self.calls += 1
            n = self.calls
        if int(md.get("x-fail-first", "0")) >= n:
            context.abort(grpc.StatusCode.UNAVAILABLE, "not yet")
        if md.get("x-sleep-ms"):
            deadline = time.monotonic() + int(md["x-sleep-ms"]) / 1000.0
            while time.monotonic() < deadline and context.is_active():
                time.sleep(0.01)
            if not context.is_active():
                with self.lock:
                    self.cancelled += 1
                return b""
        if md.get("x-status"):
            context.abort(getattr(grpc.StatusCode, md["x-status"]), "as asked")
        context.set_trailing_metadata((("x-served-by", "echo"),))
        return request

    def _stream(self, request, context):
        for i in range(int(request)):
            yield (b"n:%d:" % i).ljust(16384, b".")


@unittest.skipUnless(HAVE_H2 and HAVE_GRPC, "needs python3-h2 and python3-grpcio")
class GrpcTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.backend = GrpcBackend()
        retry = {"max_retries": 2, "grpc_retry_events": ["unavailable"]}
        cfg = {"node": "it", "admin": h.admin_cfg(), "drain_time": "2s",
               "listeners": [h.listener("grpc", [
                   h.route_to("echo", prefix="/test.Echo/Unary", retry_policy=retry),
                   h.route_to("echo")])],
               "clusters": [h.cluster("echo", [cls.backend.port], protocol="HTTP2")]}
        cls.proxy = h.Proxy(cfg, name="grpc").start()
        cls.channel = grpc.insecure_channel("127.0.0.1:%d" % cls.proxy.port())
        cls.unary = cls.channel.unary_unary("/test.Echo/Unary")
        cls.stream = cls.channel.unary_stream("/test.Echo/Stream")

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.proxy.stop()
        cls.backend.close()

    def test_unary_with_metadata_and_trailers(self):
        payload = os.urandom(1 << 20)  # 1 MiB each way: beyond the stream windows
        resp, call = self.unary.with_call(payload, timeout=10,
                                          metadata=(("x-hello", "there"),))
        self.assertTrue(resp == payload, "1 MiB unary echo came back altered (%d bytes)"
                        % len(resp))
        self.assertEqual(call.code(), grpc.StatusCode.OK)
        trailing = dict(call.trailing_metadata())
        self.assertEqual(trailing.get("x-served-by"), "echo",
                         "trailing metadata must cross the proxy; got %r" % trailing)
        initial = dict(call.initial_metadata())
        self.assertEqual(initial.get("server"), "weft", initial)

    def test_server_streaming(self):
        got = list(self.stream(b"200", timeout=20))
        self.assertEqual(len(got), 200, "expected 200 streamed messages")
        self.assertTrue(all(m.startswith(b"n:%d:" % i) and len(m) == 16384
                            for i, m in enumerate(got)), "messages out of order or altered")

    def test_error_status_and_details_pass_through(self):
        with self.assertRaises(grpc.RpcError) as cm:
            self.unary(b"x", timeout=10, metadata=(("x-status", "NOT_FOUND"),))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)
        self.assertEqual(cm.exception.details(), "as asked")

    def test_deadline_ends_the_call_and_cancels_the_handler(self):
        # grpc-timeout travels with the call: the proxy's timer and the server's own deadline
        # both end it at 300 ms (whichever first); the handler sees the call cancelled. The
        # proxy's own enforcement is tested against a server that ignores grpc-timeout:
        # Http2UpstreamTest.test_grpc_timeout_bounds_the_upstream_call.
        cancelled0 = self.backend.cancelled
        started = time.monotonic()
        with self.assertRaises(grpc.RpcError) as cm:
            self.unary(b"x", timeout=0.3, metadata=(("x-sleep-ms", "5000"),))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        self.assertLess(time.monotonic() - started, 3.0)
        h.wait_until(lambda: self.backend.cancelled > cancelled0,
                     what="the handler to see its call cancelled at the deadline")

    def test_trailers_only_unavailable_is_retried(self):
        retries0 = self.proxy.metric("weft_cluster_upstream_rq_retry_total", cluster="echo")
        with self.backend.lock:
            self.backend.calls = 0
        resp = self.unary(b"again", timeout=10, metadata=(("x-fail-first", "1"),))
        self.assertEqual(resp, b"again")
        self.assertEqual(self.backend.calls, 2, "one UNAVAILABLE, then the retry")
        self.assertEqual(self.proxy.metric("weft_cluster_upstream_rq_retry_total",
                                           cluster="echo"), retries0 + 1)
        # More failures than retries: the caller gets UNAVAILABLE.
        with self.backend.lock:
            self.backend.calls = 0
        with self.assertRaises(grpc.RpcError) as cm:
            self.unary(b"never", timeout=10, metadata=(("x-fail-first", "5"),))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
        self.assertEqual(self.backend.calls, 3, "the call and its two retries")

    def test_calls_share_one_upstream_connection(self):
        cx0 = self.proxy.metric("weft_cluster_upstream_cx_total", cluster="echo")
        with futures.ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(lambda i: self.unary(b"c%d" % i, timeout=10), range(32)))
        self.assertEqual(results, [b"c%d" % i for i in range(32)])
        self.assertLessEqual(self.proxy.metric("weft_cluster_upstream_cx_total",
                                               cluster="echo") - cx0, 1,
                             "32 concurrent calls should be multiplexed on one connection")


if __name__ == "__main__":
    unittest.main()
