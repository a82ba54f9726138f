"""Harness for weft-proxy integration tests (Python 3 stdlib only).

What it offers:
  * Proxy: runs the real weft-proxy binary on a config written to a private temp directory, waits
    for its --ports-file, reloads (SIGHUP), drains (SIGTERM), always kills and cleans up.
  * Backend: an in-process HTTP/1.1 server (ThreadingHTTPServer on 127.0.0.1:0) that echoes the
    request as JSON and whose behaviour is chosen per request by x-backend-* request headers.
  * Certs: an ECDSA P-256 test PKI made with the openssl CLI.
  * curl(), raw socket helpers (send_raw, read_response), s_client(), wrk(), wait_until().

The binary is taken from $WEFT_PROXY (set by ctest); without it the usual build directories are
searched. Nothing here sleeps to synchronise: waits poll a condition with a deadline.
"""

import atexit
import hashlib
import http.server
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def proxy_binary():
    """Path of weft-proxy: $WEFT_PROXY, else a build directory of this checkout."""
    env = os.environ.get("WEFT_PROXY")
    if env:
        if not os.access(env, os.X_OK):
            raise RuntimeError("WEFT_PROXY=%r is not an executable file" % env)
        return env
    for cand in (os.path.join(REPO, "build", "bin", "weft-proxy"),
                 "/tmp/build-integration/bin/weft-proxy"):
        if os.access(cand, os.X_OK):
            return cand
    raise RuntimeError("weft-proxy not found: set WEFT_PROXY to the binary "
                       "(ctest does this) or build it into build/bin")


# --------------------------------------------------------------------------------------------
# Polling


class Timeout(AssertionError):
    pass


def wait_until(cond, timeout=10.0, interval=0.02, what=None):
    """Polls cond() until it returns a truthy value, which is returned. On timeout raises
    Timeout naming `what` and the last value (or exception) cond produced."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = cond()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - remembered for the message
            last = e
        if time.monotonic() >= deadline:
            raise Timeout("timed out after %.1fs waiting for %s; last value: %r"
                          % (timeout, what or getattr(cond, "__name__", "condition"), last))
        time.sleep(interval)


# --------------------------------------------------------------------------------------------
# Process cleanup: every child this module starts is killed at interpreter exit as a last resort.

_live_procs = set()
_live_lock = threading.Lock()


def _kill_all_at_exit():
    with _live_lock:
        procs = list(_live_procs)
    for p in procs:
        if p.poll() is None:
            p.kill()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass


atexit.register(_kill_all_at_exit)


# --------------------------------------------------------------------------------------------
# weft-proxy


class ProxyError(AssertionError):
    pass


class Proxy:
    """One weft-proxy process. `config` is a dict (written as JSON) or a YAML string (written as
    .yaml). Use as a context manager, or call start() and register stop() as a cleanup."""

    def __init__(self, config, concurrency=None, name="proxy", log_level=None, fmt=None,
                 args=None):
        """config=None runs without a config file: `args` must then say where the config comes
        from (e.g. --control-plane ...); the ports file is still waited for."""
        self.name = name
        self.args = list(args or [])
        self.dir = tempfile.mkdtemp(prefix="weft-it-%s-" % name)
        self.fmt = fmt or ("yaml" if isinstance(config, str) else "json")
        self.config_path = os.path.join(self.dir, "config." + self.fmt)
        self.ports_path = os.path.join(self.dir, "ports.json")
        self.log_path = os.path.join(self.dir, "proxy.log")
        self.concurrency = concurrency
        self.log_level = log_level
        self.proc = None
        self.ports = None
        self.config = None
        if config is not None:
            self.write_config(config)

    # -- config -------------------------------------------------------------------------------
    def write_config(self, config):
        """Atomically replaces the config file (rename), so a reload never sees half a file."""
        if isinstance(config, str):
            text = config
        else:
            text = json.dumps(config, indent=2)
        self.config = config
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, self.config_path)

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self, timeout=15.0):
        args = [proxy_binary()]
        if self.config is not None:
            args += ["--config", self.config_path]
        args += self.args + ["--ports-file", self.ports_path]
        if self.concurrency:
            args += ["--concurrency", str(self.concurrency)]
        if self.log_level:
            args += ["--log-level", self.log_level]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=self.dir)
        with _live_lock:
            _live_procs.add(self.proc)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise ProxyError("weft-proxy exited with %s before writing its ports file; "
                                 "log:\n%s" % (self.proc.returncode, self.log_text()))
            ports = self._read_ports()
            if ports is not None:
                self.ports = ports
                return self
            if time.monotonic() > deadline:
                self.kill()
                raise ProxyError("weft-proxy did not write %s within %.0fs; log:\n%s"
                                 % (self.ports_path, timeout, self.log_text()))
            time.sleep(0.02)

    def _read_ports(self):
        try:
            with open(self.ports_path) as f:
                return json.load(f)
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def __enter__(self):
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def wait_exit(self, timeout):
        """Returns the exit code, or raises ProxyError if still running after timeout."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise ProxyError("weft-proxy still running %.1fs later; log:\n%s"
                             % (timeout, self.log_text()))

    def stop(self, timeout=10.0):
        """SIGTERM, then SIGKILL if it does not exit; removes the temp directory."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
            with _live_lock:
                _live_procs.discard(self.proc)
            self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_text(self, tail=6000):
        try:
            with open(self.log_path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return "(no log)"
        return data[-tail:].decode("utf-8", "replace")

    # -- addresses ----------------------------------------------------------------------------
    @property
    def admin_port(self):
        return self.ports["admin"]

    def port(self, listener=None):
        ls = self.ports["listeners"]
        if listener is None:
            if len(ls) != 1:
                raise ValueError("several listeners %r: name one" % sorted(ls))
            return next(iter(ls.values()))
        return ls[listener]

    def url(self, path="/", listener=None, scheme="http", host="127.0.0.1"):
        return "%s://%s:%d%s" % (scheme, host, self.port(listener), path)

    # -- admin --------------------------------------------------------------------------------
    def admin(self, path, timeout=5.0):
        """GET on the admin port: (status, body text)."""
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.admin_port, path))
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode("utf-8", "replace")

    def metrics(self):
        status, body = self.admin("/stats/prometheus")
        if status != 200:
            raise ProxyError("/stats/prometheus answered %d: %s" % (status, body[:200]))
        return body

    def metric(self, name, **labels):
        """Sum of every sample of `name` whose labels include `labels` (0 if none)."""
        return metric_value(self.metrics(), name, **labels)

    # -- reload -------------------------------------------------------------------------------
    def reload(self, config, expect_ok=True, timeout=10.0):
        """Writes config, sends SIGHUP and waits for the success (or rejected) counter to grow."""
        ok0 = self.metric("weft_server_config_update_success_total")
        bad0 = self.metric("weft_server_config_update_rejected_total")
        self.write_config(config)
        self.signal(signal.SIGHUP)

        def done():
            ok = self.metric("weft_server_config_update_success_total")
            bad = self.metric("weft_server_config_update_rejected_total")
            return (ok, bad) if (ok > ok0 or bad > bad0) else None

        ok, bad = wait_until(done, timeout, what="a config update counter to move after SIGHUP")
        if expect_ok and ok <= ok0:
            raise ProxyError("reload was rejected (rejected %d -> %d); log:\n%s"
                             % (bad0, bad, self.log_text()))
        if not expect_ok and bad <= bad0:
            raise ProxyError("expected the reload to be rejected but it was accepted")
        return ok, bad


_SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)$')
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text):
    """[(name, {labels}, float value)] for every sample line."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE_RE.match(line)
        if not m:
            continue
        labels = dict(_LABEL_RE.findall(m.group(3) or ""))
        try:
            value = float(m.group(4))
        except ValueError:
            continue
        out.append((m.group(1), labels, value))
    return out


def metric_value(text, name, **labels):
    total = 0.0
    for n, lb, v in parse_prometheus(text):
        if n == name and all(lb.get(k) == str(val) for k, val in labels.items()):
            total += v
    return total


# --------------------------------------------------------------------------------------------
# Config builders


def admin_cfg():
    return {"address": "127.0.0.1", "port": 0}


def cluster(name, ports, **extra):
    c = {"name": name, "endpoints": [{"address": "127.0.0.1", "port": p} for p in ports]}
    c.update(extra)
    return c


def route_to(cluster_name, prefix="/", **action):
    a = {"clusters": [{"name": cluster_name}]}
    a.update(action)
    return {"match": {"prefix": prefix}, "route": a}


def listener(name, routes, domains=("*",), **extra):
    l = {"name": name, "address": "127.0.0.1", "port": 0,
         "route_config": {"virtual_hosts": [{"name": name + "-vh", "domains": list(domains),
                                             "routes": routes}]}}
    l.update(extra)
    return l


def simple_config(backend_port, **listener_extra):
    """One listener "main" sending everything to cluster "backend"."""
    return {"node": "it", "admin": admin_cfg(), "drain_time": "5s",
            "listeners": [listener("main", [route_to("backend")], **listener_extra)],
            "clusters": [cluster("backend", [backend_port])]}


# --------------------------------------------------------------------------------------------
# Backend


class _BackendHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "backend"
    sys_version = ""

    # Buffer each response and send it with TCP_NODELAY: a head and a body written separately
    # would otherwise meet Nagle plus the proxy's delayed ACK (40 ms per request on a reused
    # connection), which is the backend's slowness, not the proxy's.
    wbufsize = 1 << 16

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args):
        pass

    def _read_body(self):
        """(length, sha256 hex, bytes or None if large) for a Content-Length or chunked body."""
        h = hashlib.sha256()
        keep = bytearray()
        n = 0
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        self.request_was_chunked = "chunked" in te

        def take(data):
            nonlocal n
            h.update(data)
            n += len(data)
            if len(keep) < (1 << 20):
                keep.extend(data[: (1 << 20) - len(keep)])

        if self.request_was_chunked:
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                remaining = size
                while remaining:
                    chunk = self.rfile.read(min(remaining, 1 << 16))
                    if not chunk:
                        raise ConnectionError("EOF in chunk")
                    take(chunk)
                    remaining -= len(chunk)
                self.rfile.readline(16)
        else:
            remaining = int(self.headers.get("Content-Length") or 0)
            while remaining:
                chunk = self.rfile.read(min(remaining, 1 << 16))
                if not chunk:
                    raise ConnectionError("EOF in body")
                take(chunk)
                remaining -= len(chunk)
        return n, h.hexdigest(), bytes(keep) if n <= (1 << 20) else None

    def _handle(self):
        srv = self.server
        body_len, body_sha, body = self._read_body()
        hdrs = [[k, v] for k, v in self.headers.items()]
        rec = {
            "backend": srv.name,
            "method": self.command,
            "path": self.path,
            "version": self.request_version,
            "headers": hdrs,
            "h": {k.lower(): v for k, v in reversed(hdrs)},  # first occurrence wins
            "body_len": body_len,
            "body_sha256": body_sha,
            "body": body.decode("latin-1") if body is not None and body_len <= 65536 else None,
            "chunked": self.request_was_chunked,
            "client_port": self.client_address[1],
        }
        srv.record(rec)
        get = rec["h"].get
        try:
            gate = get("x-backend-gate")
            if gate:
                srv.gate(gate).wait(60)
            if get("x-backend-delay-ms"):
                time.sleep(int(get("x-backend-delay-ms")) / 1000.0)
            if get("x-backend-close"):
                self.close_connection = True
                return
            if get("x-backend-garbage"):
                self.wfile.write(b"THIS IS NOT HTTP\r\n\r\n")
                self.close_connection = True
                return
            status = int(get("x-backend-status") or 200)
            if get("x-backend-body-size"):
                payload = b"x" * int(get("x-backend-body-size"))
                ctype = "application/octet-stream"
            else:
                payload = json.dumps(rec).encode()
                ctype = "application/json"
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            for extra in self.headers.get_all("x-backend-header") or []:
                k, v = extra.split(":", 1)
                self.send_header(k.strip(), v.strip())
            if not srv.keep_alive:
                self.send_header("Connection", "close")
                self.close_connection = True
            chunked = bool(get("x-backend-chunked"))
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command == "HEAD":
                return
            if chunked:
                step = max(1, len(payload) // 4)
                for i in range(0, len(payload), step):
                    part = payload[i:i + step]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            else:
                self.wfile.write(payload)
        finally:
            srv.done(rec)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _handle


class Backend(http.server.ThreadingHTTPServer):
    """Echo backend on 127.0.0.1:0. Request headers choose the behaviour:
      x-backend-gate: NAME      block until release(NAME) (or 60 s)
      x-backend-delay-ms: N     sleep N ms before answering (simulated slowness)
      x-backend-close: 1        close the connection without any response
      x-backend-garbage: 1      answer bytes that are not HTTP, then close
      x-backend-status: N       status code (default 200)
      x-backend-body-size: N    N bytes of "x" instead of the JSON echo
      x-backend-chunked: 1      chunked response body
      x-backend-header: K: V    extra response header (repeatable)
    The default body is a JSON object describing the request (see _handle).
    keep_alive=False answers every request with Connection: close, so the proxy needs a new
    upstream connection for each request."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, name="backend", keep_alive=True):
        super().__init__(("127.0.0.1", 0), _BackendHandler)
        self.name = name
        self.keep_alive = keep_alive
        self.port = self.server_address[1]
        self.requests = []
        self.active = 0
        self.errors = 0
        self._lock = threading.Lock()
        self._gates = {}
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1},
                                        daemon=True)
        self._thread.start()

    def handle_error(self, request, client_address):
        # A peer that goes away mid-exchange (the proxy resetting an upstream connection on
        # purpose, in many tests) is expected: keep it out of the test output, but count it.
        with self._lock:
            self.errors += 1

    def record(self, rec):
        with self._lock:
            self.requests.append(rec)
            self.active += 1

    def done(self, rec):
        with self._lock:
            self.active -= 1

    def count(self):
        with self._lock:
            return len(self.requests)

    def last(self):
        with self._lock:
            return self.requests[-1] if self.requests else None

    def find(self, pred):
        with self._lock:
            return [r for r in self.requests if pred(r)]

    def gate(self, name):
        with self._lock:
            return self._gates.setdefault(name, threading.Event())

    def release(self, name=None):
        with self._lock:
            gates = [self._gates.setdefault(name, threading.Event())] if name else \
                list(self._gates.values())
        for g in gates:
            g.set()

    def close(self):
        self.release()
        self.shutdown()
        self.server_close()


# --------------------------------------------------------------------------------------------
# Certificates


class Certs:
    """ECDSA P-256 test PKI under `dir`:
      ca.pem/ca.key            trusted CA
      server.pem/server.key    SAN DNS:*.example.test, URI spiffe://weft.test/ns/default/sa/server
      server2.pem/server2.key  same SANs, other subject (CN=rotated.example.test), for rotation
      client.pem/client.key    SAN URI spiffe://weft.test/ns/default/sa/client,
                               DNS client.example.test
      other-ca.pem             an untrusted CA; other-client.pem/.key and other-server.pem/.key
                               signed by it (same SANs as client/server)."""

    SERVER_URI = "spiffe://weft.test/ns/default/sa/server"
    CLIENT_URI = "spiffe://weft.test/ns/default/sa/client"

    def __init__(self, dir=None):
        self._own = dir is None
        self.dir = dir or tempfile.mkdtemp(prefix="weft-it-certs-")
        self._ca("ca", "weft test CA")
        self._ca("other-ca", "untrusted test CA")
        self._leaf("server", "ca", "server.example.test",
                   "DNS:*.example.test,URI:" + self.SERVER_URI)
        self._leaf("server2", "ca", "rotated.example.test",
                   "DNS:*.example.test,URI:" + self.SERVER_URI)
        self._leaf("client", "ca", "client", "URI:%s,DNS:client.example.test" % self.CLIENT_URI)
        self._leaf("other-client", "other-ca", "client",
                   "URI:%s,DNS:client.example.test" % self.CLIENT_URI)
        self._leaf("other-server", "other-ca", "server.example.test",
                   "DNS:*.example.test,URI:" + self.SERVER_URI)

    def path(self, name):
        return os.path.join(self.dir, name)

    def pem(self, name):
        return self.path(name + ".pem")

    def key(self, name):
        return self.path(name + ".key")

    def _run(self, args):
        r = subprocess.run(["openssl"] + args, cwd=self.dir, capture_output=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError("openssl %s failed: %s" % (" ".join(args), r.stderr.decode()))

    def _ca(self, name, cn):
        self._run(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                   "-nodes", "-keyout", name + ".key", "-out", name + ".pem", "-days", "30",
                   "-subj", "/CN=" + cn, "-addext", "basicConstraints=critical,CA:TRUE",
                   "-addext", "keyUsage=critical,keyCertSign,cRLSign"])

    def _leaf(self, name, ca, cn, san):
        ext = os.path.join(self.dir, name + ".ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                    "extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=%s\n" % san)
        self._run(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                   "-nodes", "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + cn])
        serial = "0x%x" % int.from_bytes(os.urandom(8), "big")
        self._run(["x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
                   "-set_serial", serial, "-out", name + ".pem", "-days", "30", "-extfile", ext])

    def serial(self, name):
        r = subprocess.run(["openssl", "x509", "-noout", "-serial", "-in", self.pem(name)],
                           capture_output=True, text=True, check=True)
        return r.stdout.strip().split("=", 1)[1].upper()

    def close(self):
        if self._own:
            shutil.rmtree(self.dir, ignore_errors=True)


def cert_serial_subject(pem_text):
    """(serial hex upper, subject line) of the first certificate in pem_text."""
    r = subprocess.run(["openssl", "x509", "-noout", "-serial", "-subject"], input=pem_text,
                       capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        raise RuntimeError("openssl x509 could not read the certificate: " + r.stderr)
    serial = re.search(r"serial=(\S+)", r.stdout).group(1).upper()
    subject = re.search(r"subject=(.*)", r.stdout).group(1).strip()
    return serial, subject


# --------------------------------------------------------------------------------------------
# Clients


class CurlResult:
    def __init__(self, rc, status, headers, body, stderr, all_heads):
        self.rc = rc
        self.status = status
        self.headers = headers  # last response head: lower-case name -> value (first occurrence)
        self.body = body
        self.stderr = stderr
        self.all_heads = all_heads  # every response head, 1xx included: [(status, headers)]

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            raise AssertionError("expected a JSON body (the backend echo), got %r"
                                 % self.body[:300])

    def __repr__(self):
        return "CurlResult(rc=%d, status=%d, body=%r, stderr=%r)" % (
            self.rc, self.status, self.body[:200], self.stderr[-300:])


def _parse_heads(raw):
    heads = []
    for block in re.split(rb"\r?\n\r?\n", raw):
        lines = block.decode("latin-1").splitlines()
        if not lines or not lines[0].startswith("HTTP/"):
            continue
        status = int(lines[0].split()[1])
        h = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                h.setdefault(k.strip().lower(), v.strip())
        heads.append((status, h))
    return heads


def _slurp(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


def curl(url, *args, timeout=10, data=None):
    """Runs curl on one URL: CurlResult with the final status, headers and body (bytes).
    `args` are extra curl arguments; `data` is stdin (use with --data-binary @-)."""
    d = tempfile.mkdtemp(prefix="weft-it-curl-")
    try:
        hfile, bfile = os.path.join(d, "h"), os.path.join(d, "b")
        cmd = ["curl", "-sS", "--max-time", str(timeout), "-D", hfile, "-o", bfile,
               "-w", "%{http_code}"] + list(args) + [url]
        r = subprocess.run(cmd, capture_output=True, input=data, timeout=timeout + 10)
        raw, body = _slurp(hfile), _slurp(bfile)
        heads = _parse_heads(raw)
        try:
            status = int(r.stdout.decode().strip()[-3:])
        except ValueError:
            status = 0
        headers = heads[-1][1] if heads else {}
        return CurlResult(r.returncode, status, headers, body,
                          r.stderr.decode("utf-8", "replace"), heads)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def curl_multi(urls, *args, timeout=10):
    """One curl process fetching several URLs (it reuses the connection): (rc, stdout, stderr).
    Each response is followed by a line "@@<http_code> <num_connects>"."""
    cmd = ["curl", "-sS", "--max-time", str(timeout), "-w", "\n@@%{http_code} %{num_connects}\n"]
    cmd += list(args) + list(urls)
    r = subprocess.run(cmd, capture_output=True, timeout=timeout + 10)
    return r.returncode, r.stdout.decode("latin-1"), r.stderr.decode("utf-8", "replace")


class Response:
    def __init__(self, version, status, reason, headers, body):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers  # [(name lower, value)]
        self.body = body

    def header(self, name, default=None):
        for k, v in self.headers:
            if k == name.lower():
                return v
        return default

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "Response(%s %d, headers=%r, body=%r)" % (self.version, self.status,
                                                           self.headers, self.body[:200])


class SockReader:
    """Buffered reader over a socket that parses HTTP/1.x responses."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("connection closed by peer (buffered: %r)" % self.buf[:200])
        self.buf += data

    def readline(self):
        while b"\n" not in self.buf:
            self._fill()
        i = self.buf.index(b"\n") + 1
        line, self.buf = self.buf[:i], self.buf[i:]
        return line

    def read(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_to_close(self):
        while True:
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                out, self.buf = self.buf, b""
                return out
            self.buf += data

    def read_response(self, head_request=False, skip_interim=True):
        while True:
            line = self.readline().decode("latin-1").rstrip("\r\n")
            parts = line.split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/"):
                raise AssertionError("expected a status line, got %r" % line)
            version, status = parts[0], int(parts[1])
            reason = parts[2] if len(parts) > 2 else ""
            headers = []
            while True:
                hl = self.readline().decode("latin-1").rstrip("\r\n")
                if not hl:
                    break
                k, v = hl.split(":", 1)
                headers.append((k.strip().lower(), v.strip()))
            if 100 <= status < 200 and skip_interim:
                continue
            break
        resp = Response(version, status, reason, headers, b"")
        if head_request or status in (204, 304) or 100 <= status < 200:
            return resp
        te = (resp.header("transfer-encoding") or "").lower()
        cl = resp.header("content-length")
        if "chunked" in te:
            body = b""
            while True:
                size = int(self.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.readline() not in (b"\r\n", b"\n"):
                        pass
                    break
                body += self.read(size)
                self.readline()
            resp.body = body
        elif cl is not None:
            resp.body = self.read(int(cl))
        else:
            resp.body = self.read_to_close()
        return resp


def tcp_queues(local_port, remote_port):
    """(tx_queue, rx_queue) of the IPv4 loopback TCP socket local_port -> remote_port, from
    /proc/net/tcp, or None if there is no such socket."""
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            lport = int(fields[1].split(":")[1], 16)
            rport = int(fields[2].split(":")[1], 16)
            if lport == local_port and rport == remote_port:
                tx, rx = fields[4].split(":")
                return int(tx, 16), int(rx, 16)
    return None


def bytes_read_by_peer(sock, sent):
    """How many of the `sent` bytes written on `sock` the peer process has read: sent minus what
    sits in our send queue and in the peer's receive queue (both loopback, same host)."""
    lport = sock.getsockname()[1]
    rport = sock.getpeername()[1]
    mine = tcp_queues(lport, rport)
    theirs = tcp_queues(rport, lport)
    if mine is None or theirs is None:
        return None
    return sent - mine[0] - theirs[1]


def connect(port, timeout=10.0, host="127.0.0.1"):
    s = socket.create_connection((host, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def send_raw(port, data, timeout=10.0, responses=1):
    """Opens a connection, sends `data`, reads `responses` responses. Returns (list of Response,
    closed_after) where closed_after tells whether the proxy closed the connection afterwards
    (checked by reading to EOF with the remaining timeout, so only ask for responses that come)."""
    s = connect(port, timeout)
    try:
        s.sendall(data)
        r = SockReader(s)
        out = [r.read_response() for _ in range(responses)]
        try:
            rest = r.read_to_close()
            closed = True
        except socket.timeout:
            rest, closed = r.buf, False
        if rest:
            raise AssertionError("unexpected bytes after %d response(s): %r"
                                 % (responses, rest[:200]))
        return out, closed
    finally:
        s.close()


def s_client(port, servername="www.example.test", ca=None, cert=None, key=None, alpn=None,
             extra=(), timeout=10, stdin=b""):
    """openssl s_client: (returncode, stdout, stderr). stdin EOF ends the session after the
    handshake."""
    cmd = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-servername", servername]
    if ca:
        cmd += ["-CAfile", ca, "-verify_return_error"]
    if cert:
        cmd += ["-cert", cert, "-key", key]
    if alpn:
        cmd += ["-alpn", alpn]
    cmd += list(extra)
    r = subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout)
    return r.returncode, r.stdout.decode("latin-1"), r.stderr.decode("latin-1")


def tls_connect(port, ca, servername="www.example.test", cert=None, key=None, timeout=10.0):
    """A verified TLS socket (python ssl) to 127.0.0.1:port."""
    ctx = ssl.create_default_context(cafile=ca)
    ctx.set_alpn_protocols(["http/1.1"])
    if cert:
        ctx.load_cert_chain(cert, key)
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return ctx.wrap_socket(raw, server_hostname=servername)


def wrk(url, threads=1, connections=8, duration="2s", timeout=30):
    """Runs wrk; returns a dict: requests, socket_errors (sum), non_2xx, raw output."""
    r = subprocess.run(["wrk", "-t%d" % threads, "-c%d" % connections, "-d" + duration, url],
                       capture_output=True, text=True, timeout=timeout)
    out = r.stdout + r.stderr
    m = re.search(r"(\d+) requests in", out)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rc": r.returncode,
        "requests": int(m.group(1)) if m else 0,
        "socket_errors": sum(int(x) for x in errs.groups()) if errs else 0,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "output": out,
    }


def port_refuses(port):
    """True if a TCP connect to 127.0.0.1:port is refused (or reset before an answer)."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
    except (ConnectionRefusedError, ConnectionResetError):
        return True
    try:
        s.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        data = s.recv(100)
        return data == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
    finally:
        s.close()


def free_port_refusing():
    """A loopback port with nothing listening (bound then closed)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
