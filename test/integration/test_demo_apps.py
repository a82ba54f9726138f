"""The cross-VPC scenario's demo apps (examples/crossvpc/apps), run for real.

Each app is started on 127.0.0.1 with PORT=0 (it prints "listening on ADDR:PORT", read back here)
and checked over HTTP and raw sockets: the Node.js and Crystal backends' texts, JSON, /health,
404/405, 400 on malformed requests, the access log, the address they discover for themselves
(without HOST_IP, and inside a network namespace whose only interface is a veth with no default
route), a prompt exit 0 on SIGTERM; the Ruby frontend's page with both backends, with one
stopped, hung or failing (each fetch cut at 2 s, the two side by side), and its HTML.
The Crystal backend is compiled once per run into a temporary directory with
examples/crossvpc/apps/crystal/build.sh. A part is skipped only when its runtime (ruby, node,
crystal) is missing; scripts/setup.sh installs all three. The namespace tests need root.
"""

import http.client
import http.server
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from harness import REPO, wait_until

APPS = os.path.join(REPO, "examples", "crossvpc", "apps")
RUBY = shutil.which("ruby")
NODE = shutil.which("node") or shutil.which("nodejs")
CRYSTAL = shutil.which("crystal")

LISTENING_RE = re.compile(r"listening on ([0-9.]+):(\d+)")
META_REFRESH_RE = re.compile(r'<meta http-equiv="refresh" content="(\d+)">')
# A TLS 1.2 ClientHello's first bytes: what a STRICT-TLS peer would send to the plain app port.
CLIENT_HELLO = bytes.fromhex("1603010200010001fc0303") + bytes(32)
MALFORMED = [b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1 junk\r\n\r\n",
             b"GET /health HTTP/1.1\r\nhost: x\r\ncontent-length: abc\r\n\r\n"]
# Heads over the apps' limits (8 KiB lines; the frontend also counts header lines): 414 or 431.
OVERSIZED = [b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n",
             b"GET /health HTTP/1.1\r\nx: " + b"a" * 20000 + b"\r\n\r\n"]
# Every environment variable the apps read: never inherited from the test's environment.
APP_ENV_VARS = ("PORT", "BIND_ADDRESS", "HOST_IP", "AZ", "NODEJS_URL", "CRYSTAL_URL",
                "BACKEND_TIMEOUT", "REFRESH_SECONDS")
TERM_DEADLINE = 2.0  # seconds; the apps exit in well under one, the margin is for a loaded CI


# --------------------------------------------------------------------------------------------
# The Crystal backend, built once per run.

_crystal = {"dir": None, "binary": None, "error": None}
_crystal_lock = threading.Lock()


def crystal_binary(test):
    """The compiled Crystal backend (built on first use); skips test when crystal is missing,
    fails it when the build fails."""
    if not CRYSTAL:
        test.skipTest("crystal not installed (scripts/setup.sh installs Debian's crystal)")
    with _crystal_lock:
        if _crystal["binary"] is None and _crystal["error"] is None:
            _crystal["dir"] = tempfile.mkdtemp(prefix="weft-demo-crystal-")
            r = subprocess.run([os.path.join(APPS, "crystal", "build.sh"), _crystal["dir"]],
                               capture_output=True, text=True, timeout=900)
            binary = os.path.join(_crystal["dir"], "crystal-backend")
            if r.returncode == 0 and os.access(binary, os.X_OK):
                _crystal["binary"] = binary
            else:
                _crystal["error"] = ("build.sh exited %d (expected 0 and %s)\n%s%s"
                                     % (r.returncode, binary, r.stdout, r.stderr))
        if _crystal["error"]:
            test.fail(_crystal["error"])
        return _crystal["binary"]


def tearDownModule():
    if _crystal["dir"]:
        shutil.rmtree(_crystal["dir"], ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Running an app


class App:
    """One app process with PORT=0, its stdout+stderr in a temp file. Always killed by cleanup."""

    def __init__(self, name, argv, env=None, wrap=(), bind="127.0.0.1"):
        self.name = name
        self._log = tempfile.NamedTemporaryFile(prefix="weft-demo-%s-" % name, suffix=".log",
                                                delete=False)
        self.log_path = self._log.name
        full_env = {k: v for k, v in os.environ.items() if k not in APP_ENV_VARS}
        full_env.update({"PORT": "0", "BIND_ADDRESS": bind})
        full_env.update(env or {})
        self.proc = subprocess.Popen(list(wrap) + list(argv), env=full_env, stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.port = None

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_listening(self, timeout=20.0):
        def listening():
            m = LISTENING_RE.search(self.log())
            if m:
                return int(m.group(2))
            if self.proc.poll() is not None:
                raise AssertionError("%s exited with %s before listening; output:\n%s"
                                     % (self.name, self.proc.returncode, self.log()))
            return None
        self.port = wait_until(listening, timeout,
                               what="%s to print 'listening on ADDR:PORT'" % self.name)
        return self.port

    def running(self):
        return self.proc.poll() is None

    def terminate(self):
        """SIGTERM; (exit code, seconds until the exit)."""
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(10)
        except subprocess.TimeoutExpired:
            rc = None
        return rc, time.monotonic() - start

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()
        try:
            os.unlink(self.log_path)
        except FileNotFoundError:
            pass


def get(port, path, method="GET", host="127.0.0.1", timeout=10.0):
    """(status, headers dict with lowercase names, body text, seconds taken)."""
    start = time.monotonic()
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        body = resp.read().decode("utf-8")
        return (resp.status, {k.lower(): v for k, v in resp.getheaders()}, body,
                time.monotonic() - start)
    finally:
        conn.close()


def raw_exchange(port, data, timeout=10.0):
    """Sends data on a fresh connection and reads until the app closes it (or timeout). An app
    may answer and close before it read all of data (an oversized head): a reset while sending
    is not an error, the answer already sent is still read (Linux keeps the received bytes)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


def host_ipv4s():
    """The host's IPv4 addresses other than loopback and link-local (from `ip -4 -o addr`)."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True,
                         check=True).stdout
    addrs = set()
    for m in re.finditer(r"\binet ([0-9.]+)/", out):
        a = ipaddress.IPv4Address(m.group(1))
        if not a.is_loopback and not a.is_link_local:
            addrs.add(str(a))
    return addrs


class FakeBackend(http.server.ThreadingHTTPServer):
    """An in-process backend on 127.0.0.1:0 answering every GET with (status, body)."""

    daemon_threads = True

    def __init__(self, status, body):
        self.answer = (status, body.encode())

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(h):  # noqa: N805 - the handler's self
                status, payload = h.server.answer
                h.send_response(status)
                h.send_header("content-type", "text/plain")
                h.send_header("content-length", str(len(payload)))
                h.end_headers()
                h.wfile.write(payload)

            def log_message(h, *args):  # noqa: N805
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.port = self.server_address[1]
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.shutdown()
        self.server_close()


class HungBackend:
    """A listening socket that never accepts: connects succeed (backlog), nothing is answered."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]

    def close(self):
        self.sock.close()


class NetnsPair:
    """Two network namespaces A and B joined by one veth pair, 198.18.200.10/24 in A and .20 in
    B, loopback up, no other route: A is the host an app runs on, B its client. Removed by
    close()."""

    ADDR_A = "198.18.200.10"
    ADDR_B = "198.18.200.20"

    def __init__(self):
        tag = "%x%x" % (os.getpid() & 0xffff, int(time.monotonic() * 1000) & 0xffff)
        self.a = "wdemo%sa" % tag
        self.b = "wdemo%sb" % tag
        self.created = []
        try:
            for ns in (self.a, self.b):
                self._ip("netns", "add", ns)
                self.created.append(ns)
            self._ip("link", "add", "wd%sa" % tag, "netns", self.a, "type", "veth",
                     "peer", "name", "wd%sb" % tag, "netns", self.b)
            for ns, dev, addr in ((self.a, "wd%sa" % tag, self.ADDR_A),
                                  (self.b, "wd%sb" % tag, self.ADDR_B)):
                self._ip("-n", ns, "addr", "add", addr + "/24", "dev", dev)
                self._ip("-n", ns, "link", "set", dev, "up")
                self._ip("-n", ns, "link", "set", "lo", "up")
        except Exception:
            self.close()
            raise

    @staticmethod
    def _ip(*args):
        r = subprocess.run(["ip"] + list(args), capture_output=True, text=True, timeout=20)
        if r.returncode != 0:
            raise AssertionError("ip %s failed (%d): %s" % (" ".join(args), r.returncode,
                                                            r.stderr.strip()))

    def exec_in(self, ns):
        return ("ip", "netns", "exec", ns)

    def routes(self, ns):
        return subprocess.run(["ip", "-n", ns, "-4", "route"], capture_output=True, text=True,
                              check=True).stdout

    def curl_from_b(self, port, path):
        r = subprocess.run(list(self.exec_in(self.b)) +
                           ["curl", "-sS", "--noproxy", "*", "--max-time", "10", "http://%s:%d%s"
                            % (self.ADDR_A, port, path)],
                           capture_output=True, text=True, timeout=20)
        return r.returncode, r.stdout, r.stderr

    def close(self):
        for ns in self.created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)
        self.created = []


def need_root_netns(test):
    if os.geteuid() != 0:
        test.skipTest("network namespaces need root (CI runs the integration tests as root)")
    if not shutil.which("ip"):
        test.skipTest("iproute2's ip not installed (scripts/setup.sh installs it)")


# --------------------------------------------------------------------------------------------
# Backends: the same checks for Node.js and Crystal


class BackendChecks:
    """Mixin: SERVICE, TEXT_PATHS, API_PATH, PREFIX and argv() are set by the concrete class."""

    def start(self, env=None, wrap=(), bind="127.0.0.1"):
        app = App(self.SERVICE, self.argv(), env, wrap=wrap, bind=bind)
        self.addCleanup(app.kill)
        app.wait_listening()
        if not wrap:
            wait_until(lambda: get(app.port, "/health")[0] == 200, 10,
                       what="%s /health to answer 200" % self.SERVICE)
        return app

    def test_text_and_json_with_host_ip_and_az(self):
        app = self.start({"HOST_IP": "198.18.7.9", "AZ": "us-west-2a"})
        for path in self.TEXT_PATHS:
            status, headers, body, _ = get(app.port, path)
            self.assertEqual((status, body), (200, self.PREFIX + "198.18.7.9 in us-west-2a\n"),
                             "GET %s: expected the greeting with HOST_IP and AZ" % path)
            self.assertTrue(headers["content-type"].startswith("text/plain"), headers)
        status, headers, body, _ = get(app.port, self.API_PATH)
        self.assertEqual(status, 200, body)
        self.assertEqual(headers["content-type"], "application/json")
        doc = json.loads(body)
        self.assertEqual((doc.get("from"), doc.get("zone"), doc.get("service")),
                         ("198.18.7.9", "us-west-2a", self.SERVICE),
                         "GET %s: expected from/zone/service, came %r" % (self.API_PATH, doc))

    def test_discovers_its_address_without_env(self):
        app = self.start()
        status, _, body, _ = get(app.port, self.TEXT_PATHS[-1])
        m = re.fullmatch(re.escape(self.PREFIX) + r"([0-9.]+) in (\S+)\n", body)
        self.assertTrue(status == 200 and m, "expected '%s<IP> in <AZ>', came %d %r"
                        % (self.PREFIX, status, body))
        ip, zone = m.groups()
        self.assertEqual(zone, "unknown", "AZ unset: expected zone 'unknown'")
        expected = host_ipv4s()
        if expected:
            self.assertIn(ip, expected, "expected one of the host's non-loopback addresses")
        else:
            self.assertEqual(ip, "127.0.0.1", "a host with only loopback: expected 127.0.0.1")
        doc = json.loads(get(app.port, self.API_PATH)[2])
        self.assertEqual((doc["from"], doc["zone"]), (ip, "unknown"), doc)

    def test_health_404_and_405(self):
        app = self.start()
        self.assertEqual(get(app.port, "/health")[::2], (200, "Healthy!\n"))
        status, _, _, _ = get(app.port, "/health", method="HEAD")
        self.assertEqual(status, 200, "HEAD /health")
        for path in ("/nope", "/crystal/x" if self.SERVICE == "nodejs" else "/nodejs", "/health/"):
            self.assertEqual(get(app.port, path)[0], 404, "GET %s: expected 404" % path)
        status, headers, _, _ = get(app.port, self.TEXT_PATHS[0], method="POST")
        self.assertEqual((status, headers.get("allow")), (405, "GET, HEAD"))

    def test_malformed_requests_get_400(self):
        app = self.start()
        for data in MALFORMED:
            answer = raw_exchange(app.port, data)
            self.assertTrue(answer.startswith(b"HTTP/1.1 400 "),
                            "sent %r: expected a 400 response, came %r" % (data, answer[:200]))
        for data in OVERSIZED:
            answer = raw_exchange(app.port, data)
            self.assertRegex(answer[:13], rb"^HTTP/1\.1 4(14|31)",
                             "sent %r...: expected 414 or 431, came %r" % (data[:30], answer[:200]))
        self.assertTrue(app.running(), "the app died on malformed requests:\n" + app.log())
        self.assertEqual(get(app.port, "/health")[0], 200, "still serving after them")
        self.assertNotIn("Unhandled exception", app.log())

    def test_access_log_line_per_request(self):
        app = self.start()
        for path in ("/health", self.API_PATH, "/nope"):
            get(app.port, path)
        wanted = ['"GET /health HTTP/1.1" 200 ', '"GET %s HTTP/1.1" 200 ' % self.API_PATH,
                  '"GET /nope HTTP/1.1" 404 ']
        wait_until(lambda: all(w in app.log() for w in wanted), 5,
                   what="access lines %r in the output" % wanted)

    def test_sigterm_exits_0_promptly_with_an_idle_connection_open(self):
        app = self.start()
        conn = http.client.HTTPConnection("127.0.0.1", app.port, timeout=5)
        self.addCleanup(conn.close)
        conn.request("GET", "/health")
        self.assertEqual(conn.getresponse().read(), b"Healthy!\n")
        rc, took = app.terminate()
        self.assertEqual(rc, 0, "expected exit 0 on SIGTERM; output:\n" + app.log())
        self.assertLess(took, TERM_DEADLINE, "expected the exit within %.1f s of SIGTERM"
                        % TERM_DEADLINE)

    def test_in_a_network_namespace_without_default_route(self):
        need_root_netns(self)
        pair = NetnsPair()
        self.addCleanup(pair.close)
        self.assertNotIn("default", pair.routes(pair.a))
        app = self.start({"AZ": "az-ns"}, wrap=pair.exec_in(pair.a), bind="0.0.0.0")
        rc, out, err = pair.curl_from_b(app.port, self.TEXT_PATHS[-1])
        self.assertEqual((rc, out), (0, self.PREFIX + NetnsPair.ADDR_A + " in az-ns\n"),
                         "expected the veth's address from inside the namespace (curl: %s)"
                         % err.strip())
        rc, took = app.terminate()
        self.assertEqual(rc, 0, app.log())


@unittest.skipUnless(NODE, "node not installed (scripts/setup.sh installs Debian's nodejs)")
class NodejsBackendTest(BackendChecks, unittest.TestCase):
    SERVICE = "nodejs"
    TEXT_PATHS = ("/", "/nodejs")
    API_PATH = "/nodejs/api"
    PREFIX = "Node.js backend: Hello! from "

    def argv(self):
        return [NODE, os.path.join(APPS, "nodejs", "server.js")]

    def test_tls_client_hello_gets_400(self):
        app = self.start()
        answer = raw_exchange(app.port, CLIENT_HELLO)
        self.assertTrue(answer.startswith(b"HTTP/1.1 400 "), "came %r" % answer[:200])


class CrystalBackendTest(BackendChecks, unittest.TestCase):
    SERVICE = "crystal"
    TEXT_PATHS = ("/crystal",)
    API_PATH = "/crystal/api"
    PREFIX = "Crystal backend: Hello! from "

    def argv(self):
        return [crystal_binary(self)]


# --------------------------------------------------------------------------------------------
# The frontend


@unittest.skipUnless(RUBY, "ruby not installed (scripts/setup.sh installs Debian's ruby)")
@unittest.skipUnless(NODE, "node not installed (scripts/setup.sh installs Debian's nodejs)")
class FrontendTest(unittest.TestCase):
    NODEJS_TEXT = "Node.js backend: Hello! from 198.19.2.20 in us-west-2b"
    CRYSTAL_TEXT = "Crystal backend: Hello! from 198.18.3.30 in us-west-2c"

    def backend(self, service):
        if service == "nodejs":
            argv = [NODE, os.path.join(APPS, "nodejs", "server.js")]
            env = {"HOST_IP": "198.19.2.20", "AZ": "us-west-2b"}
        else:
            argv = [crystal_binary(self)]
            env = {"HOST_IP": "198.18.3.30", "AZ": "us-west-2c"}
        app = App(service, argv, env)
        self.addCleanup(app.kill)
        app.wait_listening()
        return app

    def frontend(self, nodejs_url, crystal_url, env=None, wrap=(), bind="127.0.0.1"):
        full = {"NODEJS_URL": nodejs_url, "CRYSTAL_URL": crystal_url}
        full.update(env or {})
        app = App("frontend", [RUBY, os.path.join(APPS, "frontend", "frontend.rb")], full,
                  wrap=wrap, bind=bind)
        self.addCleanup(app.kill)
        app.wait_listening()
        if not wrap:
            wait_until(lambda: get(app.port, "/health")[0] == 200, 10,
                       what="frontend /health to answer 200")
        return app

    @staticmethod
    def lines(body):
        """{id: text} of the page's <p id=...> lines."""
        return dict(re.findall(r'<p id="(\w+)">([^<]*)</p>', body))

    def test_page_shows_the_three_lines_and_reloads_itself(self):
        nodejs, crystal = self.backend("nodejs"), self.backend("crystal")
        app = self.frontend("http://127.0.0.1:%d/" % nodejs.port,
                            "http://127.0.0.1:%d/crystal" % crystal.port,
                            {"HOST_IP": "198.18.1.10", "AZ": "us-west-2a"})
        status, headers, body, _ = get(app.port, "/")
        self.assertEqual(status, 200, body)
        self.assertTrue(headers["content-type"].startswith("text/html"), headers)
        self.assertEqual(self.lines(body), {
            "frontend": "Rails frontend: Hello! from 198.18.1.10 in us-west-2a",
            "nodejs": self.NODEJS_TEXT,
            "crystal": self.CRYSTAL_TEXT}, "the page:\n" + body)
        m = META_REFRESH_RE.search(body)
        self.assertTrue(m and 1 <= int(m.group(1)) <= 10,
                        "expected <meta http-equiv=\"refresh\" content=\"N\"> with N in 1..10:\n"
                        + body)
        self.assertTrue(body.startswith("<!DOCTYPE html>"), body[:100])

    def test_a_stopped_backend_reads_no_backend_found(self):
        for stopped in ("nodejs", "crystal"):
            with self.subTest(stopped=stopped):
                nodejs, crystal = self.backend("nodejs"), self.backend("crystal")
                app = self.frontend("http://127.0.0.1:%d/" % nodejs.port,
                                    "http://127.0.0.1:%d/crystal" % crystal.port)
                self.assertEqual(set(self.lines(get(app.port, "/")[2]).values()) & {
                    self.NODEJS_TEXT, self.CRYSTAL_TEXT}, {self.NODEJS_TEXT, self.CRYSTAL_TEXT})
                rc, _ = (nodejs if stopped == "nodejs" else crystal).terminate()
                self.assertEqual(rc, 0)
                status, _, body, took = get(app.port, "/")
                expected = {"nodejs": self.NODEJS_TEXT, "crystal": self.CRYSTAL_TEXT}
                expected[stopped] = "no backend found"
                got = self.lines(body)
                self.assertEqual((status, got.get("nodejs"), got.get("crystal")),
                                 (200, expected["nodejs"], expected["crystal"]), body)
                self.assertLess(took, 2.5, "a refused backend must not take the 2 s timeout")

    def test_hung_backends_are_cut_at_two_seconds_side_by_side(self):
        crystal = self.backend("crystal")
        hung1, hung2 = HungBackend(), HungBackend()
        self.addCleanup(hung1.close)
        self.addCleanup(hung2.close)
        # One hung, the other answering: the answer shows, the hung one is cut at ~2 s.
        app = self.frontend("http://127.0.0.1:%d/" % hung1.port,
                            "http://127.0.0.1:%d/crystal" % crystal.port)
        status, _, body, took = get(app.port, "/")
        got = self.lines(body)
        self.assertEqual((status, got.get("nodejs"), got.get("crystal")),
                         (200, "no backend found", self.CRYSTAL_TEXT), body)
        self.assertTrue(1.8 <= took < 3.5, "expected the page after the 2 s timeout, took %.2f s"
                        % took)
        # Both hung: fetched side by side, so one 2 s wait, not two.
        app2 = self.frontend("http://127.0.0.1:%d/" % hung1.port,
                             "http://127.0.0.1:%d/crystal" % hung2.port)
        status, _, body, took = get(app2.port, "/")
        got = self.lines(body)
        self.assertEqual((got.get("nodejs"), got.get("crystal")),
                         ("no backend found", "no backend found"), body)
        self.assertTrue(1.8 <= took < 3.5, "expected one 2 s wait for both backends (fetched "
                        "side by side), took %.2f s" % took)

    def test_failing_backend_and_html_escaping(self):
        failing = FakeBackend(503, "upstream connect error")
        markup = FakeBackend(200, "<b>Crystal</b> & \"friends\"\n")
        self.addCleanup(failing.close)
        self.addCleanup(markup.close)
        app = self.frontend("http://127.0.0.1:%d/" % failing.port,
                            "http://127.0.0.1:%d/crystal" % markup.port)
        body = get(app.port, "/")[2]
        self.assertIn('<p id="nodejs">no backend found</p>', body, "a 503 answer is a failure")
        self.assertIn('<p id="crystal">&lt;b&gt;Crystal&lt;/b&gt; &amp; &quot;friends&quot;</p>',
                      body, "the backend's body is HTML-escaped")

    def test_health_404_400_access_log_and_sigterm(self):
        refused = socket.socket()
        refused.bind(("127.0.0.1", 0))
        url = "http://127.0.0.1:%d/" % refused.getsockname()[1]
        refused.close()
        app = self.frontend(url, url)
        self.assertEqual(get(app.port, "/health")[::2], (200, "Healthy!\n"))
        self.assertEqual(get(app.port, "/nope")[0], 404)
        status, headers, _, _ = get(app.port, "/", method="DELETE")
        self.assertEqual((status, headers.get("allow")), (405, "GET, HEAD"))
        for data in MALFORMED + [CLIENT_HELLO]:
            answer = raw_exchange(app.port, data)
            self.assertTrue(answer.startswith(b"HTTP/1.1 400 "),
                            "sent %r: expected a 400 response, came %r" % (data[:40], answer[:200]))
        too_many = b"GET /health HTTP/1.1\r\n" + b"x-n: 1\r\n" * 101 + b"\r\n"
        for data in OVERSIZED + [too_many]:
            answer = raw_exchange(app.port, data)
            self.assertRegex(answer[:13], rb"^HTTP/1\.1 4(14|31)",
                             "sent %r...: expected 414 or 431, came %r" % (data[:30], answer[:200]))
        self.assertEqual(get(app.port, "/health")[0], 200, "still serving after them")
        # Keep-alive: two requests on one connection.
        conn = http.client.HTTPConnection("127.0.0.1", app.port, timeout=5)
        self.addCleanup(conn.close)
        for i in range(2):
            conn.request("GET", "/health?keepalive=%d" % i)
            self.assertEqual(conn.getresponse().read(), b"Healthy!\n")
        wanted = ['"GET /health?keepalive=%d HTTP/1.1" 200 9 ' % i for i in range(2)]
        wait_until(lambda: all(app.log().count(w) == 1 for w in wanted), 5,
                   what="one access line each: %r" % wanted)
        rc, took = app.terminate()  # with the kept-alive connection still open
        self.assertEqual(rc, 0, "expected exit 0 on SIGTERM; output:\n" + app.log())
        self.assertLess(took, TERM_DEADLINE)

    def test_all_three_discover_the_same_address(self):
        nodejs = App("nodejs", [NODE, os.path.join(APPS, "nodejs", "server.js")])
        self.addCleanup(nodejs.kill)
        crystal = App("crystal", [crystal_binary(self)])
        self.addCleanup(crystal.kill)
        nodejs.wait_listening()
        crystal.wait_listening()
        app = self.frontend("http://127.0.0.1:%d/" % nodejs.port,
                            "http://127.0.0.1:%d/crystal" % crystal.port)
        got = self.lines(get(app.port, "/")[2])
        ips = {k: re.search(r"from (\S+) in unknown$", v or "") for k, v in got.items()}
        self.assertTrue(all(ips.values()) and len(ips) == 3, got)
        self.assertEqual(len({m.group(1) for m in ips.values()}), 1,
                         "expected one address for the three apps on one host: %r" % got)

    def test_in_a_network_namespace_without_default_route(self):
        need_root_netns(self)
        pair = NetnsPair()
        self.addCleanup(pair.close)
        # The backends' URLs point at a closed port in B: refused at once, nothing leaves A.
        closed = "http://%s:1/" % NetnsPair.ADDR_B
        app = self.frontend(closed, closed, {"AZ": "az-ns"}, wrap=pair.exec_in(pair.a),
                            bind="0.0.0.0")
        rc, out, err = pair.curl_from_b(app.port, "/")
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.lines(out).get("frontend"),
                         "Rails frontend: Hello! from %s in az-ns" % NetnsPair.ADDR_A, out)
        rc, _ = app.terminate()
        self.assertEqual(rc, 0, app.log())


if __name__ == "__main__":
    unittest.main()
