"""Mesh identities, mutual TLS by identity and authorization (issue 7, docs/security.md), with a
real `weft server` and real weft-proxy sidecars in network namespaces.

Each proxy generates its key, sends a CSR on the config stream and gets a short-lived
certificate (spiffe://id/virtualNode/NAME) from the mesh's identity CA; the server runs with
--identity-validity 20s so every proxy renews about every 9 s during the whole test.

Root only (network namespaces, iptables, switching users); skipped otherwise.

Topology (namespaces named wid<pid>a/b/c/h, addresses from 198.18.77.0/24 and 198.18.78.0/24,
used by no other test):
  root        weft server; its config stream on 198.18.77.1 (the root end of A's link)
  A, B, C     one link each to the root namespace (198.18.77.0/30, .4/30, .8/30) for the
              config stream, and one to the bridge of H: the mesh network 198.18.78.0/24
              A = .2 (node a, declares the virtual service b.mesh.local), B = .3 (node b, the
              provider of b.mesh.local: HTTP on 8080 and TCP on 9090), C = .4 (node c, declares
              nothing)
  H           the bridge of the mesh network
  Interception as App Mesh's: in B, PREROUTING redirects 8080/9090 to the proxy's 15000; in A
  and C, OUTPUT to 198.18.78.3 from any user but the proxy's (1337) goes to the proxy's 15001.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import unittest

from control_harness import ControlServer, wait_until
from harness import proxy_binary

PREFIX = "wid%d" % os.getpid()
NODES = ("a", "b", "c")
NS = {n: PREFIX + n for n in NODES}
HUB = PREFIX + "h"
STREAM_IP = "198.18.77.1"
LINK = {"a": ("198.18.77.1", "198.18.77.2"), "b": ("198.18.77.5", "198.18.77.6"),
        "c": ("198.18.77.9", "198.18.77.10")}  # (root end, namespace end), /30 each
MESH_IP = {"a": "198.18.78.2", "b": "198.18.78.3", "c": "198.18.78.4"}
MESH = "id"
SERVICE = "b.mesh.local"
PROXY_UID = 1337
VALIDITY = 20  # seconds: --identity-validity

# Node b's app: HTTP on 8080 (answers its path), TCP on 9090 (reads a line, answers it with
# "tcp b " in front, then closes).
APP = textwrap.dedent("""
    import http.server, socket, socketserver, threading
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def do_GET(self):
            body = ("hello from b %s\\n" % self.path).encode()
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *args):
            pass
    class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True
        allow_reuse_address = True
    def tcp():
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", 9090))
        s.listen(64)
        while True:
            c, _ = s.accept()
            threading.Thread(target=echo, args=(c,), daemon=True).start()
    def echo(c):
        try:
            c.settimeout(10)
            line = c.makefile("rb").readline()
            c.sendall(b"tcp b " + line)
        except OSError:
            pass
        finally:
            c.close()
    threading.Thread(target=tcp, daemon=True).start()
    server = S(("0.0.0.0", 8080), H)
    print("listening", flush=True)
    server.serve_forever()
""")

# Bounded load from node a's app: THREADS threads for SECONDS, half on keep-alive connections,
# half on a new connection per request; prints {"ok": N, "failed": N, "errors": [...]}.
LOAD = textwrap.dedent("""
    import http.client, json, sys, threading, time
    host, seconds, threads = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    ok = [0] * threads
    failed = [0] * threads
    errors = []
    def run(i):
        end = time.monotonic() + seconds
        conn = None
        while time.monotonic() < end:
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(host, 8080, timeout=10)
                conn.request("GET", "/load/%d" % i, headers={"Host": "b.mesh.local:8080"})
                r = conn.getresponse()
                body = r.read()
                if r.status == 200 and body.startswith(b"hello from b"):
                    ok[i] += 1
                else:
                    failed[i] += 1
                    errors.append("%d %r" % (r.status, body[:80]))
                if i % 2 or r.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except Exception as e:
                failed[i] += 1
                errors.append(repr(e))
                if conn is not None:
                    conn.close()
                conn = None
            time.sleep(0.01)
    ts = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in ts: t.start()
    for t in ts: t.join()
    print(json.dumps({"ok": sum(ok), "failed": sum(failed), "errors": errors[:10]}))
""")


def _can_run():
    return (os.geteuid() == 0 and all(shutil.which(t) for t in
                                      ("ip", "iptables", "setpriv", "curl", "nghttp", "openssl")))


def run(args, check=True, **kw):
    kw.setdefault("timeout", 60)
    r = subprocess.run(args, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise AssertionError("%s failed (%d): %s" % (" ".join(args), r.returncode,
                                                      r.stderr.strip()))
    return r


def in_ns(node, *args, uid=None, check=True, **kw):
    pre = ["ip", "netns", "exec", NS.get(node, node)]
    if uid is not None:
        pre += ["setpriv", "--reuid=%d" % uid, "--regid=%d" % uid, "--clear-groups"]
    return run(pre + list(args), check=check, **kw)


def varint(n):
    out = b""
    while True:
        b = n & 0x7f
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def pb_bytes(field, data):
    """A length-delimited protobuf field (string, bytes or message)."""
    if isinstance(data, str):
        data = data.encode()
    return varint(field << 3 | 2) + varint(len(data)) + data


def grpc_frame(message):
    return b"\x00" + len(message).to_bytes(4, "big") + message


class Net:
    """The namespaces, links, bridge and interception rules; close() removes everything."""

    def __init__(self):
        self.procs = []
        self.close()  # leftovers of a crashed run with the same pid
        try:
            for ns in list(NS.values()) + [HUB]:
                run(["ip", "netns", "add", ns])
                run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"])
            in_ns(HUB, "ip", "link", "add", "br0", "type", "bridge")
            in_ns(HUB, "ip", "link", "set", "br0", "up")
            for n in NODES:
                root_end, ns_end = LINK[n]
                # The stream link: root end in the root namespace.
                run(["ip", "link", "add", PREFIX + "r" + n, "type", "veth", "peer", "name",
                     "cp0", "netns", NS[n]])
                run(["ip", "addr", "add", root_end + "/30", "dev", PREFIX + "r" + n])
                run(["ip", "link", "set", PREFIX + "r" + n, "up"])
                in_ns(n, "ip", "addr", "add", ns_end + "/30", "dev", "cp0")
                in_ns(n, "ip", "link", "set", "cp0", "up")
                if root_end != STREAM_IP:
                    in_ns(n, "ip", "route", "add", STREAM_IP + "/32", "via", root_end)
                # The mesh link, into the hub's bridge.
                run(["ip", "link", "add", PREFIX + "m" + n, "netns", HUB, "type", "veth", "peer",
                     "name", "eth0", "netns", NS[n]])
                in_ns(HUB, "ip", "link", "set", PREFIX + "m" + n, "master", "br0")
                in_ns(HUB, "ip", "link", "set", PREFIX + "m" + n, "up")
                in_ns(n, "ip", "addr", "add", MESH_IP[n] + "/24", "dev", "eth0")
                in_ns(n, "ip", "link", "set", "eth0", "up")
            # App Mesh's interception (docs/workloads.md does it with `weft intercept`).
            in_ns("b", "iptables", "-t", "nat", "-A", "PREROUTING", "-p", "tcp", "-m",
                  "multiport", "--dports", "8080,9090", "-j", "REDIRECT", "--to-ports", "15000")
            for n in ("a", "c"):
                in_ns(n, "iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d",
                      MESH_IP["b"], "-m", "owner", "!", "--uid-owner", str(PROXY_UID), "-j",
                      "REDIRECT", "--to-ports", "15001")
        except BaseException:
            self.close()
            raise

    def spawn(self, node, argv, uid=None, stdout=subprocess.DEVNULL):
        pre = ["ip", "netns", "exec", NS[node]]
        if uid is not None:
            pre += ["setpriv", "--reuid=%d" % uid, "--regid=%d" % uid, "--clear-groups"]
        p = subprocess.Popen(pre + argv, stdout=stdout, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)
        self.procs.append(p)
        return p

    def close(self):
        for p in getattr(self, "procs", []):
            if p.poll() is None:
                p.kill()
            p.wait()
            if p.stdout:
                p.stdout.close()
        for n in NODES:
            subprocess.run(["ip", "link", "del", PREFIX + "r" + n], capture_output=True)
        for ns in list(NS.values()) + [HUB]:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


class Sidecar:
    """A weft-proxy in a node's namespace, joined to the control plane with its own token."""

    def __init__(self, net, node, tmp, server, stream_port, uid):
        self.node = node
        self.dir = os.path.join(tmp, "proxy-" + node)
        os.makedirs(self.dir)
        self.state = os.path.join(self.dir, "state")
        self.ports_file = os.path.join(self.dir, "ports.json")
        self.log_path = os.path.join(self.dir, "proxy.log")
        token = server.weft("token", "create", "--resource", self.resource)
        if token.returncode != 0:
            raise AssertionError("weft token create: %s" % token.stderr)
        with open(os.path.join(self.dir, "token"), "w") as f:
            f.write(token.stdout.strip())
        shutil.copy(os.path.join(server.data_dir, "ca-bundle.pem"),
                    os.path.join(self.dir, "ca-bundle.pem"))
        for root, dirs, files in os.walk(self.dir):
            for name in dirs + files + [""]:
                os.chown(os.path.join(root, name), uid, uid)
        self.log = open(self.log_path, "wb")
        argv = [proxy_binary(), "--control-plane", "%s:%d" % (STREAM_IP, stream_port),
                "--resource", self.resource, "--token-file", os.path.join(self.dir, "token"),
                "--ca-file", os.path.join(self.dir, "ca-bundle.pem"), "--state-dir", self.state,
                "--admin", "127.0.0.1:0", "--ports-file", self.ports_file,
                "--app-address", MESH_IP[node], "--log-level", "debug"]
        pre = ["ip", "netns", "exec", NS[node], "setpriv", "--reuid=%d" % uid,
               "--regid=%d" % uid, "--clear-groups"]
        self.proc = subprocess.Popen(pre + argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        net.procs.append(self.proc)

    def close(self):
        self.log.close()

    @property
    def resource(self):
        return "mesh/%s/virtualNode/%s" % (MESH, self.node)

    @property
    def spiffe(self):
        return "spiffe://%s/virtualNode/%s" % (MESH, self.node)

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def admin(self, path):
        with open(self.ports_file) as f:
            port = json.load(f)["admin"]
        r = in_ns(self.node, "curl", "-s", "--max-time", "5", "http://127.0.0.1:%d%s"
                  % (port, path), check=False)
        return r.stdout

    def metric(self, name, labels=""):
        """The value of metric `name` whose labels contain `labels`, or None."""
        for line in self.admin("/stats/prometheus").splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                if labels in line:
                    return float(line.rsplit(" ", 1)[1])
        return None

    def metric_sum(self, name):
        """The sum of every series of metric `name`."""
        total = 0.0
        for line in self.admin("/stats/prometheus").splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def identity(self):
        """(certificate PEM, key PEM, trust PEM) of the proxy's stored identity."""
        with open(os.path.join(self.state, "identity.pem")) as f:
            text = f.read()
        sections, current = {}, None
        for line in text.splitlines(keepends=True):
            if line.strip() in ("# chain", "# key", "# trust"):
                current = line.strip()[2:]
                sections[current] = ""
            elif current and not line.startswith("#"):
                sections[current] += line
        return sections.get("chain", ""), sections.get("key", ""), sections.get("trust", "")


@unittest.skipUnless(_can_run(), "needs root, ip, iptables, setpriv, curl, nghttp and openssl")
class IdentityTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="weft-identity-")
        os.chmod(cls.tmp, 0o755)
        cls.net = Net()
        cls.server = None
        try:
            cls._set_up()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def _set_up(cls):
        s = socket.socket()
        s.bind((STREAM_IP, 0))
        cls.stream_port = s.getsockname()[1]
        s.close()
        cls.server = ControlServer(extra_args=[
            "--stream", "%s:%d" % (STREAM_IP, cls.stream_port),
            "--identity-validity", "%ds" % VALIDITY])
        cls.server.start()
        cls.access_log = os.path.join(cls.tmp, "b-access.log")
        am = cls.server.appmesh_client()
        am.create_mesh(meshName=MESH)
        am.create_virtual_node(meshName=MESH, virtualNodeName="b", spec={
            "listeners": [{"portMapping": {"port": 8080, "protocol": "http"}},
                          {"portMapping": {"port": 9090, "protocol": "tcp"}}],
            "serviceDiscovery": {"dns": {"hostname": MESH_IP["b"]}},
            "logging": {"accessLog": {"file": {"path": cls.access_log, "format": {
                "text": "%RESPONSE_CODE% %REQ(:PATH)% peer=%DOWNSTREAM_PEER_URI_SAN%\n"}}}}})
        am.create_virtual_service(meshName=MESH, virtualServiceName=SERVICE, spec={
            "provider": {"virtualNode": {"virtualNodeName": "b"}}})
        for n, backends in (("a", [SERVICE]), ("c", [])):
            am.create_virtual_node(meshName=MESH, virtualNodeName=n, spec={
                "listeners": [{"portMapping": {"port": 3000, "protocol": "http"}}],
                "serviceDiscovery": {"dns": {"hostname": MESH_IP[n]}},
                "backends": [{"virtualService": {"virtualServiceName": b}} for b in backends]})
        app = cls.net.spawn("b", [sys.executable, "-u", "-c", APP], stdout=subprocess.PIPE)
        line = app.stdout.readline().decode().strip()
        if line != "listening":
            raise AssertionError("node b's app did not start (printed %r)" % line)
        cls.sidecars = {
            # b runs as root (its access log is in the test's directory); a and c as the proxy
            # user, whose traffic their interception leaves alone.
            "b": Sidecar(cls.net, "b", cls.tmp, cls.server, cls.stream_port, 0),
            "a": Sidecar(cls.net, "a", cls.tmp, cls.server, cls.stream_port, PROXY_UID),
            "c": Sidecar(cls.net, "c", cls.tmp, cls.server, cls.stream_port, PROXY_UID),
        }
        for sc in cls.sidecars.values():
            cls.wait(lambda sc=sc: "LIVE" in sc.admin("/ready"), 30,
                     "/ready of %s's proxy" % sc.node, sc)
            cls.wait(lambda sc=sc: os.path.exists(os.path.join(sc.state, "identity.pem")), 30,
                     "the mesh identity of %s's proxy" % sc.node, sc)

    @classmethod
    def tearDownClass(cls):
        if cls.server is not None:
            cls.server.close()
        cls.net.close()
        for sc in getattr(cls, "sidecars", {}).values():
            sc.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    # ---- helpers

    @classmethod
    def wait(cls, cond, timeout, what, sidecar=None):
        try:
            return wait_until(cond, timeout, what=what)
        except AssertionError as e:
            logs = ""
            for sc in ([sidecar] if sidecar else list(getattr(cls, "sidecars", {}).values())):
                logs += "\n--- proxy %s:\n%s" % (sc.node, sc.log_text()[-4000:])
            raise AssertionError("%s%s\n--- server:\n%s" % (e, logs, cls.server.log()[-4000:]))

    def set_policy(self, *flags):
        r = self.server.weft("mesh", "policy", MESH, *flags)
        self.assertEqual(r.returncode, 0, "weft mesh policy %s: %s" % (" ".join(flags), r.stderr))
        return r.stdout

    def call_b(self, path, node="a"):
        """GET http://b.mesh.local:8080<path> from node's app (through its sidecar)."""
        r = in_ns(node, "curl", "-s", "--max-time", "5", "-o", "-", "-w", "\n%{http_code}",
                  "--resolve", "%s:8080:%s" % (SERVICE, MESH_IP["b"]),
                  "http://%s:8080%s" % (SERVICE, path), check=False)
        body, _, code = r.stdout.rpartition("\n")
        return code, body

    def tcp_b(self, node="a"):
        r = in_ns(node, sys.executable, "-c",
                  "import socket; s = socket.create_connection(('%s', 9090), timeout=5); "
                  "s.sendall(b'hi\\n'); print(s.makefile().readline().strip())" % MESH_IP["b"],
                  check=False)
        return r.stdout.strip() or r.stderr.strip()[-200:]

    def access_lines(self):
        if not os.path.exists(self.access_log):
            return []
        with open(self.access_log) as f:
            return f.read().splitlines()

    def identity_files(self, node):
        """The stored identity of `node`'s proxy as cert / key / trust files readable by all."""
        chain, key, trust = self.sidecars[node].identity()
        paths = []
        for name, text in (("cert", chain), ("key", key), ("trust", trust)):
            p = os.path.join(self.tmp, "%s-%s-%d.pem" % (node, name, time.monotonic_ns()))
            with open(p, "w") as f:
                f.write(text)
            os.chmod(p, 0o644)
            paths.append(p)
        return paths

    def direct_https(self, identity_of, path):
        """From C as the proxy user (not intercepted), straight to b's listener with the mesh
        identity of `identity_of`'s proxy: (HTTP code, body)."""
        cert, key, _ = self.identity_files(identity_of)
        r = in_ns("c", "curl", "-sk", "--max-time", "5", "--cert", cert, "--key", key,
                  "-o", "-", "-w", "\n%{http_code}", "https://%s:8080%s" % (MESH_IP["b"], path),
                  uid=PROXY_UID, check=False)
        body, _, code = r.stdout.rpartition("\n")
        return code, body

    def direct_tls_tcp(self, identity_of):
        """From C as the proxy user, a TLS connection to b's TCP listener with `identity_of`'s
        identity: the first line b's app sends, or "" when the connection is refused."""
        cert, key, _ = self.identity_files(identity_of)
        r = in_ns("c", "openssl", "s_client", "-quiet", "-connect", "%s:9090" % MESH_IP["b"],
                  "-cert", cert, "-key", key, uid=PROXY_UID, check=False, input="hi\n")
        return r.stdout.strip()

    def subject_alt_names(self, pem):
        r = run(["openssl", "x509", "-noout", "-ext", "subjectAltName"], input=pem)
        return r.stdout

    # ---- tests (run in name order)

    def test_1_identities_are_issued_and_permissive_changes_nothing(self):
        out = self.set_policy()
        self.assertIn("permissive", out, "the default policy")
        for n, sc in self.sidecars.items():
            chain, key, trust = sc.identity()
            sans = self.subject_alt_names(chain)
            self.assertIn("URI:" + sc.spiffe, sans, "node %s's certificate SANs" % n)
            self.assertIn("BEGIN PRIVATE KEY", key)
            st = os.stat(os.path.join(sc.state, "identity.pem"))
            self.assertEqual(st.st_mode & 0o777, 0o600, "the identity file holds the key")
            # The certificate chains to the pushed trust bundle (the mesh identity CA).
            cert_file, _, trust_file = self.identity_files(n)
            v = run(["openssl", "verify", "-CAfile", trust_file, cert_file], check=False)
            self.assertEqual(v.returncode, 0, "openssl verify of %s's identity: %s%s"
                             % (n, v.stdout, v.stderr))
            self.assertGreater(sc.metric("weft_identity_certificate_expiry_timestamp_seconds"),
                               time.time(), "the expiry gauge of %s" % n)
        # Permissive: App Mesh's plaintext hop, no peer identity.
        code, body = self.wait(lambda: (lambda r: r if r[0] == "200" else None)(
            self.call_b("/permissive")), 20, "a -> b in plaintext")
        self.assertIn("hello from b /permissive", body)
        line = self.wait(lambda: [l for l in self.access_lines() if "/permissive" in l], 10,
                         "b's access log line")
        self.assertIn("peer=-", line[-1], "no identity in plaintext")

    def test_2_strict_mtls_between_two_nodes(self):
        self.set_policy("--mtls", "strict", "--authorization", "off")
        spiffe_a = self.sidecars["a"].spiffe

        def strict_call():
            code, _ = self.call_b("/strict")
            lines = [l for l in self.access_lines() if "/strict" in l and spiffe_a in l]
            return code == "200" and lines
        lines = self.wait(strict_call, 30, "a -> b over mTLS with a's identity in b's log")
        self.assertIn("peer=" + spiffe_a, lines[-1])
        self.assertEqual(self.tcp_b("a"), "tcp b hi", "TCP through both sidecars over mTLS")
        # b's listener now requires TLS: a plaintext request straight to it is refused.
        r = in_ns("c", "curl", "-s", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}",
                  "http://%s:8080/plain" % MESH_IP["b"], uid=PROXY_UID, check=False)
        self.assertNotEqual(r.stdout, "200", "plaintext to a STRICT identity listener")
        # ... and so is TLS without a client certificate.
        r = in_ns("c", "curl", "-sk", "--max-time", "5", "-o", "/dev/null", "-w",
                  "%{http_code}", "https://%s:8080/nocert" % MESH_IP["b"], uid=PROXY_UID,
                  check=False)
        self.assertNotEqual(r.stdout, "200", "TLS without a client certificate")
        # b serves its own identity.
        s = in_ns("c", "openssl", "s_client", "-connect", "%s:8080" % MESH_IP["b"],
                  uid=PROXY_UID, check=False, input="")
        pem = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", s.stdout,
                        re.S)
        self.assertIsNotNone(pem, "b's certificate in s_client's output:\n%s" % s.stdout)
        self.assertIn("URI:" + self.sidecars["b"].spiffe, self.subject_alt_names(pem.group(0)))
        # Certificate expiry gauges: b's inbound listener and a's cluster toward b serve their
        # identity, whose notAfter they show (the identity may renew in between: either one).
        def expiry_matches(sc, metric, labels):
            got = sc.metric(metric, labels)
            ident = sc.metric("weft_identity_certificate_expiry_timestamp_seconds")
            return got is not None and abs(got - ident) < 1 and got > time.time()
        self.wait(lambda: expiry_matches(
            self.sidecars["b"], "weft_listener_ssl_certificate_expiry_timestamp_seconds",
            'listener="lds_ingress_0.0.0.0_15000/http_8080"'), 20, "b's listener expiry gauge")
        self.wait(lambda: expiry_matches(
            self.sidecars["a"], "weft_cluster_ssl_certificate_expiry_timestamp_seconds",
            'cluster="cds_egress_id_b_http_8080"'), 20, "a's cluster expiry gauge")
        # Any mesh identity may call without authorization: c's works directly.
        code, _ = self.direct_https("c", "/c-without-authorization")
        self.assertEqual(code, "200", "authorization off: any identity of the mesh")

    def test_3_authorization_backends(self):
        self.set_policy("--mtls", "strict", "--authorization", "backends")
        b = self.sidecars["b"]
        before = b.metric_sum("weft_listener_authz_denied_total")

        def c_refused():
            code, body = self.direct_https("c", "/from-c")
            return code == "403" and body
        body = self.wait(c_refused, 30, "c, not a declared client of b, refused with 403")
        self.assertIn("RBAC: access denied", body)
        # a declares b.mesh.local: through its sidecar, and with its identity directly.
        code, body = self.call_b("/from-a")
        self.assertEqual((code, body.strip()), ("200", "hello from b /from-a"))
        code, _ = self.direct_https("a", "/from-a-direct")
        self.assertEqual(code, "200", "a's identity is a declared client")
        self.assertEqual(self.tcp_b("a"), "tcp b hi", "a's TCP calls pass")
        self.assertEqual(self.direct_tls_tcp("c"), "", "c's TCP connection is closed")
        self.assertEqual(self.direct_tls_tcp("a"), "tcp b hi")
        self.assertGreaterEqual(b.metric("weft_listener_authz_denied_total",
                                         "lds_ingress_0.0.0.0_15000/tcp_9090") or 0, 1,
                                "the TCP refusal counted on b's tcp_9090 chain")
        self.assertGreaterEqual(b.metric_sum("weft_listener_authz_denied_total") - before, 2,
                                "refusals counted (HTTP and TCP)")
        refused = [l for l in self.access_lines() if "/from-c" in l]
        self.assertTrue(refused and refused[-1].startswith("403 ") and
                        self.sidecars["c"].spiffe in refused[-1],
                        "b's access log names the refused caller: %s" % refused)
        # The graph is the policy: c declaring b.mesh.local becomes a client.
        am = self.server.appmesh_client()
        am.update_virtual_node(meshName=MESH, virtualNodeName="c", spec={
            "listeners": [{"portMapping": {"port": 3000, "protocol": "http"}}],
            "serviceDiscovery": {"dns": {"hostname": MESH_IP["c"]}},
            "backends": [{"virtualService": {"virtualServiceName": SERVICE}}]})
        self.wait(lambda: self.direct_https("c", "/c-declared")[0] == "200", 30,
                  "c allowed once it declares b.mesh.local")
        self.wait(lambda: self.call_b("/c-sidecar", node="c")[0] == "200", 30,
                  "c -> b through c's sidecar")
        am.update_virtual_node(meshName=MESH, virtualNodeName="c", spec={
            "listeners": [{"portMapping": {"port": 3000, "protocol": "http"}}],
            "serviceDiscovery": {"dns": {"hostname": MESH_IP["c"]}}})
        self.wait(lambda: self.direct_https("c", "/c-undeclared")[0] == "403", 30,
                  "c refused again once it no longer declares b.mesh.local")

    def test_4_a_token_for_a_cannot_get_bs_certificate(self):
        with open(os.path.join(self.sidecars["a"].dir, "token")) as f:
            token_a = f.read().strip()
        key = os.path.join(self.tmp, "csr-key.pem")
        csr = run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                   "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-subj", "/O=attacker",
                   "-addext", "subjectAltName=URI:spiffe://%s/virtualNode/b" % MESH]).stdout

        def stream(resource, token, csr_pem):
            hello = pb_bytes(1, pb_bytes(1, resource) + pb_bytes(2, token))
            body = grpc_frame(hello) + grpc_frame(pb_bytes(6, pb_bytes(1, csr_pem)))
            path = os.path.join(self.tmp, "stream-%d.bin" % time.monotonic_ns())
            with open(path, "wb") as f:
                f.write(body)
            # nghttp prints the frames (-v) and the response body (binary) on stdout.
            r = subprocess.run(["nghttp", "-v", "-t", "15", "-d", path, "-H",
                                "content-type: application/grpc", "-H", "te: trailers",
                                "https://%s:%d/weft.v1.ConfigStream/Stream"
                                % (STREAM_IP, self.stream_port)], capture_output=True, timeout=30)
            out = r.stdout.decode(errors="replace")
            status = re.findall(r"grpc-status: (\d+)", out)
            message = re.findall(r"grpc-message: (.*)", out)
            return (status[-1] if status else None), (message[-1] if message else ""), out

        # A's token, A's resource, a CSR for B's identity: PERMISSION_DENIED, no certificate.
        status, message, out = stream("mesh/%s/virtualNode/a" % MESH, token_a, csr)
        self.assertEqual(status, "7", "expected PERMISSION_DENIED; nghttp said:\n%s" % out[-3000:])
        self.assertIn("virtualNode/b", message)
        log = self.server.log()
        self.assertIn("refused a certificate request of mesh/%s/virtualNode/a (ipv4:%s:"
                      % (MESH, STREAM_IP), log)
        # The server logs every certificate it issues with the peer; nghttp's connection comes
        # from the stream's own address (the proxies' from their links' ends).
        self.assertNotIn("to ipv4:%s:" % STREAM_IP, "\n".join(
            l for l in log.splitlines() if "] issued spiffe://" in l),
            "no certificate may be issued on that stream")
        # A's token naming B's resource: refused at Hello, as any other resource.
        status, _, out = stream("mesh/%s/virtualNode/b" % MESH, token_a, csr)
        self.assertEqual(status, "7", "a token bound to a, Hello for b:\n%s" % out[-3000:])

    def test_5_renewal_under_load_without_failures(self):
        self.set_policy("--mtls", "strict", "--authorization", "backends")
        self.wait(lambda: self.call_b("/ready-for-load")[0] == "200", 30, "a -> b")
        a, b = self.sidecars["a"], self.sidecars["b"]
        renewals = {n: sc.metric("weft_identity_certificate_renewals_total")
                    for n, sc in (("a", a), ("b", b))}
        served = b.identity()[0]
        seconds = 2.5 * VALIDITY / 2  # two renewals of each side, at least
        r = in_ns("a", sys.executable, "-c", LOAD, MESH_IP["b"], str(seconds), "4",
                  timeout=seconds + 60)
        result = json.loads(r.stdout)
        self.assertGreater(result["ok"], 100, "the load ran: %s" % result)
        self.assertEqual(result["failed"], 0, "no failed request across renewals: %s" % result)
        for n, sc in (("a", a), ("b", b)):
            got = sc.metric("weft_identity_certificate_renewals_total")
            self.assertGreaterEqual(got - renewals[n], 2,
                                    "%s renewed its identity during the load" % n)
            self.assertEqual(sc.metric("weft_identity_certificate_expiring"), 0,
                             "renewed in time: no expiry warning on %s" % n)
        self.assertNotEqual(b.identity()[0], served, "b serves a new certificate")
        self.assertIn("applied", b.log_text())

    def test_6_control_plane_lost_warns_then_recovers(self):
        a = self.sidecars["a"]
        self.wait(lambda: self.call_b("/before-loss")[0] == "200", 30, "a -> b")
        self.server.stop()
        try:
            # Still serving with the current certificates, and warning before they expire.
            self.wait(lambda: a.metric("weft_identity_certificate_expiring") == 1,
                      VALIDITY + 5, "the expiry warning of a's proxy", a)
            self.assertIn("not renewed yet (control plane unreachable)", a.log_text())
            expiry = a.metric("weft_identity_certificate_expiry_timestamp_seconds")
            if time.time() < expiry - 1:
                code, _ = self.call_b("/while-lost")
                self.assertEqual(code, "200", "serving with the current certificate")
        finally:
            self.server.start()
        # Back (each proxy reconnects within its backoff, at most 30 s): new certificates, the
        # warnings cleared, calls pass again.
        for sc in (a, self.sidecars["b"]):
            self.wait(lambda sc=sc: sc.metric("weft_identity_certificate_expiring") == 0, 75,
                      "the warning of %s cleared after renewal" % sc.node, sc)
        self.wait(lambda: self.call_b("/after-recovery")[0] == "200", 30, "a -> b again")


if __name__ == "__main__":
    unittest.main()
