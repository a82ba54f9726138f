"""Integration tests of the certificate authority in `weft server` (docs/ca.md): the real AWS CLI
(`aws acm-pca`, `aws acm`) and boto3 against the server, with OpenSSL checking what it issued.

Run: cd test/integration && WEFT_BIN=.../weft /usr/bin/python3 -m unittest -v test_ca
"""

import base64
import http.client
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import unittest

from control_harness import ControlServer, wait_until

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
SUBJECT = "Organization=App Mesh Workshop,OrganizationalUnit=Mesh,CommonName=appmeshworkshop.hosted.local"


class CaTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = ControlServer().start()
        cls.tmp = tempfile.mkdtemp(prefix="weft-ca-test-")

    @classmethod
    def tearDownClass(cls):
        cls.server.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    # ---- helpers

    def path(self, name):
        return os.path.join(self.tmp, name)

    def write(self, name, data):
        p = self.path(name)
        with open(p, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
        return p

    def aws(self, *args):
        rc, out, err = self.server.aws(*args)
        self.assertEqual(rc, 0, "expected aws %s to succeed; stderr: %s\nserver log tail:\n%s"
                         % (" ".join(map(str, args)), err, self.server.log()[-3000:]))
        return out

    def aws_error(self, expected, *args):
        rc, out, err = self.server.aws(*args)
        self.assertNotEqual(rc, 0, "expected aws %s to fail with %s, it answered %r"
                            % (" ".join(map(str, args)), expected, out))
        self.assertIn(expected, err, "expected the error %s; stderr: %s" % (expected, err))
        return err

    def openssl(self, *args, check=True):
        p = subprocess.run([OPENSSL] + [str(a) for a in args], capture_output=True, text=True)
        if check:
            self.assertEqual(p.returncode, 0, "openssl %s failed: %s%s"
                             % (" ".join(map(str, args)), p.stdout, p.stderr))
        return p

    def activate_root(self, name, key_algorithm="RSA_2048", signing="SHA256WITHRSA"):
        """The ACM PCA root flow: create, get CSR, self-issue with RootCACertificate/V1, import.
        Answers (ca arn, root certificate PEM path)."""
        arn = self.aws("acm-pca", "create-certificate-authority",
                       "--certificate-authority-type", "ROOT",
                       "--certificate-authority-configuration",
                       "KeyAlgorithm=%s,SigningAlgorithm=%s,Subject={%s}"
                       % (key_algorithm, signing, SUBJECT.replace("CommonName=appmeshworkshop.hosted.local",
                                                                  "CommonName=%s" % name)),
                       )["CertificateAuthorityArn"]
        ca = self.aws("acm-pca", "describe-certificate-authority",
                      "--certificate-authority-arn", arn)["CertificateAuthority"]
        self.assertEqual(ca["Status"], "PENDING_CERTIFICATE")
        self.assertEqual(ca["Type"], "ROOT")
        csr = self.aws("acm-pca", "get-certificate-authority-csr",
                       "--certificate-authority-arn", arn)["Csr"]
        csr_path = self.write(name + ".csr", csr)
        cert_arn = self.aws("acm-pca", "issue-certificate", "--certificate-authority-arn", arn,
                            "--csr", "fileb://" + csr_path, "--signing-algorithm", signing,
                            "--template-arn", "arn:aws:acm-pca:::template/RootCACertificate/V1",
                            "--validity", "Value=10,Type=YEARS")["CertificateArn"]
        self.assertTrue(cert_arn.startswith(arn + "/certificate/"), cert_arn)
        got = self.aws("acm-pca", "get-certificate", "--certificate-authority-arn", arn,
                       "--certificate-arn", cert_arn)
        self.assertNotIn("CertificateChain", got, "a root's own certificate has no chain")
        root_path = self.write(name + ".pem", got["Certificate"])
        self.aws("acm-pca", "import-certificate-authority-certificate",
                 "--certificate-authority-arn", arn, "--certificate", "fileb://" + root_path)
        ca = self.aws("acm-pca", "describe-certificate-authority",
                      "--certificate-authority-arn", arn)["CertificateAuthority"]
        self.assertEqual(ca["Status"], "ACTIVE")
        return arn, root_path

    # ---- tests

    def test_root_wildcard_export_verify_and_tls(self):
        root_arn, root_pem = self.activate_root("root-wild")
        got = self.aws("acm-pca", "get-certificate-authority-certificate",
                       "--certificate-authority-arn", root_arn)
        self.assertIn("BEGIN CERTIFICATE", got["Certificate"])
        cert_arn = self.aws("acm", "request-certificate", "--domain-name",
                            "*.appmeshworkshop.hosted.local",
                            "--certificate-authority-arn", root_arn)["CertificateArn"]
        self.assertRegex(cert_arn, r"^arn:aws:acm:us-west-2:\d{12}:certificate/[0-9a-f-]{36}$")
        d = self.aws("acm", "describe-certificate", "--certificate-arn", cert_arn)["Certificate"]
        self.assertEqual(d["Status"], "ISSUED")
        self.assertEqual(d["Type"], "PRIVATE")
        self.assertEqual(d["SubjectAlternativeNames"], ["*.appmeshworkshop.hosted.local"])
        self.assertEqual(d["CertificateAuthorityArn"], root_arn)
        listed = self.aws("acm", "list-certificates")["CertificateSummaryList"]
        self.assertIn(cert_arn, [c["CertificateArn"] for c in listed])

        pass_path = self.write("pass", b"correct horse")
        exp = self.aws("acm", "export-certificate", "--certificate-arn", cert_arn,
                       "--passphrase", "fileb://" + pass_path)
        self.assertIn("BEGIN ENCRYPTED PRIVATE KEY", exp["PrivateKey"])
        self.assertNotIn("BEGIN PRIVATE KEY", exp["PrivateKey"])
        leaf = self.write("leaf.pem", exp["Certificate"])
        chain = self.write("chain.pem", exp["CertificateChain"])
        enc_key = self.write("leaf.key.enc", exp["PrivateKey"])
        out = self.openssl("verify", "-CAfile", root_pem, leaf).stdout
        self.assertIn("OK", out)
        self.openssl("verify", "-CAfile", chain, leaf)
        key = self.path("leaf.key")
        self.openssl("pkey", "-in", enc_key, "-passin", "pass:correct horse", "-out", key)
        wrong = self.openssl("pkey", "-in", enc_key, "-passin", "pass:wrong", check=False)
        self.assertNotEqual(wrong.returncode, 0, "a wrong passphrase must not open the key")
        # The server never logged the key material.
        self.assertNotIn("PRIVATE KEY", self.server.log())

        # A TLS server with that certificate; the client trusts only the root.
        self._tls_roundtrip(leaf, key, root_pem, "app.appmeshworkshop.hosted.local")

    def _tls_roundtrip(self, cert, key, root, hostname):
        srv_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        srv_ctx.load_cert_chain(cert, key)
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        import threading
        result = {}

        def serve():
            conn, _ = listener.accept()
            with srv_ctx.wrap_socket(conn, server_side=True) as s:
                s.recv(100)
                s.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
            result["served"] = True

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        try:
            curl = shutil.which("curl")
            if curl:
                p = subprocess.run([curl, "-sS", "--cacert", root, "--resolve",
                                    "%s:%d:127.0.0.1" % (hostname, port),
                                    "https://%s:%d/" % (hostname, port)],
                                   capture_output=True, text=True, timeout=30)
                self.assertEqual(p.returncode, 0, "curl --cacert root failed: %s" % p.stderr)
                self.assertEqual(p.stdout, "ok")
            else:
                ctx = ssl.create_default_context(cafile=root)
                with socket.create_connection(("127.0.0.1", port)) as raw:
                    with ctx.wrap_socket(raw, server_hostname=hostname) as s:
                        s.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
                        self.assertIn(b"ok", s.recv(1000))
            t.join(10)
        finally:
            listener.close()

    def test_subordinate_flow_issue_and_revoke(self):
        root_arn, root_pem = self.activate_root("root-sub", "EC_prime256v1", "SHA256WITHECDSA")
        sub_arn = self.aws("acm-pca", "create-certificate-authority",
                           "--certificate-authority-type", "SUBORDINATE",
                           "--certificate-authority-configuration",
                           "KeyAlgorithm=RSA_2048,SigningAlgorithm=SHA256WITHRSA,"
                           "Subject={CommonName=sub.appmeshworkshop.hosted.local}",
                           "--revocation-configuration",
                           "CrlConfiguration={Enabled=true,ExpirationInDays=3}")[
            "CertificateAuthorityArn"]
        # Not yet active: it cannot issue.
        csr = self.aws("acm-pca", "get-certificate-authority-csr",
                       "--certificate-authority-arn", sub_arn)["Csr"]
        sub_csr = self.write("sub.csr", csr)
        self.aws_error("InvalidStateException", "acm-pca", "issue-certificate",
                       "--certificate-authority-arn", sub_arn, "--csr", "fileb://" + sub_csr,
                       "--signing-algorithm", "SHA256WITHRSA", "--validity", "Value=1,Type=DAYS")
        sub_cert_arn = self.aws(
            "acm-pca", "issue-certificate", "--certificate-authority-arn", root_arn,
            "--csr", "fileb://" + sub_csr, "--signing-algorithm", "SHA256WITHECDSA",
            "--template-arn", "arn:aws:acm-pca:::template/SubordinateCACertificate_PathLen0/V1",
            "--validity", "Value=5,Type=YEARS")["CertificateArn"]
        got = self.aws("acm-pca", "get-certificate", "--certificate-authority-arn", root_arn,
                       "--certificate-arn", sub_cert_arn)
        sub_pem = self.write("sub.pem", got["Certificate"])
        parent_chain = self.write("sub-chain.pem", got["CertificateChain"])
        # The wrong certificate (the root's) is refused.
        self.aws_error("CertificateMismatchException", "acm-pca",
                       "import-certificate-authority-certificate",
                       "--certificate-authority-arn", sub_arn, "--certificate", "fileb://" + root_pem,
                       "--certificate-chain", "fileb://" + parent_chain)
        self.aws("acm-pca", "import-certificate-authority-certificate",
                 "--certificate-authority-arn", sub_arn, "--certificate", "fileb://" + sub_pem,
                 "--certificate-chain", "fileb://" + parent_chain)
        ca = self.aws("acm-pca", "describe-certificate-authority",
                      "--certificate-authority-arn", sub_arn)["CertificateAuthority"]
        self.assertEqual(ca["Status"], "ACTIVE")

        # A leaf from the subordinate, via boto3 and a CSR of our own.
        key = self.path("svc.key")
        csr_path = self.path("svc.csr")
        self.openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                     "-nodes", "-keyout", key, "-out", csr_path, "-subj",
                     "/CN=svc.appmeshworkshop.hosted.local", "-addext",
                     "subjectAltName=DNS:svc.appmeshworkshop.hosted.local")
        pca = self._boto("acm-pca")
        with open(csr_path, "rb") as f:
            leaf_arn = pca.issue_certificate(CertificateAuthorityArn=sub_arn, Csr=f.read(),
                                             SigningAlgorithm="SHA256WITHRSA",
                                             Validity={"Value": 30, "Type": "DAYS"})[
                "CertificateArn"]
        leaf = pca.get_certificate(CertificateAuthorityArn=sub_arn, CertificateArn=leaf_arn)
        leaf_pem = self.write("svc.pem", leaf["Certificate"])
        chain_pem = self.write("svc-chain.pem", leaf["CertificateChain"])
        self.openssl("verify", "-CAfile", root_pem, "-untrusted", chain_pem, leaf_pem)

        # Revoke: the serial is in the CRL the server keeps (docs/ca.md).
        serial = leaf_arn.rsplit("/", 1)[1]
        colon = ":".join(serial[i:i + 2] for i in range(0, len(serial), 2))
        self.aws("acm-pca", "revoke-certificate", "--certificate-authority-arn", sub_arn,
                 "--certificate-serial", colon, "--revocation-reason", "KEY_COMPROMISE")
        self.aws_error("RequestAlreadyProcessedException", "acm-pca", "revoke-certificate",
                       "--certificate-authority-arn", sub_arn, "--certificate-serial", serial,
                       "--revocation-reason", "KEY_COMPROMISE")
        self.aws_error("ResourceNotFoundException", "acm-pca", "revoke-certificate",
                       "--certificate-authority-arn", sub_arn, "--certificate-serial", "0a0b0c",
                       "--revocation-reason", "UNSPECIFIED")

        # Disable, delete with a restore window, restore.
        self.aws_error("InvalidStateException", "acm-pca", "delete-certificate-authority",
                       "--certificate-authority-arn", sub_arn)
        self.aws("acm-pca", "update-certificate-authority", "--certificate-authority-arn", sub_arn,
                 "--status", "DISABLED")
        self.aws_error("InvalidStateException", "acm-pca", "issue-certificate",
                       "--certificate-authority-arn", sub_arn, "--csr", "fileb://" + csr_path,
                       "--signing-algorithm", "SHA256WITHRSA", "--validity", "Value=1,Type=DAYS")
        self.aws("acm-pca", "delete-certificate-authority", "--certificate-authority-arn", sub_arn,
                 "--permanent-deletion-time-in-days", "7")
        ca = self.aws("acm-pca", "describe-certificate-authority",
                      "--certificate-authority-arn", sub_arn)["CertificateAuthority"]
        self.assertEqual(ca["Status"], "DELETED")
        self.assertIn("RestorableUntil", ca)
        self.aws("acm-pca", "restore-certificate-authority", "--certificate-authority-arn", sub_arn)
        ca = self.aws("acm-pca", "describe-certificate-authority",
                      "--certificate-authority-arn", sub_arn)["CertificateAuthority"]
        self.assertEqual(ca["Status"], "DISABLED")
        listed = self.aws("acm-pca", "list-certificate-authorities")["CertificateAuthorities"]
        self.assertIn(sub_arn, [c["Arn"] for c in listed])

    def _boto(self, service):
        from botocore.config import Config
        return self.server._boto_session().client(
            service, endpoint_url=self.server.endpoint,
            config=Config(retries={"total_max_attempts": 1, "mode": "standard"}))

    def test_acm_renew_delete_and_boto3(self):
        root_arn, root_pem = self.activate_root("root-acm")
        acm = self._boto("acm")
        arn = acm.request_certificate(DomainName="api.appmeshworkshop.hosted.local",
                                      SubjectAlternativeNames=["www.appmeshworkshop.hosted.local"],
                                      CertificateAuthorityArn=root_arn,
                                      KeyAlgorithm="EC_prime256v1",
                                      IdempotencyToken="tok1")["CertificateArn"]
        again = acm.request_certificate(DomainName="api.appmeshworkshop.hosted.local",
                                        SubjectAlternativeNames=["www.appmeshworkshop.hosted.local"],
                                        CertificateAuthorityArn=root_arn,
                                        KeyAlgorithm="EC_prime256v1",
                                        IdempotencyToken="tok1")["CertificateArn"]
        self.assertEqual(arn, again, "the same idempotency token answers the same certificate")
        d1 = acm.describe_certificate(CertificateArn=arn)["Certificate"]
        self.assertEqual(d1["SubjectAlternativeNames"],
                         ["api.appmeshworkshop.hosted.local", "www.appmeshworkshop.hosted.local"])
        self.assertEqual(d1["KeyAlgorithm"], "EC_prime256v1")
        # ListCertificates lists only RSA_2048 (and RSA_1024) unless keyTypes says otherwise, as ACM.
        default = [c["CertificateArn"] for c in acm.list_certificates()["CertificateSummaryList"]]
        self.assertNotIn(arn, default)
        ec = [c["CertificateArn"] for c in acm.list_certificates(
            Includes={"keyTypes": ["EC_prime256v1"]})["CertificateSummaryList"]]
        self.assertIn(arn, ec)
        acm.renew_certificate(CertificateArn=arn)
        d2 = acm.describe_certificate(CertificateArn=arn)["Certificate"]
        self.assertNotEqual(d1["Serial"], d2["Serial"], "renewal issues a new certificate")
        self.assertEqual(d2["RenewalSummary"]["RenewalStatus"], "SUCCESS")
        got = acm.get_certificate(CertificateArn=arn)
        leaf = self.write("renewed.pem", got["Certificate"])
        self.openssl("verify", "-CAfile", root_pem, leaf)
        exp = acm.export_certificate(CertificateArn=arn, Passphrase=b"s3cret!")
        self.assertIn("ENCRYPTED PRIVATE KEY", exp["PrivateKey"])
        acm.delete_certificate(CertificateArn=arn)
        with self.assertRaises(acm.exceptions.ResourceNotFoundException):
            acm.describe_certificate(CertificateArn=arn)

    def test_errors(self):
        self.aws_error("InvalidArnException", "acm-pca", "describe-certificate-authority",
                       "--certificate-authority-arn", "arn:aws:acm-pca:us-west-2:123:nope/1")
        self.aws_error("ResourceNotFoundException", "acm-pca", "describe-certificate-authority",
                       "--certificate-authority-arn",
                       "arn:aws:acm-pca:us-west-2:%s:certificate-authority/"
                       "00000000-0000-4000-8000-000000000000" % self._account())
        self.aws_error("InvalidArgsException", "acm-pca", "create-certificate-authority",
                       "--certificate-authority-type", "ROOT",
                       "--certificate-authority-configuration",
                       "KeyAlgorithm=RSA_2048,SigningAlgorithm=SHA256WITHECDSA,Subject={CommonName=x}")
        self.aws_error("ValidationException", "acm", "request-certificate",
                       "--domain-name=-bad-.example", "--certificate-authority-arn",
                       "arn:aws:acm-pca:us-west-2:%s:certificate-authority/"
                       "00000000-0000-4000-8000-000000000000" % self._account())
        self.aws_error("InvalidParameterException", "acm", "request-certificate", "--domain-name",
                       "public.example.com")
        self.aws_error("InvalidArnException", "acm", "describe-certificate", "--certificate-arn",
                       "arn:aws:acm:us-west-2:%s:nothing/xyz" % self._account())
        # A CA that does not exist: the certificate FAILS, as in ACM.
        arn = self.aws("acm", "request-certificate", "--domain-name", "x.example.com",
                       "--certificate-authority-arn",
                       "arn:aws:acm-pca:us-west-2:%s:certificate-authority/"
                       "00000000-0000-4000-8000-000000000000" % self._account())["CertificateArn"]
        d = self.aws("acm", "describe-certificate", "--certificate-arn", arn)["Certificate"]
        self.assertEqual((d["Status"], d["FailureReason"]), ("FAILED", "PCA_RESOURCE_NOT_FOUND"))
        self.aws_error("RequestInProgressException", "acm", "get-certificate",
                       "--certificate-arn", arn)

    def _account(self):
        """The server's account id, as it appears in the ARNs it makes."""
        if not hasattr(type(self), "_acct"):
            arn = self.aws("acm-pca", "create-certificate-authority", "--certificate-authority-type",
                           "ROOT", "--certificate-authority-configuration",
                           "KeyAlgorithm=EC_prime256v1,SigningAlgorithm=SHA256WITHECDSA,"
                           "Subject={CommonName=acct}")["CertificateAuthorityArn"]
            type(self)._acct = arn.split(":")[4]
        return type(self)._acct


class KekTest(unittest.TestCase):
    """The CA's key-encryption key (its own servers, one at a time)."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="weft-ca-kek-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def write(self, name, data):
        p = os.path.join(self.tmp, name)
        with open(p, "w") as f:
            f.write(data)
        return p

    def test_kek_file_and_restart(self):
        # The default KEK: DATA_DIR/ca-kek, mode 0600, 32 bytes.
        with ControlServer() as s:
            st = os.stat(os.path.join(s.data_dir, "ca-kek"))
            self.assertEqual(st.st_mode & 0o777, 0o600)
            self.assertEqual(st.st_size, 32)
        # An operator's KEK file: no ca-kek is made, keys survive a restart, and another KEK is
        # refused at start.
        with ControlServer(extra_args=["--ca-key-file", self.write("kek.hex", "ab" * 32)]) as s:
            rc, out, err = s.aws("acm-pca", "create-certificate-authority",
                                 "--certificate-authority-type", "ROOT",
                                 "--certificate-authority-configuration",
                                 "KeyAlgorithm=EC_prime256v1,SigningAlgorithm=SHA256WITHECDSA,"
                                 "Subject={CommonName=kek}")
            self.assertEqual(rc, 0, err)
            self.assertFalse(os.path.exists(os.path.join(s.data_dir, "ca-kek")),
                             "with --ca-key-file no ca-kek file is made")
            s.restart()
            rc, _, err = s.aws("acm-pca", "get-certificate-authority-csr",
                               "--certificate-authority-arn", out["CertificateAuthorityArn"])
            self.assertEqual(rc, 0, err)
            # Another KEK on the same data directory: the server refuses to start.
            s.stop()
            s.extra_args = ["--ca-key-file", self.write("kek2.hex", "cd" * 32)]
            with self.assertRaises(AssertionError) as cm:
                s.start(timeout=10)
            self.assertIn("key-encryption key does not match", str(cm.exception))


if __name__ == "__main__":
    unittest.main()
