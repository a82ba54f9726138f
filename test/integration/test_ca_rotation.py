"""CA rotation without a dropped request (issue 7, docs/security.md "Rotation"), with a real
`weft server --ca-maintenance-interval 1s` and real weft-proxies.

PcaRotationTest (loopback, no privileges):
  curl --HTTP--> weft-proxy "front" (virtual gateway; backendDefaults client TLS trusting ACM PCA
  CA X by ARN, SAN edge.local) --TLS--> weft-proxy "edge" (virtual gateway, STRICT TLS with an
  ACM certificate of CA X) --HTTP--> the echo backend.
  Under a bounded continuous load, CA X rotates: PUBLISHING (front trusts the old and the new
  root) -> SIGNING_NEW (edge's certificate re-issued by the new key) -> `weft ca rotate
  --retire-now` (the old root leaves front's bundle). Zero failed requests; at the end edge
  serves a leaf of the new key and front's running config no longer holds the old root.

MeshRotationTest (root only: network namespaces, as test_identity.py, whose Net and Sidecar it
reuses with its own names and addresses 198.18.81.0/24 and 198.18.82.0/24):
  node a's app -> a's proxy --mTLS (mesh identities)--> b's proxy -> b's app, under
  `weft mesh policy --mtls strict`, identities valid 20 s. The mesh's identity CA rotates under
  a bounded load; the old root retires by itself (switch + 20 s + skew). Zero failed requests;
  every proxy ends with an identity of the new CA and a bundle of the new root only.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

from control_harness import ControlServer, wait_until
from harness import Backend, Proxy, curl
from harness import free_port_refusing as free_port  # a free loopback port

import test_identity as ti

MESH = "rot"
FRONT = "mesh/%s/virtualGateway/front" % MESH
EDGE = "mesh/%s/virtualGateway/edge" % MESH



def pem_lines(pem):
    """The base64 lines of a PEM certificate: found in a JSON dump whatever its escaping."""
    return [l for l in pem.splitlines() if l and not l.startswith("-----")]


def openssl_verify(pem_leaf_chain, ca_file):
    """Whether `openssl verify -CAfile ca_file` accepts the first certificate of the chain."""
    with tempfile.NamedTemporaryFile("w", suffix=".pem") as f:
        end = pem_leaf_chain.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")
        f.write(pem_leaf_chain[:end] + "\n")
        f.flush()
        r = subprocess.run(["openssl", "verify", "-CAfile", ca_file, f.name],
                           capture_output=True, text=True, timeout=15)
        return r.returncode == 0


class Load:
    """A bounded continuous load: `threads` threads calling `call()` (True: success) until
    stop() or `limit` calls in all."""

    def __init__(self, call, threads=2, limit=6000):
        self.call = call
        self.limit = limit
        self.ok = 0
        self.failed = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def _run(self):
        while not self.stopping.is_set():
            with self.lock:
                if self.ok + len(self.failed) >= self.limit:
                    return
            ok, detail = self.call()
            with self.lock:
                if ok:
                    self.ok += 1
                else:
                    self.failed.append(detail)

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(30)


class PcaRotationTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="weft-ca-rotation-")
        cls.proxies = []
        cls.app = None
        cls.server = ControlServer(extra_args=["--ca-maintenance-interval", "1s"])
        cls.server.start()
        try:
            cls._set_up()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def _set_up(cls):
        cls.pca, cls.acm = cls.server.ca_clients()
        p = cls.server.weft("ca", "create", "--subject", "CN=rotation test root,O=weft test",
                            "--key-algorithm", "EC_prime256v1")
        if p.returncode != 0:
            raise AssertionError("weft ca create: %s" % p.stderr)
        cls.ca_arn = p.stdout.strip()
        cls.old_root = cls.ca_pem()
        cls.cert_arn = cls.acm.request_certificate(
            DomainName="edge.local", CertificateAuthorityArn=cls.ca_arn)["CertificateArn"]

        cls.app = Backend("app")
        cls.front_port = free_port()
        cls.edge_port = free_port()
        am = cls.server.appmesh_client()
        am.create_mesh(meshName=MESH)
        for node, port, service in (("app", cls.app.port, "app.local"),
                                    ("edge-node", cls.edge_port, "edge.local")):
            am.create_virtual_node(meshName=MESH, virtualNodeName=node, spec={
                "listeners": [{"portMapping": {"port": port, "protocol": "http"}}],
                "serviceDiscovery": {"dns": {"hostname": "127.0.0.1"}}})
            am.create_virtual_service(meshName=MESH, virtualServiceName=service, spec={
                "provider": {"virtualNode": {"virtualNodeName": node}}})
        gateways = (
            ("edge", {"listeners": [{"portMapping": {"port": cls.edge_port, "protocol": "http"},
                                     "tls": {"mode": "STRICT", "certificate": {
                                         "acm": {"certificateArn": cls.cert_arn}}}}]},
             "app.local"),
            ("front", {"listeners": [{"portMapping": {"port": cls.front_port,
                                                      "protocol": "http"}}],
                       "backendDefaults": {"clientPolicy": {"tls": {"validation": {
                           "trust": {"acm": {"certificateAuthorityArns": [cls.ca_arn]}},
                           "subjectAlternativeNames": {"match": {"exact": ["edge.local"]}}}}}}},
             "edge.local"))
        for name, spec, target in gateways:
            am.create_virtual_gateway(meshName=MESH, virtualGatewayName=name, spec=spec)
            am.create_gateway_route(meshName=MESH, virtualGatewayName=name,
                                    gatewayRouteName="all", spec={"httpRoute": {
                                        "match": {"prefix": "/"},
                                        "action": {"target": {"virtualService": {
                                            "virtualServiceName": target}}}}})
        am.close()
        cls.stream_port = cls.server_port("stream")
        cls.edge = cls.start_proxy("edge", EDGE)
        cls.front = cls.start_proxy("front", FRONT)

    @classmethod
    def tearDownClass(cls):
        for p in cls.proxies:
            p.stop()
        for client in (getattr(cls, "pca", None), getattr(cls, "acm", None)):
            if client is not None and hasattr(client, "close"):
                client.close()
        cls.server.close()
        if cls.app is not None:
            cls.app.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    # ---- helpers

    @classmethod
    def ca_pem(cls):
        p = cls.server.weft("ca", "get-certificate", cls.ca_arn)
        if p.returncode != 0:
            raise AssertionError("weft ca get-certificate: %s" % p.stderr)
        return p.stdout

    @classmethod
    def server_port(cls, name):
        with open(cls.server.ports_file) as f:
            for line in f:
                k, _, v = line.strip().partition("=")
                if k == name:
                    return int(v)
        raise AssertionError("no %s= line in %s" % (name, cls.server.ports_file))

    @classmethod
    def start_proxy(cls, name, resource):
        p = cls.server.weft("token", "create", "--resource", resource)
        if p.returncode != 0:
            raise AssertionError("weft token create failed: %s" % p.stderr)
        token_file = os.path.join(cls.tmp, name + ".token")
        with open(token_file, "w") as f:
            f.write(p.stdout.strip() + "\n")
        args = ["--control-plane", "127.0.0.1:%d" % cls.stream_port, "--resource", resource,
                "--token-file", token_file,
                "--ca-file", os.path.join(cls.server.data_dir, "ca-bundle.pem"),
                "--admin", "127.0.0.1:0", "--state-dir", os.path.join(cls.tmp, "state-" + name),
                "--log-level", "debug"]
        proxy = Proxy(None, name=name, args=args).start(timeout=20)
        cls.proxies.append(proxy)

        def ready():
            try:
                return proxy.admin("/ready")[0] == 200
            except OSError:
                return False
        try:
            wait_until(ready, 30, what="/ready of proxy %s" % name)
        except AssertionError as e:
            raise AssertionError("%s\nproxy log:\n%s\nserver log:\n%s"
                                 % (e, proxy.log_text(), cls.server.log()[-3000:])) from None
        return proxy

    def request(self):
        r = curl("http://127.0.0.1:%d/load" % self.front_port, timeout=5)
        if r.status == 200:
            return True, None
        return False, "%s %s" % (r.status, (r.body or b"")[:200])

    def rotation(self):
        p = self.server.weft("ca", "describe", self.ca_arn, "-o", "json")
        self.assertEqual(p.returncode, 0, "weft ca describe: %s" % p.stderr)
        return json.loads(p.stdout)["Rotation"]

    def served_chain(self):
        r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % self.edge_port,
                            "-servername", "edge.local", "-showcerts"],
                           input=b"", capture_output=True, timeout=15)
        return r.stdout.decode(errors="replace")

    def served_by(self, root_pem):
        """Whether the leaf edge serves now verifies against `root_pem` alone."""
        path = os.path.join(self.tmp, "only-root.pem")
        with open(path, "w") as f:
            f.write(root_pem)
        chain = self.served_chain()
        return "BEGIN CERTIFICATE" in chain and openssl_verify(
            chain[chain.index("-----BEGIN CERTIFICATE-----"):], path)

    def front_dump(self):
        status, body = self.front.admin("/config_dump")
        self.assertEqual(status, 200)
        return body.decode() if isinstance(body, bytes) else body

    def front_trusts(self, pem):
        dump = self.front_dump()
        return all(l in dump for l in pem_lines(pem))

    def diagnostics(self):
        return "\n--- front:\n%s\n--- edge:\n%s\n--- server:\n%s" % (
            self.front.log_text()[-3000:], self.edge.log_text()[-3000:],
            self.server.log()[-4000:])

    # ---- the test

    def test_rotation_under_load_without_failures(self):
        ok, detail = self.request()
        self.assertTrue(ok, "front -> edge (TLS, trust CA X) -> app: %s%s"
                        % (detail, self.diagnostics()))
        self.assertTrue(self.served_by(self.old_root), "edge serves a leaf of CA X")
        self.assertTrue(self.front_trusts(self.old_root))
        load = Load(self.request)
        try:
            wait_until(lambda: load.ok >= 20, 20, what="load to flow")
            p = self.server.weft("ca", "rotate", self.ca_arn, "-o", "json")
            self.assertEqual(p.returncode, 0, "weft ca rotate: %s" % p.stderr)
            self.assertEqual(json.loads(p.stdout)["phase"], "PUBLISHING", p.stdout)
            again = self.server.weft("ca", "rotate", self.ca_arn)
            self.assertNotEqual(again.returncode, 0, "a second rotation must be refused")
            self.assertIn("already in progress", again.stderr)

            # The new key signs once the proxies took the new root; edge's leaf is re-issued.
            wait_until(lambda: self.rotation()["phase"] == "SIGNING_NEW", 30,
                       what="the rotation to reach SIGNING_NEW")
            new_root = self.ca_pem()
            self.assertNotEqual(new_root, self.old_root)
            self.assertTrue(self.front_trusts(self.old_root) and self.front_trusts(new_root),
                            "front trusts both roots in SIGNING_NEW")
            wait_until(lambda: self.served_by(new_root), 30,
                       what="edge to serve a leaf of the new key")
            self.assertFalse(self.served_by(self.old_root),
                             "the served leaf must not verify against the old root alone")
            seen = load.ok
            wait_until(lambda: load.ok >= seen + 20, 20, what="load after the switch")

            # Retire now (ACM leaves live 395 days): the old root leaves front's bundle.
            p = self.server.weft("ca", "rotate", self.ca_arn, "--retire-now", "-o", "json")
            self.assertEqual(p.returncode, 0, "weft ca rotate --retire-now: %s" % p.stderr)
            self.assertEqual(json.loads(p.stdout)["phase"], "NONE", p.stdout)
            wait_until(lambda: not self.front_trusts(self.old_root), 20,
                       what="the old root to leave front's running config")
            self.assertTrue(self.front_trusts(new_root))
            seen = load.ok
            wait_until(lambda: load.ok >= seen + 20, 20, what="load after the retirement")
        except AssertionError as e:
            raise AssertionError("%s%s" % (e, self.diagnostics())) from None
        finally:
            load.stop()
        self.assertEqual(load.failed, [], "requests failed across the rotation (%d ok)%s"
                         % (load.ok, self.diagnostics() if load.failed else ""))
        self.assertGreater(load.ok, 60)
        self.assertTrue(self.served_by(new_root))
        last = self.rotation()
        self.assertEqual(last["phase"], "NONE")
        self.assertTrue(last["lastRotation"]["RetiredEarly"])


# ---- the mesh identity CA, in namespaces (test_identity.py's helpers, other names/addresses)

ti.PREFIX = "wcr%d" % os.getpid()
ti.NS = {n: ti.PREFIX + n for n in ti.NODES}
ti.HUB = ti.PREFIX + "h"
ti.STREAM_IP = "198.18.81.1"
ti.LINK = {"a": ("198.18.81.1", "198.18.81.2"), "b": ("198.18.81.5", "198.18.81.6"),
           "c": ("198.18.81.9", "198.18.81.10")}
ti.MESH_IP = {"a": "198.18.82.2", "b": "198.18.82.3", "c": "198.18.82.4"}
ti.MESH = "rotmesh"
VALIDITY = 20


@unittest.skipUnless(ti._can_run(), "needs root, ip, iptables, setpriv, curl, nghttp and openssl")
class MeshRotationTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="weft-ca-rotation-mesh-")
        os.chmod(cls.tmp, 0o755)
        cls.net = ti.Net()
        cls.server = None
        try:
            cls._set_up()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def _set_up(cls):
        s = socket.socket()
        s.bind((ti.STREAM_IP, 0))
        cls.stream_port = s.getsockname()[1]
        s.close()
        cls.server = ControlServer(extra_args=[
            "--stream", "%s:%d" % (ti.STREAM_IP, cls.stream_port),
            "--identity-validity", "%ds" % VALIDITY, "--ca-maintenance-interval", "1s"])
        cls.server.start()
        am = cls.server.appmesh_client()
        am.create_mesh(meshName=ti.MESH)
        am.create_virtual_node(meshName=ti.MESH, virtualNodeName="b", spec={
            "listeners": [{"portMapping": {"port": 8080, "protocol": "http"}},
                          {"portMapping": {"port": 9090, "protocol": "tcp"}}],
            "serviceDiscovery": {"dns": {"hostname": ti.MESH_IP["b"]}}})
        am.create_virtual_service(meshName=ti.MESH, virtualServiceName=ti.SERVICE, spec={
            "provider": {"virtualNode": {"virtualNodeName": "b"}}})
        for n, backends in (("a", [ti.SERVICE]), ("c", [])):
            am.create_virtual_node(meshName=ti.MESH, virtualNodeName=n, spec={
                "listeners": [{"portMapping": {"port": 3000, "protocol": "http"}}],
                "serviceDiscovery": {"dns": {"hostname": ti.MESH_IP[n]}},
                "backends": [{"virtualService": {"virtualServiceName": b}} for b in backends]})
        am.close()
        app = cls.net.spawn("b", [sys.executable, "-u", "-c", ti.APP], stdout=subprocess.PIPE)
        line = app.stdout.readline().decode().strip()
        if line != "listening":
            raise AssertionError("node b's app did not start (printed %r)" % line)
        cls.sidecars = {
            "b": ti.Sidecar(cls.net, "b", cls.tmp, cls.server, cls.stream_port, 0),
            "a": ti.Sidecar(cls.net, "a", cls.tmp, cls.server, cls.stream_port, ti.PROXY_UID),
        }
        for sc in cls.sidecars.values():
            cls.wait(lambda sc=sc: "LIVE" in sc.admin("/ready"), 30,
                     "/ready of %s's proxy" % sc.node)
            cls.wait(lambda sc=sc: os.path.exists(os.path.join(sc.state, "identity.pem")), 30,
                     "the mesh identity of %s's proxy" % sc.node)

    @classmethod
    def tearDownClass(cls):
        if cls.server is not None:
            cls.server.close()
        cls.net.close()
        for sc in getattr(cls, "sidecars", {}).values():
            sc.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def wait(cls, cond, timeout, what):
        try:
            return wait_until(cond, timeout, what=what)
        except AssertionError as e:
            raise AssertionError("%s%s" % (e, cls.diagnostics())) from None

    @classmethod
    def diagnostics(cls):
        logs = ""
        for sc in getattr(cls, "sidecars", {}).values():
            logs += "\n--- proxy %s:\n%s" % (sc.node, sc.log_text()[-3000:])
        return "%s\n--- server:\n%s" % (logs, cls.server.log()[-4000:] if cls.server else "")

    def status(self):
        p = self.server.weft("ca", "describe", "--mesh", ti.MESH, "-o", "json")
        self.assertEqual(p.returncode, 0, "weft ca describe --mesh: %s" % p.stderr)
        return json.loads(p.stdout)

    def call_b(self):
        r = ti.in_ns("a", "curl", "-s", "--max-time", "5", "-o", "/dev/null", "-w",
                     "%{http_code}", "--resolve", "%s:8080:%s" % (ti.SERVICE, ti.MESH_IP["b"]),
                     "http://%s:8080/probe" % ti.SERVICE, check=False)
        return r.stdout.strip()

    def test_mesh_ca_rotation_under_load_retires_by_itself(self):
        r = self.server.weft("mesh", "policy", ti.MESH, "--mtls", "strict")
        self.assertEqual(r.returncode, 0, "weft mesh policy: %s" % r.stderr)
        self.wait(lambda: self.call_b() == "200", 30, "a -> b under strict mTLS")
        old = self.status()["trustBundle"][0]["serial"]
        seconds = 60  # covers PUBLISHING (~2 s), one renewal round (~10 s), retire (+22 s)
        load = subprocess.Popen(["ip", "netns", "exec", ti.NS["a"], sys.executable, "-c",
                                 ti.LOAD, ti.MESH_IP["b"], str(seconds), "4"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            p = self.server.weft("ca", "rotate", "--mesh", ti.MESH, "-o", "json")
            self.assertEqual(p.returncode, 0, "weft ca rotate --mesh: %s" % p.stderr)
            started = json.loads(p.stdout)
            self.assertEqual(started["phase"], "PUBLISHING", p.stdout)
            self.assertEqual(len(started["trustBundle"]), 2)
            self.wait(lambda: self.status()["phase"] == "SIGNING_NEW", 30,
                      "the mesh CA rotation to reach SIGNING_NEW")
            st = self.status()
            new = [r["serial"] for r in st["trustBundle"] if r["role"].startswith("new")][0]
            self.assertLessEqual(st["retireAt"] - st["switchedAt"], VALIDITY + 5, st)
            # Retires by itself once every identity of the old key has expired.
            self.wait(lambda: self.status()["phase"] == "NONE", VALIDITY + 20,
                      "the old mesh root to retire by itself")
            final = self.status()
            self.assertEqual([r["serial"] for r in final["trustBundle"]], [new], final)
            self.assertFalse(final["lastRotation"]["retiredEarly"])
            out, err = load.communicate(timeout=seconds + 60)
        finally:
            if load.poll() is None:
                load.kill()
                load.communicate()
        self.assertEqual(load.returncode, 0, "the load: %s" % err)
        result = json.loads(out)
        self.assertEqual(result["failed"], 0, "requests failed across the rotation: %s%s"
                         % (result, self.diagnostics()))
        self.assertGreater(result["ok"], 100, "the load ran: %s" % result)
        self.assertNotEqual(old, new)
        # Every proxy holds an identity of the new CA; its stored trust is the new root alone.
        for sc in self.sidecars.values():
            self.wait(lambda sc=sc: sc.identity()[2].count("BEGIN CERTIFICATE") == 1, VALIDITY,
                      "%s's identity to come with the new root alone" % sc.node)
            chain, _, trust = sc.identity()
            path = os.path.join(self.tmp, "trust-%s.pem" % sc.node)
            with open(path, "w") as f:
                f.write(trust)
            self.assertTrue(openssl_verify(chain, path),
                            "%s's identity must verify against the new root" % sc.node)
        self.assertEqual(self.call_b(), "200")


if __name__ == "__main__":
    unittest.main()
