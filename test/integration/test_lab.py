"""`weft lab` on the real machine: networks (namespaces, bridges, veth pairs) built from a YAML
topology and checked with real traffic.

  * LabNetworkTest: three networks, vpc1 (two subnets, two zones) and vpc2 peered, vpc3 alone.
    TCP between hosts of one network and across the peering; nothing between vpc3 and the others,
    not even through the root namespace where every network has its endpoint; each network
    reaches a listener on its own endpoint address in the root namespace with the caller's source
    address intact (no NAT); UDP to the nameserver of each host's resolv.conf reaches the root
    namespace; `unpeer` cuts vpc1-vpc2 and `peer` restores it; `status -o json`; `exec` passes
    the exit code and the WEFT_LAB_* environment.
  * ForwardingRuleTest: the lab built inside a namespace standing in for the root namespace, with
    ip_forward switched on there after `up` and routes that would carry vpc3's packets to vpc1
    through it: the lab's iptables FORWARD rule alone stops them (and removing it lets them
    through, so the test would see a leak).
  * LifecycleTest: `down` leaves no namespace, interface, iptables rule, resolv.conf, process or
    state file; `down` after `up` was killed half-way (deterministically, by an `ip` wrapper that
    blocks on one command) and with a state file that lists only the first objects; `up` refuses
    a lab that is up.
  * RegistrationTest: `up --register` creates the networks in `weft server` (`weft network list`)
    and `down` deletes them; `weft lab register` does it for a server started after `up` with its
    DNS on the endpoint addresses (port 53), and glibc in a host resolves a name of a private DNS
    namespace attached to its network through its resolv.conf, while a host of a network that is
    not attached gets nothing; an unreachable server fails `up` before anything is built.

Needs root, iproute2 and iptables; skips with the reason otherwise. Names carry a per-run prefix;
addresses come from 198.19.0.0/16 (free /24s picked per run); everything is removed on exit.

Run by hand: cd test/integration && WEFT_BIN=../../build/bin/weft \
  /usr/bin/python3 -m unittest -v test_lab
"""

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import unittest
import warnings

from control_harness import ControlServer, wait_until, weft_binary

PY = "/usr/bin/python3"

# Connects to argv[1]:argv[2] within argv[3] seconds and prints what the server sent ("ok
# <text>"), or "timeout", or "error <ERRNO NAME>".
CLIENT = r"""
import errno, socket, sys
s = socket.socket()
s.settimeout(float(sys.argv[3]))
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    print("ok " + s.recv(200).decode())
except socket.timeout:
    print("timeout")
except OSError as e:
    print("error " + errno.errorcode.get(e.errno, str(e.errno)))
"""

# Listens on 0.0.0.0 (port 0), prints "port N", then answers every connection with the address it
# came from.
SERVER = r"""
import socket, sys
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("0.0.0.0", 0))
l.listen(64)
print("port %d" % l.getsockname()[1], flush=True)
while True:
    c, a = l.accept()
    c.sendall(a[0].encode())
    c.close()
"""

# Sends a datagram to the nameserver of /etc/resolv.conf, port argv[1], and prints the answer.
UDP_TO_NAMESERVER = r"""
import socket, sys
ns = [l.split()[1] for l in open("/etc/resolv.conf") if l.startswith("nameserver")][0]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
s.sendto(b"ping", (ns, int(sys.argv[1])))
print(ns + " " + s.recvfrom(200)[0].decode())
"""


def _skip_reason():
    if os.geteuid() != 0:
        return "needs root (network namespaces and iptables)"
    for tool in ("ip", "iptables", "iptables-save", "nsenter"):
        if shutil.which(tool) is None:
            return "needs %s (Debian: %s)" % (tool, "iproute2" if tool == "ip" else "iptables")
    return None


SKIP = _skip_reason()


def run(cmd, check=True, timeout=60, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError("expected `%s` to succeed, got exit %d; stdout:\n%s\nstderr:\n%s"
                             % (" ".join(cmd), p.returncode, p.stdout, p.stderr))
    return p


def free_blocks(count, exclude=()):
    """`count` consecutive /24s of 198.19.0.0/16 that no route or address of the root namespace
    touches, starting at a place chosen by the pid (so concurrent runs spread out)."""
    used = run(["ip", "-4", "route", "show", "table", "all"]).stdout + \
        run(["ip", "-4", "addr", "show"]).stdout
    start = 100 + (os.getpid() * 7) % 120
    for i in range(120):
        b = 100 + (start - 100 + i * count) % (220 - count)
        octets = ["198.19.%d." % (b + k) for k in range(count)]
        if not any(o in used for o in octets) and b not in exclude:
            return b
    raise AssertionError("no free /24s in 198.19.100.0-198.19.219.255:\n" + used)


def topology(b, extra_hosts=(), run_on=None):
    """Three networks: vpc1 = 198.19.b.0/24 (subnets .0/26 us-west-2a and .64/26 us-west-2b),
    vpc2 = 198.19.(b+1).0/24 peered with vpc1, vpc3 = 198.19.(b+2).0/24 alone."""
    hosts = [
        {"name": "h1a", "subnet": "vpc1-a"},
        {"name": "h1b", "subnet": "vpc1-b", "address": "198.19.%d.70" % b},
        {"name": "h2", "subnet": "vpc2-a"},
        {"name": "h3", "subnet": "vpc3-a"},
    ] + list(extra_hosts)
    if run_on:
        for h in hosts:
            if h["name"] == run_on[0]:
                h["run"] = run_on[1]
    return {
        "networks": [
            {"name": "vpc1", "cidr": "198.19.%d.0/24" % b, "subnets": [
                {"name": "vpc1-a", "cidr": "198.19.%d.0/26" % b, "zone": "us-west-2a"},
                {"name": "vpc1-b", "cidr": "198.19.%d.64/26" % b, "zone": "us-west-2b"}]},
            {"name": "vpc2", "cidr": "198.19.%d.0/24" % (b + 1), "subnets": [
                {"name": "vpc2-a", "cidr": "198.19.%d.0/26" % (b + 1), "zone": "us-west-2a"}]},
            {"name": "vpc3", "cidr": "198.19.%d.0/24" % (b + 2), "subnets": [
                {"name": "vpc3-a", "cidr": "198.19.%d.0/26" % (b + 2)}]},
        ],
        "peerings": [{"between": ["vpc1", "vpc2"]}],
        "hosts": hosts,
        "control_plane": {"dns_search": ["lab.test"]},
    }


class Lab:
    """One lab of a test: a unique name, a private state directory, the topology file; `close`
    brings it down whatever happened (and says so when something was left)."""

    counter = 0

    def __init__(self, topo, prefix_ns=None, env=None):
        Lab.counter += 1
        self.name = "wlt%d-%d" % (os.getpid() % 100000, Lab.counter)
        self.tmp = tempfile.mkdtemp(prefix="weft-lab-")
        self.state_dir = os.path.join(self.tmp, "state")
        self.file = os.path.join(self.tmp, "lab.yaml")
        with open(self.file, "w") as f:
            json.dump(topo, f)  # JSON is YAML
        # nsenter switches only the network namespace: `ip netns exec` would also give weft a
        # mount namespace of its own, and the namespaces it creates would vanish with it.
        self.prefix = ["nsenter", "--net=/run/netns/" + prefix_ns] if prefix_ns else []
        self.env = dict(env or os.environ)
        self.env["WEFT_LAB_STATE_DIR"] = self.state_dir

    def weft(self, *args, check=True, timeout=120, env=None):
        cmd = self.prefix + [weft_binary(), "lab"] + [str(a) for a in args]
        if args and args[0] not in ("exec",):
            cmd += ["--name", self.name]
        return run(cmd, check=check, timeout=timeout, env=env or self.env)

    def exec(self, host, *cmd, check=True, timeout=60):
        return run(self.prefix + [weft_binary(), "lab", "exec", host, "--name", self.name, "--"]
                   + list(cmd), check=check, timeout=timeout, env=self.env)

    def status(self):
        return json.loads(self.weft("status", "-o", "json").stdout)

    def up(self, *extra):
        return self.weft("up", self.file, *extra)

    def close(self):
        p = self.weft("down", check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)
        if p.returncode != 0:
            raise AssertionError("`weft lab down --name %s` failed at cleanup: %s"
                                 % (self.name, p.stderr))

    # ---- traffic

    def listen(self, host):
        """Starts SERVER in `host`; answers (process, port). Stopped by the lab's down (it kills
        what runs in the lab's namespaces) and by the test's cleanup."""
        p = subprocess.Popen(self.prefix + [weft_binary(), "lab", "exec", host, "--name",
                                            self.name, "--", PY, "-c", SERVER],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=self.env)
        ready, _, _ = select.select([p.stdout], [], [], 20)
        line = p.stdout.readline() if ready else ""
        if not line.startswith("port "):
            err = p.stderr.read() if p.poll() is not None else ""
            stop(p)
            raise AssertionError("listener in %s did not start: %r %s" % (host, line, err))
        return p, int(line.split()[1])

    def connect(self, host, address, port, timeout=3):
        """What CLIENT in `host` got connecting to address:port: "ok <the address the server
        saw>", "timeout" or "error <ERRNO>"."""
        return self.exec(host, PY, "-c", CLIENT, address, str(port), str(timeout),
                         timeout=timeout + 30).stdout.strip()


def stop(p):
    """Kills a process started with pipes and closes them."""
    if p.poll() is None:
        p.kill()
    p.wait()
    for f in (p.stdout, p.stderr):
        if f:
            f.close()


def read(path):
    with open(path) as f:
        return f.read()


def tcp_listener(address):
    """A listener in this (root) namespace on address:0 answering every connection with the
    peer's address. Answers (socket, port)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((address, 0))
    s.listen(64)

    def serve():
        while True:
            try:
                c, a = s.accept()
            except OSError:
                return
            c.sendall(a[0].encode())
            c.close()

    threading.Thread(target=serve, daemon=True).start()
    return s, s.getsockname()[1]


def udp_responder(address):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((address, 0))

    def serve():
        while True:
            try:
                data, a = s.recvfrom(200)
            except OSError:
                return
            s.sendto(("from " + a[0]).encode(), a)

    threading.Thread(target=serve, daemon=True).start()
    return s, s.getsockname()[1]


def lab_leftovers(name, tag):
    """Everything of lab `name` (tag `tag`) still on the machine, as text lines."""
    left = []
    for line in run(["ip", "netns", "list"]).stdout.splitlines():
        if line.split(" ")[0].startswith(name + "-"):
            left.append("namespace " + line)
    for line in run(["ip", "-o", "link", "show"]).stdout.splitlines():
        if tag in line:
            left.append("interface " + line[:80])
    for line in run(["iptables-save"]).stdout.splitlines():
        if "weft-lab:" + name + '"' in line or "weft-lab:" + name + " " in line:
            left.append("iptables " + line)
    if os.path.isdir("/etc/netns"):
        for d in os.listdir("/etc/netns"):
            if d.startswith(name + "-"):
                left.append("/etc/netns/" + d)
    return left


@unittest.skipIf(SKIP, SKIP)
class LabNetworkTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.b = free_blocks(3)
        cls.lab = Lab(topology(cls.b))
        try:
            cls.lab.up()
            cls.st = cls.lab.status()
            cls.addr = {h["name"]: h["address"] for h in cls.st["hosts"]}
            cls.endpoint = {n["name"]: n["endpoint"] for n in cls.st["networks"]}
            cls.listeners = {}
            for h in ("h1a", "h1b", "h2", "h3"):
                cls.listeners[h] = cls.lab.listen(h)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for p, _ in getattr(cls, "listeners", {}).values():
            stop(p)
        cls.lab.close()

    def reach(self, src, dst, timeout=3):
        return self.lab.connect(src, self.addr[dst], self.listeners[dst][1], timeout)

    def assertReaches(self, src, dst):
        got = self.reach(src, dst)
        self.assertEqual(got, "ok " + self.addr[src],
                         "expected %s to reach %s (%s) and be seen as %s, got %r"
                         % (src, dst, self.addr[dst], self.addr[src], got))

    def assertCannotReach(self, src, dst, timeout=2):
        got = self.reach(src, dst, timeout)
        self.assertFalse(got.startswith("ok"), "expected %s NOT to reach %s (%s), got %r"
                         % (src, dst, self.addr[dst], got))
        return got

    def test_addresses_follow_the_topology(self):
        b = self.b
        self.assertEqual(self.addr, {"h1a": "198.19.%d.4" % b, "h1b": "198.19.%d.70" % b,
                                     "h2": "198.19.%d.4" % (b + 1), "h3": "198.19.%d.4" % (b + 2)})
        self.assertEqual(self.endpoint, {"vpc1": "198.19.%d.254" % b,
                                         "vpc2": "198.19.%d.254" % (b + 1),
                                         "vpc3": "198.19.%d.254" % (b + 2)})
        got = self.lab.exec("h1b", "ip", "-4", "-o", "addr", "show", "dev", "eth0").stdout
        self.assertIn("198.19.%d.70/26" % b, got)
        route = self.lab.exec("h1b", "ip", "route", "show", "default").stdout
        self.assertIn("via 198.19.%d.65" % b, route, "default route via the subnet's gateway")

    def test_same_network_across_subnets(self):
        self.assertReaches("h1a", "h1b")
        self.assertReaches("h1b", "h1a")

    def test_peered_networks(self):
        self.assertReaches("h1a", "h2")
        self.assertReaches("h2", "h1b")

    def test_unpeered_network_is_unreachable(self):
        for src, dst in (("h3", "h1a"), ("h3", "h2"), ("h1a", "h3"), ("h2", "h3")):
            self.assertCannotReach(src, dst)

    def test_no_path_through_the_root_namespace(self):
        # Routes that would send vpc3 <-> vpc1 traffic over the endpoint links into the root
        # namespace, which holds routes to both networks: it must not forward.
        r1, r3 = "%s-vpc1" % self.lab.name, "%s-vpc3" % self.lab.name
        cidr1, cidr3 = "198.19.%d.0/24" % self.b, "198.19.%d.0/24" % (self.b + 2)
        for ns, cidr, via in ((r3, cidr1, self.endpoint["vpc3"]), (r1, cidr3, self.endpoint["vpc1"])):
            run(["ip", "-n", ns, "route", "add", cidr, "via", via, "dev", "ep0", "onlink"])
            self.addCleanup(run, ["ip", "-n", ns, "route", "del", cidr], check=False)
        self.assertCannotReach("h3", "h1a")
        self.assertCannotReach("h1a", "h3")
        rules = run(["iptables-save", "-t", "filter"]).stdout
        tag = self.st["tag"]
        for d in ("-i", "-o"):
            self.assertRegex(rules, r'-A FORWARD %s %s\+ -m comment --comment "?weft-lab:%s"? -j '
                             r'DROP' % (d, tag, self.lab.name), "the lab's FORWARD rule")
        forwarding = read("/proc/sys/net/ipv4/conf/%se0/forwarding" % tag).strip()
        self.assertEqual(forwarding, "0", "forwarding on the root end of vpc1's endpoint link")

    def test_endpoint_in_the_root_namespace_sees_the_callers_address(self):
        for net, host in (("vpc1", "h1b"), ("vpc2", "h2"), ("vpc3", "h3")):
            s, port = tcp_listener(self.endpoint[net])
            self.addCleanup(s.close)
            got = self.lab.connect(host, self.endpoint[net], port)
            self.assertEqual(got, "ok " + self.addr[host],
                             "expected %s to reach its endpoint %s:%d with its own source address"
                             % (host, self.endpoint[net], port))
        # Another network's endpoint is not a way in: vpc3 is peered with nobody.
        s, port = tcp_listener(self.endpoint["vpc1"])
        self.addCleanup(s.close)
        got = self.lab.connect("h3", self.endpoint["vpc1"], port, timeout=2)
        self.assertFalse(got.startswith("ok"), "h3 must not reach vpc1's endpoint, got " + got)

    def test_resolv_conf_names_the_networks_endpoint(self):
        for net, host in (("vpc1", "h1a"), ("vpc2", "h2"), ("vpc3", "h3")):
            conf = self.lab.exec(host, "cat", "/etc/resolv.conf").stdout
            self.assertIn("nameserver %s\n" % self.endpoint[net], conf)
            self.assertIn("search lab.test\n", conf)
            s, port = udp_responder(self.endpoint[net])
            self.addCleanup(s.close)
            got = self.lab.exec(host, PY, "-c", UDP_TO_NAMESERVER, str(port)).stdout.strip()
            self.assertEqual(got, "%s from %s" % (self.endpoint[net], self.addr[host]),
                             "UDP from %s to its resolv.conf's nameserver" % host)

    def test_unpeer_cuts_and_peer_restores(self):
        self.assertReaches("h1a", "h2")
        self.lab.weft("unpeer", "vpc1", "vpc2")
        try:
            self.assertCannotReach("h1a", "h2")
            self.assertCannotReach("h2", "h1b")
            self.assertEqual(self.lab.status()["peerings"], [])
            again = self.lab.weft("unpeer", "vpc2", "vpc1", check=False)
            self.assertEqual(again.returncode, 1)
            self.assertIn("vpc2 and vpc1 are not peered", again.stderr)
        finally:
            self.lab.weft("peer", "vpc2", "vpc1")
        self.assertReaches("h1a", "h2")
        self.assertReaches("h2", "h1a")
        self.assertEqual(self.lab.status()["peerings"], [{"between": ["vpc2", "vpc1"]}])

    def test_status_json(self):
        st = self.lab.status()
        self.assertEqual(st["name"], self.lab.name)
        self.assertTrue(st["complete"])
        vpc1 = st["networks"][0]
        self.assertEqual((vpc1["name"], vpc1["cidr"], vpc1["peers"], vpc1["namespace_exists"]),
                         ("vpc1", "198.19.%d.0/24" % self.b, ["vpc2"], True))
        self.assertEqual([(s["name"], s["zone"], s["gateway"]) for s in vpc1["subnets"]],
                         [("vpc1-a", "us-west-2a", "198.19.%d.1" % self.b),
                          ("vpc1-b", "us-west-2b", "198.19.%d.65" % self.b)])
        self.assertEqual(st["networks"][2]["peers"], [])
        h3 = [h for h in st["hosts"] if h["name"] == "h3"][0]
        self.assertEqual((h3["network"], h3["subnet"], h3["nameserver"], h3["namespace"],
                          h3["namespace_exists"]),
                         ("vpc3", "vpc3-a", self.endpoint["vpc3"], self.lab.name + "-h3", True))
        namespaces = run(["ip", "netns", "list"]).stdout
        for h in st["hosts"]:
            self.assertIn(h["namespace"], namespaces)
        table = self.lab.weft("status").stdout
        self.assertIn("h1b", table)
        self.assertIn("198.19.%d.70" % self.b, table)

    def test_exec_passes_the_exit_code_and_environment(self):
        p = self.lab.exec("h1b", "sh", "-c", 'echo "$WEFT_LAB_ZONE $WEFT_LAB_ADDRESS"; exit 7',
                          check=False)
        self.assertEqual(p.returncode, 7, "the command's exit code: " + p.stderr)
        self.assertEqual(p.stdout, "us-west-2b 198.19.%d.70\n" % self.b)
        bad = self.lab.exec("nobody", "true", check=False)
        self.assertEqual(bad.returncode, 1)
        self.assertIn('has no host "nobody"', bad.stderr)

    def test_up_refuses_a_lab_that_is_up(self):
        p = self.lab.weft("up", self.lab.file, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("lab %s is already up" % self.lab.name, p.stderr)


@unittest.skipIf(SKIP, SKIP)
class ForwardingRuleTest(unittest.TestCase):
    """The lab inside a namespace that stands in for the root namespace, so that turning
    forwarding on there touches nothing of the machine."""

    def setUp(self):
        self.root = "wlt%d-root" % (os.getpid() % 100000)
        run(["ip", "netns", "add", self.root])
        self.addCleanup(run, ["ip", "netns", "del", self.root], check=False)
        run(["ip", "-n", self.root, "link", "set", "lo", "up"])
        self.b = 10  # addresses are private to the stand-in root namespace
        self.lab = Lab(topology(self.b), prefix_ns=self.root)
        self.addCleanup(self.lab.close)
        self.lab.up()

    def test_the_forward_rule_alone_keeps_networks_apart(self):
        st = self.lab.status()
        tag = st["tag"]
        endpoint = {n["name"]: n["endpoint"] for n in st["networks"]}
        # Forwarding on (which also turns it on for every interface there) ...
        run(["ip", "netns", "exec", self.root, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
        got = run(["ip", "netns", "exec", self.root, "cat",
                   "/proc/sys/net/ipv4/conf/%se0/forwarding" % tag]).stdout.strip()
        self.assertEqual(got, "1", "ip_forward=1 turns forwarding on for the endpoint links")
        # ... and routes sending vpc3 <-> vpc1 through the stand-in root.
        r1, r3 = self.lab.name + "-vpc1", self.lab.name + "-vpc3"
        run(["ip", "-n", r3, "route", "add", "198.19.%d.0/24" % self.b, "via", endpoint["vpc3"],
             "dev", "ep0", "onlink"])
        run(["ip", "-n", r1, "route", "add", "198.19.%d.0/24" % (self.b + 2), "via",
             endpoint["vpc1"], "dev", "ep0", "onlink"])
        p, port = self.lab.listen("h1a")
        self.addCleanup(stop, p)
        h1a = [h["address"] for h in st["hosts"] if h["name"] == "h1a"][0]
        got = self.lab.connect("h3", h1a, port, timeout=2)
        self.assertFalse(got.startswith("ok"), "vpc3 reached vpc1 through the root: " + got)
        counters = run(["ip", "netns", "exec", self.root, "iptables", "-L", "FORWARD", "-v", "-n",
                        "-x"]).stdout
        dropped = sum(int(line.split()[0]) for line in counters.splitlines()
                      if tag in line and "DROP" in line)
        self.assertGreater(dropped, 0,
                           "expected the lab's DROP rules to count the packets:\n" + counters)
        # Without the rule the same packets go through: the check above could see a leak.
        for d in ("-i", "-o"):
            run(["ip", "netns", "exec", self.root, "iptables", "-w", "5", "-D", "FORWARD", d,
                 tag + "+", "-m", "comment", "--comment", "weft-lab:" + self.lab.name, "-j",
                 "DROP"])
        got = self.lab.connect("h3", h1a, port, timeout=3)
        self.assertEqual(got, "ok " + [h["address"] for h in st["hosts"] if h["name"] == "h3"][0],
                         "without the rule, the forwarding root carries vpc3 to vpc1")


@unittest.skipIf(SKIP, SKIP)
class LifecycleTest(unittest.TestCase):
    def setUp(self):
        self.b = free_blocks(3)

    def assertNothingLeft(self, lab, tag):
        left = lab_leftovers(lab.name, tag)
        self.assertEqual(left, [], "expected nothing of lab %s left after down" % lab.name)
        self.assertFalse(os.path.exists(os.path.join(lab.state_dir, lab.name + ".json")),
                         "the state file is removed")
        self.assertFalse(os.path.exists(os.path.join(lab.state_dir, lab.name + ".netns")),
                         "the namespace markers are removed")

    def test_down_leaves_nothing(self):
        lab = Lab(topology(self.b, run_on=("h2", ["sleep", "3600"])))
        self.addCleanup(shutil.rmtree, lab.tmp, True)
        lab.up()
        st = lab.status()
        h2 = [h for h in st["hosts"] if h["name"] == "h2"][0]
        pid = h2["process"]["pid"]
        self.assertTrue(h2["process"]["running"], h2)
        self.assertEqual(run(["ip", "netns", "identify", str(pid)]).stdout.strip(),
                         lab.name + "-h2", "the run: process lives in h2's namespace")
        other, _ = lab.listen("h1a")  # started by hand with exec: down stops it too
        self.addCleanup(stop, other)
        self.assertGreater(len(lab_leftovers(lab.name, st["tag"])), 0)
        p = lab.weft("down")
        self.assertIn("lab %s is down" % lab.name, p.stderr)
        self.assertNothingLeft(lab, st["tag"])
        wait_until(lambda: other.poll() is not None, 10, what="the exec'd listener to be stopped")
        self.assertFalse(os.path.exists("/proc/%d" % pid) and
                         "State:\tZ" not in read("/proc/%d/status" % pid),
                         "the run: process %d is stopped" % pid)
        again = lab.weft("down")
        self.assertEqual(again.returncode, 0, "down of a lab that is gone is fine")

    def test_down_after_up_was_killed_half_way(self):
        lab = Lab(topology(self.b))
        self.addCleanup(shutil.rmtree, lab.tmp, True)
        # An `ip` that stops (blocked on a FIFO nobody writes) when asked to create h2's
        # namespace: `up` is killed exactly there.
        wrap = os.path.join(lab.tmp, "bin")
        os.mkdir(wrap)
        fifo = os.path.join(lab.tmp, "fifo")
        os.mkfifo(fifo)
        marker = os.path.join(lab.tmp, "reached")
        with open(os.path.join(wrap, "ip"), "w") as f:
            f.write('#!/bin/sh\nif [ "$1 $2 $3" = "netns add %s-h2" ]; then\n'
                    '  echo reached > %s\n  read x < %s\nfi\nexec %s "$@"\n'
                    % (lab.name, marker, fifo, shutil.which("ip")))
        os.chmod(os.path.join(wrap, "ip"), 0o755)
        env = dict(lab.env, PATH=wrap + ":" + os.environ["PATH"])
        up = subprocess.Popen([weft_binary(), "lab", "up", lab.file, "--name", lab.name],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                              start_new_session=True)
        try:
            wait_until(lambda: os.path.exists(marker) or up.poll() is not None, 60,
                       what="up to reach h2's namespace")
            if up.poll() is not None:
                self.fail("up ended before h2's namespace (exit %d): %s"
                          % (up.returncode, up.stderr.read().decode()))
        finally:
            os.killpg(up.pid, signal.SIGKILL)
            stop(up)
        path = os.path.join(lab.state_dir, lab.name + ".json")
        self.assertTrue(os.path.exists(path), "the state file of the killed up is kept")
        state = json.loads(read(path))
        self.assertFalse(state["complete"])
        self.assertIn({"kind": "netns", "name": lab.name + "-h2"}, state["objects"],
                      "h2's namespace was journaled before it was created")
        tag = state["tag"]
        self.assertIn(lab.name + "-h1a", run(["ip", "netns", "list"]).stdout)
        p = lab.weft("down")
        self.assertIn("lab %s is down" % lab.name, p.stderr)
        self.assertNothingLeft(lab, tag)

    def test_down_with_a_state_file_listing_only_the_first_objects(self):
        lab = Lab(topology(self.b))
        self.addCleanup(shutil.rmtree, lab.tmp, True)
        lab.up()
        path = os.path.join(lab.state_dir, lab.name + ".json")
        state = json.loads(read(path))
        tag = state["tag"]
        state["objects"] = state["objects"][:4]  # the iptables rules and vpc1's router
        state["complete"] = False
        with open(path, "w") as f:
            json.dump(state, f)
        lab.weft("down")
        self.assertNothingLeft(lab, tag)

    def test_down_never_touches_a_namespace_it_did_not_make(self):
        lab = Lab(topology(self.b))
        self.addCleanup(shutil.rmtree, lab.tmp, True)
        # Someone else's namespace, named like one of the lab's, with a process inside.
        foreign = lab.name + "-keep"
        run(["ip", "netns", "add", foreign])
        self.addCleanup(run, ["ip", "netns", "del", foreign], check=False)
        sleeper = subprocess.Popen(["ip", "netns", "exec", foreign, "sleep", "300"])
        self.addCleanup(stop, sleeper)
        wait_until(lambda: run(["ip", "netns", "pids", foreign]).stdout.strip() != "", 10,
                   what="the sleep to be inside " + foreign)

        def intact(when):
            self.assertIn(foreign, run(["ip", "netns", "list"]).stdout.split(),
                          "expected %s to survive %s" % (foreign, when))
            self.assertIsNone(sleeper.poll(), "expected the process in %s to survive %s, it "
                              "exited with %s" % (foreign, when, sleeper.returncode))

        p = lab.weft("down")  # no such lab: a typo'd --name
        self.assertIn("no state file for lab " + lab.name, p.stderr)
        intact("`down` of a lab that was never up")
        lab.up()
        tag = lab.status()["tag"]
        lab.weft("down")
        intact("`down` of the lab it is named like")
        self.assertEqual(lab_leftovers(lab.name, tag), ["namespace " + foreign],
                         "expected only the foreign namespace left after down")

    def test_down_without_a_state_file_sweeps_by_name(self):
        lab = Lab(topology(self.b))
        self.addCleanup(shutil.rmtree, lab.tmp, True)
        lab.up()
        tag = lab.status()["tag"]
        os.unlink(os.path.join(lab.state_dir, lab.name + ".json"))
        p = lab.weft("down")
        self.assertIn("no state file for lab " + lab.name, p.stderr)
        self.assertNothingLeft(lab, tag)


def have_registration_tools():
    try:
        import boto3  # noqa: F401 - Debian's python3-boto3
    except ImportError:
        return False
    return shutil.which("getent") is not None


@unittest.skipIf(SKIP, SKIP)
@unittest.skipUnless(have_registration_tools(), "needs boto3 (python3-boto3) and getent")
class RegistrationTest(unittest.TestCase):
    def setUp(self):
        warnings.simplefilter("ignore", ResourceWarning)  # boto3's pooled connections
        self.server = ControlServer().start()
        self.addCleanup(self.server.close)
        self.b = free_blocks(3)
        self.lab = Lab(topology(self.b), env=self.server.env(AWS_PROFILE="weft"))
        self.addCleanup(self.lab.close)

    def networks(self):
        p = self.server.weft("network", "list", "-o", "json")
        self.assertEqual(p.returncode, 0, p.stderr)
        return {n["name"]: n for n in json.loads(p.stdout)}

    def test_up_registers_and_down_deregisters(self):
        self.lab.up("--register")
        st = self.lab.status()
        registered = self.networks()
        for net in st["networks"]:
            self.assertEqual(registered[net["name"]]["id"], net["network_id"])
            self.assertEqual(registered[net["name"]]["cidrs"], [net["cidr"]])
        p = self.lab.weft("down")
        for net in st["networks"]:
            self.assertIn("deregistered network %s (%s)" % (net["name"], net["network_id"]),
                          p.stderr)
        self.assertEqual(set(self.networks()) & {"vpc1", "vpc2", "vpc3"}, set())

    def test_dns_through_the_endpoint(self):
        # The order `weft demo up` uses: the lab first, then the server with its DNS on every
        # endpoint address, port 53 (glibc knows no other port), then `weft lab register`.
        self.lab.up()
        st = self.lab.status()
        endpoint = {n["name"]: n["endpoint"] for n in st["networks"]}
        self.server.stop()
        self.server.extra_args = ["--dns", "127.0.0.1:0," + ",".join(
            "%s:53" % endpoint[n] for n in ("vpc1", "vpc2", "vpc3"))]
        self.server.start()
        self.lab.env["WEFT_ENDPOINT"] = self.server.endpoint
        p = self.lab.weft("register")
        self.assertIn("registered network vpc3 (198.19.%d.0/24)" % (self.b + 2), p.stderr)
        ids = {n["name"]: n["network_id"] for n in self.lab.status()["networks"]}
        self.assertEqual(ids["vpc1"], self.networks()["vpc1"]["id"])

        from botocore.config import Config
        sd = self.server._boto_session().client(
            "servicediscovery", endpoint_url=self.server.endpoint,
            config=Config(inject_host_prefix=False, retries={"total_max_attempts": 1}))
        op = sd.create_private_dns_namespace(Name="lab.test", Vpc=ids["vpc1"])["OperationId"]
        ns = sd.get_operation(OperationId=op)["Operation"]["Targets"]["NAMESPACE"]
        svc = sd.create_service(Name="web", NamespaceId=ns, DnsConfig={
            "RoutingPolicy": "MULTIVALUE", "DnsRecords": [{"Type": "A", "TTL": 5}]})["Service"]
        target = "198.19.%d.9" % self.b
        sd.register_instance(ServiceId=svc["Id"], InstanceId="i-1",
                             Attributes={"AWS_INSTANCE_IPV4": target})

        got = self.lab.exec("h1b", "getent", "hosts", "web.lab.test", check=False)
        self.assertEqual(got.stdout.split(), [target, "web.lab.test"],
                         "h1b (vpc1, attached) resolves through %s: %s"
                         % (endpoint["vpc1"], got.stderr))
        # `web` alone: the resolv.conf's search domain.
        got = self.lab.exec("h1a", "getent", "hosts", "web", check=False)
        self.assertEqual(got.stdout.split()[:1], [target], got.stderr)
        # vpc3's queries reach the server from vpc3's addresses: not attached, nothing.
        got = self.lab.exec("h3", "getent", "hosts", "web.lab.test", check=False)
        self.assertNotEqual(got.returncode, 0, "h3 must not resolve web.lab.test: " + got.stdout)

        # down deletes the networks, which needs the namespace gone first.
        sd.deregister_instance(ServiceId=svc["Id"], InstanceId="i-1")
        sd.delete_service(Id=svc["Id"])
        sd.delete_namespace(Id=ns)
        self.lab.weft("down")
        self.assertEqual(set(self.networks()) & {"vpc1", "vpc2", "vpc3"}, set())

    def test_an_unreachable_server_fails_up_before_anything_is_built(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()  # nothing listens there now
        env = dict(self.lab.env, WEFT_ENDPOINT="http://127.0.0.1:%d" % port)
        p = self.lab.weft("up", self.lab.file, "--register", check=False, env=env)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("cannot reach the weft server at http://127.0.0.1:%d" % port, p.stderr)
        self.assertNotIn(self.lab.name + "-", run(["ip", "netns", "list"]).stdout)


if __name__ == "__main__":
    unittest.main()
