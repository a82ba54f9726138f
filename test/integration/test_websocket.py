"""WebSocket (HTTP/1.1 Upgrade) passthrough: the handshake is routed like any request, goes
upstream on a fresh connection with its Upgrade header, and a 101 turns both connections into a
byte relay; any other answer is an ordinary response. The server and the client below speak
RFC 6455 by hand (handshake and framing, stdlib only)."""

import base64
import hashlib
import os
import shutil
import socket
import tempfile
import threading
import time
import unittest

import harness as h

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def accept_key(key):
    return base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()


def mask_bytes(data, mask):
    if not data:
        return b""
    n = len(data)
    m = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(m, "big")).to_bytes(n, "big")


def encode_frame(opcode, payload, fin=True, masked=False):
    head = bytearray([(0x80 if fin else 0) | opcode])
    n = len(payload)
    mbit = 0x80 if masked else 0
    if n < 126:
        head.append(mbit | n)
    elif n < 65536:
        head.append(mbit | 126)
        head += n.to_bytes(2, "big")
    else:
        head.append(mbit | 127)
        head += n.to_bytes(8, "big")
    if masked:
        mask = os.urandom(4)
        return bytes(head) + mask + mask_bytes(payload, mask)
    return bytes(head) + payload


class FrameReader:
    """Reads frames from a socket (buffered). read() raises ConnectionError at EOF."""

    def __init__(self, sock, initial=b""):
        self.sock = sock
        self.buf = bytearray(initial)

    def _need(self, n):
        while len(self.buf) < n:
            data = self.sock.recv(1 << 20)
            if not data:
                raise ConnectionError("EOF after %d buffered bytes" % len(self.buf))
            self.buf += data

    def take(self, n):
        self._need(n)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def frame(self):
        """(fin, opcode, payload), unmasked."""
        b0, b1 = self.take(2)
        n = b1 & 0x7F
        if n == 126:
            n = int.from_bytes(self.take(2), "big")
        elif n == 127:
            n = int.from_bytes(self.take(8), "big")
        mask = self.take(4) if b1 & 0x80 else None
        payload = self.take(n)
        if mask:
            payload = mask_bytes(payload, mask)
        return bool(b0 & 0x80), b0 & 0x0F, payload

    def message(self):
        """(opcode, payload) of the next data or control message (fragments joined)."""
        fin, op, payload = self.frame()
        if op >= 0x8:
            return op, payload
        parts = [payload]
        while not fin:
            fin, cop, more = self.frame()
            if cop != OP_CONT:
                raise AssertionError("expected a continuation frame, got opcode %d" % cop)
            parts.append(more)
        return op, b"".join(parts)


def read_head(reader):
    """Reads an HTTP head from a FrameReader's buffer/socket: (first line, {lower name: value})."""
    while b"\r\n\r\n" not in reader.buf:
        data = reader.sock.recv(65536)
        if not data:
            raise ConnectionError("EOF before the end of the head (%r)" % bytes(reader.buf[:200]))
        reader.buf += data
    i = reader.buf.index(b"\r\n\r\n")
    lines = bytes(reader.buf[:i]).decode("latin-1").split("\r\n")
    del reader.buf[:i + 4]
    headers = {}
    for line in lines[1:]:
        k, v = line.split(":", 1)
        headers.setdefault(k.strip().lower(), v.strip())
    return lines[0], headers


class WsServer:
    """WebSocket server on 127.0.0.1:0. The request path chooses what it does:
      /echo              echo every message; ping -> pong; a close frame is answered and the
                         connection closed
      /greet             like /echo, and a text frame "hello" goes out in the same write as the 101
      /close-after-first echo the first message, then a close frame and TCP close
      /flood?N           send one binary message of N bytes (64 KiB writes; `flood_sent` counts)
      /reject            answer 403 with a body (no switch)
    A request without Upgrade is answered 200 "plain <path>" (keep-alive). Every request is
    recorded as (path, headers, connection number); `ended` holds the numbers of the connections
    that have ended, `upgraded_open` counts switched connections still open, and `eofs` counts
    switched connections that ended by the client's EOF."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.requests = []
        self.eofs = 0
        self.flood_sent = 0
        self.connections = 0
        self.ended = set()
        self.upgraded_open = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self.sock.close()

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

    def _serve(self, c, n):
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        r = FrameReader(c)
        try:
            while True:
                line, hdrs = read_head(r)
                path = line.split(" ")[1]
                with self.lock:
                    self.requests.append((path, hdrs, n))
                upgrade = hdrs.get("upgrade", "").lower() == "websocket" and \
                    "upgrade" in hdrs.get("connection", "").lower()
                if not upgrade or path == "/reject":
                    body = (b"forbidden\n" if path == "/reject" else b"plain " + path.encode())
                    status = b"403 Forbidden" if path == "/reject" else b"200 OK"
                    c.sendall(b"HTTP/1.1 " + status + b"\r\ncontent-length: %d\r\n\r\n%s"
                              % (len(body), body))
                    continue
                key = hdrs["sec-websocket-key"]
                head = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
                        "x-ws-server: yes\r\n\r\n" % accept_key(key)).encode()
                if path == "/greet":
                    head += encode_frame(OP_TEXT, b"hello")
                c.sendall(head)
                with self.lock:
                    self.upgraded_open += 1
                try:
                    self._websocket(c, r, path)
                finally:
                    with self.lock:
                        self.upgraded_open -= 1
                return
        except (ConnectionError, OSError, ValueError):
            pass
        finally:
            c.close()
            with self.lock:
                self.ended.add(n)

    def _websocket(self, c, r, path):
        if path.startswith("/flood?"):
            n = int(path.split("?", 1)[1])
            head = bytearray([0x80 | OP_BINARY, 127]) + n.to_bytes(8, "big")
            c.sendall(bytes(head))
            chunk = b"f" * 65536
            left = n
            while left:
                part = chunk[:min(left, len(chunk))]
                c.sendall(part)
                left -= len(part)
                with self.lock:
                    self.flood_sent += len(part)
            r.message()  # wait for the client's close
            return
        messages = 0
        while True:
            try:
                op, payload = r.message()
            except ConnectionError:
                with self.lock:
                    self.eofs += 1
                return
            if op == OP_CLOSE:
                c.sendall(encode_frame(OP_CLOSE, payload[:2]))
                return
            if op == OP_PING:
                c.sendall(encode_frame(OP_PONG, payload))
                continue
            if op == OP_PONG:
                continue
            c.sendall(encode_frame(op, payload))
            messages += 1
            if path == "/close-after-first" and messages == 1:
                c.sendall(encode_frame(OP_CLOSE, (1000).to_bytes(2, "big") + b"bye"))
                return

    def upgrade_requests(self):
        with self.lock:
            return list(self.requests)


class WsClient:
    """A client WebSocket over `sock` (plain or TLS)."""

    def __init__(self, sock):
        self.sock = sock
        self.reader = FrameReader(sock)

    def handshake(self, path, host="ws.example.test", extra=()):
        """Sends the opening handshake; returns (status, headers, body). After a 101 the accept
        key has been checked and frames may be sent."""
        self.key = base64.b64encode(os.urandom(16)).decode()
        req = ("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n"
               % (path, host, self.key, "".join("%s: %s\r\n" % kv for kv in extra)))
        self.sock.sendall(req.encode())
        line, hdrs = read_head(self.reader)
        status = int(line.split(" ")[1])
        body = b""
        if status == 101:
            got = hdrs.get("sec-websocket-accept")
            if got != accept_key(self.key):
                raise AssertionError("Sec-WebSocket-Accept: expected %r, got %r (headers %r)"
                                     % (accept_key(self.key), got, hdrs))
        elif "content-length" in hdrs:
            body = self.reader.take(int(hdrs["content-length"]))
        return status, hdrs, body

    def send(self, opcode, payload):
        self.sock.sendall(encode_frame(opcode, payload, masked=True))

    def message(self):
        return self.reader.message()

    def at_eof(self, timeout=10):
        """True when the connection ends (EOF or reset) within `timeout` with nothing more."""
        self.sock.settimeout(timeout)
        try:
            rest = bytes(self.reader.buf) + self.sock.recv(65536)
        except ConnectionResetError:
            return True
        return rest == b""


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_stalled(get, what, timeout=20.0, steady=0.5):
    """Waits until get() stops changing for `steady` seconds (the condition is "no progress");
    returns the value."""
    deadline = time.monotonic() + timeout
    last, since = get(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        v = get()
        if v != last:
            last, since = v, time.monotonic()
        elif time.monotonic() - since >= steady:
            return v
    raise h.Timeout("%s kept changing for %.0fs (last %r)" % (what, timeout, last))


class WebSocketTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.certs = h.Certs()
        cls.server = WsServer()
        cls.log_dir = tempfile.mkdtemp(prefix="weft-it-ws-")
        cls.log_path = os.path.join(cls.log_dir, "access.log")
        tls = {"mode": "STRICT", "certificate": {
            "certificate_chain_file": cls.certs.pem("server"),
            "private_key_file": cls.certs.key("server")}}
        routes = [h.route_to("ws", prefix="/idle/", idle_timeout="0.5s",
                             prefix_rewrite="/"),
                  h.route_to("ws")]
        log = [{"path": cls.log_path,
                "text_format": "%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% "
                               "%BYTES_RECEIVED% %BYTES_SENT%\n"}]
        cfg = {"node": "it", "admin": h.admin_cfg(), "drain_time": "2s",
               "listeners": [h.listener("plain", routes, access_logs=log),
                             h.listener("tls", routes, tls=tls)],
               "clusters": [h.cluster("ws", [cls.server.port])]}
        cls.proxy = h.Proxy(cfg, name="ws").start()

    @classmethod
    def tearDownClass(cls):
        cls.proxy.stop()
        cls.server.close()
        cls.certs.close()
        shutil.rmtree(cls.log_dir, ignore_errors=True)

    def metric(self, name, **labels):
        return self.proxy.metric(name, **labels)

    def client(self, listener="plain"):
        if listener == "tls":
            s = h.tls_connect(self.proxy.port("tls"), self.certs.pem("ca"))
        else:
            s = h.connect(self.proxy.port("plain"))
        self.addCleanup(s.close)
        return WsClient(s)

    def wait_relays_closed(self):
        h.wait_until(lambda: self.metric("weft_listener_downstream_cx_upgrades_active") == 0,
                     what="weft_listener_downstream_cx_upgrades_active to return to 0")
        h.wait_until(lambda: self.server.upgraded_open == 0,
                     what="the server's upgraded connections to be closed")

    def echo_round_trips(self, ws):
        for op, payload in [(OP_TEXT, b"hello"), (OP_BINARY, os.urandom(70000)),
                            (OP_TEXT, "\u00e9t\u00e9".encode())]:
            ws.send(op, payload)
            got = ws.message()
            self.assertEqual(got, (op, payload),
                             "echo of a %d-byte message (opcode %d) came back as opcode %d, "
                             "%d bytes" % (len(payload), op, got[0], len(got[1])))
        ws.send(OP_PING, b"are you there")
        self.assertEqual(ws.message(), (OP_PONG, b"are you there"), "ping through the relay")

    def echo_log_lines(self):
        with open(self.log_path) as f:
            return [l for l in f.read().splitlines() if l.startswith("/echo ")]

    def test_echo_over_plain_listener_and_counters(self):
        self.wait_relays_closed()
        logged0 = len(self.echo_log_lines()) if os.path.exists(self.log_path) else 0
        before = self.metric("weft_listener_downstream_cx_upgrades_total", listener="plain")
        ws = self.client()
        status, hdrs, body = ws.handshake("/echo")
        self.assertEqual(status, 101, "expected 101 Switching Protocols, got %d %r %r"
                         % (status, hdrs, body))
        self.assertEqual(hdrs.get("upgrade", "").lower(), "websocket", hdrs)
        self.assertEqual(hdrs.get("connection", "").lower(), "upgrade", hdrs)
        self.assertEqual(hdrs.get("x-ws-server"), "yes", "end-to-end response fields kept")
        self.assertEqual(hdrs.get("server"), "weft", hdrs)
        path, seen, _ = self.server.upgrade_requests()[-1]
        self.assertEqual(path, "/echo")
        self.assertEqual(seen.get("upgrade"), "websocket",
                         "the upstream must get the Upgrade header; got %r" % seen)
        self.assertEqual(seen.get("connection", "").lower(), "upgrade", seen)
        self.assertEqual(seen.get("sec-websocket-key"), ws.key, seen)
        self.assertEqual(seen.get("x-forwarded-proto"), "http", seen)
        self.assertIn("x-request-id", seen)
        self.assertEqual(self.metric("weft_listener_downstream_cx_upgrades_active",
                                     listener="plain"), 1)
        self.echo_round_trips(ws)
        ws.send(OP_CLOSE, (1000).to_bytes(2, "big"))
        self.assertEqual(ws.message(), (OP_CLOSE, (1000).to_bytes(2, "big")), "close handshake")
        self.assertTrue(ws.at_eof(), "the proxy should close after the server closed")
        self.wait_relays_closed()
        self.assertEqual(self.metric("weft_listener_downstream_cx_upgrades_total",
                                     listener="plain"), before + 1)
        self.assertGreaterEqual(self.metric("weft_listener_downstream_rq_xx_total",
                                            listener="plain", response_code_class="1xx"), 1)
        # Lines of earlier tests' short exchanges may still be reaching the (buffered) log: look
        # for this exchange's own line, the one with the large relayed byte counts.
        def own_line():
            for l in self.echo_log_lines()[logged0:]:
                parts = l.split()
                if len(parts) >= 5 and parts[3].isdigit() and int(parts[3]) > 70000:
                    return l
            return None
        line = h.wait_until(own_line, what="the access log line of the upgraded exchange")
        _, code, flags, received, sent = line.split()
        self.assertEqual((code, flags), ("101", "-"), "access log line %r" % line)
        self.assertGreater(int(received), 70000, "bytes relayed up in the log line %r" % line)
        self.assertGreater(int(sent), 70000, "bytes relayed down in the log line %r" % line)

    def test_echo_over_tls_listener(self):
        ws = self.client("tls")
        status, hdrs, _ = ws.handshake("/echo")
        self.assertEqual(status, 101, hdrs)
        self.assertEqual(self.server.upgrade_requests()[-1][1].get("x-forwarded-proto"), "https")
        self.echo_round_trips(ws)
        ws.sock.close()
        h.wait_until(lambda: self.metric("weft_listener_downstream_cx_upgrades_total",
                                         listener="tls") >= 1 and
                     self.metric("weft_listener_downstream_cx_upgrades_active",
                                 listener="tls") == 0,
                     what="the TLS relay to be counted and closed")

    def test_server_bytes_sent_with_the_101_arrive(self):
        ws = self.client()
        status, _, _ = ws.handshake("/greet")
        self.assertEqual(status, 101)
        self.assertEqual(ws.message(), (OP_TEXT, b"hello"),
                         "a frame the server wrote right behind its 101 must be relayed")
        ws.send(OP_TEXT, b"after")
        self.assertEqual(ws.message(), (OP_TEXT, b"after"))

    def test_large_message_both_ways(self):
        ws = self.client()
        self.assertEqual(ws.handshake("/echo")[0], 101)
        payload = os.urandom(24 << 20)  # far above the 1 MiB watermarks: backpressure both ways
        tx0 = self.metric("weft_cluster_upstream_cx_tx_bytes_total", cluster="ws")
        sender = threading.Thread(target=ws.send, args=(OP_BINARY, payload))
        sender.start()
        ws.sock.settimeout(60)
        op, got = ws.message()
        sender.join()
        self.assertEqual((op, len(got)), (OP_BINARY, len(payload)),
                         "24 MiB echo: expected a binary message of the same size")
        self.assertTrue(got == payload, "24 MiB echo came back altered")
        ws.sock.close()
        self.wait_relays_closed()
        self.assertGreaterEqual(
            self.metric("weft_cluster_upstream_cx_tx_bytes_total", cluster="ws") - tx0,
            len(payload), "upstream tx bytes should count the relayed message")

    def test_stalled_client_stops_the_upstream(self):
        size = 96 << 20
        ws = self.client()
        rss0 = rss_kib(self.proxy.proc.pid)
        sent0 = self.server.flood_sent
        self.assertEqual(ws.handshake("/flood?%d" % size)[0], 101)
        # The client reads nothing: the proxy must stop reading the server once its output to the
        # client is full, so the server's writes stall far below the message size.
        stalled = wait_stalled(lambda: self.server.flood_sent - sent0,
                               "the server's bytes written to a client that does not read")
        self.assertLess(stalled, 32 << 20,
                        "the proxy read %d bytes of a %d-byte message for a client that reads "
                        "nothing: expected it to stop (backpressure)" % (stalled, size))
        grown = rss_kib(self.proxy.proc.pid) - rss0
        self.assertLess(grown, 16 << 10, "proxy RSS grew by %d KiB while relaying to a stalled "
                        "client" % grown)
        # Reading resumes the relay to the end.
        ws.sock.settimeout(60)
        fin, op, payload = ws.reader.frame()
        self.assertEqual((fin, op, len(payload)), (True, OP_BINARY, size),
                         "the whole message once the client reads")
        ws.send(OP_CLOSE, b"")

    def test_server_close_ends_the_relay(self):
        ws = self.client()
        self.assertEqual(ws.handshake("/close-after-first")[0], 101)
        ws.send(OP_TEXT, b"one")
        self.assertEqual(ws.message(), (OP_TEXT, b"one"))
        op, payload = ws.message()
        self.assertEqual((op, payload[2:]), (OP_CLOSE, b"bye"), "the server's close frame")
        self.assertTrue(ws.at_eof(), "the client connection should end after the server closed")
        self.wait_relays_closed()

    def test_client_close_ends_the_relay(self):
        eofs0 = self.server.eofs
        ws = self.client()
        self.assertEqual(ws.handshake("/echo")[0], 101)
        ws.send(OP_TEXT, b"last words")
        # Closed without a close frame and without reading the echo: the server sees EOF.
        ws.sock.close()
        h.wait_until(lambda: self.server.eofs > eofs0,
                     what="the server to see the client's close through the relay")
        self.wait_relays_closed()

    def test_non_101_answer_is_an_ordinary_response(self):
        ws = self.client()
        status, hdrs, body = ws.handshake("/reject")
        self.assertEqual((status, body), (403, b"forbidden\n"),
                         "a refused upgrade passes through as a response; headers %r" % hdrs)
        # The client connection goes on as HTTP/1.1; the upstream connection was not reused.
        ws.sock.sendall(b"GET /after HTTP/1.1\r\nHost: ws.example.test\r\n\r\n")
        resp = h.SockReader(ws.sock)
        resp.buf = bytes(ws.reader.buf)
        r = resp.read_response()
        self.assertEqual((r.status, r.body), (200, b"plain /after"))
        reqs = self.server.upgrade_requests()
        rejected = [r for r in reqs if r[0] == "/reject"][-1]
        after = [r for r in reqs if r[0] == "/after"][-1]
        self.assertEqual(rejected[1].get("upgrade"), "websocket", rejected)
        self.assertNotEqual(after[2], rejected[2],
                            "the upstream connection of a refused upgrade must not be reused")
        h.wait_until(lambda: rejected[2] in self.server.ended,
                     what="the proxy to close the upstream connection of the refused upgrade")

    def test_h2c_upgrade_is_not_passed_on(self):
        s = h.connect(self.proxy.port("plain"))
        self.addCleanup(s.close)
        s.sendall(b"GET /h2c HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                  b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n")
        r = h.SockReader(s).read_response()
        self.assertEqual((r.status, r.body), (200, b"plain /h2c"))
        seen = self.server.upgrade_requests()[-1][1]
        self.assertNotIn("upgrade", seen, "h2c must not reach the upstream: %r" % seen)

    def test_idle_relay_is_closed(self):
        idle0 = self.metric("weft_listener_downstream_cx_idle_timeout_total", listener="plain")
        ws = self.client()
        self.assertEqual(ws.handshake("/idle/echo")[0], 101)  # route idle_timeout 0.5s
        ws.send(OP_TEXT, b"ping")
        self.assertEqual(ws.message(), (OP_TEXT, b"ping"))
        self.assertTrue(ws.at_eof(), "an idle relay should be closed after the idle timeout")
        self.wait_relays_closed()
        self.assertEqual(self.metric("weft_listener_downstream_cx_idle_timeout_total",
                                     listener="plain"), idle0 + 1)


if __name__ == "__main__":
    unittest.main()
