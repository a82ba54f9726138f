"""Harness for the control plane's integration tests (Python 3 stdlib, plus boto3 from Debian's
python3-boto3 for the tests that use it).

What it offers:
  * ControlServer: runs `weft server` on 127.0.0.1:0 with a private temp data directory, waits for
    its --ports-file, stops it with SIGTERM (or kills it), restarts it on the same data directory,
    always cleans up. Gives the endpoint, the admin credentials and an environment for clients.
  * aws(): runs Debian's AWS CLI (/usr/bin/aws, not whatever `aws` is on PATH) against the server,
    with nothing from the user's own AWS configuration leaking in.
  * appmesh_client(): a boto3 App Mesh client for the server.
  * signed_request(): a raw HTTP request signed with botocore's SigV4 signer, for the /weft/v1
    paths and for requests the SDKs would never send (tampered, wrong region...).

The binary comes from $WEFT_BIN (set by ctest); without it the usual build directories are
searched. No sleeps as synchronisation: waits poll a condition with a deadline.
"""

import atexit
import configparser
import http.client
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
AWS_CLI = "/usr/bin/aws"
DEFAULT_REGION = "us-west-2"


def weft_binary():
    """Path of the `weft` binary: $WEFT_BIN, else a build directory of this checkout."""
    env = os.environ.get("WEFT_BIN")
    if env:
        if not os.access(env, os.X_OK):
            raise RuntimeError("WEFT_BIN=%r is not an executable file" % env)
        return env
    for cand in (os.path.join(REPO, "build", "bin", "weft"), "/tmp/build-server/bin/weft"):
        if os.access(cand, os.X_OK):
            return cand
    raise RuntimeError("weft not found: set WEFT_BIN to the binary (ctest does this) or build it "
                       "into build/bin")


def wait_until(cond, timeout=15.0, interval=0.02, what=None):
    """Polls cond() until it returns a truthy value, which is returned; raises AssertionError
    naming `what` and the last value (or exception) on timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = cond()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - remembered for the message
            last = e
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s; last value: %r"
                                 % (timeout, what or getattr(cond, "__name__", "condition"), last))
        time.sleep(interval)


_live = set()


@atexit.register
def _kill_leftovers():
    for p in list(_live):
        if p.poll() is None:
            p.kill()
            p.wait()


# Nothing of the user's own AWS setup may reach a client: no config or credentials files, no
# instance metadata lookups, no profile or keys from the environment.
_AWS_ENV_DROP = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                 "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION",
                 "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_ENDPOINT_URL",
                 "AWS_CA_BUNDLE", "AWS_PAGER", "WEFT_ENDPOINT")


class ControlServer:
    """One `weft server` process on a private data directory (kept across restart())."""

    def __init__(self, region=DEFAULT_REGION, account_id=None, extra_args=(), data_dir=None):
        self.region = region
        self.account_id = account_id
        self.extra_args = list(extra_args)
        self.tmp = tempfile.mkdtemp(prefix="weft-control-")
        self.home = os.path.join(self.tmp, "home")
        os.mkdir(self.home)
        self.data_dir = data_dir or os.path.join(self.tmp, "data")
        self.ports_file = os.path.join(self.tmp, "ports")
        self.log_path = os.path.join(self.tmp, "server.log")
        self.proc = None
        self.port = None
        self.starts = 0

    # ---- lifecycle

    def start(self, timeout=20.0):
        if os.path.exists(self.ports_file):
            os.unlink(self.ports_file)
        args = [weft_binary(), "server", "--data-dir", self.data_dir, "--api", "127.0.0.1:0",
                "--region", self.region, "--ports-file", self.ports_file, "--log-level", "debug",
                "--dns", "127.0.0.1:0",  # fixed DNS and stream ports would collide
                "--stream", "127.0.0.1:0"]  # between servers (a later --stream wins)
        if self.account_id:
            args += ["--account-id", self.account_id]
        args += self.extra_args
        self.starts += 1
        log = open(self.log_path, "ab")
        log.write(("---- start %d: %s\n" % (self.starts, " ".join(args))).encode())
        log.flush()
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                     env=self._base_env(), cwd=self.tmp)
        log.close()
        _live.add(self.proc)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("weft server exited with %s before listening; log:\n%s"
                                     % (self.proc.returncode, self.log()))
            if not os.path.exists(self.ports_file):
                return None
            with open(self.ports_file) as f:
                text = f.read()
            for line in text.splitlines():
                if line.startswith("api="):
                    return int(line[4:])
            return None

        self.port = wait_until(ready, timeout, what="the server's ports file")
        return self

    def stop(self, sig=signal.SIGTERM, timeout=20.0):
        """Stops the server with `sig`; answers its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("weft server did not stop within %.0fs of %s; log:\n%s"
                                     % (timeout, signal.Signals(sig).name, self.log()))
        rc = self.proc.returncode
        _live.discard(self.proc)
        self.proc = None
        return rc

    def restart(self):
        rc = self.stop()
        if rc != 0:
            raise AssertionError("expected a clean exit (0) on SIGTERM, got %s; log:\n%s"
                                 % (rc, self.log()))
        return self.start()

    def close(self):
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            if self.proc is not None:
                _live.discard(self.proc)
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    # ---- what clients need

    @property
    def endpoint(self):
        return "http://127.0.0.1:%d" % self.port

    @property
    def credentials_file(self):
        return os.path.join(self.data_dir, "admin-credentials")

    def admin_key(self):
        """(access key id, secret) from DATA_DIR/admin-credentials, profile [weft]."""
        cp = configparser.ConfigParser()
        if not cp.read(self.credentials_file):
            raise AssertionError("no credentials file at %s" % self.credentials_file)
        return cp["weft"]["aws_access_key_id"], cp["weft"]["aws_secret_access_key"]

    def _base_env(self):
        env = {k: v for k, v in os.environ.items() if k not in _AWS_ENV_DROP}
        env["HOME"] = self.home
        return env

    def env(self, **extra):
        """Environment for AWS CLI / weft CLI processes: the admin credentials file, no config
        file, no metadata service, the server's region, a private HOME."""
        env = self._base_env()
        env.update({
            "AWS_SHARED_CREDENTIALS_FILE": self.credentials_file,
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_DEFAULT_REGION": self.region,
            "AWS_PAGER": "",
            "WEFT_ENDPOINT": self.endpoint,
        })
        env.update(extra)
        return env

    def aws(self, *args, profile="weft", env=None, timeout=60):
        """Runs /usr/bin/aws with --endpoint-url and JSON output. Answers (returncode, parsed
        JSON stdout or None, stderr)."""
        cmd = [AWS_CLI, "--endpoint-url", self.endpoint, "--output", "json"]
        if profile:
            cmd += ["--profile", profile]
        cmd += [str(a) for a in args]
        p = subprocess.run(cmd, capture_output=True, text=True, env=env or self.env(),
                           timeout=timeout)
        out = None
        if p.stdout.strip():
            try:
                out = json.loads(p.stdout)
            except ValueError:
                out = p.stdout
        return p.returncode, out, p.stderr

    def weft(self, *args, env=None, timeout=60):
        """Runs the `weft` CLI against this server (profile weft). Answers CompletedProcess."""
        cmd = [weft_binary()] + [str(a) for a in args]
        return subprocess.run(cmd, capture_output=True, text=True,
                              env=env or self.env(AWS_PROFILE="weft"), timeout=timeout)

    def _boto_session(self, key=None, secret=None, region=None):
        import boto3  # Debian's python3-boto3; imported here so stdlib-only users never need it
        import botocore.session
        if key is None:
            key, secret = self.admin_key()
        bs = botocore.session.Session()
        # No config file, no credential chain: only what is passed here.
        bs.set_config_variable("config_file", "/dev/null")
        bs.set_config_variable("credentials_file", "/dev/null")
        return boto3.session.Session(aws_access_key_id=key, aws_secret_access_key=secret,
                                     region_name=region or self.region, botocore_session=bs)

    def ca_clients(self):
        """boto3 clients of the server's ACM PCA and ACM APIs (admin key, one attempt per call):
        (acm-pca, acm)."""
        from botocore.config import Config
        session = self._boto_session()
        cfg = Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=30)
        return (session.client("acm-pca", endpoint_url=self.endpoint, config=cfg),
                session.client("acm", endpoint_url=self.endpoint, config=cfg))

    def appmesh_client(self, key=None, secret=None, region=None, retries=1):
        """A boto3 App Mesh client for this server (admin key unless given)."""
        from botocore.config import Config
        return self._boto_session(key, secret, region).client(
            "appmesh", endpoint_url=self.endpoint,
            config=Config(retries={"total_max_attempts": retries, "mode": "standard"},
                          connect_timeout=5, read_timeout=30))

    def signed_request(self, method, path, body=b"", query="", service="weft", key=None,
                       secret=None, region=None, headers=None, tamper=None):
        """Sends one request signed by botocore's SigV4Auth. `tamper(headers, body)` may change
        the request after signing and answers (headers, body). Answers (status, headers dict
        with lower-case names, body bytes)."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials
        if key is None:
            key, secret = self.admin_key()
        if isinstance(body, str):
            body = body.encode()
        url = self.endpoint + path + ("?" + query if query else "")
        req = AWSRequest(method=method, url=url, data=body,
                         headers=dict({"Content-Type": "application/json"}, **(headers or {})))
        SigV4Auth(Credentials(key, secret), service, region or self.region).add_auth(req)
        hdrs = dict(req.headers.items())
        if tamper:
            hdrs, body = tamper(hdrs, body)
        return raw_request(self.port, method, path + ("?" + query if query else ""), hdrs, body)


def make_root_ca(pca, common_name, key_algorithm="RSA_2048", signing_algorithm="SHA256WITHRSA"):
    """An ACTIVE root CA made as ACM PCA users make one: create, self-sign its CSR with
    RootCACertificate/V1, import. Returns (CA ARN, its certificate PEM)."""
    arn = pca.create_certificate_authority(
        CertificateAuthorityType="ROOT",
        CertificateAuthorityConfiguration={
            "KeyAlgorithm": key_algorithm, "SigningAlgorithm": signing_algorithm,
            "Subject": {"CommonName": common_name, "Organization": "weft test"}},
    )["CertificateAuthorityArn"]
    csr = pca.get_certificate_authority_csr(CertificateAuthorityArn=arn)["Csr"]
    issued = pca.issue_certificate(
        CertificateAuthorityArn=arn, Csr=csr.encode(), SigningAlgorithm=signing_algorithm,
        Validity={"Value": 10, "Type": "YEARS"},
        TemplateArn="arn:aws:acm-pca:::template/RootCACertificate/V1")
    root = pca.get_certificate(CertificateAuthorityArn=arn,
                               CertificateArn=issued["CertificateArn"])["Certificate"]
    pca.import_certificate_authority_certificate(CertificateAuthorityArn=arn,
                                                 Certificate=root.encode())
    return arn, root


def raw_request(port, method, target, headers, body=b""):
    """One HTTP/1.1 request on a fresh connection. Answers (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, target, body=body or None, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()
