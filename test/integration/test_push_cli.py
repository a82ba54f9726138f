"""Config push from the operator's side, against a real `weft server` (--stream 127.0.0.1:0):
join tokens (`weft token create|list|revoke`), `weft proxies`, `weft describe proxy-config` for
nodes made with `weft apply` and with the AWS CLI, and the stream's TLS: DATA_DIR/ca-bundle.pem
exists and the stream port serves a certificate that verifies against it (openssl s_client,
ALPN h2), and one stream end to end with Debian's python3-grpc (Hello with a token over TLS,
version 1, ACK shown by `weft proxies`, an update through the AWS CLI gives version 2, another
node's token is PERMISSION_DENIED). Uses control_harness.py (ControlServer: temp data dir, admin credentials, an
environment with nothing of the user's AWS setup)."""

import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
import unittest

from control_harness import ControlServer

TOKEN_RE = re.compile(r"^wft_[A-Za-z0-9]{16}_[A-Za-z0-9]{43}$")


class PushCliTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = ControlServer(extra_args=["--stream", "127.0.0.1:0"]).start()
        cls.tmp = tempfile.mkdtemp(prefix="weft-push-cli-")

    @classmethod
    def tearDownClass(cls):
        cls.server.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def weft(self, *args):
        p = self.server.weft(*args)
        self.assertEqual(p.returncode, 0, "expected `weft %s` to succeed; stdout:\n%s\nstderr:\n%s"
                         % (" ".join(map(str, args)), p.stdout, p.stderr))
        return p

    def fails(self, *args, code=None):
        """A command expected to fail: non-zero exit, exactly one line on stderr."""
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

    def stream_port(self):
        with open(self.server.ports_file) as f:
            for line in f.read().splitlines():
                if line.startswith("stream="):
                    return int(line[len("stream="):])
        self.fail("no stream= line in the ports file:\n" + open(self.server.ports_file).read())

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    # ---- help

    def test_help(self):
        top = self.weft("--help").stdout
        for cmd in ("token", "proxies"):
            self.assertIn(cmd, top, "top-level help should list " + cmd)
        self.assertIn("Usage: weft token create --resource", self.weft("token", "--help").stdout)
        self.assertIn("Usage: weft proxies", self.weft("proxies", "--help").stdout)
        self.assertIn("describe proxy-config --resource", self.weft("describe", "--help").stdout)
        server_help = self.weft("server", "--help").stdout
        for flag in ("--stream HOST:PORT", "--stream-san", "--insecure", "ca-bundle.pem"):
            self.assertIn(flag, server_help, "weft server --help should mention " + flag)

    # ---- tokens

    def test_token_create_list_revoke(self):
        p = self.weft("token", "create", "--resource", "mesh/shop/virtualNode/cart")
        token = p.stdout.strip()
        self.assertEqual(p.stdout, token + "\n", "expected the token alone on stdout, got %r"
                         % p.stdout)
        self.assertRegex(token, TOKEN_RE)
        token_id = token[4:20]

        listed = json.loads(self.weft("token", "list", "-o", "json").stdout)
        mine = [t for t in listed if t["id"] == token_id]
        self.assertEqual(len(mine), 1, "expected token %s in %r" % (token_id, listed))
        self.assertEqual(mine[0]["resource"], "mesh/shop/virtualNode/cart")
        self.assertEqual(mine[0]["expiresAt"], 0)
        self.assertFalse(mine[0]["revoked"])
        self.assertNotIn(token[21:], json.dumps(listed), "token list must not show the secret")
        table = self.weft("token", "list").stdout
        self.assertIn(token_id, table)
        self.assertRegex(table, r"%s\s+mesh/shop/virtualNode/cart\s+active\s+never" % token_id)

        # An ARN is accepted and stored normalized; --ttl sets the expiry.
        arn = "arn:aws:appmesh:us-west-2:111122223333:mesh/shop/virtualGateway/edge"
        t2 = self.weft("token", "create", "--resource", arn, "--ttl", "30m").stdout.strip()
        self.assertRegex(t2, TOKEN_RE)
        listed = json.loads(self.weft("token", "list", "-o", "json").stdout)
        second = [t for t in listed if t["id"] == t2[4:20]][0]
        self.assertEqual(second["resource"], "mesh/shop/virtualGateway/edge")
        self.assertEqual(second["expiresAt"] - second["createdAt"], 1800)

        self.assertEqual(self.weft("token", "revoke", token_id).stdout.strip(),
                         "revoked " + token_id)
        listed = json.loads(self.weft("token", "list", "-o", "json").stdout)
        self.assertTrue([t for t in listed if t["id"] == token_id][0]["revoked"])
        self.assertRegex(self.weft("token", "list").stdout, r"%s\s+\S+\s+revoked" % token_id)
        # Revoking by the whole token works too.
        self.assertEqual(self.weft("token", "revoke", t2).stdout.strip(), "revoked " + t2[4:20])

        self.assertIn("NotFoundException", self.fails("token", "revoke", "ZZZZZZZZZZZZZZZZ",
                                                      code=1))
        self.assertIn("--resource is required", self.fails("token", "create", code=2))
        self.assertIn("BadRequestException",
                      self.fails("token", "create", "--resource", "shop/cart", code=1))
        self.assertIn("--ttl", self.fails("token", "create", "--resource",
                                          "mesh/shop/virtualNode/cart", "--ttl", "soon", code=2))
        self.assertIn("unknown subcommand", self.fails("token", "frob", code=2))

    # ---- proxies

    def test_proxies_empty(self):
        self.assertEqual(json.loads(self.weft("proxies", "-o", "json").stdout), [])
        p = self.weft("proxies")
        self.assertEqual(p.stdout, "")
        self.assertIn("No proxies connected.", p.stderr)
        self.assertEqual(json.loads(self.weft("proxies", "--mesh", "shop", "-o", "json").stdout),
                         [])

    # ---- describe proxy-config

    def check_proxy_config(self, resource):
        out = self.weft("describe", "proxy-config", "--resource", resource).stdout
        config = json.loads(out)
        self.assertEqual(config.get("node"), resource, out)
        names = [l.get("name") for l in config.get("listeners", [])]
        self.assertIn("lds_egress_0.0.0.0_15001", names, "listeners of %s: %r" % (resource, names))
        self.assertIn("lds_ingress_0.0.0.0_15000", names, "listeners of %s: %r" % (resource, names))
        self.assertNotIn("admin", config, "the compiled config leaves admin unset")
        return config

    def test_describe_proxy_config(self):
        manifest = self.write("mesh.yaml", """
kind: Mesh
name: pushdemo
spec: {}
---
kind: VirtualNode
mesh: pushdemo
name: front
spec:
  listeners: [{portMapping: {port: 8080, protocol: http}}]
  serviceDiscovery: {dns: {hostname: front.pushdemo.local}}
""")
        self.weft("apply", "-f", manifest)
        self.check_proxy_config("mesh/pushdemo/virtualNode/front")
        yaml_out = self.weft("describe", "proxy-config", "--resource",
                             "mesh/pushdemo/virtualNode/front", "-o", "yaml").stdout
        self.assertIn("lds_egress_0.0.0.0_15001", yaml_out)

        rc, out, err = self.server.aws(
            "appmesh", "create-virtual-node", "--mesh-name", "pushdemo",
            "--virtual-node-name", "back", "--spec", json.dumps({
                "listeners": [{"portMapping": {"port": 9090, "protocol": "http"}}],
                "serviceDiscovery": {"dns": {"hostname": "back.pushdemo.local"}}}))
        self.assertEqual(rc, 0, "aws appmesh create-virtual-node failed: %s" % err)
        config = self.check_proxy_config("mesh/pushdemo/virtualNode/back")
        self.assertIn("cds_ingress_pushdemo_back_http_9090",
                      [c.get("name") for c in config.get("clusters", [])], json.dumps(config))
        # The ARN names the same resource.
        arn = out["virtualNode"]["metadata"]["arn"]
        by_arn = json.loads(self.weft(
            "describe", "proxy-config", "--resource", arn).stdout)
        self.assertEqual(by_arn.get("node"), "mesh/pushdemo/virtualNode/back")

        self.assertIn("does not exist", self.fails(
            "describe", "proxy-config", "--resource", "mesh/pushdemo/virtualNode/ghost", code=1))
        self.assertIn("--resource is required", self.fails("describe", "proxy-config", code=2))

    # ---- the stream's TLS

    def test_ca_bundle_and_stream_tls(self):
        bundle = os.path.join(self.server.data_dir, "ca-bundle.pem")
        self.assertTrue(os.path.exists(bundle), "expected %s" % bundle)
        mode = stat.S_IMODE(os.stat(bundle).st_mode)
        self.assertEqual(mode, 0o644, "ca-bundle.pem mode: expected 0644, got %o" % mode)
        with open(bundle) as f:
            self.assertIn("BEGIN CERTIFICATE", f.read())
        port = self.stream_port()
        p = subprocess.run(
            ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-CAfile", bundle,
             "-alpn", "h2", "-verify_return_error", "-verify_ip", "127.0.0.1"],
            input="", capture_output=True, text=True, errors="replace", timeout=30)
        text = p.stdout + p.stderr
        self.assertEqual(p.returncode, 0, "openssl s_client failed:\n" + text)
        self.assertIn("Verify return code: 0 (ok)", text, text)
        self.assertIn("ALPN protocol: h2", text, text)
        # Another CA does not verify it.
        other = self.write("other-ca.pem", self.make_other_ca())
        p = subprocess.run(
            ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-CAfile", other,
             "-verify_return_error", "-brief"],
            input="", capture_output=True, text=True, errors="replace", timeout=30)
        self.assertNotEqual(p.returncode, 0, "expected verification against another CA to fail:\n"
                            + p.stdout + p.stderr)

    def make_other_ca(self):
        key = os.path.join(self.tmp, "other.key")
        cert = os.path.join(self.tmp, "other.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "1", "-subj", "/CN=other"],
                       check=True, capture_output=True, timeout=30)
        with open(cert) as f:
            return f.read()

    def test_bundle_is_kept_across_restart(self):
        bundle = os.path.join(self.server.data_dir, "ca-bundle.pem")
        with open(bundle) as f:
            before = f.read()
        self.server.restart()
        with open(bundle) as f:
            self.assertEqual(f.read(), before, "the CA must survive a restart")
        self.assertGreater(self.stream_port(), 0)

    # ---- a stream, end to end (Debian's python3-grpc, messages encoded by hand)

    def test_stream_over_tls(self):
        try:
            import grpc
        except ImportError:
            self.skipTest("python3-grpc is not installed")
        manifest = self.write("stream.yaml", """
kind: Mesh
name: streamdemo
spec: {}
---
kind: VirtualNode
mesh: streamdemo
name: a
spec:
  listeners: [{portMapping: {port: 8080, protocol: http}}]
  serviceDiscovery: {dns: {hostname: a.streamdemo.local}}
""")
        self.weft("apply", "-f", manifest)
        resource = "mesh/streamdemo/virtualNode/a"
        token = self.weft("token", "create", "--resource", resource).stdout.strip()
        with open(os.path.join(self.server.data_dir, "ca-bundle.pem"), "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        target = "127.0.0.1:%d" % self.stream_port()

        def open_stream(channel, hello):
            call = channel.stream_stream("/weft.v1.ConfigStream/Stream",
                                         request_serializer=None, response_deserializer=None)
            outbox = _Outbox()
            outbox.put(_field(1, hello))  # ProxyMessage.hello
            return outbox, call(iter(outbox), timeout=20)

        with grpc.secure_channel(target, creds) as channel:
            outbox, responses = open_stream(channel, _hello(resource, token, "host-1"))
            first = _parse(next(responses))
            self.assertIn(1, first, "expected a ConfigUpdate (field 1), got %r" % first)
            update = _parse(first[1][0])
            self.assertEqual(update[1][0], 1, "expected version 1")
            config = _parse(update[2][0])
            self.assertEqual(config[1][0].decode(), resource, "ProxyConfig.node")
            self.assertEqual(len(update[3][0]), 64, "hash: sha256 hex")
            outbox.put(_field(2, _field(1, 1)))  # ProxyMessage.ack{version 1}

            def acked():
                out = json.loads(self.weft("proxies", "-o", "json").stdout)
                return [p for p in out if p["resource"] == resource and p["versionAcked"] == 1]
            listed = _wait(acked, "the ACK in weft proxies")[0]
            self.assertEqual(listed["host"], "host-1")
            self.assertEqual(listed["versionSent"], 1)
            self.assertIn(resource, self.weft("proxies", "--mesh", "streamdemo").stdout)

            # A change through the API (SQLite store, NotifyingStore) reaches the stream.
            rc, _, err = self.server.aws(
                "appmesh", "update-virtual-node", "--mesh-name", "streamdemo",
                "--virtual-node-name", "a", "--spec", json.dumps({
                    "listeners": [{"portMapping": {"port": 9090, "protocol": "http"}}],
                    "serviceDiscovery": {"dns": {"hostname": "a.streamdemo.local"}}}))
            self.assertEqual(rc, 0, err)
            second = _parse(_parse(next(responses))[1][0])
            self.assertEqual(second[1][0], 2, "expected version 2 after the update")
            self.assertIn(b"cds_ingress_streamdemo_a_http_9090", second[2][0])
            outbox.close()

        # A token for another node is refused with PERMISSION_DENIED.
        other = self.weft("token", "create", "--resource",
                          "mesh/streamdemo/virtualNode/b").stdout.strip()
        with grpc.secure_channel(target, creds) as channel:
            outbox, responses = open_stream(channel, _hello(resource, other, "host-2"))
            with self.assertRaises(grpc.RpcError) as caught:
                next(responses)
            self.assertEqual(caught.exception.code(), grpc.StatusCode.PERMISSION_DENIED,
                             caught.exception.details())
            self.assertIn("mesh/streamdemo/virtualNode/b", caught.exception.details())
            outbox.close()
        _wait(lambda: json.loads(self.weft("proxies", "-o", "json").stdout) == [],
              "an empty proxy list after the streams closed")


def _wait(cond, what, timeout=15.0):
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.05)


class _Outbox:
    """Request iterator for a gRPC stream: put() messages, close() ends the stream."""

    def __init__(self):
        import queue
        self.q = queue.Queue()

    def put(self, message):
        self.q.put(message)

    def close(self):
        self.q.put(None)

    def __iter__(self):
        while True:
            m = self.q.get()
            if m is None:
                return
            yield m


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number, value):
    """One protobuf field: bytes/str as length-delimited, int as varint."""
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    if isinstance(value, str):
        value = value.encode()
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def _hello(resource, token, host):
    return _field(1, resource) + _field(2, token) + _field(3, host) + _field(5, "test")


def _parse(data):
    """Decodes one message level: {field number: [values]} (varints as int, others as bytes)."""
    fields, i = {}, 0
    while i < len(data):
        key, i = _read_varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _read_varint(data, i)
        elif wire == 2:
            n, i = _read_varint(data, i)
            value, i = data[i:i + n], i + n
        elif wire == 1:
            value, i = data[i:i + 8], i + 8
        elif wire == 5:
            value, i = data[i:i + 4], i + 4
        else:
            raise ValueError("wire type %d" % wire)
        fields.setdefault(number, []).append(value)
    return fields


def _read_varint(data, i):
    shift = result = 0
    while True:
        b = data[i]
        i += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return result, i


if __name__ == "__main__":
    unittest.main()
