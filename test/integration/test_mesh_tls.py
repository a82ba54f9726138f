"""ACM certificates on the proxies (issue 7, docs/security.md): a private root CA made with boto3
acm-pca on a real `weft server`, a wildcard ACM certificate `*.mesh.local` requested from it with
boto3 acm, and a virtual gateway whose listener is STRICT TLS with that certificate by ARN. The
server compiles the certificate, its chain and its key into the gateway's config and streams it
to a real weft-proxy; curl verifies the gateway against the root. RenewCertificate under a
bounded continuous load re-pushes a new certificate (new serial) with no failed request, and a
proxy of another resource never receives the key.

Topology (all on 127.0.0.1):
  curl --HTTPS (gw.mesh.local, --cacert root)--> weft-proxy (virtual gateway gw, STRICT TLS)
        gateway route "/" -> virtual service app.local -> virtual node app (DNS 127.0.0.1)
  app: the harness's echo backend (plain HTTP).
  weft-proxy (virtual gateway plain, no TLS): another resource with its own token.
"""

import json
import os
import shutil
import subprocess
import tempfile
import threading
import unittest

from control_harness import ControlServer, make_root_ca, wait_until
from harness import Backend, Proxy, curl
from harness import free_port_refusing as free_port  # a free loopback port

MESH = "tls"
GW = "mesh/%s/virtualGateway/gw" % MESH
PLAIN = "mesh/%s/virtualGateway/plain" % MESH
HOST = "gw.mesh.local"



class MeshTlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="weft-mesh-tls-")
        cls.proxies_started = []
        cls.server = ControlServer()
        cls.server.start()
        try:
            cls._set_up()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def _set_up(cls):
        cls.pca, cls.acm = cls.server.ca_clients()

        # A private root CA, as ACM PCA users make one: create, self-sign its CSR, import.
        cls.ca_arn, root = make_root_ca(cls.pca, "mesh.local")
        cls.root_file = os.path.join(cls.tmp, "root.pem")
        with open(cls.root_file, "w") as f:
            f.write(root)

        # The wildcard certificate the gateway serves.
        cls.cert_arn = cls.acm.request_certificate(
            DomainName="*.mesh.local", CertificateAuthorityArn=cls.ca_arn)["CertificateArn"]

        # The mesh: gateway (STRICT TLS, ACM) -> app.local -> node app -> the echo backend.
        cls.app = Backend("app")
        cls.gw_port = free_port()
        cls.plain_port = free_port()
        am = cls.server.appmesh_client()
        am.create_mesh(meshName=MESH)
        am.create_virtual_node(meshName=MESH, virtualNodeName="app", spec={
            "listeners": [{"portMapping": {"port": cls.app.port, "protocol": "http"}}],
            "serviceDiscovery": {"dns": {"hostname": "127.0.0.1"}}})
        am.create_virtual_service(meshName=MESH, virtualServiceName="app.local", spec={
            "provider": {"virtualNode": {"virtualNodeName": "app"}}})
        for name, port, tls in (("gw", cls.gw_port, {
                "mode": "STRICT", "certificate": {"acm": {"certificateArn": cls.cert_arn}}}),
                ("plain", cls.plain_port, None)):
            listener = {"portMapping": {"port": port, "protocol": "http"}}
            if tls:
                listener["tls"] = tls
            am.create_virtual_gateway(meshName=MESH, virtualGatewayName=name,
                                      spec={"listeners": [listener]})
            am.create_gateway_route(meshName=MESH, virtualGatewayName=name,
                                    gatewayRouteName="all", spec={"httpRoute": {
                                        "match": {"prefix": "/"},
                                        "action": {"target": {"virtualService": {
                                            "virtualServiceName": "app.local"}}}}})

        cls.stream_port = cls.server_port("stream")
        cls.gw_state = os.path.join(cls.tmp, "state-gw")
        cls.gw = cls.start_proxy("gw", GW, cls.gw_state)
        cls.plain_state = os.path.join(cls.tmp, "state-plain")
        cls.plain = cls.start_proxy("plain", PLAIN, cls.plain_state)
        for p in (cls.gw, cls.plain):
            try:
                wait_until(lambda p=p: cls.ready(p), 30, what="/ready of proxy %s" % p.name)
            except AssertionError as e:
                raise AssertionError("%s\nproxy log:\n%s\nserver log:\n%s"
                                     % (e, p.log_text(), cls.server.log()[-3000:])) from None

    @classmethod
    def tearDownClass(cls):
        for p in cls.proxies_started:
            p.stop()
        for client in (getattr(cls, "pca", None), getattr(cls, "acm", None)):
            if client is not None and hasattr(client, "close"):
                client.close()
        cls.server.close()
        if getattr(cls, "app", None):
            cls.app.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    # ---- helpers

    @classmethod
    def server_port(cls, name):
        with open(cls.server.ports_file) as f:
            for line in f:
                k, _, v = line.strip().partition("=")
                if k == name:
                    return int(v)
        raise AssertionError("no %s= line in %s" % (name, cls.server.ports_file))

    @classmethod
    def start_proxy(cls, name, resource, state_dir):
        p = cls.server.weft("token", "create", "--resource", resource)
        if p.returncode != 0:
            raise AssertionError("weft token create failed: %s" % p.stderr)
        token_file = os.path.join(cls.tmp, name + ".token")
        with open(token_file, "w") as f:
            f.write(p.stdout.strip() + "\n")
        args = ["--control-plane", "127.0.0.1:%d" % cls.stream_port, "--resource", resource,
                "--token-file", token_file,
                "--ca-file", os.path.join(cls.server.data_dir, "ca-bundle.pem"),
                "--admin", "127.0.0.1:0", "--state-dir", state_dir, "--log-level", "debug"]
        proxy = Proxy(None, name=name, args=args).start(timeout=20)
        cls.proxies_started.append(proxy)
        return proxy

    @staticmethod
    def ready(proxy):
        try:
            return proxy.admin("/ready")[0] == 200
        except OSError:
            return False

    def https(self, path="/", timeout=5):
        return curl("https://%s:%d%s" % (HOST, self.gw_port, path), "--cacert", self.root_file,
                    "--resolve", "%s:%d:127.0.0.1" % (HOST, self.gw_port), timeout=timeout)

    def served_serial(self):
        """The serial of the certificate the gateway serves now (openssl s_client), lower-case
        hex without separators."""
        r = subprocess.run(
            ["openssl", "s_client", "-connect", "127.0.0.1:%d" % self.gw_port, "-servername",
             HOST, "-CAfile", self.root_file, "-verify_return_error"],
            input=b"", capture_output=True, timeout=15)
        self.assertEqual(r.returncode, 0, "openssl s_client: %s" % r.stderr.decode()[-2000:])
        x = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=r.stdout,
                           capture_output=True, timeout=15)
        self.assertEqual(x.returncode, 0, x.stderr.decode())
        return x.stdout.decode().strip().split("=", 1)[1].lower().lstrip("0")

    def acm_serial(self):
        d = self.acm.describe_certificate(CertificateArn=self.cert_arn)["Certificate"]
        return d["Serial"].replace(":", "").lower().lstrip("0")

    def describe(self, resource):
        p = self.server.weft("describe", "proxy-config", "--resource", resource)
        self.assertEqual(p.returncode, 0, "weft describe proxy-config %s: %s"
                         % (resource, p.stderr))
        return p.stdout

    # ---- tests

    def test_1_gateway_serves_the_acm_certificate(self):
        r = self.https("/hello")
        self.assertEqual(r.status, 200, "curl through the STRICT TLS gateway: %r\nproxy log:\n%s"
                         % (r, self.gw.log_text()))
        self.assertEqual(r.json()["backend"], "app")
        self.assertEqual(self.served_serial(), self.acm_serial(),
                         "the gateway must serve the ACM certificate")
        # Plaintext is refused on a STRICT listener.
        plain = curl("http://127.0.0.1:%d/" % self.gw_port, timeout=5)
        self.assertNotEqual(plain.status, 200, "STRICT TLS must refuse plaintext: %r" % plain)
        # What the proxy stores holds the key, readable by its owner only.
        stored = [os.path.join(self.gw_state, f) for f in os.listdir(self.gw_state)]
        self.assertTrue(stored, "the gateway proxy stored no config in %s" % self.gw_state)
        for f in stored:
            if os.path.isfile(f):
                self.assertEqual(os.stat(f).st_mode & 0o077, 0,
                                 "%s must be 0600 (it holds a private key)" % f)
        # The admin page redacts it.
        status, body = self.gw.admin("/config_dump")
        self.assertEqual(status, 200)
        text = body.decode() if isinstance(body, bytes) else body
        self.assertIn("[redacted]", text)
        self.assertTrue("PRIVATE KEY" not in text, "/config_dump must not show the key")

    def test_2_renewal_under_load_is_served_without_failures(self):
        self.assertEqual(self.https().status, 200)
        before = self.served_serial()
        stop = threading.Event()
        results = {"ok": 0, "failed": []}
        lock = threading.Lock()

        def load():
            # Bounded: at most 4,000 requests in all, new connection each (curl per request).
            while not stop.is_set():
                with lock:
                    if results["ok"] + len(results["failed"]) >= 4000:
                        return
                r = self.https("/load")
                with lock:
                    if r.status == 200:
                        results["ok"] += 1
                    else:
                        results["failed"].append(r)
        threads = [threading.Thread(target=load) for _ in range(2)]
        for t in threads:
            t.start()
        try:
            wait_until(lambda: results["ok"] >= 20, 20, what="load to flow")
            self.acm.renew_certificate(CertificateArn=self.cert_arn)
            renewed = self.acm_serial()
            self.assertNotEqual(renewed, before, "RenewCertificate must issue a new certificate")
            wait_until(lambda: self.served_serial() == renewed, 20,
                       what="the gateway to serve the renewed certificate (serial %s)" % renewed)
            seen = results["ok"]
            wait_until(lambda: results["ok"] >= seen + 20, 20,
                       what="load to keep flowing after the renewal")
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        self.assertEqual(results["failed"], [], "requests failed across the renewal (%d ok)"
                         % results["ok"])
        self.assertGreater(results["ok"], 40)
        self.assertEqual(self.https().status, 200)

    def test_3_other_resources_never_get_the_key(self):
        # The plain gateway proxy runs (its own token): its pushed config carries no key.
        r = curl("http://127.0.0.1:%d/" % self.plain_port, timeout=5)
        self.assertEqual(r.status, 200, "the plain gateway: %r" % r)
        for resource in (PLAIN, "mesh/%s/virtualNode/app" % MESH):
            text = self.describe(resource)
            self.assertNotIn("private_key_pem", text,
                             "%s does not reference the certificate: %s" % (resource, text[:500]))
            self.assertTrue("PRIVATE KEY" not in text, "%s: a key in its config" % resource)
        for f in os.listdir(self.plain_state):
            if f == "identity.pem":
                continue  # the proxy's own mesh identity key, made on its host (security.md)
            with open(os.path.join(self.plain_state, f), errors="replace") as fh:
                self.assertTrue("PRIVATE KEY" not in fh.read(),
                                "the plain gateway stored a private key in %s" % f)
        status, body = self.plain.admin("/config_dump")
        text = body.decode() if isinstance(body, bytes) else body
        self.assertNotIn("private_key_pem", text)
        # The gateway's own config, as an API answers it, shows the chain but not the key.
        cfg = json.loads(self.describe(GW))
        cert = cfg["listeners"][0]["tls"]["certificate"]
        self.assertIn("BEGIN CERTIFICATE", cert["certificate_chain_pem"])
        # (assertTrue, not assertNotIn: a failure must not print the key)
        self.assertTrue("PRIVATE KEY" not in json.dumps(cfg),
                        "weft describe proxy-config must not answer the private key")
        self.assertEqual(cert.get("private_key_pem"), "[redacted]")
        # And a token for another resource cannot fetch the gateway's config.
        p = self.server.weft("token", "create", "--resource", PLAIN)
        token = os.path.join(self.tmp, "intruder.token")
        with open(token, "w") as f:
            f.write(p.stdout.strip() + "\n")
        state = os.path.join(self.tmp, "state-intruder")
        args = ["--control-plane", "127.0.0.1:%d" % self.stream_port, "--resource", GW,
                "--token-file", token,
                "--ca-file", os.path.join(self.server.data_dir, "ca-bundle.pem"),
                "--admin", "127.0.0.1:0", "--state-dir", state]
        intruder = Proxy(None, name="intruder", args=args).start(timeout=20)
        try:
            wait_until(lambda: "PERMISSION_DENIED" in intruder.log_text()
                       or "another resource" in intruder.log_text(), 15,
                       what="the intruder's refusal to be logged")
            self.assertFalse(os.path.exists(state) and os.listdir(state),
                             "a refused proxy must store nothing")
        finally:
            intruder.stop()


if __name__ == "__main__":
    unittest.main()
