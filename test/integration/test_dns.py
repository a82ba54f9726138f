"""The registry's DNS server (`weft server --dns`) as real resolvers see it: BIND's `dig` for every
record type, NXDOMAIN vs NODATA, TCP, truncation and health; forwarding of outside names to a stub
upstream resolver (`--dns-upstream`); and glibc (`getent hosts`) in a network namespace whose
resolv.conf points at the server, with a query from an unattached network refused.

Needs dig (Debian: bind9-dnsutils), boto3 (python3-boto3) and the AWS CLI; the network namespace
test needs root and iproute2. Addresses come from 198.18.0.0/15 only.

Run by hand: cd test/integration && WEFT_BIN=../../build/bin/weft \
  /usr/bin/python3 -m unittest -v test_dns
"""

import json
import os
import re
import shutil
import socket
import struct
import subprocess
import threading
import time
import unittest
import urllib.request
import warnings

from control_harness import ControlServer, wait_until

try:
    from botocore.config import Config
    HAVE_BOTO3 = True
except ImportError:  # pragma: no cover - Debian's python3-boto3 is a test dependency
    HAVE_BOTO3 = False

DIG = shutil.which("dig")


def dig(port, name, qtype="A", *opts, server="127.0.0.1", netns=None, timeout=20):
    """Runs dig and parses its answer: {"status", "flags", "answer", "authority", "additional",
    "raw"}; records are (name, ttl, type, data) with names lower case, no trailing dot."""
    cmd = [DIG, "@" + server, "-p", str(port), name, qtype, "+tries=1", "+time=5"] + list(opts)
    if netns:
        cmd = ["ip", "netns", "exec", netns] + cmd
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    out = p.stdout
    m = re.search(r"status: (\w+)", out)
    if not m:
        raise AssertionError("dig %s %s: no answer (rc %d): %s%s"
                             % (name, qtype, p.returncode, out, p.stderr))
    flags = re.search(r";; flags: ([a-z ]*);", out).group(1).split()
    sections = {"answer": [], "authority": [], "additional": []}
    current = None
    for line in out.splitlines():
        hdr = re.match(r";; (ANSWER|AUTHORITY|ADDITIONAL) SECTION:", line)
        if hdr:
            current = hdr.group(1).lower()
            continue
        if not line.strip() or line.startswith(";"):
            if not line.strip():
                current = None
            continue
        if current:
            f = line.split(None, 4)
            sections[current].append((f[0].rstrip(".").lower(), int(f[1]), f[3], f[4].rstrip(".")))
    return dict(status=m.group(1), flags=flags, raw=out, **sections)


# ------------------------------------------------------------------------------------------------
# A stub upstream resolver (UDP and TCP on one port of 127.0.0.1) for the forwarding tests:
#   <x>.upstream.test A   -> 192.0.2.53
#   big.upstream.test A   -> over UDP: TC and no records; over TCP: 40 A records (about 700 bytes)
#   silent.upstream.test  -> never answered
#   anything else         -> NXDOMAIN
# It records (transport, name) of every query it gets.

def _read_qname(msg):
    labels, off = [], 12
    while msg[off]:
        n = msg[off]
        labels.append(msg[off + 1:off + 1 + n].decode(errors="replace"))
        off += 1 + n
    return ".".join(labels).lower(), off + 1


def _stub_answer(query, tcp):
    name, end = _read_qname(query)
    qtype = struct.unpack(">H", query[end:end + 2])[0]
    question = query[12:end + 4]
    qid = query[:2]
    if name == "silent.upstream.test":
        return None
    if name == "big.upstream.test" and not tcp:
        return qid + struct.pack(">HHHHH", 0x8380, 1, 0, 0, 0) + question
    if name.endswith(".upstream.test") and qtype == 1:
        ips = ["192.0.2.%d" % i for i in range(1, 41)] if name == "big.upstream.test" \
            else ["192.0.2.53"]
        rrs = b"".join(b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 30, 4) + socket.inet_aton(ip)
                       for ip in ips)
        return qid + struct.pack(">HHHHH", 0x8180, 1, len(ips), 0, 0) + question + rrs
    return qid + struct.pack(">HHHHH", 0x8183, 1, 0, 0, 0) + question


class StubUpstream:
    def __init__(self):
        for _ in range(20):
            self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.udp.bind(("127.0.0.1", 0))
            self.port = self.udp.getsockname()[1]
            self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                self.tcp.bind(("127.0.0.1", self.port))
                break
            except OSError:
                self.udp.close()
                self.tcp.close()
        self.tcp.listen(16)
        self.seen = []
        self.lock = threading.Lock()
        self.closing = False
        for target in (self._serve_udp, self._serve_tcp):
            threading.Thread(target=target, daemon=True).start()

    def queries(self):
        with self.lock:
            return list(self.seen)

    def _note(self, transport, query):
        with self.lock:
            self.seen.append((transport, _read_qname(query)[0]))

    def _serve_udp(self):
        while not self.closing:
            try:
                query, peer = self.udp.recvfrom(65535)
            except OSError:
                return
            self._note("udp", query)
            answer = _stub_answer(query, False)
            if answer:
                self.udp.sendto(answer, peer)

    def _serve_tcp(self):
        while not self.closing:
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    buf = b""
                    while len(buf) < 2 or len(buf) < 2 + struct.unpack(">H", buf[:2])[0]:
                        chunk = conn.recv(65535)
                        if not chunk:
                            break
                        buf += chunk
                    if len(buf) < 2:
                        continue
                    query = buf[2:2 + struct.unpack(">H", buf[:2])[0]]
                    self._note("tcp", query)
                    answer = _stub_answer(query, True)
                    if answer:
                        conn.sendall(struct.pack(">H", len(answer)) + answer)
                except OSError:
                    pass

    def close(self):
        self.closing = True
        self.udp.close()
        self.tcp.close()


def cloudmap(server):
    return server._boto_session().client(
        "servicediscovery", endpoint_url=server.endpoint,
        config=Config(inject_host_prefix=False, retries={"total_max_attempts": 1}))


def create_network(server, name, cidr):
    status, _, body = server.signed_request(
        "POST", "/weft/v1/networks", json.dumps({"name": name, "cidrs": [cidr]}))
    if status != 200:
        raise AssertionError("creating network %s: expected 200, got %s %r" % (name, status, body))
    return json.loads(body)["id"]


def private_namespace(sd, name, vpc):
    op = sd.create_private_dns_namespace(Name=name, Vpc=vpc)["OperationId"]
    return sd.get_operation(OperationId=op)["Operation"]["Targets"]["NAMESPACE"]


def dns_port(server):
    with open(server.ports_file) as f:
        return int(dict(line.split("=", 1) for line in f.read().split())["dns"])


@unittest.skipUnless(DIG, "dig is not installed (Debian: bind9-dnsutils)")
@unittest.skipUnless(HAVE_BOTO3, "boto3 is not installed for this Python (Debian: python3-boto3)")
class DigTest(unittest.TestCase):
    """One server (DNS on 127.0.0.1, forwarding to the stub) and one namespace dig.local."""

    ZONE = "dig.local"

    @classmethod
    def setUpClass(cls):
        warnings.simplefilter("ignore", ResourceWarning)
        cls.stub = StubUpstream()
        cls.server = ControlServer(extra_args=["--dns-upstream", "127.0.0.1:%d" % cls.stub.port])
        try:
            cls.server.start()
            cls.port = dns_port(cls.server)
            cls.sd = cloudmap(cls.server)
            cls.vpc = create_network(cls.server, "dig", "198.18.40.0/24")
            cls.ns = private_namespace(cls.sd, cls.ZONE, cls.vpc)
        except Exception:
            cls.server.close()
            cls.stub.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.server.close()
        cls.stub.close()

    def service(self, name, records, policy="MULTIVALUE", health=True):
        kwargs = {"Name": name, "NamespaceId": self.ns,
                  "DnsConfig": {"RoutingPolicy": policy,
                                "DnsRecords": [{"Type": t, "TTL": ttl} for t, ttl in records]}}
        if health:
            kwargs["HealthCheckCustomConfig"] = {"FailureThreshold": 1}
        return self.sd.create_service(**kwargs)["Service"]["Id"]

    def register(self, svc, iid, **attrs):
        self.sd.register_instance(ServiceId=svc, InstanceId=iid, Attributes=attrs)

    def dig(self, name, qtype="A", *opts):
        return dig(self.port, name, qtype, *opts)

    def assertStatus(self, r, status, what):
        self.assertEqual(r["status"], status, "%s: expected %s, got %s:\n%s"
                         % (what, status, r["status"], r["raw"]))

    def test_record_types_soa_ns_nxdomain_and_nodata(self):
        z = self.ZONE
        web = self.service("web", [("A", 42), ("SRV", 43)])
        for i in range(3):
            self.register(web, "w%d" % i, AWS_INSTANCE_IPV4="198.18.40.%d" % (10 + i),
                          AWS_INSTANCE_PORT=str(8080 + i))
        v6 = self.service("v6", [("AAAA", 17)])
        self.register(v6, "d1", AWS_INSTANCE_IPV6="fd00::1")
        alias = self.service("alias", [("CNAME", 5)], policy="WEIGHTED")
        self.register(alias, "c1", AWS_INSTANCE_CNAME="target.example.org")

        a = self.dig("web." + z)
        self.assertStatus(a, "NOERROR", "web A")
        self.assertIn("aa", a["flags"])
        self.assertEqual(sorted(r[3] for r in a["answer"]),
                         ["198.18.40.10", "198.18.40.11", "198.18.40.12"], a["raw"])
        self.assertEqual({(r[1], r[2]) for r in a["answer"]}, {(42, "A")}, a["raw"])

        srv = self.dig("WEB." + z.upper(), "SRV")  # names are case-insensitive
        self.assertStatus(srv, "NOERROR", "web SRV")
        self.assertEqual(sorted(r[3] for r in srv["answer"]),
                         ["1 10 %d w%d.web.%s" % (8080 + i, i, z) for i in range(3)], srv["raw"])
        self.assertEqual({r[1] for r in srv["answer"]}, {43})
        self.assertEqual(sorted((r[0], r[3]) for r in srv["additional"] if r[2] == "A"),
                         [("w%d.web.%s" % (i, z), "198.18.40.%d" % (10 + i)) for i in range(3)],
                         srv["raw"])
        host = self.dig("w1.web." + z)
        self.assertEqual([r[3] for r in host["answer"]], ["198.18.40.11"], host["raw"])

        aaaa = self.dig("v6." + z, "AAAA")
        self.assertEqual([(r[1], r[3]) for r in aaaa["answer"]], [(17, "fd00::1")], aaaa["raw"])
        cname = self.dig("alias." + z, "CNAME")
        self.assertEqual([(r[1], r[2], r[3]) for r in cname["answer"]],
                         [(5, "CNAME", "target.example.org")], cname["raw"])

        soa = self.dig(z, "SOA")
        self.assertStatus(soa, "NOERROR", "apex SOA")
        self.assertEqual(len(soa["answer"]), 1, soa["raw"])
        self.assertEqual(soa["answer"][0][3].split()[:2], ["ns1.%s." % z, "hostmaster.%s." % z])
        ns = self.dig(z, "NS")
        self.assertEqual([r[3] for r in ns["answer"]], ["ns1." + z], ns["raw"])

        nx = self.dig("nope." + z)
        self.assertStatus(nx, "NXDOMAIN", "unknown name")
        self.assertEqual([r[2] for r in nx["authority"]], ["SOA"], nx["raw"])
        nodata = self.dig("web." + z, "AAAA")  # exists, without AAAA records
        self.assertStatus(nodata, "NOERROR", "NODATA")
        self.assertEqual(nodata["answer"], [])
        self.assertEqual([r[2] for r in nodata["authority"]], ["SOA"], nodata["raw"])
        empty = self.dig("web." + z, "A", "+tcp")
        self.assertStatus(empty, "NOERROR", "web A over TCP")
        self.assertEqual(len(empty["answer"]), 3, empty["raw"])
        self.assertFalse(any(q[1].endswith(z) for q in self.stub.queries()),
                         "a name of the mesh zone reached the upstream: %s" % self.stub.queries())

    def test_truncation_and_tcp(self):
        z = self.ZONE
        big = self.service("big", [("AAAA", 1), ("SRV", 1)])
        for i in range(8):
            self.register(big, "instance-with-a-long-name-%d" % i,
                          AWS_INSTANCE_IPV6="fd00::%d" % (i + 1), AWS_INSTANCE_PORT="80")
        trunc = self.dig("big." + z, "SRV", "+noedns", "+ignore", "+notcp")
        self.assertStatus(trunc, "NOERROR", "truncated SRV")
        self.assertIn("tc", trunc["flags"], trunc["raw"])
        self.assertEqual(trunc["answer"], [])
        retried = self.dig("big." + z, "SRV", "+noedns")  # dig retries over TCP on TC
        self.assertNotIn("tc", retried["flags"])
        self.assertEqual(len(retried["answer"]), 8, retried["raw"])
        self.assertIn("(TCP)", retried["raw"], "expected dig's answer to come over TCP")
        tcp = self.dig("big." + z, "SRV", "+tcp")
        self.assertEqual(len(tcp["answer"]), 8, tcp["raw"])
        self.assertEqual(len([r for r in tcp["additional"] if r[2] == "AAAA"]), 8, tcp["raw"])

    def test_only_healthy_instances_and_all_when_none_is(self):
        z = self.ZONE
        svc = self.service("health", [("A", 10)])
        ips = {"h1": "198.18.40.31", "h2": "198.18.40.32", "h3": "198.18.40.33"}
        for iid, ip in ips.items():
            self.register(svc, iid, AWS_INSTANCE_IPV4=ip)

        def answer():
            r = self.dig("health." + z)
            self.assertStatus(r, "NOERROR", "health A")
            return sorted(x[3] for x in r["answer"])

        def set_health(iid, status):
            rc, _, err = self.server.aws(
                "servicediscovery", "update-instance-custom-health-status", "--service-id", svc,
                "--instance-id", iid, "--status", status)
            self.assertEqual(rc, 0, "update-instance-custom-health-status: " + err)

        self.assertEqual(answer(), sorted(ips.values()))
        set_health("h1", "UNHEALTHY")
        self.assertEqual(answer(), ["198.18.40.32", "198.18.40.33"],
                         "the next answer after h1 turned UNHEALTHY")
        set_health("h2", "UNHEALTHY")
        self.assertEqual(answer(), ["198.18.40.33"])
        set_health("h3", "UNHEALTHY")
        self.assertEqual(answer(), sorted(ips.values()),
                         "none healthy: every instance is answered (Route 53's rule)")
        set_health("h1", "HEALTHY")
        self.assertEqual(answer(), ["198.18.40.31"])

    def test_forwarding_to_the_upstream(self):
        r = self.dig("www.upstream.test")
        self.assertStatus(r, "NOERROR", "forwarded name")
        self.assertEqual([x[3] for x in r["answer"]], ["192.0.2.53"], r["raw"])
        self.assertNotIn("aa", r["flags"], "a forwarded answer is not authoritative")
        self.assertIn(("udp", "www.upstream.test"), self.stub.queries())
        nx = self.dig("nothing.example.test")
        self.assertStatus(nx, "NXDOMAIN", "forwarded unknown name")

        r = self.dig("tcp.upstream.test", "A", "+tcp")
        self.assertEqual([x[3] for x in r["answer"]], ["192.0.2.53"], r["raw"])
        self.assertIn(("tcp", "tcp.upstream.test"), self.stub.queries(),
                      "a client's TCP query goes upstream over TCP")

        big = self.dig("big.upstream.test")  # dig's EDNS0 size (1232) holds all 40 records
        self.assertStatus(big, "NOERROR", "truncated upstream answer")
        self.assertNotIn("tc", big["flags"], big["raw"])
        self.assertEqual(len(big["answer"]), 40, big["raw"])
        self.assertIn(("tcp", "big.upstream.test"), self.stub.queries(),
                      "a truncated upstream answer is fetched again over TCP")
        small = self.dig("big.upstream.test", "A", "+noedns", "+ignore")
        self.assertIn("tc", small["flags"], "over 512 bytes without EDNS0: relayed truncated")

        t0 = time.monotonic()
        silent = self.dig("silent.upstream.test")
        self.assertStatus(silent, "SERVFAIL", "an upstream that never answers")
        self.assertGreaterEqual(time.monotonic() - t0, 1.9, "SERVFAIL before the 2 s timeout")

        # The forwarding counters on the server's /metrics (no credentials needed).
        with urllib.request.urlopen(self.server.endpoint + "/metrics", timeout=5) as r:
            self.assertEqual(r.status, 200)
            self.assertTrue(r.headers["content-type"].startswith("text/plain"), r.headers)
            metrics = r.read().decode()
        values = {}
        for line in metrics.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        self.assertGreaterEqual(values.get("weft_dns_forwarded_total", 0), 5, metrics)
        self.assertGreaterEqual(values.get("weft_dns_forward_tcp_total", 0), 2, metrics)
        self.assertGreaterEqual(values.get("weft_dns_forward_timeouts_total", 0), 1, metrics)
        self.assertGreaterEqual(values.get("weft_dns_queries_total", 0),
                                values.get("weft_dns_forwarded_total", 0), metrics)


def _have_netns():
    return os.geteuid() == 0 and shutil.which("ip") and shutil.which("getent")


@unittest.skipUnless(DIG, "dig is not installed (Debian: bind9-dnsutils)")
@unittest.skipUnless(HAVE_BOTO3, "boto3 is not installed for this Python (Debian: python3-boto3)")
@unittest.skipUnless(_have_netns(), "needs root, iproute2 and getent")
class GlibcTest(unittest.TestCase):
    """glibc's resolver in a network namespace: its resolv.conf (/etc/netns/<ns>/resolv.conf,
    which `ip netns exec` mounts over /etc/resolv.conf) names the server's --dns address on the
    root side of a veth pair, port 53 (glibc cannot use another). Addresses: 198.18.53.0/30."""

    SERVER_IP = "198.18.53.1"
    NS_IP = "198.18.53.2"

    def setUp(self):
        warnings.simplefilter("ignore", ResourceWarning)
        self.ns = "weft-dns-%d" % os.getpid()
        self.link = "wdns%d" % (os.getpid() % 100000)
        self.etc = "/etc/netns/" + self.ns
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.link], capture_output=True)
        self.sh("ip netns add %s" % self.ns)
        self.addCleanup(subprocess.run, ["ip", "netns", "del", self.ns], capture_output=True)
        self.sh("ip link add %s type veth peer name eth0 netns %s" % (self.link, self.ns))
        self.addCleanup(subprocess.run, ["ip", "link", "del", self.link], capture_output=True)
        self.sh("ip addr add %s/30 dev %s" % (self.SERVER_IP, self.link))
        self.sh("ip link set %s up" % self.link)
        self.sh("ip netns exec %s ip link set lo up" % self.ns)
        self.sh("ip netns exec %s ip addr add %s/30 dev eth0" % (self.ns, self.NS_IP))
        self.sh("ip netns exec %s ip link set eth0 up" % self.ns)
        os.makedirs(self.etc, exist_ok=True)
        self.addCleanup(shutil.rmtree, self.etc, True)
        with open(os.path.join(self.etc, "resolv.conf"), "w") as f:
            f.write("nameserver %s\noptions timeout:2 attempts:1\n" % self.SERVER_IP)
        # The address must be usable before the server binds it (no duplicate address detection
        # on IPv4, but the link must be up).
        self.server = ControlServer(extra_args=["--dns", "127.0.0.1:0,%s:53" % self.SERVER_IP])
        self.server.start()
        self.addCleanup(self.server.close)

    def sh(self, cmd):
        r = subprocess.run(cmd.split(), capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            self.fail("%s failed: %s" % (cmd, r.stderr.strip()))
        return r

    def test_getent_resolves_through_the_server_and_unattached_networks_are_refused(self):
        sd = cloudmap(self.server)
        here = create_network(self.server, "here", "198.18.53.0/30")
        elsewhere = create_network(self.server, "elsewhere", "198.18.54.0/24")
        ns = private_namespace(sd, "glibc.local", here)
        svc = sd.create_service(Name="web", NamespaceId=ns, DnsConfig={
            "RoutingPolicy": "MULTIVALUE", "DnsRecords": [{"Type": "A", "TTL": 5}]})["Service"]["Id"]
        sd.register_instance(ServiceId=svc, InstanceId="i-1",
                             Attributes={"AWS_INSTANCE_IPV4": "198.18.55.10"})
        other = private_namespace(sd, "other.local", elsewhere)
        osvc = sd.create_service(Name="db", NamespaceId=other, DnsConfig={
            "RoutingPolicy": "MULTIVALUE", "DnsRecords": [{"Type": "A", "TTL": 5}]})["Service"]["Id"]
        sd.register_instance(ServiceId=osvc, InstanceId="d-1",
                             Attributes={"AWS_INSTANCE_IPV4": "198.18.55.20"})

        r = subprocess.run(["ip", "netns", "exec", self.ns, "getent", "hosts", "web.glibc.local"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, "getent hosts web.glibc.local in the namespace: rc %d %s"
                         % (r.returncode, r.stderr))
        self.assertEqual(r.stdout.split(), ["198.18.55.10", "web.glibc.local"], r.stdout)

        # other.local is attached to 198.18.54.0/24 only: the namespace's address is refused,
        # and glibc finds nothing.
        refused = dig(53, "db.other.local", "A", server=self.SERVER_IP, netns=self.ns)
        self.assertEqual(refused["status"], "REFUSED", refused["raw"])
        r = subprocess.run(["ip", "netns", "exec", self.ns, "getent", "hosts", "db.other.local"],
                           capture_output=True, text=True, timeout=30)
        self.assertNotEqual(r.returncode, 0, "db.other.local must not resolve from 198.18.53.2: "
                            + r.stdout)
        # The host itself (loopback) is answered.
        here_ok = dig(dns_port(self.server), "db.other.local")
        self.assertEqual([x[3] for x in here_ok["answer"]], ["198.18.55.20"], here_ok["raw"])

        # Attaching the network lets the namespace in, on the next query.
        zone = sd.get_namespace(Id=other)["Namespace"]["Properties"]["DnsProperties"]["HostedZoneId"]
        r53 = self.server._boto_session().client(
            "route53", endpoint_url=self.server.endpoint,
            config=Config(retries={"total_max_attempts": 1}))
        r53.associate_vpc_with_hosted_zone(
            HostedZoneId=zone, VPC={"VPCRegion": self.server.region, "VPCId": here})
        ok = wait_until(lambda: dig(53, "db.other.local", "A", server=self.SERVER_IP,
                                    netns=self.ns)["answer"], 10, what="db.other.local answered")
        self.assertEqual([x[3] for x in ok], ["198.18.55.20"])


if __name__ == "__main__":
    unittest.main()
