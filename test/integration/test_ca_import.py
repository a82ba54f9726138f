"""Bring your own PKI, short-lived ACM certificates and SDS secret names (issue 7; docs/ca.md,
docs/security.md), against a real `weft server` and real weft-proxy processes on 127.0.0.1.

1. A root CA made with the openssl CLI (encrypted key) and a subordinate it signs are imported
   with `weft ca import`; `weft ca issue --validity-days 2` gets ACM certificates of each;
   `openssl verify` accepts them and their notAfter is two days out.
2. Two gateway proxies talk mutual TLS configured only with App Mesh SDS secret names: the
   certificate is each proxy's own SPIFFE ID (its mesh identity), the trust is spiffe://MESH
   (the mesh identity CA):
     curl --HTTP--> weft-proxy (virtual gateway front, plain listener)
        --mTLS (client: sds spiffe://M/virtualGateway/front, trust sds spiffe://M,
                SAN spiffe://M/virtualGateway/back)-->
     weft-proxy (virtual gateway back, STRICT listener: sds spiffe://M/virtualGateway/back,
                 validation trust sds spiffe://M) --HTTP--> the echo backend
   (node "back" is the address of the back gateway: 127.0.0.1 and its port.) A name weft does
   not serve fails the compilation naming the field (`weft describe proxy-config`).
"""

import json
import os
import shutil
import subprocess
import tempfile
import unittest

from control_harness import ControlServer, wait_until
from harness import Backend, Proxy, curl
from harness import free_port_refusing as free_port  # a free loopback port

MESH = "sds"
FRONT = "mesh/%s/virtualGateway/front" % MESH
BACK = "mesh/%s/virtualGateway/back" % MESH
DAY = 86400



def openssl(*args, check=True, input=None):
    r = subprocess.run(["openssl"] + [str(a) for a in args], capture_output=True, text=True,
                       timeout=60, input=input)
    if check and r.returncode != 0:
        raise AssertionError("openssl %s failed (%d): %s"
                             % (" ".join(map(str, args)), r.returncode, r.stderr.strip()))
    return r


class ImportAndShortLivedTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="weft-ca-import-")
        cls.server = ControlServer()
        cls.server.start()

    @classmethod
    def tearDownClass(cls):
        cls.server.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.tmp, name)

    def weft(self, *args):
        return self.server.weft(*args)

    def ok(self, *args):
        p = self.weft(*args)
        self.assertEqual(p.returncode, 0, "weft %s: exit %d: %s"
                         % (" ".join(args), p.returncode, p.stderr))
        return p.stdout.strip()

    def assert_valid_for_two_days(self, pem_file):
        # -checkend N: exit 0 when the certificate is still valid N seconds from now.
        self.assertEqual(openssl("x509", "-in", pem_file, "-noout", "-checkend", 2 * DAY - 3600,
                                 check=False).returncode, 0,
                         "the certificate must be valid for (almost) two more days")
        self.assertEqual(openssl("x509", "-in", pem_file, "-noout", "-checkend", 2 * DAY + 3600,
                                 check=False).returncode, 1,
                         "the certificate must expire about two days from now, not later: %s"
                         % openssl("x509", "-in", pem_file, "-noout", "-enddate").stdout)

    def test_root_and_subordinate_made_with_openssl(self):
        with open(self.path("pass"), "w") as f:
            f.write("correct horse battery\n")
        # The root: EC P-256, its key encrypted (PKCS#8) with the passphrase.
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-keyout", self.path("root.key"), "-passout", "file:" + self.path("pass"),
                "-out", self.path("root.pem"), "-days", 3650, "-subj", "/O=Own PKI/CN=Own Root",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        with open(self.path("root.key")) as f:
            self.assertIn("ENCRYPTED", f.read())

        no_pass = self.weft("ca", "import", "--certificate", self.path("root.pem"),
                            "--private-key", self.path("root.key"))
        self.assertEqual(no_pass.returncode, 1, no_pass.stderr)
        self.assertIn("passphrase", no_pass.stderr)
        self.assertTrue("PRIVATE KEY" not in no_pass.stderr + self.server.log(),
                        "no key material in the CLI's error or the server's log")

        root_arn = self.ok("ca", "import", "--certificate", self.path("root.pem"),
                           "--private-key", self.path("root.key"),
                           "--passphrase-file", self.path("pass"))
        self.assertRegex(root_arn, r"^arn:aws:acm-pca:[^:]+:\d+:certificate-authority/[0-9a-f-]{36}$")
        described = json.loads(self.ok("ca", "describe", root_arn, "-o", "json"))
        self.assertEqual(described["Status"], "ACTIVE")
        self.assertEqual(described["Type"], "ROOT")
        self.assertEqual(described["CertificateAuthorityConfiguration"]["Subject"],
                         {"Organization": "Own PKI", "CommonName": "Own Root"})
        self.assertTrue("PRIVATE KEY" not in self.server.log(), "no key in the server's log")

        # A two-day ACM certificate of it.
        leaf_arn = self.ok("ca", "issue", "--ca", root_arn, "--domain", "api.own.local",
                           "--validity-days", "2")
        with open(self.path("leaf.pem"), "w") as f:
            f.write(self.ok("ca", "get-certificate", leaf_arn) + "\n")
        v = openssl("verify", "-CAfile", self.path("root.pem"), self.path("leaf.pem"), check=False)
        self.assertEqual(v.returncode, 0, "openssl verify: %s%s" % (v.stdout, v.stderr))
        self.assert_valid_for_two_days(self.path("leaf.pem"))
        too_long = self.weft("ca", "issue", "--ca", root_arn, "--domain", "x.own.local",
                             "--validity-days", "5000")
        self.assertEqual(too_long.returncode, 1, too_long.stdout)
        self.assertIn("at most", too_long.stderr)

        # A subordinate the root signs (plain key), imported with its chain.
        with open(self.path("sub.ext"), "w") as f:
            f.write("[v3]\nbasicConstraints=critical,CA:TRUE,pathlen:0\n"
                    "keyUsage=critical,keyCertSign,cRLSign\n"
                    "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
        openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", self.path("sub.key"),
                "-out", self.path("sub.csr"), "-subj", "/O=Own PKI/CN=Own Issuing CA")
        openssl("x509", "-req", "-in", self.path("sub.csr"), "-CA", self.path("root.pem"),
                "-CAkey", self.path("root.key"), "-passin", "file:" + self.path("pass"),
                "-set_serial", "4242", "-days", 1000, "-extfile", self.path("sub.ext"),
                "-extensions", "v3", "-out", self.path("sub.pem"))
        no_chain = self.weft("ca", "import", "--certificate", self.path("sub.pem"),
                             "--private-key", self.path("sub.key"))
        self.assertEqual(no_chain.returncode, 1, no_chain.stdout)
        self.assertIn("CertificateChain", no_chain.stderr)
        sub_arn = self.ok("ca", "import", "--certificate", self.path("sub.pem"),
                          "--private-key", self.path("sub.key"),
                          "--certificate-chain", self.path("root.pem"))
        self.assertEqual(json.loads(self.ok("ca", "describe", sub_arn, "-o", "json"))["Type"],
                         "SUBORDINATE")
        sub_leaf = self.ok("ca", "issue", "--ca", sub_arn, "--domain", "web.own.local",
                           "--validity-days", "2")
        with open(self.path("sub-leaf.pem"), "w") as f:
            f.write(self.ok("ca", "get-certificate", sub_leaf) + "\n")
        with open(self.path("sub-chain.pem"), "w") as f:
            f.write(self.ok("ca", "get-certificate", sub_leaf, "--chain") + "\n")
        v = openssl("verify", "-CAfile", self.path("root.pem"), "-untrusted",
                    self.path("sub-chain.pem"), self.path("sub-leaf.pem"), check=False)
        self.assertEqual(v.returncode, 0, "openssl verify (subordinate): %s%s"
                         % (v.stdout, v.stderr))
        self.assert_valid_for_two_days(self.path("sub-leaf.pem"))

        # Not a CA: refused, naming why.
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", self.path("ee.key"), "-out", self.path("ee.pem"), "-days", 30,
                "-subj", "/CN=ee.own.local", "-addext", "basicConstraints=critical,CA:FALSE")
        ee = self.weft("ca", "import", "--certificate", self.path("ee.pem"),
                       "--private-key", self.path("ee.key"))
        self.assertEqual(ee.returncode, 1, ee.stdout)
        self.assertIn("CA:TRUE", ee.stderr)


class SdsSecretNamesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="weft-sds-")
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
        cls.app = Backend("app")
        cls.front_port = free_port()
        cls.back_port = free_port()
        am = cls.server.appmesh_client()
        am.create_mesh(meshName=MESH)
        # Identities on before any config needs the mesh identity CA's bundle.
        p = cls.server.weft("mesh", "policy", MESH, "--mtls", "permissive")
        if p.returncode != 0:
            raise AssertionError("weft mesh policy: %s" % p.stderr)
        am.create_virtual_node(meshName=MESH, virtualNodeName="app", spec={
            "listeners": [{"portMapping": {"port": cls.app.port, "protocol": "http"}}],
            "serviceDiscovery": {"dns": {"hostname": "127.0.0.1"}}})
        am.create_virtual_service(meshName=MESH, virtualServiceName="app.local", spec={
            "provider": {"virtualNode": {"virtualNodeName": "app"}}})
        # "back" is the back gateway's address, so the front gateway's traffic reaches it.
        am.create_virtual_node(meshName=MESH, virtualNodeName="back", spec={
            "listeners": [{"portMapping": {"port": cls.back_port, "protocol": "http"}}],
            "serviceDiscovery": {"dns": {"hostname": "127.0.0.1"}}})
        am.create_virtual_service(meshName=MESH, virtualServiceName="back.local", spec={
            "provider": {"virtualNode": {"virtualNodeName": "back"}}})
        trust = {"trust": {"sds": {"secretName": "spiffe://%s" % MESH}}}
        am.create_virtual_gateway(meshName=MESH, virtualGatewayName="back", spec={
            "listeners": [{"portMapping": {"port": cls.back_port, "protocol": "http"},
                           "tls": {"mode": "STRICT",
                                   "certificate": {"sds": {
                                       "secretName": "spiffe://%s/virtualGateway/back" % MESH}},
                                   "validation": trust}}]})
        am.create_virtual_gateway(meshName=MESH, virtualGatewayName="front", spec={
            "listeners": [{"portMapping": {"port": cls.front_port, "protocol": "http"}}],
            "backendDefaults": {"clientPolicy": {"tls": {
                "certificate": {"sds": {
                    "secretName": "spiffe://%s/virtualGateway/front" % MESH}},
                "validation": dict(trust, subjectAlternativeNames={"match": {"exact": [
                    "spiffe://%s/virtualGateway/back" % MESH]}})}}}})
        for gw, service in (("back", "app.local"), ("front", "back.local")):
            am.create_gateway_route(meshName=MESH, virtualGatewayName=gw, gatewayRouteName="all",
                                    spec={"httpRoute": {
                                        "match": {"prefix": "/"},
                                        "action": {"target": {"virtualService": {
                                            "virtualServiceName": service}}}}})
        if hasattr(am, "close"):
            am.close()
        cls.stream_port = cls.server_port("stream")
        cls.back = cls.start_proxy("back", BACK)
        cls.front = cls.start_proxy("front", FRONT)
        for p in (cls.back, cls.front):
            try:
                wait_until(lambda p=p: cls.ready(p), 30, what="/ready of proxy %s" % p.name)
            except AssertionError as e:
                raise AssertionError("%s\nproxy log:\n%s\nserver log:\n%s"
                                     % (e, p.log_text()[-3000:], cls.server.log()[-3000:])) from None

    @classmethod
    def tearDownClass(cls):
        for p in cls.proxies_started:
            p.stop()
        cls.server.close()
        if getattr(cls, "app", None):
            cls.app.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

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
        cls.proxies_started.append(proxy)
        return proxy

    @staticmethod
    def ready(proxy):
        try:
            return proxy.admin("/ready")[0] == 200
        except OSError:
            return False

    def describe(self, resource):
        return self.server.weft("describe", "proxy-config", "--resource", resource)

    def test_1_configs_name_the_mesh_identity(self):
        p = self.describe(BACK)
        self.assertEqual(p.returncode, 0, p.stderr)
        tls = json.loads(p.stdout)["listeners"][0]["tls"]
        self.assertTrue(tls["certificate"].get("mesh_identity"), tls)
        self.assertIn("BEGIN CERTIFICATE", tls["validation"]["trust_bundle_pem"])
        p = self.describe(FRONT)
        self.assertEqual(p.returncode, 0, p.stderr)
        clusters = [c for c in json.loads(p.stdout)["clusters"] if c.get("tls")]
        self.assertEqual(len(clusters), 1, clusters)
        self.assertTrue(clusters[0]["tls"]["certificate"].get("mesh_identity"))
        self.assertEqual(clusters[0]["tls"]["validation"]["match_subject_alt_names"],
                         [{"uri": "spiffe://%s/virtualGateway/back" % MESH}])

    def test_2_two_proxies_talk_mutual_tls_by_sds_names(self):
        def call():
            r = curl("http://127.0.0.1:%d/through" % self.front_port, timeout=5)
            return r if r.status == 200 else None
        try:
            r = wait_until(call, 30, what="a 200 through front -> back (mTLS by SDS names)")
        except AssertionError as e:
            raise AssertionError("%s\nfront log:\n%s\nback log:\n%s"
                                 % (e, self.front.log_text()[-3000:],
                                    self.back.log_text()[-3000:])) from None
        self.assertEqual(r.json()["backend"], "app")
        # The back gateway is TLS only and serves its identity certificate.
        plain = curl("http://127.0.0.1:%d/" % self.back_port, timeout=5)
        self.assertNotEqual(plain.status, 200, "STRICT must refuse plaintext: %r" % plain)
        # Its validation (trust sds spiffe://MESH) asks for a client certificate: none, no answer.
        anonymous = curl("https://127.0.0.1:%d/" % self.back_port, "-k", timeout=5)
        self.assertNotEqual(anonymous.status, 200,
                            "a client without a mesh identity must be refused: %r" % anonymous)
        cfg = json.loads(self.describe(BACK).stdout)
        root = os.path.join(self.tmp, "mesh-root.pem")
        with open(root, "w") as f:
            f.write(cfg["listeners"][0]["tls"]["validation"]["trust_bundle_pem"])
        s = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % self.back_port,
                            "-CAfile", root, "-verify_return_error"],
                           input=b"", capture_output=True, timeout=15)
        x = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName"],
                           input=s.stdout, capture_output=True, timeout=15)
        self.assertIn(b"URI:spiffe://%s/virtualGateway/back" % MESH.encode(), x.stdout,
                      "the back gateway must serve its mesh identity: %s %s"
                      % (x.stdout, s.stderr[-1000:]))

    def test_3_other_names_fail_naming_the_field(self):
        am = self.server.appmesh_client()
        am.create_virtual_gateway(meshName=MESH, virtualGatewayName="wrong", spec={
            "listeners": [{"portMapping": {"port": free_port(), "protocol": "http"},
                           "tls": {"mode": "STRICT", "certificate": {"sds": {
                               "secretName": "spiffe://%s/virtualGateway/back" % MESH}}}}]})
        if hasattr(am, "close"):
            am.close()
        p = self.describe("mesh/%s/virtualGateway/wrong" % MESH)
        self.assertNotEqual(p.returncode, 0, p.stdout)
        self.assertIn("tls.certificate.sds.secretName", p.stderr)
        self.assertIn("spiffe://%s/virtualGateway/wrong" % MESH, p.stderr)


if __name__ == "__main__":
    unittest.main()
