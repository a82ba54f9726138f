"""The `weft` CLI's certificate-authority commands, the registry listings and the Cloud Map /
ACM PCA / ACM resources of `weft stack`, against a real `weft server` on port 0:

  * `weft ca create|list|describe|issue|certificates|get-certificate|export|revoke|delete`, a
    root and a subordinate CA, certificates checked with `openssl verify` against the CA
    certificate the CLI fetches, the exported key opened with the passphrase;
  * examples/crossvpc/ca-stack.yaml and registry-stack.yaml deploy, redeploy unchanged and
    delete cleanly, what they made visible to the AWS CLI (`aws acm-pca`, `aws acm`,
    `aws servicediscovery`) while they exist and gone after;
  * a stack with an HTTP namespace, a service and an instance; a failing deploy rolled back;
  * `weft get namespaces|services|instances` as tables and JSON.

Uses control_harness.py (ControlServer, Debian's /usr/bin/aws) and /usr/bin/openssl."""

import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import unittest

from control_harness import ControlServer, REPO

CROSSVPC = os.path.join(REPO, "examples", "crossvpc")
CA_ARN = re.compile(r"^arn:aws:acm-pca:us-west-2:\d{12}:certificate-authority/[0-9a-f-]{36}$")
ACM_ARN = re.compile(r"^arn:aws:acm:us-west-2:\d{12}:certificate/[0-9a-f-]{36}$")


class CliMoreTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = ControlServer().start()
        cls.tmp = tempfile.mkdtemp(prefix="weft-cli-more-")

    @classmethod
    def tearDownClass(cls):
        cls.server.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    # ---- helpers

    def weft(self, *args):
        p = self.server.weft(*args)
        self.assertEqual(p.returncode, 0, "expected `weft %s` to succeed; stdout:\n%s\nstderr:\n%s"
                         % (" ".join(map(str, args)), p.stdout, p.stderr))
        return p.stdout

    def weft_json(self, *args):
        return json.loads(self.weft(*args, "-o", "json"))

    def fails(self, *args, code=None):
        """A command expected to fail: non-zero exit, one line on stderr (answered)."""
        p = self.server.weft(*args)
        self.assertNotEqual(p.returncode, 0, "expected `weft %s` to fail; stdout:\n%s"
                            % (" ".join(map(str, args)), p.stdout))
        if code is not None:
            self.assertEqual(p.returncode, code, "exit code of `weft %s`; stderr: %s"
                             % (" ".join(map(str, args)), p.stderr))
        lines = p.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, "expected one error line from `weft %s`, got:\n%s"
                         % (" ".join(map(str, args)), p.stderr))
        return lines[0]

    def aws(self, *args):
        rc, out, err = self.server.aws(*args)
        self.assertEqual(rc, 0, "aws %s failed: %s" % (" ".join(map(str, args)), err))
        return out

    def path(self, name):
        return os.path.join(self.tmp, name)

    def write(self, name, text):
        with open(self.path(name), "w") as f:
            f.write(text)
        return self.path(name)

    def one_line(self, out):
        lines = out.strip().splitlines()
        self.assertEqual(len(lines), 1, "expected exactly one line on stdout, got %r" % out)
        return lines[0]

    def pem_of(self, arn, name, chain=False):
        args = ["ca", "get-certificate", arn] + (["--chain"] if chain else [])
        text = self.weft(*args)
        self.assertIn("-----BEGIN CERTIFICATE-----", text, "PEM of " + arn)
        return self.write(name, text)

    def openssl_verify(self, ca_file, leaf_file, untrusted=None):
        cmd = ["openssl", "verify", "-CAfile", ca_file]
        if untrusted:
            cmd += ["-untrusted", untrusted]
        p = subprocess.run(cmd + [leaf_file], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, "openssl verify of %s against %s: %s%s"
                         % (leaf_file, ca_file, p.stdout, p.stderr))
        self.assertIn(": OK", p.stdout)

    def openssl_text(self, pem_file):
        return subprocess.run(["openssl", "x509", "-in", pem_file, "-noout", "-text"],
                              capture_output=True, text=True, check=True).stdout

    # ---- help and usage

    def test_help(self):
        out = self.weft("ca", "--help")
        self.assertIn("Usage: weft ca create", out)
        for sub in ("list", "describe", "delete", "issue", "certificates", "export", "revoke",
                    "get-certificate", "import"):
            self.assertIn("weft ca " + sub, out)
        self.assertIn("ca ", self.weft("--help"))
        self.assertIn("namespaces|services|instances", self.weft("get", "--help"))
        self.assertIn("AWS::ServiceDiscovery::PrivateDnsNamespace", self.weft("stack", "--help"))
        self.assertIn("expected create, import, list", self.fails("ca", code=2))
        self.assertIn("--subject is required", self.fails("ca", "create", code=2))
        self.assertIn("unknown attribute 'XX'",
                      self.fails("ca", "create", "--subject", "XX=1", code=2))
        self.assertIn("--key-algorithm must be",
                      self.fails("ca", "create", "--subject", "CN=a", "--key-algorithm", "DSA",
                                 code=2))
        self.assertIn("not a certificate authority",
                      self.fails("ca", "describe", "arn:aws:s3:::bucket", code=2))
        self.assertIn("--ca ARN and --domain NAME are required",
                      self.fails("ca", "issue", "--domain", "x.local", code=2))
        self.assertIn("--service applies only to instances",
                      self.fails("get", "services", "--service", "x", code=2))

    # ---- weft ca

    def test_ca_commands_end_to_end(self):
        root = self.one_line(self.weft("ca", "create", "--subject",
                                       "CN=root.e2e.local,O=Weft Tests,C=US"))
        self.assertRegex(root, CA_ARN)
        desc = self.weft_json("ca", "describe", root)
        self.assertEqual(desc["Status"], "ACTIVE", desc)
        self.assertEqual(desc["Type"], "ROOT")
        self.assertEqual(desc["CertificateAuthorityConfiguration"]["Subject"],
                         {"CommonName": "root.e2e.local", "Organization": "Weft Tests",
                          "Country": "US"})
        # 10 years by default
        years = (desc["NotAfter"] - desc["NotBefore"]) / (365.25 * 86400)
        self.assertTrue(9.9 < years < 10.1, "root validity %.2f years, expected 10" % years)
        root_pem = self.pem_of(root, "root.pem")
        self.assertIn("Subject: C = US, O = Weft Tests, CN = root.e2e.local",
                      self.openssl_text(root_pem))

        sub = self.one_line(self.weft("ca", "create", "--subject", "CN=sub.e2e.local",
                                      "--key-algorithm", "EC_prime256v1", "--subordinate-of",
                                      root, "--validity-days", "800"))
        sdesc = self.weft_json("ca", "describe", sub)
        self.assertEqual((sdesc["Status"], sdesc["Type"]), ("ACTIVE", "SUBORDINATE"))
        self.assertAlmostEqual((sdesc["NotAfter"] - sdesc["NotBefore"]) / 86400, 800, delta=1)
        sub_pem = self.pem_of(sub, "sub.pem")
        self.openssl_verify(root_pem, sub_pem)

        # Listing: table and JSON, and the AWS CLI sees the same CAs.
        table = self.weft("ca", "list")
        self.assertTrue(table.startswith("ARN"), table)
        self.assertIn(root, table)
        self.assertIn("sub.e2e.local", table)
        arns = {ca["Arn"] for ca in self.weft_json("ca", "list")}
        self.assertLessEqual({root, sub}, arns)
        listed = self.aws("acm-pca", "list-certificate-authorities")["CertificateAuthorities"]
        self.assertLessEqual({root, sub}, {ca["Arn"] for ca in listed})

        # A wildcard certificate from the root and an EC one from the subordinate.
        leaf = self.one_line(self.weft("ca", "issue", "--ca", root, "--domain",
                                       "*.e2e.local", "--domain", "e2e.local"))
        self.assertRegex(leaf, ACM_ARN)
        leaf_pem = self.pem_of(leaf, "leaf.pem")
        self.openssl_verify(root_pem, leaf_pem)
        text = self.openssl_text(leaf_pem)
        self.assertIn("DNS:*.e2e.local", text)
        self.assertIn("DNS:e2e.local", text)
        leaf2 = self.one_line(self.weft("ca", "issue", "--ca", sub, "--domain", "api.e2e.local",
                                        "--key-algorithm", "EC_prime256v1"))
        leaf2_pem = self.pem_of(leaf2, "leaf2.pem")
        self.openssl_verify(root_pem, leaf2_pem, untrusted=sub_pem)
        # get-certificate --chain of the leaf holds the subordinate and the root.
        chain_file = self.pem_of(leaf2, "leaf2-chain.pem", chain=True)
        with open(chain_file) as f:
            self.assertEqual(f.read().count("BEGIN CERTIFICATE"), 3)

        certs = self.weft_json("ca", "certificates")
        self.assertLessEqual({leaf, leaf2}, {c["CertificateArn"] for c in certs},
                             "EC certificates are listed too (Includes.keyTypes)")
        of_sub = [c["CertificateArn"] for c in self.weft_json("ca", "certificates", "--ca", sub)]
        self.assertEqual(of_sub, [leaf2])
        self.assertIn("*.e2e.local", self.weft("ca", "certificates", "--ca", root))

        # Export: three files, the key encrypted and readable with the passphrase only.
        pass_file = self.write("pass", "correct horse\n")
        out_dir = self.path("export")
        os.mkdir(out_dir)
        written = self.weft("ca", "export", leaf, "--passphrase-file", pass_file,
                            "--out-dir", out_dir).split()
        self.assertEqual([os.path.basename(w) for w in written],
                         ["certificate.pem", "chain.pem", "private-key.pem"])
        key_file = os.path.join(out_dir, "private-key.pem")
        self.assertEqual(stat.S_IMODE(os.stat(key_file).st_mode), 0o600)
        with open(key_file) as f:
            self.assertIn("BEGIN ENCRYPTED PRIVATE KEY", f.read())
        pub_key = subprocess.run(["openssl", "pkey", "-in", key_file, "-passin",
                                  "file:" + pass_file, "-pubout"],
                                 capture_output=True, text=True)
        self.assertEqual(pub_key.returncode, 0, pub_key.stderr)
        pub_cert = subprocess.run(["openssl", "x509", "-in",
                                   os.path.join(out_dir, "certificate.pem"), "-noout", "-pubkey"],
                                  capture_output=True, text=True, check=True)
        self.assertEqual(pub_key.stdout, pub_cert.stdout, "exported key matches the certificate")
        wrong = self.write("wrong", "not the passphrase")
        bad = subprocess.run(["openssl", "pkey", "-in", key_file, "-passin", "file:" + wrong],
                             capture_output=True, text=True)
        self.assertNotEqual(bad.returncode, 0, "a wrong passphrase must not open the key")
        self.assertIn("4 to 128 bytes",
                      self.fails("ca", "export", leaf, "--passphrase-file",
                                 self.write("short", "abc"), code=2))

        # Revoke: ACM shows it REVOKED; a second revoke is refused.
        self.assertEqual(self.weft("ca", "revoke", leaf2, "--reason", "KEY_COMPROMISE").strip(),
                         "revoked " + leaf2)
        self.assertEqual(self.weft_json("ca", "describe", leaf2)["Status"], "REVOKED")
        acm_desc = self.aws("acm", "describe-certificate", "--certificate-arn", leaf2)
        self.assertEqual(acm_desc["Certificate"]["Status"], "REVOKED")
        self.assertIn("already revoked", self.fails("ca", "revoke", leaf2, code=1))

        # ACM's 395 days, or weft's --validity-days N up to the CA's own expiry.
        short = self.one_line(self.weft("ca", "issue", "--ca", root, "--domain", "x.e2e.local",
                                        "--validity-days", "30"))
        sdesc = self.weft_json("ca", "describe", short)
        self.assertAlmostEqual((sdesc["NotAfter"] - sdesc["NotBefore"]) / 86400, 30, delta=0.1)
        self.assertIn("at most", self.fails("ca", "issue", "--ca", root, "--domain", "x.e2e.local",
                                            "--validity-days", "36500", code=1))

        # Delete: the active subordinate is disabled first; it is then DELETED with its window.
        out = self.weft("ca", "delete", sub, "--restore-window-days", "7")
        self.assertRegex(out, r"^deleted %s \(restorable until \d{4}-\d\d-\d\dT" % re.escape(sub))
        self.assertEqual(self.weft_json("ca", "describe", sub)["Status"], "DELETED")
        aws_sub = self.aws("acm-pca", "describe-certificate-authority",
                           "--certificate-authority-arn", sub)["CertificateAuthority"]
        self.assertEqual(aws_sub["Status"], "DELETED")
        self.assertIn("already deleted", self.fails("ca", "delete", sub, code=1))
        failed = self.fails("ca", "issue", "--ca", sub, "--domain", "late.e2e.local", code=1)
        self.assertRegex(failed, r"FAILED: PCA_[A-Z_]+")
        self.assertIn("ResourceNotFoundException",
                      self.fails("ca", "describe", root[:-4] + "ffff", code=1))

    # ---- weft stack with the reference scenario's templates

    def test_crossvpc_ca_stack(self):
        tmpl = os.path.join(CROSSVPC, "ca-stack.yaml")
        out = self.weft("stack", "deploy", "--template-file", tmpl, "--stack-name", "cvca")
        for logical in ("RootCA", "RootCACertificate", "RootCAActivation",
                        "WildcardCertificate"):
            self.assertRegex(out, r"  %s \(AWS::[A-Za-z:]+\): created " % logical, out)
        order = [out.index(x) for x in ("RootCA (", "RootCACertificate (", "RootCAActivation (",
                                        "WildcardCertificate (")]
        self.assertEqual(order, sorted(order), "dependency order:\n" + out)
        record = json.loads(self.weft("stack", "describe", "--stack-name", "cvca", "-o", "json"))
        ca_arn = record["outputs"]["RootCAArn"]
        cert_arn = record["outputs"]["CertificateArn"]
        self.assertRegex(ca_arn, CA_ARN)
        self.assertRegex(cert_arn, ACM_ARN)
        self.assertEqual(record["exports"]["cvca-RootCAArn"], ca_arn)

        ca = self.aws("acm-pca", "describe-certificate-authority",
                      "--certificate-authority-arn", ca_arn)["CertificateAuthority"]
        self.assertEqual((ca["Status"], ca["Type"]), ("ACTIVE", "ROOT"))
        self.assertEqual(ca["CertificateAuthorityConfiguration"]["Subject"]["CommonName"],
                         "appmeshworkshop.hosted.local")
        cert = self.aws("acm", "describe-certificate", "--certificate-arn",
                        cert_arn)["Certificate"]
        self.assertEqual(cert["Status"], "ISSUED")
        self.assertEqual(cert["DomainName"], "*.appmeshworkshop.hosted.local")
        self.assertEqual(cert["CertificateAuthorityArn"], ca_arn)
        self.openssl_verify(self.pem_of(ca_arn, "cvca-root.pem"),
                            self.pem_of(cert_arn, "cvca-leaf.pem"))

        # A redeploy of the same template changes nothing.
        again = self.weft("stack", "deploy", "--template-file", tmpl, "--stack-name", "cvca")
        self.assertEqual(again.count(": unchanged"), 4, again)
        self.assertNotIn("created", again)
        self.assertEqual(json.loads(self.weft("stack", "describe", "--stack-name", "cvca", "-o",
                                              "json"))["outputs"]["CertificateArn"], cert_arn)

        out = self.weft("stack", "delete", "--stack-name", "cvca")
        self.assertIn("Stack cvca: deleted", out)
        order = [out.index(x) for x in ("WildcardCertificate (", "RootCAActivation (",
                                        "RootCACertificate (", "RootCA (")]
        self.assertEqual(order, sorted(order), "reverse order:\n" + out)
        ca = self.aws("acm-pca", "describe-certificate-authority",
                      "--certificate-authority-arn", ca_arn)["CertificateAuthority"]
        self.assertEqual(ca["Status"], "DELETED")
        rc, _, err = self.server.aws("acm", "describe-certificate", "--certificate-arn", cert_arn)
        self.assertNotEqual(rc, 0)
        self.assertIn("ResourceNotFoundException", err)
        self.assertIn("does not exist", self.fails("stack", "describe", "--stack-name", "cvca"))

    def test_crossvpc_registry_stack_and_get(self):
        net = self.one_line(self.weft("network", "create", "--name", "vpc1", "--cidr",
                                      "10.1.0.0/16"))
        self.assertTrue(net.startswith("vpc-"), net)
        tmpl = os.path.join(CROSSVPC, "registry-stack.yaml")
        self.assertIn("NetworkId", self.fails("stack", "deploy", "--template-file", tmpl,
                                              "--stack-name", "cvreg"))
        out = self.weft("stack", "deploy", "--template-file", tmpl, "--stack-name", "cvreg",
                        "--parameter-overrides", "NetworkId=" + net)
        self.assertIn("Namespace (AWS::ServiceDiscovery::PrivateDnsNamespace): created ns-", out)
        record = json.loads(self.weft("stack", "describe", "--stack-name", "cvreg", "-o", "json"))
        ns_id = record["outputs"]["NamespaceId"]
        self.assertTrue(record["outputs"]["HostedZoneId"].startswith("Z"), record["outputs"])
        self.assertTrue(record["outputs"]["NodejsServiceArn"].startswith(
            "arn:aws:servicediscovery:us-west-2:"), record["outputs"])

        # The AWS CLI sees the namespace (attached to the network) and the three services.
        namespaces = self.aws("servicediscovery", "list-namespaces")["Namespaces"]
        mine = [n for n in namespaces if n["Name"] == "appmeshworkshop.hosted.local"]
        self.assertEqual([n["Id"] for n in mine], [ns_id])
        self.assertEqual(mine[0]["Type"], "DNS_PRIVATE")
        services = self.aws("servicediscovery", "list-services", "--filters",
                            "Name=NAMESPACE_ID,Values=%s,Condition=EQ" % ns_id)["Services"]
        self.assertEqual(sorted(s["Name"] for s in services), ["crystal", "frontend", "nodejs"])
        crystal = self.aws("servicediscovery", "get-service", "--id",
                           record["outputs"]["CrystalServiceId"])["Service"]
        self.assertEqual(crystal["DnsConfig"]["DnsRecords"], [{"Type": "A", "TTL": 300}])
        nets = {n["id"]: n for n in self.weft_json("network", "list")}
        self.assertIn(ns_id, nets[net].get("namespaces", []), nets)

        # weft get namespaces / services / instances
        table = self.weft("get", "namespaces")
        self.assertTrue(table.startswith("ID"), table)
        self.assertRegex(table, r"%s\s+appmeshworkshop\.hosted\.local\s+DNS_PRIVATE\s+3\s+Z"
                         % ns_id)
        svc_json = self.weft_json("get", "services", "--namespace",
                                  "appmeshworkshop.hosted.local")
        self.assertEqual(sorted((s["Name"], s["NamespaceName"]) for s in svc_json),
                         [("crystal", "appmeshworkshop.hosted.local"),
                          ("frontend", "appmeshworkshop.hosted.local"),
                          ("nodejs", "appmeshworkshop.hosted.local")])
        self.assertRegex(self.weft("get", "services", "-n", ns_id),
                         r"crystal\s+appmeshworkshop\.hosted\.local\s+A:300\s+0\s+custom")
        self.assertIn("no namespace 'nope'", self.fails("get", "services", "--namespace", "nope"))
        self.aws("servicediscovery", "register-instance", "--service-id", crystal["Id"],
                 "--instance-id", "crystal-1", "--attributes",
                 "AWS_INSTANCE_IPV4=10.1.0.5,AWS_INSTANCE_PORT=3000,zone=us-west-2a")
        self.aws("servicediscovery", "register-instance", "--service-id", crystal["Id"],
                 "--instance-id", "crystal-2", "--attributes",
                 "AWS_INSTANCE_IPV4=10.1.0.6,AWS_INSTANCE_PORT=3000,AWS_INIT_HEALTH_STATUS=UNHEALTHY")
        inst = self.weft_json("get", "instances", "--service", "crystal")
        self.assertEqual(sorted((i["Id"], i["HealthStatus"], i["ServiceName"]) for i in inst),
                         [("crystal-1", "HEALTHY", "crystal"),
                          ("crystal-2", "UNHEALTHY", "crystal")])
        table = self.weft("get", "instances", "--namespace", "appmeshworkshop.hosted.local")
        self.assertRegex(table, r"crystal-1\s+crystal\s+appmeshworkshop\.hosted\.local\s+"
                                r"10\.1\.0\.5:3000\s+HEALTHY\s+zone=us-west-2a")
        self.assertEqual(self.weft_json("get", "instances", "--service", "nodejs"), [])
        p = self.server.weft("get", "instances", "--service", "nodejs")
        self.assertEqual((p.returncode, p.stdout, p.stderr.strip()),
                         (0, "", "No instances found."))
        self.assertIn("no service 'php'", self.fails("get", "instances", "--service", "php"))

        # Deleting the stack while crystal has instances fails and keeps the record; after
        # deregistering, it deletes everything and the network can go.
        err = self.fails("stack", "delete", "--stack-name", "cvreg", code=1)
        self.assertIn("ResourceInUse", err)
        status = json.loads(self.weft("stack", "describe", "--stack-name", "cvreg", "-o",
                                      "json"))["status"]
        self.assertEqual(status, "DELETE_FAILED")
        for i in ("crystal-1", "crystal-2"):
            self.aws("servicediscovery", "deregister-instance", "--service-id", crystal["Id"],
                     "--instance-id", i)
        out = self.weft("stack", "delete", "--stack-name", "cvreg")
        self.assertIn("Namespace (AWS::ServiceDiscovery::PrivateDnsNamespace): deleted " + ns_id,
                      out)
        names = [n["Name"] for n in self.aws("servicediscovery", "list-namespaces")["Namespaces"]]
        self.assertNotIn("appmeshworkshop.hosted.local", names)
        self.weft("network", "delete", net)

    def test_stack_instance_and_rollback(self):
        tmpl = self.write("http-stack.yaml", """
Resources:
  Ns:
    Type: AWS::ServiceDiscovery::HttpNamespace
    Properties: {Name: apps-http}
  Svc:
    Type: AWS::ServiceDiscovery::Service
    Properties:
      Name: billing
      NamespaceId: !GetAtt Ns.Id
      Type: HTTP
  Inst:
    Type: AWS::ServiceDiscovery::Instance
    Properties:
      ServiceId: !Ref Svc
      InstanceAttributes: {AWS_INSTANCE_IPV4: 10.2.0.9, AWS_INSTANCE_PORT: 8080, stage: blue}
Outputs:
  InstanceId: {Value: !Ref Inst}
  NsArn: {Value: !GetAtt Ns.Arn}
""")
        self.weft("stack", "deploy", "--template-file", tmpl, "--stack-name", "httpapps")
        outputs = json.loads(self.weft("stack", "describe", "--stack-name", "httpapps", "-o",
                                       "json"))["outputs"]
        self.assertEqual(outputs["InstanceId"], "httpapps-Inst")
        inst = self.weft_json("get", "instances", "--service", "billing.apps-http")
        self.assertEqual([(i["Id"], i["Attributes"]["AWS_INSTANCE_PORT"],
                           i["Attributes"]["stage"]) for i in inst],
                         [("httpapps-Inst", "8080", "blue")])
        out = self.weft("stack", "delete", "--stack-name", "httpapps")
        self.assertIn("Inst (AWS::ServiceDiscovery::Instance): deleted httpapps-Inst", out)
        self.assertNotIn("apps-http", self.weft("get", "namespaces"))

        # A failing resource rolls back what the deploy made.
        bad = self.write("bad-stack.yaml", """
Resources:
  Ns:
    Type: AWS::ServiceDiscovery::HttpNamespace
    Properties: {Name: rollback-ns}
  Svc:
    Type: AWS::ServiceDiscovery::Service
    Properties:
      Name: broken
      NamespaceId: !Ref Ns
      DnsConfig: {DnsRecords: [{Type: MX, TTL: 60}]}
""")
        err = self.fails("stack", "deploy", "--template-file", bad, "--stack-name", "bad",
                         code=1)
        self.assertIn("Svc (AWS::ServiceDiscovery::Service) failed", err)
        self.assertIn("(rolled back)", err)
        self.assertNotIn("rollback-ns", self.weft("get", "namespaces"))
        self.assertIn("does not exist", self.fails("stack", "describe", "--stack-name", "bad"))
        unknown = self.write("unknown-prop.yaml", """
Resources:
  Ns:
    Type: AWS::ServiceDiscovery::HttpNamespace
    Properties: {Name: x, Colour: blue}
""")
        self.assertIn("unknown property Colour",
                      self.fails("stack", "deploy", "--template-file", unknown,
                                 "--stack-name", "u", code=1))


if __name__ == "__main__":
    unittest.main()
