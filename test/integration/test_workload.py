"""Workloads (issue 8, docs/workloads.md): `weft intercept` installs App Mesh's iptables
interception in a network namespace and removes exactly what it installed; `weft run` starts an
app with its sidecar (the proxy first, the app once the proxy is ready), passes signals on, and
stops and cleans everything up when the app exits.

Root only (network namespaces, iptables, switching users); skipped otherwise.

Topology, in private network namespaces named wwl<pid>a / wwl<pid>b (addresses from
198.18.70.0/24 and 198.18.71.0/30, used by no other test):
  A "the app's host"      198.18.70.1/24 on veth to B; for `weft run`, 198.18.71.2/30 on a veth
                          to the root namespace, where `weft server` streams on 198.18.71.1
  B "another host"        198.18.70.2/24 and 198.18.70.3/24: the remote servers, and the caller
                          of the app's port
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest

from control_harness import ControlServer, wait_until, weft_binary

PREFIX = "wwl%d" % os.getpid()
NS_A = PREFIX + "a"
NS_B = PREFIX + "b"
A_IP = "198.18.70.1"
B_IP = "198.18.70.2"
B_IP2 = "198.18.70.3"
SERVER_IP = "198.18.71.1"
A_LINK_IP = "198.18.71.2"
APP_UID = 65534  # nobody: the app's user, whose traffic is intercepted

# A TCP server on several ports that answers each connection with one line: its tag, the
# connection's original destination (SO_ORIGINAL_DST: where the client meant to go before a
# REDIRECT; the local address when not redirected) and the client's address, then closes.
TAGGER = textwrap.dedent("""
    import socket, struct, sys, threading
    tag = sys.argv[1]
    def orig_dst(c):
        try:
            raw = c.getsockopt(socket.SOL_IP, 80, 16)  # SO_ORIGINAL_DST
            port = struct.unpack('!H', raw[2:4])[0]
            return '%s:%d' % (socket.inet_ntoa(raw[4:8]), port)
        except OSError:
            return '%s:%d' % c.getsockname()
    def serve(s):
        while True:
            c, peer = s.accept()
            try:
                c.sendall(('%s %s %s\\n' % (tag, orig_dst(c), peer[0])).encode())
            finally:
                c.close()
    for port in sys.argv[2:]:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(('0.0.0.0', int(port)))
        s.listen(16)
        threading.Thread(target=serve, args=(s,), daemon=True).start()
    print('listening', flush=True)
    threading.Event().wait()
""")

# One connection; prints the line the server sent (or the error).
CONNECT = textwrap.dedent("""
    import socket, sys
    try:
        s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
        print(s.makefile().readline().strip())
    except OSError as e:
        print('error', e)
""")

# The app run by `weft run`: calls a mesh backend once at start (through the egress listener:
# it only works if the sidecar is already serving), records the outcome, then serves HTTP on
# port 3000. GET /hello answers with its uid; GET /exit/N exits with code N once answered.
# SIGTERM is recorded and ends it with code 0. With the argument "orphan" it first starts a
# daemon (`sleep 600` in a new session) that it never stops. With "fd=N" it records what its
# fd N is ("fd N -> pipe:[...]", or "fd N closed").
APP = textwrap.dedent("""
    import http.server, os, signal, socket, subprocess, sys, threading
    status_file = sys.argv[1]
    def note(line):
        with open(status_file, 'a') as f:
            f.write(line + '\\n')
    for a in sys.argv[3:]:
        if a.startswith('fd='):
            try:
                note('fd %s -> %s' % (a[3:], os.readlink('/proc/self/fd/' + a[3:])))
            except OSError:
                note('fd %s closed' % a[3:])
    if 'orphan' in sys.argv[3:]:
        # A daemon of its own: a new session (out of the app's process group), left behind.
        p = subprocess.Popen(['sleep', '600'], start_new_session=True)
        note('orphan %d' % p.pid)
    def on_term(sig, frame):
        note('got SIGTERM')
        os._exit(0)
    signal.signal(signal.SIGTERM, on_term)
    try:
        s = socket.create_connection((sys.argv[2], 8080), timeout=5)
        s.sendall(b'GET /startup HTTP/1.1\\r\\nHost: echo.wl.local:8080\\r\\nConnection: close\\r\\n\\r\\n')
        data = b''
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b'\\r\\n\\r\\n')
        note('startup-call %s %s' % (head.split(b' ')[1].decode(), body.decode().strip()))
    except Exception as e:
        note('startup-call failed %r' % e)
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.startswith('/exit/'):
                code = int(self.path[6:])
                self.reply('bye\\n')
                threading.Timer(0.05, lambda: os._exit(code)).start()
                return
            self.reply('hello from the app uid=%d\\n' % os.getuid())
        def reply(self, text):
            body = text.encode()
            self.send_response(200)
            self.send_header('content-length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a):
            pass
    http.server.ThreadingHTTPServer.allow_reuse_address = True
    srv = http.server.ThreadingHTTPServer(('0.0.0.0', 3000), H)
    note('serving')
    srv.serve_forever()
""")

# The mesh backend in B: answers every GET with "echo from B <path>".
ECHO = textwrap.dedent("""
    import http.server
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = ('echo from B %s' % self.path).encode()
            self.send_response(200)
            self.send_header('content-length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a):
            pass
    http.server.ThreadingHTTPServer.allow_reuse_address = True
    http.server.ThreadingHTTPServer(('0.0.0.0', 8080), H).serve_forever()
""")


def _can_run():
    return (os.geteuid() == 0 and shutil.which("ip") and shutil.which("iptables")
            and shutil.which("iptables-save") and shutil.which("setpriv")
            and shutil.which("curl"))


def run(args, check=True, **kw):
    r = subprocess.run(args, capture_output=True, text=True, timeout=60, **kw)
    if check and r.returncode != 0:
        raise AssertionError("%s failed (%d): %s" % (" ".join(args), r.returncode,
                                                      r.stderr.strip()))
    return r


def in_ns(ns, *args, check=True, **kw):
    return run(["ip", "netns", "exec", ns] + list(args), check=check, **kw)


def nat_rules(ns):
    """iptables-save of the nat table, without comments and packet counters."""
    out = in_ns(ns, "iptables-save", "-t", "nat").stdout
    lines = []
    for line in out.splitlines():
        if line.startswith("#"):
            continue
        lines.append(re.sub(r"\[\d+:\d+\]", "[-]", line))
    return "\n".join(lines)


class Namespaces:
    """Namespaces A and B joined by a veth pair; everything removed by close()."""

    def __init__(self, link_to_root=False):
        self.link = PREFIX + "r" if link_to_root else None
        self.close()  # leftovers of a crashed run with the same pid
        try:
            for ns in (NS_A, NS_B):
                run(["ip", "netns", "add", ns])
                in_ns(ns, "ip", "link", "set", "lo", "up")
            run(["ip", "link", "add", PREFIX + "x", "netns", NS_A, "type", "veth", "peer",
                 "name", PREFIX + "y", "netns", NS_B])
            in_ns(NS_A, "ip", "addr", "add", A_IP + "/24", "dev", PREFIX + "x")
            in_ns(NS_A, "ip", "link", "set", PREFIX + "x", "up")
            in_ns(NS_B, "ip", "addr", "add", B_IP + "/24", "dev", PREFIX + "y")
            in_ns(NS_B, "ip", "addr", "add", B_IP2 + "/24", "dev", PREFIX + "y")
            in_ns(NS_B, "ip", "link", "set", PREFIX + "y", "up")
            if self.link:
                run(["ip", "link", "add", self.link, "type", "veth", "peer", "name", "eth0",
                     "netns", NS_A])
                run(["ip", "addr", "add", SERVER_IP + "/30", "dev", self.link])
                run(["ip", "link", "set", self.link, "up"])
                in_ns(NS_A, "ip", "addr", "add", A_LINK_IP + "/30", "dev", "eth0")
                in_ns(NS_A, "ip", "link", "set", "eth0", "up")
        except BaseException:
            self.close()
            raise
        self.procs = []

    def spawn(self, ns, argv, uid=None):
        pre = ["ip", "netns", "exec", ns]
        if uid is not None:
            pre += ["setpriv", "--reuid=%d" % uid, "--regid=%d" % uid, "--clear-groups"]
        p = subprocess.Popen(pre + argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             stdin=subprocess.DEVNULL, text=True)
        self.procs.append(p)
        return p

    def tagger(self, ns, tag, *ports):
        p = self.spawn(ns, [sys.executable, "-c", TAGGER, tag] + [str(x) for x in ports])
        line = p.stdout.readline().strip()
        if line != "listening":
            raise AssertionError("the %s server did not start (printed %r)" % (tag, line))
        return p

    def close(self):
        for p in getattr(self, "procs", []):
            if p.poll() is None:
                p.kill()
            p.wait()
            if p.stdout:
                p.stdout.close()
        for ns in (NS_A, NS_B):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        if getattr(self, "link", None):
            subprocess.run(["ip", "link", "del", self.link], capture_output=True)


def connect(ns, host, port, uid=None):
    """Connects from `ns` (as `uid`) to host:port; answers the line the server sent."""
    pre = ["ip", "netns", "exec", ns]
    if uid is not None:
        pre += ["setpriv", "--reuid=%d" % uid, "--regid=%d" % uid, "--clear-groups"]
    r = subprocess.run(pre + [sys.executable, "-c", CONNECT, host, str(port)],
                       capture_output=True, text=True, timeout=30)
    return r.stdout.strip() or r.stderr.strip()


def weft(*args, ns=NS_A, env=None):
    return subprocess.run(["ip", "netns", "exec", ns, weft_binary()] + list(args),
                          capture_output=True, text=True, timeout=60, env=env)


@unittest.skipUnless(_can_run(), "needs root, ip, iptables, iptables-save, setpriv and curl")
class InterceptTest(unittest.TestCase):
    def setUp(self):
        self.ns = Namespaces()
        self.addCleanup(self.ns.close)
        # In A: stand-ins for the proxy's listeners and the app, each saying who it is.
        self.ns.tagger(NS_A, "ingress", 15000)
        self.ns.tagger(NS_A, "egress", 15001)
        self.ns.tagger(NS_A, "app", 3000)
        # In B: the rest of the world.
        self.ns.tagger(NS_B, "remote", 8080, 22)
        # A rule of someone else's in the nat table: it must survive, and it makes the table
        # exist before (iptables-save prints nothing for a table never used).
        in_ns(NS_A, "iptables", "-t", "nat", "-A", "OUTPUT", "-p", "udp", "--dport", "9", "-j",
              "RETURN")

    def install(self, *extra):
        r = weft("intercept", "install", "--id", "t1", "--app-ports", "3000",
                 "--egress-ignored-ips", "169.254.169.254,169.254.170.2," + B_IP2, *extra)
        self.assertEqual(r.returncode, 0, "weft intercept install: %s" % r.stderr)
        return r

    def test_install_redirects_like_app_mesh_and_remove_restores(self):
        before = nat_rules(NS_A)
        self.assertNotIn("WEFT_", before)
        r = self.install()
        self.assertIn("installed interception t1", r.stdout)
        after = nat_rules(NS_A)
        for rule in ("-A PREROUTING -p tcp -j WEFT_IN_t1",
                     "-A OUTPUT -p tcp -j WEFT_OUT_t1",
                     "--dport 3000 -j REDIRECT --to-ports 15000",
                     "-A WEFT_OUT_t1 -m owner --uid-owner 1337 -j RETURN",
                     "-A WEFT_OUT_t1 -o lo -j RETURN",
                     "--dport 22 -j RETURN",
                     "-A WEFT_OUT_t1 -d 169.254.169.254/32 -j RETURN",
                     "-A WEFT_OUT_t1 -d 169.254.170.2/32 -j RETURN",
                     "-A WEFT_OUT_t1 -p tcp -j REDIRECT --to-ports 15001",
                     "--dport 9 -j RETURN"):
            self.assertIn(rule, after, "iptables-save after install")

        # Outbound from the app's user: to the egress port, original destination kept.
        self.assertEqual(connect(NS_A, B_IP, 8080, uid=APP_UID),
                         "egress %s:8080 %s" % (B_IP, A_IP))
        # The proxy's user is exempt: its connections reach the real destination.
        self.assertEqual(connect(NS_A, B_IP, 8080, uid=1337), "remote %s:8080 %s" % (B_IP, A_IP))
        # Ignored port and ignored address.
        self.assertEqual(connect(NS_A, B_IP, 22, uid=APP_UID), "remote %s:22 %s" % (B_IP, A_IP))
        self.assertEqual(connect(NS_A, B_IP2, 8080, uid=APP_UID),
                         "remote %s:8080 %s" % (B_IP2, A_IP))
        # Loopback and this host's own address: straight to the app, never to the egress port.
        self.assertEqual(connect(NS_A, "127.0.0.1", 3000, uid=APP_UID),
                         "app 127.0.0.1:3000 127.0.0.1")
        self.assertEqual(connect(NS_A, A_IP, 3000, uid=APP_UID),
                         "app %s:3000 %s" % (A_IP, A_IP))
        # Inbound from another host to the app's port: to the ingress port.
        self.assertEqual(connect(NS_B, A_IP, 3000), "ingress %s:3000 %s" % (A_IP, B_IP))

        status = weft("intercept", "status")
        self.assertEqual(status.returncode, 0, status.stderr)
        self.assertIn("interception t1", status.stdout)
        self.assertIn("-A WEFT_OUT_t1 -p tcp -j REDIRECT --to-ports 15001", status.stdout)
        missing = weft("intercept", "status", "--id", "nope")
        self.assertEqual(missing.returncode, 1, "status of an id not installed: %r" % (missing,))
        self.assertIn("no interception nope installed", missing.stderr)

        # Twice: nothing duplicated.
        self.install()
        self.assertEqual(nat_rules(NS_A), after, "a second install changed the rules")

        r = weft("intercept", "remove", "--id", "t1")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("removed interception t1", r.stdout)
        self.assertEqual(nat_rules(NS_A), before, "remove must restore iptables-save exactly")
        self.assertEqual(connect(NS_A, B_IP, 8080, uid=APP_UID), "remote %s:8080 %s" % (B_IP, A_IP))
        again = weft("intercept", "remove", "--id", "t1")
        self.assertEqual(again.returncode, 0, again.stderr)
        self.assertIn("nothing to remove", again.stdout)

    def test_two_ids_are_independent(self):
        before = nat_rules(NS_A)
        self.install()
        with_t1 = nat_rules(NS_A)
        r = weft("intercept", "install", "--id", "t2", "--app-ports", "4000")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("WEFT_IN_t2", nat_rules(NS_A))
        self.assertEqual(weft("intercept", "remove", "--id", "t2").returncode, 0)
        self.assertEqual(nat_rules(NS_A), with_t1)
        self.assertEqual(weft("intercept", "remove", "--id", "t1").returncode, 0)
        self.assertEqual(nat_rules(NS_A), before)

    def test_bad_flags_are_refused_before_touching_iptables(self):
        before = nat_rules(NS_A)
        for args, expect in (
                (["--app-ports", "15001"], "--app-ports: 15001 is one of the proxy's own ports"),
                (["--egress-ignored-ips", "fd00::1"], "is not an IPv4 address or CIDR"),
                (["--id", "has space"], "--id:")):
            r = weft("intercept", "install", *args)
            self.assertEqual(r.returncode, 2, "%s: %r" % (args, r))
            self.assertIn(expect, r.stderr)
        self.assertEqual(nat_rules(NS_A), before)

    def test_iptables_failure_names_the_command_and_leaves_nothing(self):
        # An iptables that refuses to insert the jumps (everything else goes to the real one):
        # the error names the command and repeats its stderr; what was made is removed.
        d = tempfile.mkdtemp(prefix="weft-wl-fake-")
        self.addCleanup(shutil.rmtree, d, True)
        real = shutil.which("iptables")
        fake = os.path.join(d, "iptables")
        with open(fake, "w") as f:
            f.write("#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = -I ] && "
                    "{ echo 'iptables: fake refusal.' >&2; exit 4; }; done\nexec %s \"$@\"\n"
                    % real)
        os.chmod(fake, 0o755)
        before = nat_rules(NS_A)
        env = dict(os.environ, PATH=d + ":" + os.environ.get("PATH", "/usr/bin:/bin"))
        r = weft("intercept", "install", "--id", "t3", "--app-ports", "3000", env=env)
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("iptables -t nat -I PREROUTING 1 -p tcp -j WEFT_IN_t3 failed (exit 4): "
                      "iptables: fake refusal.", r.stderr)
        self.assertEqual(nat_rules(NS_A), before, "a failed install must leave nothing")


@unittest.skipUnless(_can_run(), "needs root, ip, iptables, iptables-save, setpriv and curl")
class RunTest(unittest.TestCase):
    """`weft run` against a real control plane: mesh wl, virtual node web (the app, port 3000,
    at A's address) with backend echo.wl.local (virtual node echo: B's port 8080)."""

    @classmethod
    def setUpClass(cls):
        cls.ns = Namespaces(link_to_root=True)
        try:
            cls.server = ControlServer(extra_args=["--stream", SERVER_IP + ":0"])
            cls.server.start()
            with open(cls.server.ports_file) as f:
                cls.stream_port = int(next(l[7:] for l in f.read().splitlines()
                                           if l.startswith("stream=")))
            am = cls.server.appmesh_client()
            am.create_mesh(meshName="wl", spec={"egressFilter": {"type": "DROP_ALL"}})
            am.create_virtual_node(meshName="wl", virtualNodeName="echo", spec={
                "listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}],
                "serviceDiscovery": {"dns": {"hostname": B_IP}}})
            am.create_virtual_service(meshName="wl", virtualServiceName="echo.wl.local", spec={
                "provider": {"virtualNode": {"virtualNodeName": "echo"}}})
            am.create_virtual_node(meshName="wl", virtualNodeName="web", spec={
                "listeners": [{"portMapping": {"port": 3000, "protocol": "http"}}],
                "serviceDiscovery": {"dns": {"hostname": A_IP}},
                "backends": [{"virtualService": {"virtualServiceName": "echo.wl.local"}}]})
            token = cls.server.weft("token", "create", "--resource", "mesh/wl/virtualNode/web")
            if token.returncode != 0:
                raise AssertionError("weft token create: " + token.stderr)
            cls.tmp = tempfile.mkdtemp(prefix="weft-wl-")
            os.chmod(cls.tmp, 0o755)
            # Root-only files: weft run copies them for the proxy's user.
            cls.token_file = os.path.join(cls.tmp, "web.token")
            with open(cls.token_file, "w") as f:
                f.write(token.stdout)
            os.chmod(cls.token_file, 0o600)
            cls.ca_file = os.path.join(cls.server.data_dir, "ca-bundle.pem")
            cls.app_file = os.path.join(cls.tmp, "app.py")
            with open(cls.app_file, "w") as f:
                f.write(APP)
            os.chmod(cls.app_file, 0o644)
            cls.echo = cls.ns.spawn(NS_B, [sys.executable, "-c", ECHO])
            wait_until(lambda: ":8080 " in in_ns(NS_B, "ss", "-ltnH").stdout, 15,
                       what="the echo backend listening in B")
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "server", None):
            cls.server.close()
        cls.ns.close()
        if getattr(cls, "tmp", None):
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="weft-wl-run-", dir=self.tmp)
        os.chmod(self.work, 0o777)  # the app (nobody) writes its status file here
        self.run_tmp = os.path.join(self.work, "tmp")  # weft run's TMPDIR: must end up empty
        os.mkdir(self.run_tmp)
        self.status_file = os.path.join(self.work, "status")
        self.proc = None

    def tearDown(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        # Whatever a failed test left: no interception may survive into the next test.
        for line in in_ns(NS_A, "iptables", "-t", "nat", "-S", check=False).stdout.splitlines():
            if line.startswith("-N WEFT_"):
                in_ns(NS_A, weft_binary(), "intercept", "remove", "--id",
                      line.split("_", 2)[2], check=False)

    def start(self, *extra, control_plane=None, app_args=None, app_ports="3000", pass_fds=()):
        cp = control_plane or "%s:%d" % (SERVER_IP, self.stream_port)
        self.log_path = os.path.join(self.work, "weft-run.log")
        log = open(self.log_path, "w")
        self.addCleanup(log.close)
        args = ["ip", "netns", "exec", NS_A, weft_binary(), "run",
                "--resource", "mesh/wl/virtualNode/web", "--control-plane", cp,
                "--token-file", self.token_file, "--ca-file", self.ca_file,
                "--app-user", str(APP_UID), "--stop-timeout", "10s"]
        if app_ports:
            args += ["--app-ports", app_ports]
        args += list(extra)
        args += ["--", sys.executable, self.app_file, self.status_file, B_IP] + (app_args or [])
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log,
                                     stdin=subprocess.DEVNULL, pass_fds=pass_fds,
                                     env=dict(os.environ, TMPDIR=self.run_tmp))
        return self.proc

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def status(self):
        try:
            with open(self.status_file) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_exit(self, timeout=40):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("weft run did not exit within %ds; its log:\n%s"
                                 % (timeout, self.log()))

    def pid_of(self, what):
        m = re.search(r"started %s \(pid (\d+)" % re.escape(what), self.log())
        self.assertIsNotNone(m, "no 'started %s (pid N' line in:\n%s" % (what, self.log()))
        return int(m.group(1))

    def assert_nothing_left(self, pids):
        for pid in pids:
            try:
                with open("/proc/%d/status" % pid) as f:
                    state = [l for l in f if l.startswith("State:")]
                self.fail("process %d is still there (%s); weft run's log:\n%s"
                          % (pid, state, self.log()))
            except FileNotFoundError:
                pass
        rules = in_ns(NS_A, "iptables", "-t", "nat", "-S").stdout
        self.assertNotIn("WEFT_", rules, "interception rules left behind")
        self.assertEqual(os.listdir(self.run_tmp), [], "weft run's run directory left behind")

    def wait_serving(self):
        def serving():
            if self.proc.poll() is not None:
                raise AssertionError("weft run exited with %s; its log:\n%s"
                                     % (self.proc.returncode, self.log()))
            return "serving" in self.status()
        wait_until(serving, 40, what="the app to serve")

    def web_proxies(self):
        p = self.server.weft("proxies", "-o", "json")
        self.assertEqual(p.returncode, 0, p.stderr)
        import json
        data = json.loads(p.stdout)
        data = data["proxies"] if isinstance(data, dict) else data
        return [x for x in data if x["resource"] == "mesh/wl/virtualNode/web"]

    def test_app_runs_behind_its_sidecar_and_its_exit_code_is_weft_runs(self):
        self.start(app_args=["orphan"])
        self.wait_serving()
        log = self.log()
        # The proxy was ready before the app started, so the app's very first call (made at
        # start-up, before it serves) went through the sidecar's egress listener and arrived.
        self.assertIn("startup-call 200 echo from B /startup", self.status(),
                      "the app's start-up call through the sidecar; weft run's log:\n" + log)
        self.assertLess(log.index("weft-proxy is ready"), log.index("started the app"), log)
        self.assertIn("interception installed", log)
        # Another host calls the app's port: the ingress listener takes it to the app.
        r = in_ns(NS_B, "curl", "-s", "-m", "10", "http://%s:3000/hello" % A_IP, check=False)
        self.assertEqual(r.stdout, "hello from the app uid=%d\n" % APP_UID, r.stderr)
        admin = re.search(r"admin (127\.0\.0\.1:\d+)", log).group(1)
        metrics = in_ns(NS_A, "curl", "-s", "http://%s/stats/prometheus" % admin).stdout
        from harness import metric_value
        self.assertEqual(metric_value(metrics, "weft_cluster_upstream_rq_total",
                                      cluster="cds_ingress_wl_web_http_3000"), 1,
                         "the inbound request counted on the ingress cluster")
        self.assertEqual(metric_value(metrics, "weft_cluster_upstream_rq_total",
                                      cluster="cds_egress_wl_echo_http_8080"), 1,
                         "the start-up call counted on the egress cluster")
        wait_until(lambda: self.web_proxies(), 10, what="weft proxies to list the sidecar")
        m = re.search(r"orphan (\d+)", self.status())
        self.assertIsNotNone(m, "status: %r\nlog:\n%s" % (self.status(), self.log()))
        orphan = int(m.group(1))
        pids = [self.pid_of("weft-proxy"), self.pid_of("the app"), orphan]

        # The app exits with 7: so does weft run, after stopping the proxy and the rules.
        r = in_ns(NS_B, "curl", "-s", "-m", "10", "http://%s:3000/exit/7" % A_IP, check=False)
        self.assertEqual(r.stdout, "bye\n")
        self.assertEqual(self.wait_exit(), 7, "weft run's exit code; its log:\n" + self.log())
        log = self.log()
        self.assertIn("the app exited with code 7", log)
        self.assertIn("stopping 1 process(es) the app left behind", log)
        self.assertIn("stopping weft-proxy", log)
        self.assertIn("weft-proxy exited with code 0", log)
        self.assertIn("interception removed", log)
        self.assert_nothing_left(pids)
        wait_until(lambda: not self.web_proxies(), 10,
                   what="the drained sidecar to leave `weft proxies`")

    def test_fds_weft_run_inherits_reach_neither_the_proxy_nor_the_app(self):
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        self.addCleanup(os.close, w)
        ours = os.readlink("/proc/self/fd/%d" % w)
        self.start(app_args=["fd=%d" % w], pass_fds=(w,))
        self.wait_serving()
        self.assertNotIn("fd %d -> %s" % (w, ours), self.status(),
                         "expected the app not to inherit weft run's fd %d (%s)" % (w, ours))
        self.assertRegex(self.status(), r"fd %d (closed|-> )" % w, "the app looked at its fds")
        proxy = self.pid_of("weft-proxy")
        try:
            got = os.readlink("/proc/%d/fd/%d" % (proxy, w))
        except OSError:
            got = "closed"
        self.assertNotEqual(got, ours, "expected weft-proxy not to inherit weft run's fd %d" % w)
        self.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.wait_exit(), 0, self.log())
        self.assert_nothing_left([proxy, self.pid_of("the app")])

    def test_sigterm_stops_the_app_then_the_proxy(self):
        # Without --app-ports: the inbound rules follow the virtual node's listener (3000).
        # A --state-dir that does not exist is made for the proxy's user, and kept.
        state = os.path.join(self.work, "state")
        self.start("--state-dir", state, app_ports=None)
        self.wait_serving()
        self.assertIn("app port(s) 3000 (the virtual node's listeners)", self.log())
        r = in_ns(NS_B, "curl", "-s", "-m", "10", "http://%s:3000/hello" % A_IP, check=False)
        self.assertEqual(r.stdout, "hello from the app uid=%d\n" % APP_UID, r.stderr)
        pids = [self.pid_of("weft-proxy"), self.pid_of("the app")]
        self.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.wait_exit(), 0,
                         "the app exits 0 on SIGTERM, and so must weft run; log:\n" + self.log())
        self.assertIn("got SIGTERM", self.status(), "the app did not get the SIGTERM")
        log = self.log()
        self.assertIn("SIGTERM received; passing it to the app", log)
        self.assertLess(log.index("the app exited"), log.index("stopping weft-proxy"), log)
        self.assert_nothing_left(pids)
        self.assertEqual(os.stat(state).st_uid, 1337, "--state-dir's owner")
        self.assertTrue(os.path.exists(os.path.join(state, "config.yaml")),
                        "the proxy's stored config in --state-dir")

    def test_proxy_lost_while_the_app_runs_stops_the_app(self):
        self.start()
        self.wait_serving()
        pids = [self.pid_of("weft-proxy"), self.pid_of("the app")]
        os.kill(pids[0], signal.SIGKILL)
        self.assertEqual(self.wait_exit(), 1,
                         "the app exits 0 on SIGTERM, but weft run must fail; log:\n" + self.log())
        self.assertIn("got SIGTERM", self.status())
        self.assertIn("weft-proxy was killed by SIGKILL while the app was running; stopping the "
                      "app", self.log())
        self.assert_nothing_left(pids)

    def test_unreachable_control_plane_fails_clearly_and_leaves_nothing(self):
        # Nothing listens on port 1 there: the proxy never gets a config.
        self.start("--ready-timeout", "3s", control_plane="%s:1" % SERVER_IP)
        self.assertEqual(self.wait_exit(), 1, self.log())
        log = self.log()
        self.assertIn("weft-proxy was not ready after 3.0s", log)
        self.assertIn("/ready answered 503", log)
        self.assertIn("control plane:", log, "the proxy's last control-plane error is shown")
        self.assertNotIn("started the app", log)
        self.assertEqual(self.status(), "", "the app must not have started")
        self.assert_nothing_left([self.pid_of("weft-proxy")])

    def test_proxy_that_exits_at_once_is_reported_with_its_stderr(self):
        self.start("--proxy-log-level", "loud")  # weft-proxy refuses it at start
        self.assertEqual(self.wait_exit(), 1, self.log())
        log = self.log()
        self.assertRegex(log, r"weft-proxy exited with code \d+ before it was ready")
        self.assertIn("its last stderr lines:", log)
        self.assertIn("weft-proxy:", log, "the proxy's own error message")
        self.assertEqual(self.status(), "", "the app must not have started")
        self.assert_nothing_left([self.pid_of("weft-proxy")])

    def test_usage_errors(self):
        r = weft("run", "--resource", "mesh/wl/virtualNode/web", "--", "true")
        self.assertEqual(r.returncode, 2, r)
        self.assertIn("--control-plane HOST:PORT is required", r.stderr)
        r = weft("run", "--resource", "mesh/wl/virtualNode/web", "--control-plane", "no-port",
                 "--token-file", self.token_file, "--ca-file", self.ca_file, "--", "true")
        self.assertEqual(r.returncode, 2, r)
        self.assertIn("--control-plane: 'no-port' is not HOST:PORT", r.stderr)
        r = weft("run", "--resource", "mesh/wl/virtualNode/web")
        self.assertEqual(r.returncode, 2, r)
        self.assertIn("give its command after --", r.stderr)
        self.assertNotIn("WEFT_", in_ns(NS_A, "iptables", "-t", "nat", "-S").stdout)


if __name__ == "__main__":
    unittest.main()
