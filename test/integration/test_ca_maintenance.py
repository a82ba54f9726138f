"""Integration tests of the CA's upkeep (docs/ca.md "Scheduled work", "Changing the KEK"):
`weft server rekey` on a stopped server's data directory, then issuing, exporting and renewing
with the new key-encryption key, and a start with the old one refused.

Automatic renewal and CRL re-signing are due days or weeks after issuance (ACM's 60 days, half
of a CRL's period of at least a day) and the server has no simulated clock, so they are tested
with a simulated clock in src/control/ca/ca_upkeep_test.cc; here the server runs its tasks every
second (--ca-maintenance-interval 1s) and they must leave fresh certificates alone.

Run: cd test/integration && WEFT_BIN=.../weft /usr/bin/python3 -m unittest -v test_ca_maintenance
"""

import base64
import os
import shutil
import stat
import subprocess
import tempfile
import unittest

from control_harness import ControlServer, weft_binary

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"


class CaMaintenanceTest(unittest.TestCase):
    def setUp(self):
        self.server = ControlServer(extra_args=["--ca-maintenance-interval", "1s"])
        self.addCleanup(self.server.close)
        self.tmp = tempfile.mkdtemp(prefix="weft-ca-maint-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.server.start()

    # ---- helpers

    def client(self, service):
        from botocore.config import Config
        c = self.server._boto_session().client(
            service, endpoint_url=self.server.endpoint,
            config=Config(retries={"total_max_attempts": 1, "mode": "standard"}))
        self.addCleanup(c.close)
        return c

    def kek_path(self):
        return os.path.join(self.server.data_dir, "ca-kek")

    def read_bytes(self, path):
        with open(path, "rb") as f:
            return f.read()

    def active_root(self):
        """An ACTIVE root CA; answers (arn, root PEM path)."""
        pca = self.client("acm-pca")
        arn = pca.create_certificate_authority(
            CertificateAuthorityType="ROOT",
            CertificateAuthorityConfiguration={
                "KeyAlgorithm": "EC_prime256v1", "SigningAlgorithm": "SHA256WITHECDSA",
                "Subject": {"CommonName": "maintenance root"}})["CertificateAuthorityArn"]
        csr = pca.get_certificate_authority_csr(CertificateAuthorityArn=arn)["Csr"]
        cert_arn = pca.issue_certificate(
            CertificateAuthorityArn=arn, Csr=csr.encode(), SigningAlgorithm="SHA256WITHECDSA",
            TemplateArn="arn:aws:acm-pca:::template/RootCACertificate/V1",
            Validity={"Value": 10, "Type": "YEARS"})["CertificateArn"]
        pem = pca.get_certificate(CertificateAuthorityArn=arn, CertificateArn=cert_arn)["Certificate"]
        pca.import_certificate_authority_certificate(CertificateAuthorityArn=arn,
                                                     Certificate=pem.encode())
        root = os.path.join(self.tmp, "root-%d.pem" % len(os.listdir(self.tmp)))
        with open(root, "w") as f:
            f.write(pem)
        return arn, root

    def export_and_verify(self, cert_arn, root_path):
        """ExportCertificate, decrypt the key with openssl, check it matches the certificate and
        that the certificate verifies against the root. Answers the certificate's serial."""
        acm = self.client("acm")
        out = acm.export_certificate(CertificateArn=cert_arn, Passphrase=b"passw0rd")
        leaf = os.path.join(self.tmp, "leaf.pem")
        key = os.path.join(self.tmp, "leaf.key")
        with open(leaf, "w") as f:
            f.write(out["Certificate"])
        with open(key, "w") as f:
            f.write(out["PrivateKey"])
        v = subprocess.run([OPENSSL, "verify", "-CAfile", root_path, leaf], capture_output=True,
                           text=True)
        self.assertEqual(v.returncode, 0, "expected the exported certificate to verify against "
                         "the root; openssl said: %s%s" % (v.stdout, v.stderr))
        pub_cert = subprocess.run([OPENSSL, "x509", "-in", leaf, "-noout", "-pubkey"],
                                  capture_output=True, text=True, check=True).stdout
        pub_key = subprocess.run([OPENSSL, "pkey", "-in", key, "-passin", "pass:passw0rd",
                                  "-pubout"], capture_output=True, text=True)
        self.assertEqual(pub_key.returncode, 0, "the exported key must decrypt with the "
                         "passphrase: %s" % pub_key.stderr)
        self.assertEqual(pub_cert, pub_key.stdout, "the exported key must be the certificate's")
        return acm.describe_certificate(CertificateArn=cert_arn)["Certificate"]["Serial"]

    def rekey(self, *args):
        return subprocess.run([weft_binary(), "server", "rekey", "--data-dir",
                               self.server.data_dir] + list(args),
                              capture_output=True, text=True, env=self.server._base_env(),
                              timeout=60)

    def start_expecting_refusal(self, *args):
        """Runs `weft server` on the data directory; it must exit (not serve). Answers its
        combined output."""
        p = subprocess.run([weft_binary(), "server", "--data-dir", self.server.data_dir,
                            "--api", "127.0.0.1:0", "--dns", "127.0.0.1:0",
                            "--stream", "127.0.0.1:0"] + list(args),
                           capture_output=True, text=True, env=self.server._base_env(),
                           timeout=30)
        self.assertNotEqual(p.returncode, 0, "expected the server to refuse to start; output:\n"
                            + p.stdout + p.stderr)
        return p.stdout + p.stderr

    # ---- tests

    def test_rekey_default_kek_then_issue_export_renew_and_old_key_refused(self):
        ca, root = self.active_root()
        acm = self.client("acm")
        cert_arn = acm.request_certificate(DomainName="svc.maintenance.local",
                                           CertificateAuthorityArn=ca)["CertificateArn"]
        serial = self.export_and_verify(cert_arn, root)
        # Fresh certificates are not due: the 1s maintenance rounds leave them alone.
        self.assertNotIn("RenewalSummary",
                         acm.describe_certificate(CertificateArn=cert_arn)["Certificate"])

        # Rekey refuses while the server holds the data directory.
        busy = self.rekey()
        self.assertNotEqual(busy.returncode, 0, "rekey must refuse a running server's directory")
        self.assertIn("another weft server", busy.stderr)

        self.assertEqual(self.server.stop(), 0)
        old = self.read_bytes(self.kek_path())
        done = self.rekey()
        self.assertEqual(done.returncode, 0, "rekey failed: %s%s" % (done.stdout, done.stderr))
        self.assertIn("re-sealed", done.stdout)
        new = self.read_bytes(self.kek_path())
        self.assertEqual(len(new), 32)
        self.assertNotEqual(new, old, "DATA_DIR/ca-kek must hold a new key")
        self.assertFalse(os.path.exists(self.kek_path() + ".new"))
        self.assertEqual(stat.S_IMODE(os.stat(self.kek_path()).st_mode), 0o600)
        for secret in (old, new):  # never printed, in any form
            for form in (secret.hex(), base64.b64encode(secret).decode()):
                self.assertNotIn(form, done.stdout + done.stderr)

        # The old key is refused, with a message that says why.
        old_file = os.path.join(self.tmp, "old-kek")
        with open(old_file, "wb") as f:
            f.write(old)
        out = self.start_expecting_refusal("--ca-key-file", old_file)
        self.assertIn("key-encryption key does not match", out)

        # With the new key everything works: export the old certificate, issue, renew.
        self.server.start()
        acm = self.client("acm")  # the restarted server listens on a new port
        self.assertEqual(self.export_and_verify(cert_arn, root), serial)
        second = acm.request_certificate(DomainName="two.maintenance.local",
                                         CertificateAuthorityArn=ca)["CertificateArn"]
        self.export_and_verify(second, root)
        acm.renew_certificate(CertificateArn=cert_arn)
        d = acm.describe_certificate(CertificateArn=cert_arn)["Certificate"]
        self.assertEqual(d["RenewalSummary"]["RenewalStatus"], "SUCCESS")
        self.assertNotEqual(self.export_and_verify(cert_arn, root), serial)

    def test_rekey_to_a_key_file_and_an_interrupted_change_is_finished_at_start(self):
        ca, root = self.active_root()
        acm = self.client("acm")
        cert_arn = acm.request_certificate(DomainName="svc.maintenance.local",
                                           CertificateAuthorityArn=ca)["CertificateArn"]
        self.assertEqual(self.server.stop(), 0)

        # To an operator's key file (hex), then start with it.
        new_file = os.path.join(self.tmp, "new-kek")
        new = os.urandom(32)
        with open(new_file, "w") as f:
            f.write(new.hex() + "\n")
        done = self.rekey("--new-ca-key-file", new_file)
        self.assertEqual(done.returncode, 0, "rekey failed: %s%s" % (done.stdout, done.stderr))
        self.assertIn("--ca-key-file " + new_file, done.stdout)
        self.assertNotIn(new.hex(), done.stdout + done.stderr)
        out = self.start_expecting_refusal()  # DATA_DIR/ca-kek still holds the old key
        self.assertIn("key-encryption key does not match", out)
        self.server.extra_args += ["--ca-key-file", new_file]
        self.server.start()
        self.export_and_verify(cert_arn, root)
        self.assertEqual(self.server.stop(), 0)

        # The state a crash between rekey's commit and its rename leaves: the store sealed with
        # DATA_DIR/ca-kek.new, DATA_DIR/ca-kek the old key. A start (default key) finishes it.
        with open(self.kek_path() + ".new", "wb") as f:
            f.write(new)
        os.chmod(self.kek_path() + ".new", 0o600)
        self.server.extra_args = self.server.extra_args[:-2]  # back to DATA_DIR/ca-kek
        self.server.start()
        self.assertEqual(self.read_bytes(self.kek_path()), new)
        self.assertFalse(os.path.exists(self.kek_path() + ".new"))
        self.export_and_verify(cert_arn, root)
        self.assertIn("finished changing the CA key-encryption key", self.server.log())

    def test_rekey_usage_and_help(self):
        self.assertEqual(self.server.stop(), 0)
        h = subprocess.run([weft_binary(), "server", "rekey", "--help"], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(h.returncode, 0)
        self.assertIn("--new-ca-key-file", h.stdout)
        missing = subprocess.run([weft_binary(), "server", "rekey", "--data-dir",
                                  os.path.join(self.tmp, "nowhere")], capture_output=True,
                                 text=True, timeout=30)
        self.assertEqual(missing.returncode, 1, missing.stderr)
        self.assertIn("no store", missing.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "nowhere")),
                         "rekey must not create a data directory")
        key_file = os.path.join(self.tmp, "k")
        with open(key_file, "w") as f:
            f.write(os.urandom(32).hex())
        needs_new = self.rekey("--ca-key-file", key_file)
        self.assertEqual(needs_new.returncode, 2, needs_new.stderr)
        self.assertIn("--new-ca-key-file", needs_new.stderr)
        wrong = self.rekey("--ca-key-file", key_file, "--new-ca-key-file", key_file)
        self.assertEqual(wrong.returncode, 1, wrong.stderr)


if __name__ == "__main__":
    unittest.main()
