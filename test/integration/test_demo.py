"""The reference scenario end to end: `weft demo up`, checked through its ingress gateway and from
inside its networks, then `weft demo down`.

The demo runs on a topology of its own (the crossvpc hosts in free /24s of 198.18.0.0/15, plus two
hosts with no app: `probe` in VPC1, with no sidecar and no interception, and `outsider` in a third
network that is peered with nobody), a state directory of its own, a lab name of its own and free
ports, so it never meets a user's demo or another test. In order:

  1. the page through the gateway: the frontend's line and both backends'; over repeated requests
     every frontend host and every backend task answers, crystal from VPC1, nodejs from VPC2, each
     with its zone; `weft demo status` is clean;
  2. STRICT TLS: a plaintext request from `probe` straight to a backend's port 3000 gets nothing
     (and counts as a failed handshake on that sidecar); a TLS client trusting the mesh's root CA
     gets the wildcard certificate; every connection the backends' inbound listeners accepted
     completed a TLS handshake, and their handshake and request counters grow with the traffic;
  3. isolation: from `outsider` neither backend answers and the mesh's names do not resolve;
  4. the page in headless Chromium (Debian's chromium), from `probe`'s namespace, which has no
     route off the machine;
  5. unpeering VPC1 and VPC2 makes the nodejs line read "no backend found" while crystal answers;
     peering again brings it back;
  6. killing one Crystal task (its app, SIGKILL) under continuous requests through the gateway:
     no request fails (the retry policy and the registry take the task out);
  7. `weft demo down` leaves no namespace, interface, iptables rule, resolv.conf, process or state.

Needs root (network namespaces, iptables), ruby, node and crystal (scripts/setup.sh); the
Chromium part skips without chromium. The Crystal backend is built once into <build>/demo-cache
(kept between runs). Run by hand:
  cd test/integration && WEFT_BIN=../../build/bin/weft /usr/bin/python3 -m unittest -v test_demo
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

from control_harness import weft_binary
from harness import REPO, metric_value, wait_until

EXAMPLES = os.path.join(REPO, "examples", "crossvpc")
DOMAIN = "appmeshworkshop.hosted.local"
CHROMIUM = shutil.which("chromium")
NO_BACKEND = "no backend found"


def run(cmd, check=True, timeout=120, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError("expected `%s` to succeed, got exit %d; stdout:\n%s\nstderr:\n%s"
                             % (" ".join(cmd), p.returncode, p.stdout, p.stderr))
    return p


def free_block(prefix, lo, hi, count):
    """`count` consecutive /24s prefix.b.0/24 .. prefix.(b+count-1).0/24 with lo <= b < hi that no
    route or address of the root namespace touches, starting at a place chosen by the pid."""
    used = run(["ip", "-4", "route", "show", "table", "all"]).stdout + \
        run(["ip", "-4", "addr", "show"]).stdout
    span = hi - lo - count
    start = (os.getpid() * 5) % span
    for i in range(span):
        b = lo + (start + i) % span
        if not any("%s.%d." % (prefix, b + k) in used for k in range(count)):
            return b
    raise AssertionError("no free /24s in %s.%d-%d:\n%s" % (prefix, lo, hi, used))


def free_port():
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


def topology(name, b, c):
    """The crossvpc topology in small networks: vpc1 = 198.18.b.0/24 (frontend-1..3, crystal-1..2,
    probe), vpc2 = 198.19.c.0/24 (nodejs-1..2), peered; vpc3 = 198.18.(b+1).0/24 (outsider)."""
    v1, v2, v3 = "198.18.%d." % b, "198.19.%d." % c, "198.18.%d." % (b + 1)
    return {
        "name": name,
        "networks": [
            {"name": "vpc1", "cidr": v1 + "0/24", "subnets": [
                {"name": "vpc1-a", "cidr": v1 + "0/26", "zone": "us-west-2a"},
                {"name": "vpc1-b", "cidr": v1 + "64/26", "zone": "us-west-2b"}]},
            {"name": "vpc2", "cidr": v2 + "0/24", "subnets": [
                {"name": "vpc2-a", "cidr": v2 + "0/26", "zone": "us-west-2a"},
                {"name": "vpc2-b", "cidr": v2 + "64/26", "zone": "us-west-2b"}]},
            {"name": "vpc3", "cidr": v3 + "0/24", "subnets": [
                {"name": "vpc3-a", "cidr": v3 + "0/26", "zone": "us-west-2c"}]},
        ],
        "peerings": [{"between": ["vpc1", "vpc2"]}],
        "hosts": [
            {"name": "frontend-1", "subnet": "vpc1-a", "address": v1 + "10"},
            {"name": "frontend-2", "subnet": "vpc1-b", "address": v1 + "74"},
            {"name": "frontend-3", "subnet": "vpc1-a", "address": v1 + "11"},
            {"name": "crystal-1", "subnet": "vpc1-a", "address": v1 + "20"},
            {"name": "crystal-2", "subnet": "vpc1-b", "address": v1 + "84"},
            {"name": "probe", "subnet": "vpc1-a", "address": v1 + "40"},
            {"name": "nodejs-1", "subnet": "vpc2-a", "address": v2 + "30"},
            {"name": "nodejs-2", "subnet": "vpc2-b", "address": v2 + "94"},
            {"name": "outsider", "subnet": "vpc3-a", "address": v3 + "50"},
        ],
        "control_plane": {"dns_search": [DOMAIN]},
    }


def prereq_problem():
    if os.geteuid() != 0:
        return "needs root (network namespaces, iptables)"
    for tool in ("ip", "iptables", "ruby", "node", "crystal", "curl", "openssl", "getent"):
        if not shutil.which(tool):
            return "%s is not installed (scripts/setup.sh installs what the demo needs)" % tool
    return None


class Page:
    """One answer of the frontend's page: its three lines (or the error)."""

    LINE_RE = re.compile(r'<p id="(frontend|nodejs|crystal)">(.*?)</p>', re.S)

    def __init__(self, status, body, error=None):
        self.status, self.body, self.error = status, body, error
        self.lines = {k: v.strip() for k, v in self.LINE_RE.findall(body or "")}

    def line(self, which):
        return self.lines.get(which, "")

    @staticmethod
    def address(line):
        m = re.search(r" from (\S+) in (\S+)", line)
        return (m.group(1), m.group(2)) if m else (None, None)

    def complete(self):
        return (self.status == 200
                and self.line("frontend").startswith("Rails frontend: Hello! from ")
                and self.line("nodejs").startswith("Node.js backend: Hello! from ")
                and self.line("crystal").startswith("Crystal backend: Hello! from "))

    def __repr__(self):
        return "Page(%s, %s, %r)" % (self.status, self.error, self.lines)


@unittest.skipIf(prereq_problem(), prereq_problem() or "")
class DemoTest(unittest.TestCase):
    """One demo for the whole class; the tests run in name order (test_1_..., test_7_...)."""

    @classmethod
    def setUpClass(cls):
        cls.weft = weft_binary()
        cls.tmp = tempfile.mkdtemp(prefix="weft-demo-test-")
        os.chmod(cls.tmp, 0o755)  # the apps run as nobody and read their copies from here
        cls.state_dir = os.path.join(cls.tmp, "state")
        cls.cache_dir = os.path.join(os.path.dirname(os.path.dirname(cls.weft)), "demo-cache")
        cls.name = "dt%d" % (os.getpid() % 100000)
        b = free_block("198.18", 200, 250, 2)
        c = free_block("198.19", 225, 250, 1)
        cls.topo = topology(cls.name, b, c)
        cls.addr = {h["name"]: h["address"] for h in cls.topo["hosts"]}
        cls.topo_file = os.path.join(cls.tmp, "lab.json")
        with open(cls.topo_file, "w") as f:
            json.dump(cls.topo, f)
        cls.gateway_port = free_port()
        cls.gateway = "http://127.0.0.1:%d/" % cls.gateway_port
        cls.down_done = False
        cls.up = run([cls.weft, "demo", "up", "--state-dir", cls.state_dir, "--name", cls.name,
                      "--topology", cls.topo_file, "--examples-dir", EXAMPLES,
                      "--cache-dir", cls.cache_dir, "--api", "127.0.0.1:0", "--stream-port", "0",
                      "--dns-port", "0", "--gateway-port", str(cls.gateway_port),
                      "--timeout", "240"], check=False, timeout=900)
        if cls.up.returncode != 0:
            log = ""
            try:
                with open(os.path.join(cls.state_dir, "logs", "demo.log")) as f:
                    log = f.read()[-6000:]
            except OSError:
                pass
            cls.tearDownClass()
            raise AssertionError("expected `weft demo up` to exit 0, got %d\nstdout:\n%s\n"
                                 "stderr:\n%s\ndemo.log (end):\n%s"
                                 % (cls.up.returncode, cls.up.stdout, cls.up.stderr, log))
        with open(os.path.join(cls.state_dir, "demo.json")) as f:
            cls.state = json.load(f)
        cls.lab_state = os.path.join(cls.state_dir, "lab")
        cls.lab = json.loads(run([cls.weft, "lab", "status", "--name", cls.name, "--state-dir",
                                  cls.lab_state, "-o", "json"]).stdout)
        cls.endpoint = {n["name"]: n["endpoint"] for n in cls.lab["networks"]}
        cls.env = dict(os.environ, WEFT_ENDPOINT=cls.state["api_url"],
                       AWS_SHARED_CREDENTIALS_FILE=os.path.join(cls.state["data_dir"],
                                                                "admin-credentials"))
        for k in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION",
                  "AWS_DEFAULT_REGION"):
            cls.env.pop(k, None)

    @classmethod
    def tearDownClass(cls):
        if not cls.down_done:
            run([cls.weft, "demo", "down", "--state-dir", cls.state_dir], check=False, timeout=300)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    # ---- helpers ----

    def page(self, timeout=10):
        try:
            with urllib.request.urlopen(self.gateway, timeout=timeout) as r:
                return Page(r.status, r.read().decode())
        except urllib.error.HTTPError as e:
            return Page(e.code, e.read().decode(errors="replace"))
        except (OSError, urllib.error.URLError) as e:
            return Page(None, "", str(e))

    def ns(self, host):
        return "%s-%s" % (self.name, host)

    def in_host(self, host, cmd, **kw):
        return run(["ip", "netns", "exec", self.ns(host)] + cmd, **kw)

    def admin_port(self, host):
        """The admin port of `host`'s sidecar, from weft run's "ready ... (admin ...)" line."""
        with open(os.path.join(self.state_dir, "logs", host + ".log")) as f:
            m = re.search(r"is ready after \S+ \(admin 127\.0\.0\.1:(\d+)\)", f.read())
        self.assertTrue(m, "expected weft run's ready line with the admin port in %s.log" % host)
        return int(m.group(1))

    def stats(self, host):
        return self.in_host(host, ["curl", "-s", "-m", "5", "http://127.0.0.1:%d/stats/prometheus"
                                   % self.admin_port(host)]).stdout

    def weft_cli(self, *args):
        return run([self.weft] + list(args), env=self.env)

    # ---- 1. the page ----

    def test_1_page_through_the_gateway(self):
        first = self.up.stdout.splitlines()
        self.assertEqual(first[0], self.gateway,
                         "expected `weft demo up` to print the gateway URL first, got:\n"
                         + self.up.stdout)
        self.assertTrue(any("Rails frontend: Hello! from" in l for l in first[1:]),
                        "expected a sample of the page after the URL, got:\n" + self.up.stdout)

        want_frontends = {self.addr["frontend-%d" % i] for i in (1, 2, 3)}
        want_crystal = {self.addr["crystal-1"], self.addr["crystal-2"]}
        want_nodejs = {self.addr["nodejs-1"], self.addr["nodejs-2"]}
        zone_of = {h["address"]: h["zone"] for h in self.lab["hosts"]}
        seen = {"frontend": set(), "crystal": set(), "nodejs": set()}
        bad = []

        def all_seen():
            p = self.page()
            if not p.complete():
                bad.append(p)
                return False
            for which in seen:
                ip, zone = Page.address(p.line(which))
                self.assertEqual(zone, zone_of.get(ip),
                                 "expected the %s line to name the zone of %s, got %r"
                                 % (which, ip, p.line(which)))
                seen[which].add(ip)
            return (seen["frontend"] == want_frontends and seen["crystal"] == want_crystal
                    and seen["nodejs"] == want_nodejs)

        wait_until(all_seen, timeout=60, interval=0,
                   what="every frontend host, crystal task and nodejs task answering; seen %r"
                   % seen)
        self.assertEqual(bad, [], "expected every page through the gateway to be complete")
        self.assertTrue(all(ip.startswith("198.18.") for ip in seen["crystal"]),
                        "crystal answers must come from VPC1 (198.18.), got %r" % seen["crystal"])
        self.assertTrue(all(ip.startswith("198.19.") for ip in seen["nodejs"]),
                        "nodejs answers must come from VPC2 (198.19.), got %r" % seen["nodejs"])

        st = run([self.weft, "demo", "status", "--state-dir", self.state_dir], check=False)
        self.assertEqual(st.returncode, 0, "expected `weft demo status` to exit 0 on a working "
                         "demo, got %d:\n%s%s" % (st.returncode, st.stdout, st.stderr))
        for host in ("frontend-1", "frontend-2", "frontend-3", "crystal-1", "crystal-2",
                     "nodejs-1", "nodejs-2"):
            self.assertRegex(st.stdout, r"(?m)^%s-%s\s.*\sHEALTHY\s"
                             % (re.escape(host), re.escape(self.addr[host])),
                             "expected %s's instance HEALTHY in `weft demo status`" % host)
        self.assertEqual(st.stdout.count("HEALTHY"), 7,
                         "expected 7 HEALTHY instances in `weft demo status`:\n" + st.stdout)
        self.assertEqual(st.stdout.count(" running "), 9,
                         "expected 9 running processes (server, 7 workloads, gateway):\n"
                         + st.stdout)

    # ---- 2. STRICT TLS ----

    def test_2_strict_tls_between_hosts(self):
        backends = ("crystal-1", "crystal-2", "nodejs-1", "nodejs-2")
        inbound = "lds_ingress_0.0.0.0_15000/http_3000"

        def counters(host):
            s = self.stats(host)
            return {k: metric_value(s, "weft_listener_" + k, listener=inbound)
                    for k in ("ssl_handshake_total", "ssl_connection_error_total",
                              "downstream_cx_total", "downstream_rq_total")}

        before = {h: counters(h) for h in backends}
        for _ in range(20):
            p = self.page()
            self.assertTrue(p.complete(), "expected a complete page, got %r" % p)
        after = {h: counters(h) for h in backends}
        for h in backends:
            self.assertEqual(after[h]["ssl_connection_error_total"], 0,
                             "%s: no connection may have failed its TLS handshake yet: %r"
                             % (h, after[h]))
            self.assertGreater(after[h]["ssl_handshake_total"], 0,
                               "%s: its inbound listener must have TLS handshakes: %r"
                               % (h, after[h]))
            self.assertEqual(after[h]["ssl_handshake_total"], after[h]["downstream_cx_total"],
                             "%s: every connection into the app port must be TLS (handshakes == "
                             "connections): %r" % (h, after[h]))
        for svc in ("crystal", "nodejs"):
            grown = sum(after[h]["downstream_rq_total"] - before[h]["downstream_rq_total"]
                        for h in backends if h.startswith(svc))
            self.assertGreaterEqual(grown, 20, "the %s tasks' inbound (TLS-only) listeners must "
                                    "have carried the 20 pages' requests, grew by %d"
                                    % (svc, grown))

        target = self.addr["crystal-1"]
        # Plaintext from a host of the same network with no sidecar: the request reaches the
        # STRICT listener (port 3000 is redirected to it), which answers nothing to it.
        plain = self.in_host("probe", ["curl", "-s", "-m", "5", "-o", "-", "-w",
                                       "\\nHTTP %{http_code}",
                                       "http://%s:3000/crystal" % target], check=False)
        self.assertNotEqual(plain.returncode, 0,
                            "a plaintext request to a STRICT backend must fail, got exit 0: %r"
                            % plain.stdout)
        self.assertNotIn("Crystal backend", plain.stdout,
                         "the app must not answer plaintext: %r" % plain.stdout)
        wait_until(lambda: counters("crystal-1")["ssl_connection_error_total"] >= 1, timeout=10,
                   what="the plaintext attempt counted as a failed handshake on crystal-1")

        # A TLS client trusting the mesh's root CA (the CA stack's) gets the wildcard certificate.
        cas = json.loads(self.weft_cli("ca", "list", "-o", "json").stdout)
        roots = [c for c in cas if c.get("Type", c.get("type")) == "ROOT"]
        self.assertEqual(len(roots), 1, "expected the CA stack's one root CA, got %r" % cas)
        ca_arn = roots[0].get("Arn") or roots[0].get("arn")
        ca_pem = os.path.join(self.tmp, "mesh-ca.pem")
        with open(ca_pem, "w") as f:
            f.write(self.weft_cli("ca", "get-certificate", ca_arn).stdout)
        hs_before = counters("crystal-1")["ssl_handshake_total"]
        tls = self.in_host("probe", ["openssl", "s_client", "-connect", "%s:3000" % target,
                                     "-servername", "crystal." + DOMAIN, "-CAfile", ca_pem,
                                     "-verify_return_error", "-brief"],
                           check=False, input="", timeout=30)
        self.assertEqual(tls.returncode, 0, "expected a verified TLS handshake with crystal-1's "
                         "sidecar, got exit %d:\n%s%s" % (tls.returncode, tls.stdout, tls.stderr))
        self.assertIn("*.%s" % DOMAIN, tls.stdout + tls.stderr,
                      "expected the wildcard certificate's name in the peer's subject")
        wait_until(lambda: counters("crystal-1")["ssl_handshake_total"] > hs_before, timeout=10,
                   what="crystal-1's handshake counter to grow with the TLS client's handshake")

    # ---- 3. a network with no peering ----

    def test_3_unpeered_network_reaches_no_backend(self):
        for host in ("crystal-1", "nodejs-1"):
            r = self.in_host("outsider", ["curl", "-s", "-m", "5", "http://%s:3000/health"
                                          % self.addr[host]], check=False)
            self.assertNotEqual(r.returncode, 0, "outsider (vpc3, unpeered) must not reach %s, "
                                "got exit 0 and %r" % (host, r.stdout))
            self.assertIn(r.returncode, (7, 28),
                          "expected curl to fail connecting (7) or time out (28), got %d: %s"
                          % (r.returncode, r.stderr))
        # The mesh's private zone answers VPC1 and VPC2 only.
        r = self.in_host("outsider", ["getent", "hosts", "crystal." + DOMAIN], check=False)
        self.assertNotEqual(r.returncode, 0,
                            "the private zone must not resolve in vpc3, got %r" % r.stdout)
        r = self.in_host("probe", ["getent", "hosts", "crystal." + DOMAIN], check=False)
        self.assertEqual(r.returncode, 0, "the private zone must resolve in vpc1: %s" % r.stderr)

    # ---- 4. headless Chromium ----

    @unittest.skipUnless(CHROMIUM, "chromium is not installed (scripts/setup.sh installs it)")
    def test_4_page_renders_in_headless_chromium(self):
        # From probe's namespace (no route off the machine), at vpc1's endpoint: the gateway
        # listens on every address of the root namespace.
        url = "http://%s:%d/" % (self.endpoint["vpc1"], self.gateway_port)
        profile = tempfile.mkdtemp(prefix="chromium-", dir=self.tmp)
        r = self.in_host("probe", [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                                   "--disable-dev-shm-usage", "--disable-background-networking",
                                   "--disable-component-update", "--no-first-run",
                                   "--user-data-dir=" + profile, "--dump-dom", url],
                         check=False, timeout=120, env=dict(os.environ, HOME=profile))
        self.assertEqual(r.returncode, 0, "expected chromium to exit 0, got %d:\n%s"
                         % (r.returncode, r.stderr[-3000:]))
        p = Page(200, r.stdout)
        self.assertTrue(p.complete(), "expected the rendered DOM to hold the three lines, got "
                        "%r\n%s" % (p.lines, r.stdout[:2000]))

    # ---- 5. peering removed and restored ----

    def test_5_unpeering_vpc2_loses_nodejs_only(self):
        lab = ["--name", self.name, "--state-dir", self.lab_state]
        run([self.weft, "lab", "unpeer", "vpc1", "vpc2"] + lab)
        try:
            def nodejs_gone():
                p = self.page(timeout=15)
                return p if (p.status == 200 and p.line("nodejs") == NO_BACKEND
                             and p.line("crystal").startswith("Crystal backend:")) else None
            wait_until(nodejs_gone, timeout=60, interval=0.2,
                       what='"no backend found" for nodejs and crystal answering')
            for _ in range(3):
                p = self.page(timeout=15)
                self.assertEqual(p.line("nodejs"), NO_BACKEND, "unpeered: %r" % p)
                self.assertTrue(p.line("crystal").startswith("Crystal backend:"),
                                "crystal must keep answering while vpc2 is unpeered: %r" % p)
        finally:
            run([self.weft, "lab", "peer", "vpc1", "vpc2"] + lab)
        wait_until(lambda: self.page(timeout=15).complete(), timeout=90, interval=0.5,
                   what="the nodejs line back once vpc1 and vpc2 are peered again")

    # ---- 6. a crystal task killed under load ----

    def test_6_killing_a_crystal_task_drops_no_request(self):
        wait_until(lambda: self.page().complete(), timeout=60, what="a complete page")
        victim = None
        for pid in run(["ip", "netns", "pids", self.ns("crystal-1")]).stdout.split():
            try:
                with open("/proc/%s/comm" % pid) as f:
                    if f.read().strip() == "crystal-backend":
                        victim = int(pid)
            except OSError:
                pass
        self.assertIsNotNone(victim, "expected the crystal backend's process in crystal-1")
        results = []
        stop = threading.Event()

        def load():
            while not stop.is_set():
                results.append(self.page(timeout=15))

        t = threading.Thread(target=load)
        t.start()
        try:
            wait_until(lambda: len(results) >= 5, timeout=30, what="requests flowing")
            os.kill(victim, signal.SIGKILL)
            killed_at = len(results)
            # weft run stops the sidecar when its app dies; the sidecar's Goodbye deregisters it.
            wait_until(lambda: not any(i.startswith("crystal-1-") for i in self.instance_ids()),
                       timeout=60, what="crystal-1's instance deregistered")
            n = len(results)
            wait_until(lambda: len(results) >= n + 10, timeout=60, what="10 more requests")
        finally:
            stop.set()
            t.join(30)
        after = results[killed_at:]
        failed = [p for p in after if not (p.status == 200 and p.line("frontend") and
                                           p.line("crystal").startswith("Crystal backend:"))]
        self.assertEqual(failed, [], "expected no failed request through the gateway after "
                         "killing a crystal task (%d requests), got %d: %r"
                         % (len(after), len(failed), failed[:3]))
        late = after[-5:]
        self.assertTrue(all(Page.address(p.line("crystal"))[0] == self.addr["crystal-2"]
                            for p in late),
                        "after the kill only crystal-2 may answer: %r"
                        % [p.line("crystal") for p in late])

    @staticmethod
    def cmdline(pid):
        try:
            with open("/proc/%s/cmdline" % pid) as f:
                return f.read().replace("\0", " ")
        except OSError:
            return None

    def instance_ids(self):
        out = self.weft_cli("get", "instances", "--namespace", DOMAIN, "-o", "json").stdout
        return [i["Id"] for i in json.loads(out)]

    # ---- 7. down ----

    def test_7_down_leaves_nothing(self):
        pids = [p["pid"] for p in self.state["processes"]]
        tag = self.lab["tag"]
        r = run([self.weft, "demo", "down", "--state-dir", self.state_dir], check=False,
                timeout=300)
        type(self).down_done = True
        self.assertEqual(r.returncode, 0, "expected `weft demo down` to exit 0, got %d:\n%s%s"
                         % (r.returncode, r.stdout, r.stderr))
        spaces = [n.split()[0] for n in run(["ip", "netns", "list"]).stdout.splitlines() if n]
        self.assertEqual([n for n in spaces if n.startswith(self.name + "-")], [],
                         "no namespace of the demo may be left")
        links = run(["ip", "-o", "link"]).stdout
        self.assertNotIn(tag, links, "no root interface of the lab (%s*) may be left" % tag)
        rules = run(["iptables-save"]).stdout
        self.assertNotIn("weft-lab:" + self.name, rules, "no iptables rule of the lab may be left")
        self.assertNotIn("WEFT_", rules, "no interception chain may be in the root namespace")
        self.assertEqual([p for p in pids if self.cmdline(p) is not None and
                          self.state_dir in self.cmdline(p)], [],
                         "no process the demo started may be left")
        for pid in os.listdir("/proc"):
            cmd = self.cmdline(pid) if pid.isdigit() else None
            if cmd is not None:
                self.assertNotIn(self.state_dir, cmd, "process %s still runs from the demo's "
                                 "state: %s" % (pid, cmd))
        self.assertFalse(os.path.exists(self.state_dir),
                         "the state directory must be gone, has %r"
                         % (os.listdir(self.state_dir) if os.path.isdir(self.state_dir) else "?"))
        netns_etc = [d for d in os.listdir("/etc/netns") if d.startswith(self.name + "-")] \
            if os.path.isdir("/etc/netns") else []
        self.assertEqual(netns_etc, [], "no resolv.conf of the lab may be left in /etc/netns")
        # The gateway's port is free again.
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", self.gateway_port))


@unittest.skipIf(prereq_problem(), prereq_problem() or "")
class DemoFailureTest(unittest.TestCase):
    """`up` that fails half-way rolls back and keeps its logs; `down` after a killed `up`."""

    def setUp(self):
        self.weft = weft_binary()
        self.tmp = tempfile.mkdtemp(prefix="weft-demo-fail-")
        os.chmod(self.tmp, 0o755)
        self.state_dir = os.path.join(self.tmp, "state")
        self.cache_dir = os.path.join(os.path.dirname(os.path.dirname(self.weft)), "demo-cache")
        self.name = "df%d" % (os.getpid() % 100000)
        b = free_block("198.18", 200, 250, 2)
        c = free_block("198.19", 225, 250, 1)
        self.topo_file = os.path.join(self.tmp, "lab.json")
        with open(self.topo_file, "w") as f:
            json.dump(topology(self.name, b, c), f)

    def tearDown(self):
        run([self.weft, "demo", "down", "--state-dir", self.state_dir], check=False, timeout=300)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def up_args(self, examples=EXAMPLES):
        return [self.weft, "demo", "up", "--state-dir", self.state_dir, "--name", self.name,
                "--topology", self.topo_file, "--examples-dir", examples,
                "--cache-dir", self.cache_dir, "--api", "127.0.0.1:0", "--stream-port", "0",
                "--dns-port", "0", "--gateway-port", str(free_port()), "--timeout", "240"]

    def assert_nothing_left(self, pids):
        spaces = run(["ip", "netns", "list"]).stdout
        self.assertNotIn(self.name + "-", spaces, "no namespace of the demo may be left")
        self.assertNotIn("weft-lab:" + self.name, run(["iptables-save"]).stdout,
                         "no iptables rule of the lab may be left")
        for pid in pids:
            cmd = DemoTest.cmdline(pid)
            self.assertFalse(cmd is not None and self.state_dir in cmd,
                             "process %d must be gone: %s" % (pid, cmd))

    def test_failed_step_rolls_back_and_keeps_the_logs(self):
        examples = os.path.join(self.tmp, "examples")
        shutil.copytree(EXAMPLES, examples, ignore=shutil.ignore_patterns(".crystal-cache"))
        path = os.path.join(examples, "mesh-stack.yaml")
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:  # a mesh the API refuses: the mesh stack fails (step 4)
            f.write(text.replace("Type: DROP_ALL", "Type: DROP_SOME"))
        r = run(self.up_args(examples), check=False, timeout=900)
        self.assertEqual(r.returncode, 1, "expected `weft demo up` to fail with exit 1, got %d:"
                         "\n%s%s" % (r.returncode, r.stdout, r.stderr))
        self.assertIn("step 4/7 (stacks) failed", r.stderr,
                      "the error must name the step: %s" % r.stderr)
        self.assertIn("DROP_SOME", r.stderr, "the error must carry the API's reason: %s" % r.stderr)
        logs = os.path.join(self.state_dir, "logs")
        self.assertIn("logs: " + logs, r.stderr, "the error must say where the logs are")
        self.assertTrue(os.path.exists(os.path.join(logs, "demo.log")) and
                        os.path.exists(os.path.join(logs, "server.log")),
                        "the logs must stay after a failed up: %r"
                        % (os.listdir(logs) if os.path.isdir(logs) else None))
        self.assertEqual(sorted(os.listdir(self.state_dir)), ["logs"],
                         "only the logs may stay after a failed up")
        self.assert_nothing_left([])
        d = run([self.weft, "demo", "down", "--state-dir", self.state_dir], check=False)
        self.assertEqual(d.returncode, 0, "down after a failed up: %s" % d.stderr)
        self.assertFalse(os.path.exists(self.state_dir), "down removes the logs too")

    def test_down_after_a_killed_up(self):
        p = subprocess.Popen(self.up_args(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        state_file = os.path.join(self.state_dir, "demo.json")

        def workloads_started():
            if p.poll() is not None:  # up failed early: stop waiting (checked below)
                return {"exited": p.returncode}
            try:
                with open(state_file) as f:
                    st = json.load(f)
            except (OSError, ValueError):
                return None
            return st if sum(1 for x in st["processes"] if x["role"] == "workload") >= 2 else None
        try:
            st = wait_until(workloads_started, timeout=600, interval=0.05,
                            what="`weft demo up` to have started two workloads")
        finally:
            p.kill()
            p.wait(30)
        self.assertNotIn("exited", st, "`weft demo up` ended before starting two workloads; "
                         "see %s/logs/demo.log" % self.state_dir)
        pids = [x["pid"] for x in st["processes"]]
        self.assertTrue(any(DemoTest.cmdline(pid) for pid in pids),
                        "the processes `up` started outlive it (they are detached)")
        d = run([self.weft, "demo", "down", "--state-dir", self.state_dir], check=False,
                timeout=300)
        self.assertEqual(d.returncode, 0, "expected down after a killed up to exit 0, got %d:\n%s"
                         % (d.returncode, d.stderr))
        self.assert_nothing_left(pids)
        self.assertFalse(os.path.exists(self.state_dir), "the state directory must be gone")


if __name__ == "__main__":
    unittest.main()
