"""CRLs the proxies honour (issue 7, docs/ca.md "CRLs", docs/security.md "Revocation"): a real
`weft server` with an ACM PCA root CA (boto3 acm-pca), two real weft-proxy processes fed by its
config stream, and a third weft-proxy with a config written here for the mTLS listener.

Topology (all on 127.0.0.1):
  curl --HTTP--> edge (virtual gateway, plain listener; backendDefaults clientPolicy TLS trusting
        the CA by ARN, SAN front.mesh.local)
     --HTTPS--> front (virtual gateway, STRICT TLS with the ACM certificate *.mesh.local of the CA;
        reached as virtual node "front", DNS 127.0.0.1, which has no proxy of its own)
     --HTTP--> app (the harness's echo backend)
  curl --HTTPS + client certificate--> guard (weft-proxy with a static config: STRICT TLS,
        validation trusting the CA with the CRL the server compiled for edge) --> app

What is checked:
  - edge's config carries the CA's CRL next to the trust bundle; requests flow; front counts
    edge's handshakes (which present no client certificate) in
    weft_listener_ssl_no_certificate_total.
  - A caller certificate revoked with boto3 RevokeCertificate shows up in the CRL the server
    pushes; guard refuses that caller (fail_verify_error) and accepts an unrevoked one.
  - `weft ca revoke` of front's certificate: within seconds edge's new connections to front are
    refused (503) and counted in weft_cluster_ssl_fail_verify_error_total, while front itself
    still serves (its config keeps the certificate: the refusal is edge's CRL check).
"""

import json
import os
import shutil
import subprocess
import tempfile
import unittest

from control_harness import ControlServer, make_root_ca, wait_until
from harness import Backend, Proxy, curl
from harness import free_port_refusing as free_port  # a free loopback port

MESH = "crl"
EDGE = "mesh/%s/virtualGateway/edge" % MESH
FRONT = "mesh/%s/virtualGateway/front" % MESH
FRONT_HOST = "front.mesh.local"



def run(args, **kw):
    kw.setdefault("timeout", 30)
    return subprocess.run(args, capture_output=True, text=True, **kw)


class CaCrlTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="weft-ca-crl-")
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

        # A private root CA, made as ACM PCA users make one.
        cls.ca_arn, cls.root = make_root_ca(cls.pca, "crl.mesh.local", "EC_prime256v1",
                                            "SHA256WITHECDSA")
        cls.root_file = cls.write("root.pem", cls.root)

        # front's certificate (ACM, key made by the server) and, for guard and its callers,
        # certificates issued from CSRs made here (the keys stay in this directory).
        cls.front_arn = cls.acm.request_certificate(
            DomainName="*.mesh.local", CertificateAuthorityArn=cls.ca_arn)["CertificateArn"]
        cls.guard = cls.issue_local("guard", "guard.mesh.local")
        cls.good_caller = cls.issue_local("good-caller", "good.caller.mesh.local")
        cls.bad_caller = cls.issue_local("bad-caller", "bad.caller.mesh.local")

        # The mesh.
        cls.app = Backend("app")
        cls.front_port = free_port()
        cls.edge_port = free_port()
        am = cls.server.appmesh_client()
        am.create_mesh(meshName=MESH)
        am.create_virtual_node(meshName=MESH, virtualNodeName="app", spec={
            "listeners": [{"portMapping": {"port": cls.app.port, "protocol": "http"}}],
            "serviceDiscovery": {"dns": {"hostname": "127.0.0.1"}}})
        am.create_virtual_service(meshName=MESH, virtualServiceName="app.local", spec={
            "provider": {"virtualNode": {"virtualNodeName": "app"}}})
        am.create_virtual_node(meshName=MESH, virtualNodeName="front", spec={
            "listeners": [{"portMapping": {"port": cls.front_port, "protocol": "http"}}],
            "serviceDiscovery": {"dns": {"hostname": "127.0.0.1"}}})
        am.create_virtual_service(meshName=MESH, virtualServiceName=FRONT_HOST, spec={
            "provider": {"virtualNode": {"virtualNodeName": "front"}}})
        am.create_virtual_gateway(meshName=MESH, virtualGatewayName="front", spec={
            "listeners": [{"portMapping": {"port": cls.front_port, "protocol": "http"},
                           "tls": {"mode": "STRICT", "certificate": {
                               "acm": {"certificateArn": cls.front_arn}}}}]})
        am.create_gateway_route(meshName=MESH, virtualGatewayName="front",
                                gatewayRouteName="all", spec={"httpRoute": {
                                    "match": {"prefix": "/"},
                                    "action": {"target": {"virtualService": {
                                        "virtualServiceName": "app.local"}}}}})
        am.create_virtual_gateway(meshName=MESH, virtualGatewayName="edge", spec={
            "listeners": [{"portMapping": {"port": cls.edge_port, "protocol": "http"}}],
            "backendDefaults": {"clientPolicy": {"tls": {"validation": {
                "trust": {"acm": {"certificateAuthorityArns": [cls.ca_arn]}},
                "subjectAlternativeNames": {"match": {"exact": [FRONT_HOST]}}}}}}})
        am.create_gateway_route(meshName=MESH, virtualGatewayName="edge",
                                gatewayRouteName="all", spec={"httpRoute": {
                                    "match": {"prefix": "/"},
                                    "action": {"target": {"virtualService": {
                                        "virtualServiceName": FRONT_HOST}}}}})

        cls.stream_port = cls.server_port("stream")
        cls.front = cls.start_proxy("front", FRONT)
        cls.edge = cls.start_proxy("edge", EDGE)
        for p in (cls.front, cls.edge):
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
    def write(cls, name, text):
        path = os.path.join(cls.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    @classmethod
    def issue_local(cls, stem, dns):
        """A key and CSR made with openssl here, the certificate issued by the CA (its default
        end-entity profile: serverAuth + clientAuth). Answers {cert, key, arn, serial_hex (as
        in the ARN), serial (lower-case without leading zeros, as revoked_serials gives)}."""
        key = os.path.join(cls.tmp, stem + ".key")
        csr = os.path.join(cls.tmp, stem + ".csr")
        r = run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-nodes", "-subj", "/CN=" + dns, "-addext", "subjectAltName=DNS:" + dns,
                 "-keyout", key, "-out", csr])
        if r.returncode != 0:
            raise AssertionError("openssl req for %s: %s" % (stem, r.stderr))
        with open(csr, "rb") as f:
            csr_pem = f.read()
        arn = cls.pca.issue_certificate(
            CertificateAuthorityArn=cls.ca_arn, Csr=csr_pem, SigningAlgorithm="SHA256WITHECDSA",
            Validity={"Value": 30, "Type": "DAYS"})["CertificateArn"]
        pem = cls.pca.get_certificate(CertificateAuthorityArn=cls.ca_arn,
                                      CertificateArn=arn)["Certificate"]
        serial_hex = arn.rsplit("/", 1)[1]
        return {"cert": cls.write(stem + ".crt", pem), "key": key, "arn": arn,
                "serial_hex": serial_hex, "serial": serial_hex.lower().lstrip("0")}

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
        token_file = cls.write(name + ".token", p.stdout.strip() + "\n")
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

    def edge_get(self, path="/"):
        return curl("http://127.0.0.1:%d%s" % (self.edge_port, path), timeout=5)

    def edge_crl_pem(self):
        """The crl_pem of edge's TLS cluster in the config the server compiled for it."""
        p = self.server.weft("describe", "proxy-config", "--resource", EDGE)
        self.assertEqual(p.returncode, 0, "weft describe proxy-config: %s" % p.stderr)
        cfg = json.loads(p.stdout)
        for c in cfg.get("clusters", []):
            v = c.get("tls", {}).get("validation", {})
            if v.get("trust_bundle_pem"):
                return v.get("crl_pem", "")
        self.fail("edge's config has no cluster trusting the CA: %s" % p.stdout[:2000])

    def revoked_serials(self, crl_pem):
        """Lower-case hex serials (no leading zeros) a CRL lists, by `openssl crl`."""
        r = run(["openssl", "crl", "-noout", "-text"], input=crl_pem)
        self.assertEqual(r.returncode, 0, "openssl crl: %s" % r.stderr)
        out = set()
        for line in r.stdout.splitlines():
            line = line.strip()
            if line.startswith("Serial Number:"):
                out.add(line.split(":", 1)[1].strip().lower().lstrip("0"))
        return out

    def served_serial(self):
        """The serial front serves (openssl s_client verifying against the root, no CRL)."""
        r = subprocess.run(
            ["openssl", "s_client", "-connect", "127.0.0.1:%d" % self.front_port, "-servername",
             FRONT_HOST, "-CAfile", self.root_file, "-verify_return_error"],
            input=b"", capture_output=True, timeout=15)
        self.assertEqual(r.returncode, 0, "openssl s_client: %s" % r.stderr.decode()[-2000:])
        x = run(["openssl", "x509", "-noout", "-serial"], input=r.stdout.decode())
        self.assertEqual(x.returncode, 0, x.stderr)
        return x.stdout.strip().split("=", 1)[1].lower().lstrip("0")

    def acm_serial(self, arn):
        d = self.acm.describe_certificate(CertificateArn=arn)["Certificate"]
        return d["Serial"].replace(":", "").lower().lstrip("0")

    # ---- tests

    def test_1_requests_flow_with_the_crl_in_the_trust(self):
        r = self.edge_get("/hello")
        self.assertEqual(r.status, 200, "edge -> TLS -> front -> app: %r\nedge log:\n%s"
                         % (r, self.edge.log_text()))
        self.assertEqual(r.json()["backend"], "app")
        crl = self.edge_crl_pem()
        self.assertIn("-----BEGIN X509 CRL-----", crl,
                      "edge's trust must carry the CA's CRL next to its certificate")
        self.assertEqual(self.revoked_serials(crl), set(), "nothing is revoked yet")
        # edge presents no client certificate to front: Envoy's ssl.no_certificate.
        listener = wait_until(lambda: self.front.metric("weft_listener_ssl_no_certificate_total"),
                              10, what="front's weft_listener_ssl_no_certificate_total to count")
        self.assertGreaterEqual(listener, 1)
        self.assertGreaterEqual(self.front.metric("weft_listener_ssl_handshake_total"), listener)
        self.assertIn("weft_cluster_ssl_crl_expired_total", self.edge.metrics())

    def test_2_mtls_listener_refuses_a_revoked_caller(self):
        bad = self.bad_caller
        self.pca.revoke_certificate(CertificateAuthorityArn=self.ca_arn,
                                    CertificateSerial=bad["serial_hex"],
                                    RevocationReason="KEY_COMPROMISE")
        # The server pushes the new CRL to every config trusting the CA.
        def crl_listing_it():
            pem = self.edge_crl_pem()
            return pem if bad["serial"] in self.revoked_serials(pem) else None

        crl = wait_until(crl_listing_it, 15, interval=0.2,
                         what="the compiled CRL to list serial %s" % bad["serial"])
        self.assertNotIn(self.good_caller["serial"], self.revoked_serials(crl))

        config = {
            "node": "guard",
            "admin": {"address": "127.0.0.1", "port": 0},
            "listeners": [{
                "name": "guard", "address": "127.0.0.1", "port": 0,
                "tls": {"mode": "STRICT",
                        "certificate": {"certificate_chain_file": self.guard["cert"],
                                        "private_key_file": self.guard["key"]},
                        "validation": {"trust_bundle_pem": self.root, "crl_pem": crl}},
                "route_config": {"virtual_hosts": [{
                    "name": "all", "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"},
                                "route": {"clusters": [{"name": "app"}]}}]}]}}],
            "clusters": [{"name": "app",
                          "endpoints": [{"address": "127.0.0.1", "port": self.app.port}]}],
        }
        guard = Proxy(config, name="guard").start()
        self.proxies_started.append(guard)
        port = guard.port("guard")
        url = "https://guard.mesh.local:%d/who" % port
        base = ["--cacert", self.root_file, "--resolve", "guard.mesh.local:%d:127.0.0.1" % port]

        good = curl(url, *base, "--cert", self.good_caller["cert"], "--key",
                    self.good_caller["key"], timeout=5)
        self.assertEqual(good.status, 200, "an unrevoked caller: %r\nguard log:\n%s"
                         % (good, guard.log_text()))
        self.assertEqual(good.json()["backend"], "app")

        refused = curl(url, *base, "--cert", bad["cert"], "--key", bad["key"], timeout=5)
        self.assertNotEqual(refused.status, 200, "the revoked caller must be refused: %r" % refused)
        wait_until(lambda: guard.metric("weft_listener_ssl_fail_verify_error_total",
                                        listener="guard") >= 1, 10,
                   what="guard to count the revoked caller in ssl_fail_verify_error")

        none = curl(url, *base, timeout=5)
        self.assertNotEqual(none.status, 200, "no client certificate: refused: %r" % none)
        wait_until(lambda: guard.metric("weft_listener_ssl_fail_verify_no_cert_total",
                                        listener="guard") >= 1, 10,
                   what="guard to count the caller without a certificate")
        self.assertEqual(guard.metric("weft_listener_ssl_no_certificate_total", listener="guard"),
                         0, "a listener requiring client certificates has no successful "
                         "handshake without one")

    def test_3_revoking_the_servers_certificate_stops_new_connections(self):
        r = self.edge_get("/before")
        self.assertEqual(r.status, 200, "before the revocation: %r" % r)
        before = self.edge.metric("weft_cluster_ssl_fail_verify_error_total")
        serial = self.acm_serial(self.front_arn)
        self.assertEqual(self.served_serial(), serial)

        p = self.server.weft("ca", "revoke", self.front_arn, "--reason", "KEY_COMPROMISE")
        self.assertEqual(p.returncode, 0, "weft ca revoke: %s %s" % (p.stdout, p.stderr))

        # Within seconds the pushed CRL lists it and edge's new connections are refused.
        results = []

        def refused():
            r = self.edge_get("/after")
            results.append(r)
            return r.status == 503

        try:
            wait_until(refused, 20, interval=0.2,
                       what="edge to refuse front's revoked certificate (503)")
        except AssertionError as e:
            raise AssertionError("%s; statuses seen: %s\nedge log:\n%s\nserver log:\n%s"
                                 % (e, [r.status for r in results[-20:]], self.edge.log_text(),
                                    self.server.log()[-3000:])) from None
        self.assertLessEqual(len(results), 100)
        self.assertIn(serial, self.revoked_serials(self.edge_crl_pem()))
        after = self.edge.metric("weft_cluster_ssl_fail_verify_error_total")
        self.assertGreater(after, before,
                           "a revoked server certificate counts as a verification error")
        body = results[-1].body.decode("utf-8", "replace")
        self.assertIn("certificate revoked", body,
                      "edge's 503 must say why the upstream handshake failed: %r" % body)
        # The refusal is edge's: front still serves the same certificate (its own config kept it,
        # the server refusing to compile a revoked certificate into a new one).
        self.assertEqual(self.served_serial(), serial)
        again = self.edge_get("/again")
        self.assertEqual(again.status, 503, "still refused: %r" % again)


if __name__ == "__main__":
    unittest.main()
