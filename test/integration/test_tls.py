"""TLS: listener modes, mutual TLS and SAN matching, upstream TLS origination, certificate
rotation without restart."""

import os
import re
import shutil
import unittest

import harness as h

CERTS = None
HOST = "www.example.test"


def setUpModule():
    global CERTS
    CERTS = h.Certs()


def tearDownModule():
    if CERTS:
        CERTS.close()


def tls_block(mode="STRICT", cert="server", validation=None, **extra):
    t = {"mode": mode, "certificate": {"certificate_chain_file": CERTS.pem(cert),
                                       "private_key_file": CERTS.key(cert)}}
    if validation is not None:
        t["validation"] = validation
    t.update(extra)
    return t


def https(port, path="/", *args, cert=None, ca=True, host=HOST, timeout=10):
    extra = ["--resolve", "%s:%d:127.0.0.1" % (host, port)]
    if ca:
        extra += ["--cacert", CERTS.pem("ca")]
    if cert:
        extra += ["--cert", CERTS.pem(cert), "--key", CERTS.key(cert)]
    return h.curl("https://%s:%d%s" % (host, port, path), *(extra + list(args)), timeout=timeout)


class ListenerTlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.backend = h.Backend("plain")
        cls.addClassCleanup(cls.backend.close)
        route = [h.route_to("backend")]
        mtls = {"trust_bundle_file": CERTS.pem("ca")}
        cfg = {
            "admin": h.admin_cfg(),
            "listeners": [
                h.listener("strict", route, tls=tls_block("STRICT")),
                h.listener("permissive", route, tls=tls_block("PERMISSIVE")),
                h.listener("mtls", route, tls=tls_block("STRICT", validation=mtls)),
                h.listener("san_ok", route, tls=tls_block("STRICT", validation={
                    "trust_bundle_file": CERTS.pem("ca"),
                    "match_subject_alt_names": [{"uri": "spiffe://weft.test/ns/x/sa/nobody"},
                                                {"uri": h.Certs.CLIENT_URI}]})),
                h.listener("san_bad", route, tls=tls_block("STRICT", validation={
                    "trust_bundle_file": CERTS.pem("ca"),
                    "match_subject_alt_names": [{"uri": "spiffe://weft.test/ns/x/sa/nobody"},
                                                {"dns": "other.example.test"}]})),
                h.listener("tls13", route, tls=tls_block("STRICT", min_version="TLS_1_3")),
            ],
            "clusters": [h.cluster("backend", [cls.backend.port])],
        }
        cls.proxy = h.Proxy(cfg, name="tls")
        cls.addClassCleanup(cls.proxy.stop)
        cls.proxy.start()

    def p(self, name):
        return self.proxy.port(name)

    def assertOk(self, r, what):
        self.assertEqual(r.status, 200, "%s: expected 200, got %r" % (what, r))

    def assertFails(self, r, what):
        self.assertNotEqual(r.status, 200, "%s: expected the request to fail, got %r" % (what, r))
        self.assertNotEqual(r.rc, 0, "%s: expected curl to fail, it exited 0" % what)

    def test_strict_handshake_and_request(self):
        r = https(self.p("strict"), "/secure")
        self.assertOk(r, "HTTPS to a STRICT listener with the CA")
        echo = r.json()
        self.assertEqual(echo["h"].get("x-forwarded-proto"), "https",
                         "x-forwarded-proto over TLS should be https")
        self.assertEqual(r.headers.get("server"), "weft")

    def test_strict_alpn_prefers_h2_and_keeps_http11(self):
        rc, out, err = h.s_client(self.p("strict"), ca=CERTS.pem("ca"), alpn="h2,http/1.1")
        self.assertEqual(rc, 0, "s_client failed: %s" % err[-500:])
        self.assertIn("ALPN protocol: h2", out,
                      "expected ALPN h2 to be selected (offered by default); "
                      "s_client said: %s" % re.findall(r".*ALPN.*", out))
        self.assertIn("Verify return code: 0 (ok)", out)
        rc, out, err = h.s_client(self.p("strict"), ca=CERTS.pem("ca"), alpn="http/1.1")
        self.assertEqual(rc, 0, "s_client failed: %s" % err[-500:])
        self.assertIn("ALPN protocol: http/1.1", out, "a client offering only http/1.1 gets it")
        r = https(self.p("strict"), "/alpn", "-v", "--http1.1")
        self.assertIn("ALPN: server accepted http/1.1", r.stderr,
                      "curl -v --http1.1 should report ALPN http/1.1; stderr: %s" % r.stderr[-800:])

    def test_strict_verify_fails_with_wrong_name(self):
        r = https(self.p("strict"), "/", host="www.other.test")
        self.assertFails(r, "curl verifying the server cert against www.other.test")

    def test_plaintext_to_strict_fails(self):
        r = h.curl("http://127.0.0.1:%d/" % self.p("strict"))
        self.assertFails(r, "plaintext HTTP to a STRICT listener")
        r = https(self.p("strict"), "/after-plaintext")
        self.assertOk(r, "TLS to STRICT after a plaintext attempt")

    def test_permissive_accepts_both(self):
        port = self.p("permissive")
        r = h.curl("http://127.0.0.1:%d/plain" % port)
        self.assertOk(r, "plaintext to PERMISSIVE")
        self.assertEqual(r.json()["h"].get("x-forwarded-proto"), "http")
        r = https(port, "/tls")
        self.assertOk(r, "TLS to PERMISSIVE")
        # Both on one keep-alive each, to be sure sniffing does not eat bytes.
        rc, out, err = h.curl_multi(["http://127.0.0.1:%d/p1" % port,
                                     "http://127.0.0.1:%d/p2" % port])
        self.assertEqual(re.findall(r"@@(\d+) (\d+)", out), [("200", "1"), ("200", "0")],
                         "two plaintext requests on one PERMISSIVE connection: %s %s" % (out, err))

    def test_mtls_requires_client_cert(self):
        port = self.p("mtls")
        before = self.proxy.metric("weft_listener_ssl_connection_error_total", listener="mtls")
        r = https(port, "/nocert")
        self.assertFails(r, "mTLS listener without a client certificate")
        r = https(port, "/cert", cert="client")
        self.assertOk(r, "mTLS listener with a trusted client certificate")
        r = https(port, "/othercert", cert="other-client")
        self.assertFails(r, "mTLS listener with a client certificate from an untrusted CA")
        after = h.wait_until(
            lambda: (lambda v: v if v >= before + 2 else None)(
                self.proxy.metric("weft_listener_ssl_connection_error_total", listener="mtls")),
            5, what="weft_listener_ssl_connection_error_total{listener=mtls} to grow by 2 "
                    "from %d (two refused handshakes)" % before)
        self.assertEqual(after, before + 2)

    def test_listener_san_matcher(self):
        r = https(self.p("san_ok"), "/", cert="client")
        self.assertOk(r, "client cert URI SAN matching the listener's matchers")
        r = https(self.p("san_bad"), "/", cert="client")
        self.assertFails(r, "client cert whose SANs match none of the listener's matchers")

    def test_verify_failure_counters(self):
        # Each kind of refused client certificate has its own counter.
        cases = [("mtls", None, "weft_listener_ssl_fail_verify_no_cert_total"),
                 ("mtls", "other-client", "weft_listener_ssl_fail_verify_error_total"),
                 ("san_bad", "client", "weft_listener_ssl_fail_verify_san_total")]
        for listener, cert, counter in cases:
            before = self.proxy.metric(counter, listener=listener)
            r = https(self.p(listener), "/", cert=cert)
            self.assertFails(r, "listener %s with client cert %s" % (listener, cert))
            h.wait_until(lambda: self.proxy.metric(counter, listener=listener) == before + 1, 5,
                         what="%s{listener=%s} to grow from %d to %d after a refused "
                              "handshake (client cert: %s)" % (counter, listener, before,
                                                                before + 1, cert))

    def test_tls_version_floor(self):
        rc, out, err = h.s_client(self.p("tls13"), ca=CERTS.pem("ca"), extra=["-tls1_2"])
        self.assertNotEqual(rc, 0, "a TLS 1.2-only client should be refused by a TLS_1_3 "
                            "listener; s_client: %s" % out[-400:])
        rc, out, err = h.s_client(self.p("tls13"), ca=CERTS.pem("ca"), extra=["-tls1_3"])
        self.assertEqual(rc, 0, "TLS 1.3 client: %s" % err[-400:])
        self.assertIn("TLSv1.3", out)

    def test_handshake_counted(self):
        before = self.proxy.metric("weft_listener_ssl_handshake_total", listener="strict")
        self.assertOk(https(self.p("strict"), "/count"), "counted handshake")
        after = self.proxy.metric("weft_listener_ssl_handshake_total", listener="strict")
        self.assertEqual(after, before + 1, "ssl_handshake_total: expected %d, got %d"
                         % (before + 1, after))


class UpstreamTlsTest(unittest.TestCase):
    """front proxy --TLS--> tls backend (a second weft-proxy, STRICT + mTLS) --> python backend."""

    @classmethod
    def setUpClass(cls):
        cls.backend = h.Backend("behind-tls")
        cls.addClassCleanup(cls.backend.close)
        back_cfg = {
            "admin": h.admin_cfg(),
            "listeners": [
                h.listener("tls", [h.route_to("backend")], tls=tls_block("STRICT")),
                h.listener("mtls", [h.route_to("backend")], tls=tls_block(
                    "STRICT", validation={"trust_bundle_file": CERTS.pem("ca"),
                                          "match_subject_alt_names": [
                                              {"uri": h.Certs.CLIENT_URI}]})),
            ],
            "clusters": [h.cluster("backend", [cls.backend.port])],
        }
        cls.tls_backend = h.Proxy(back_cfg, name="tls-backend")
        cls.addClassCleanup(cls.tls_backend.stop)
        cls.tls_backend.start()
        tls_port = cls.tls_backend.port("tls")
        mtls_port = cls.tls_backend.port("mtls")

        def up(validation, sni=HOST, cert=None):
            t = {"validation": validation}
            if sni:
                t["sni"] = sni
            if cert:
                t["certificate"] = {"certificate_chain_file": CERTS.pem(cert),
                                    "private_key_file": CERTS.key(cert)}
            return t

        ca = CERTS.pem("ca")
        clusters = [
            h.cluster("san_ok", [tls_port], tls=up(
                {"trust_bundle_file": ca,
                 "match_subject_alt_names": [{"dns": "api.example.test"}]})),
            h.cluster("san_uri_ok", [tls_port], tls=up(
                {"trust_bundle_file": ca,
                 "match_subject_alt_names": [{"uri": h.Certs.SERVER_URI}]})),
            h.cluster("san_bad", [tls_port], tls=up(
                {"trust_bundle_file": ca,
                 "match_subject_alt_names": [{"uri": "spiffe://weft.test/ns/x/sa/nobody"}]})),
            h.cluster("sni_only", [tls_port], tls=up({"trust_bundle_file": ca})),
            h.cluster("sni_wrong", [tls_port], tls=up({"trust_bundle_file": ca},
                                                      sni="www.other.test")),
            h.cluster("untrusted", [tls_port], tls=up({"trust_bundle_file":
                                                       CERTS.pem("other-ca")})),
            h.cluster("mtls_ok", [mtls_port], tls=up({"trust_bundle_file": ca}, cert="client")),
            h.cluster("mtls_nocert", [mtls_port], tls=up({"trust_bundle_file": ca})),
        ]
        routes = [h.route_to(c["name"], prefix="/" + c["name"] + "/") for c in clusters]
        cls.front = h.Proxy({"admin": h.admin_cfg(), "listeners": [h.listener("front", routes)],
                             "clusters": clusters}, name="tls-front")
        cls.addClassCleanup(cls.front.stop)
        cls.front.start()
        cls.port = cls.front.port("front")

    def req(self, cluster_name):
        return h.curl("http://127.0.0.1:%d/%s/x" % (self.port, cluster_name))

    def ssl_errors(self, cluster_name):
        return self.front.metric("weft_cluster_ssl_connection_error_total", cluster=cluster_name)

    def assertThrough(self, cluster_name):
        r = self.req(cluster_name)
        self.assertEqual(r.status, 200, "through cluster %s (TLS to the backend proxy): expected "
                         "200, got %r; front log:\n%s" % (cluster_name, r,
                                                          self.front.log_text(1500)))
        echo = r.json()
        self.assertEqual(echo["backend"], "behind-tls")
        self.assertEqual(echo["h"].get("x-forwarded-proto"), "https",
                         "the backend proxy received TLS, so it says https")
        return r

    def assertRefused(self, cluster_name):
        before = self.ssl_errors(cluster_name)
        r = self.req(cluster_name)
        self.assertEqual(r.status, 503, "cluster %s should fail the TLS handshake: expected 503, "
                         "got %r" % (cluster_name, r))
        after = self.ssl_errors(cluster_name)
        self.assertGreater(after, before, "weft_cluster_ssl_connection_error_total{cluster=%s} "
                           "should grow: %d -> %d" % (cluster_name, before, after))

    def test_san_dns_match(self):
        self.assertThrough("san_ok")
        hs = self.front.metric("weft_cluster_ssl_handshake_total", cluster="san_ok")
        self.assertGreaterEqual(hs, 1, "cluster ssl_handshake_total should count the handshake")

    def test_san_uri_match(self):
        self.assertThrough("san_uri_ok")

    def test_sni_hostname_verification(self):
        self.assertThrough("sni_only")

    def test_san_mismatch_503(self):
        self.assertRefused("san_bad")

    def test_sni_mismatch_503(self):
        self.assertRefused("sni_wrong")

    def test_untrusted_ca_503(self):
        self.assertRefused("untrusted")

    def test_upstream_mtls(self):
        self.assertThrough("mtls_ok")
        # With TLS 1.3 the server rejects the missing client certificate after the client has
        # finished its handshake, so the proxy may see it as a reset (502) rather than a failed
        # connect (503); either way the request must fail.
        r = self.req("mtls_nocert")
        self.assertIn(r.status, (502, 503), "cluster without the client certificate the backend "
                      "requires: expected 502 or 503, got %r" % r)

    def test_verify_failure_counters(self):
        for cluster_name, counter in (("san_bad", "weft_cluster_ssl_fail_verify_san_total"),
                                      ("untrusted", "weft_cluster_ssl_fail_verify_error_total")):
            before = self.front.metric(counter, cluster=cluster_name)
            self.assertEqual(self.req(cluster_name).status, 503)
            after = self.front.metric(counter, cluster=cluster_name)
            self.assertEqual(after, before + 1, "%s{cluster=%s} should count the refused server "
                             "certificate: expected %d, got %d"
                             % (counter, cluster_name, before + 1, after))

    def test_connection_reused(self):
        self.assertThrough("san_ok")
        before = self.front.metric("weft_cluster_upstream_cx_total", cluster="san_ok")
        for _ in range(3):
            self.assertThrough("san_ok")
        after = self.front.metric("weft_cluster_upstream_cx_total", cluster="san_ok")
        self.assertEqual(after, before, "sequential requests should reuse the pooled TLS "
                         "connection: cx_total %d -> %d" % (before, after))


class CertReloadTest(unittest.TestCase):
    def setUp(self):
        self.backend = h.Backend("reload")
        self.addCleanup(self.backend.close)
        self.dir = os.path.join(CERTS.dir, "reload-%d" % os.getpid())
        os.makedirs(self.dir, exist_ok=True)
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.cert = os.path.join(self.dir, "cert.pem")
        self.key = os.path.join(self.dir, "cert.key")
        shutil.copy(CERTS.pem("server"), self.cert)
        shutil.copy(CERTS.key("server"), self.key)
        tls = {"mode": "STRICT", "certificate": {"certificate_chain_file": self.cert,
                                                 "private_key_file": self.key}}
        self.proxy = h.Proxy(h.simple_config(self.backend.port, tls=tls), name="certreload")
        self.addCleanup(self.proxy.stop)
        self.proxy.start()
        self.port = self.proxy.port()

    def presented_serial(self):
        rc, out, err = h.s_client(self.port, ca=CERTS.pem("ca"), extra=["-showcerts"])
        if rc != 0:
            return None
        pem = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", out, re.S)
        return h.cert_serial_subject(pem.group(0)) if pem else None

    def replace(self, src, dst):
        tmp = dst + ".new"
        shutil.copy(src, tmp)
        os.rename(tmp, dst)

    def test_rotation_without_restart(self):
        old_serial, new_serial = CERTS.serial("server"), CERTS.serial("server2")
        got = self.presented_serial()
        self.assertIsNotNone(got, "no certificate presented at start")
        self.assertEqual(got[0], old_serial, "initial certificate serial")

        conn = h.tls_connect(self.port, CERTS.pem("ca"))
        self.addCleanup(conn.close)
        rd = h.SockReader(conn)
        conn.sendall(b"GET /before HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertEqual(rd.read_response().status, 200, "request before rotation")

        # Key first, then certificate; each by rename so the proxy never reads half a file.
        self.replace(CERTS.key("server2"), self.key)
        self.replace(CERTS.pem("server2"), self.cert)
        got = h.wait_until(lambda: (lambda s: s if s and s[0] == new_serial else None)(
            self.presented_serial()), 10,
            what="a new handshake to present serial %s (was %s)" % (new_serial, old_serial))
        self.assertIn("rotated.example.test", got[1], "subject of the rotated certificate")

        conn.sendall(b"GET /after HTTP/1.1\r\nHost: a\r\n\r\n")
        resp = rd.read_response()
        self.assertEqual(resp.status, 200, "the keep-alive connection opened before the rotation "
                         "should keep working; got %r" % resp)
        self.assertEqual(resp.json()["path"], "/after")
        r = https(self.port, "/new-conn")
        self.assertEqual(r.status, 200, "new connection after rotation: %r" % r)

    def test_broken_cert_keeps_old(self):
        old_serial = CERTS.serial("server")
        with open(self.cert + ".new", "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
        os.rename(self.cert + ".new", self.cert)
        # The proxy notices within ~1-2 s and refuses the file; wait for its log line rather
        # than sleeping, then check the old certificate is still served.
        h.wait_until(lambda: "cannot be loaded" in self.proxy.log_text(), 10,
                     what="the proxy to log that the broken certificate cannot be loaded")
        got = self.presented_serial()
        self.assertIsNotNone(got, "handshake should still work with the old certificate")
        self.assertEqual(got[0], old_serial, "old certificate kept after a broken replacement")


if __name__ == "__main__":
    unittest.main()
