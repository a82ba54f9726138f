"""The service registry of `weft server`: networks (/weft/v1/networks), the Cloud Map API driven by
the real AWS CLI (/usr/bin/aws) and boto3, the Route 53 hosted-zone subset, and the DNS server
(queried with hand-built RFC 1035 messages over UDP and TCP from the standard library).

Run by hand: cd test/integration && WEFT_BIN=../../build/bin/weft \
  /usr/bin/python3 -m unittest -v test_registry
"""

import json
import os
import socket
import struct
import unittest
import warnings

from control_harness import ControlServer

try:
    import boto3  # noqa: F401
    from botocore.config import Config
    from botocore.exceptions import ClientError
    HAVE_BOTO3 = True
except ImportError:  # pragma: no cover - Debian's python3-boto3 is a test dependency
    HAVE_BOTO3 = False

A, NS, SOA, AAAA, SRV = 1, 2, 6, 28, 33
NOERROR, NXDOMAIN, REFUSED = 0, 3, 5


def wire_name(name):
    out = b""
    for label in name.strip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def read_name(msg, off):
    labels, jumped, end = [], False, None
    while True:
        n = msg[off]
        if n & 0xC0 == 0xC0:
            if not jumped:
                end = off + 2
            jumped = True
            off = struct.unpack(">H", msg[off:off + 2])[0] & 0x3FFF
            continue
        if n == 0:
            return ".".join(labels), (end if jumped else off + 1)
        labels.append(msg[off + 1:off + 1 + n].decode())
        off += 1 + n


def parse(msg):
    qid, flags, qd, an, ns, ar = struct.unpack(">HHHHHH", msg[:12])
    off = 12
    for _ in range(qd):
        _, off = read_name(msg, off)
        off += 4
    sections = []
    for count in (an, ns, ar):
        rrs = []
        for _ in range(count):
            name, off = read_name(msg, off)
            rtype, _, ttl, rdlen = struct.unpack(">HHIH", msg[off:off + 10])
            off += 10
            rdata = msg[off:off + rdlen]
            if rtype == A:
                value = socket.inet_ntoa(rdata)
            elif rtype == SRV:
                prio, weight, port = struct.unpack(">HHH", rdata[:6])
                value = (prio, weight, port, read_name(msg, off + 6)[0])
            else:
                value = rdata
            rrs.append((name, rtype, ttl, value))
            off += rdlen
        sections.append(rrs)
    return {"id": qid, "rcode": flags & 0xF, "tc": bool(flags & 0x0200), "aa": bool(flags & 0x0400),
            "answers": sections[0], "authority": sections[1], "additional": sections[2]}


def query(name, qtype, qid=0x5151):
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + wire_name(name) + struct.pack(">HH", qtype, 1)


def ask_udp(port, name, qtype):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(query(name, qtype), ("127.0.0.1", port))
        data, _ = s.recvfrom(65535)
    return parse(data)


def ask_tcp(port, name, qtype):
    q = query(name, qtype)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(struct.pack(">H", len(q)) + q)
        buf = b""
        while len(buf) < 2 or len(buf) < 2 + struct.unpack(">H", buf[:2])[0]:
            chunk = s.recv(65535)
            if not chunk:
                raise AssertionError("the DNS server closed the TCP connection before answering")
            buf += chunk
    return parse(buf[2:])


@unittest.skipUnless(HAVE_BOTO3, "boto3 is not installed for this Python (Debian: python3-boto3)")
class RegistryTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        warnings.simplefilter("ignore", ResourceWarning)
        cls.server = ControlServer(extra_args=["--dns", "127.0.0.1:0"]).start()
        with open(cls.server.ports_file) as f:
            ports = dict(line.split("=", 1) for line in f.read().split())
        cls.dns_port = int(ports["dns"])
        status, _, body = cls.server.signed_request(
            "POST", "/weft/v1/networks", json.dumps({"name": "lab", "cidrs": ["198.18.0.0/16"]}))
        assert status == 200, "creating a network: expected 200, got %s %r" % (status, body)
        cls.vpc = json.loads(body)["id"]

    @classmethod
    def tearDownClass(cls):
        cls.server.close()

    def cli(self, *args):
        rc, out, err = self.server.aws(*args)
        self.assertEqual(rc, 0, "aws %s: expected success, got rc %s: %s" % (" ".join(args), rc, err))
        return out

    def client(self, name="servicediscovery"):
        return self.server._boto_session().client(
            name, endpoint_url=self.server.endpoint,
            config=Config(inject_host_prefix=False, retries={"total_max_attempts": 1}))

    def test_networks_api(self):
        status, _, body = self.server.signed_request(
            "POST", "/weft/v1/networks", json.dumps({"name": "x", "cidrs": ["not-a-cidr"]}))
        self.assertEqual(status, 400, body)
        status, _, body = self.server.signed_request("GET", "/weft/v1/networks")
        self.assertEqual(status, 200, body)
        ids = [n["id"] for n in json.loads(body)["networks"]]
        self.assertIn(self.vpc, ids)
        status, _, body = self.server.signed_request("DELETE", "/weft/v1/networks/vpc-nope")
        self.assertEqual(status, 404, body)

    def test_cli_lifecycle_route53_and_dns(self):
        name = "appmeshworkshop.hosted.local"
        op = self.cli("servicediscovery", "create-private-dns-namespace", "--vpc", self.vpc,
                      "--name", name)["OperationId"]
        got = self.cli("servicediscovery", "get-operation", "--operation-id", op)["Operation"]
        self.assertEqual(got["Status"], "SUCCESS")
        ns = got["Targets"]["NAMESPACE"]
        svc = self.cli("servicediscovery", "create-service", "--name", "crystal", "--namespace-id", ns,
                       "--dns-config", "RoutingPolicy=MULTIVALUE,DnsRecords=[{Type=A,TTL=300},{Type=SRV,TTL=300}]",
                       "--health-check-custom-config", "FailureThreshold=1")["Service"]["Id"]
        for i, ip in (("i-1", "198.18.0.10"), ("i-2", "198.18.0.11")):
            self.cli("servicediscovery", "register-instance", "--service-id", svc, "--instance-id", i,
                     "--attributes", "AWS_INSTANCE_IPV4=%s,AWS_INSTANCE_PORT=3000,stage=prod" % ip)
        listed = self.cli("servicediscovery", "list-instances", "--service-id", svc)["Instances"]
        self.assertEqual(sorted(i["Id"] for i in listed), ["i-1", "i-2"])
        rc, _, err = self.server.aws("servicediscovery", "get-service", "--id", "srv-nope")
        self.assertNotEqual(rc, 0)
        self.assertIn("ServiceNotFound", err)

        zones = self.cli("route53", "list-hosted-zones-by-name", "--dns-name", name)["HostedZones"]
        self.assertEqual(zones[0]["Name"], name + ".", zones)
        self.assertTrue(zones[0]["Config"]["PrivateZone"])
        zone_id = zones[0]["Id"]
        hz = self.cli("route53", "get-hosted-zone", "--id", zone_id)
        self.assertEqual(hz["VPCs"], [{"VPCRegion": self.server.region, "VPCId": self.vpc}])

        # DNS: A answers from loopback, over UDP and TCP; SRV names the instance hosts.
        a = ask_udp(self.dns_port, "crystal." + name, A)
        self.assertEqual(a["rcode"], NOERROR, a)
        self.assertTrue(a["aa"])
        self.assertEqual(sorted(r[3] for r in a["answers"]), ["198.18.0.10", "198.18.0.11"])
        self.assertEqual({r[2] for r in a["answers"]}, {300})
        t = ask_tcp(self.dns_port, "crystal." + name, A)
        self.assertEqual(sorted(r[3] for r in t["answers"]), ["198.18.0.10", "198.18.0.11"])
        srv = ask_udp(self.dns_port, "crystal." + name, SRV)
        self.assertEqual(sorted(r[3] for r in srv["answers"]),
                         [(1, 10, 3000, "i-1.crystal." + name), (1, 10, 3000, "i-2.crystal." + name)])
        host = ask_udp(self.dns_port, "i-2.crystal." + name, A)
        self.assertEqual([r[3] for r in host["answers"]], ["198.18.0.11"])
        nx = ask_udp(self.dns_port, "nope." + name, A)
        self.assertEqual(nx["rcode"], NXDOMAIN, nx)
        self.assertEqual(nx["authority"][0][1], SOA)
        self.assertEqual(ask_udp(self.dns_port, "example.com", A)["rcode"], REFUSED)

        # Health: an unhealthy instance leaves DNS; when all are unhealthy, all come back.
        self.cli("servicediscovery", "update-instance-custom-health-status", "--service-id", svc,
                 "--instance-id", "i-1", "--status", "UNHEALTHY")
        health = self.cli("servicediscovery", "get-instances-health-status", "--service-id", svc)
        self.assertEqual(health["Status"], {"i-1": "UNHEALTHY", "i-2": "HEALTHY"})
        a = ask_udp(self.dns_port, "crystal." + name, A)
        self.assertEqual([r[3] for r in a["answers"]], ["198.18.0.11"])
        self.cli("servicediscovery", "update-instance-custom-health-status", "--service-id", svc,
                 "--instance-id", "i-2", "--status", "UNHEALTHY")
        a = ask_udp(self.dns_port, "crystal." + name, A)
        self.assertEqual(sorted(r[3] for r in a["answers"]), ["198.18.0.10", "198.18.0.11"])

        # DiscoverInstances through the AWS CLI needs data-<host> to resolve (docs/registry.md).
        try:
            socket.getaddrinfo("data-localhost", self.server.port)
            resolvable = True
        except socket.gaierror:
            resolvable = False
        if resolvable:
            rc, out, err = self.server.aws(
                "--endpoint-url", "http://localhost:%d" % self.server.port,
                "servicediscovery", "discover-instances", "--namespace-name", name,
                "--service-name", "crystal", "--health-status", "ALL")
            self.assertEqual(rc, 0, err)
            self.assertEqual(len(out["Instances"]), 2)

        self.cli("servicediscovery", "deregister-instance", "--service-id", svc, "--instance-id", "i-1")
        self.cli("servicediscovery", "deregister-instance", "--service-id", svc, "--instance-id", "i-2")
        nodata = ask_udp(self.dns_port, "crystal." + name, A)
        self.assertEqual((nodata["rcode"], nodata["answers"]), (NOERROR, []))
        self.cli("servicediscovery", "delete-service", "--id", svc)
        self.cli("servicediscovery", "delete-namespace", "--id", ns)
        self.assertEqual(ask_udp(self.dns_port, "crystal." + name, A)["rcode"], REFUSED)

    def test_cli_update_private_dns_namespace_soa_ttl(self):
        name = "update.hosted.local"
        op = self.cli("servicediscovery", "create-private-dns-namespace", "--vpc", self.vpc,
                      "--name", name)["OperationId"]
        ns = self.cli("servicediscovery", "get-operation", "--operation-id", op)["Operation"]["Targets"]["NAMESPACE"]
        soa = ask_udp(self.dns_port, name, SOA)
        self.assertEqual([r[2] for r in soa["answers"]], [15], "SOA TTL before the update: %r" % soa)

        op = self.cli("servicediscovery", "update-private-dns-namespace", "--id", ns, "--namespace",
                      "Description=x,Properties={DnsProperties={SOA={TTL=30}}}")["OperationId"]
        got = self.cli("servicediscovery", "get-operation", "--operation-id", op)["Operation"]
        self.assertEqual((got["Status"], got["Type"], got["Targets"]["NAMESPACE"]),
                         ("SUCCESS", "UPDATE_NAMESPACE", ns), got)
        n = self.cli("servicediscovery", "get-namespace", "--id", ns)["Namespace"]
        self.assertEqual(n["Description"], "x", n)
        self.assertEqual(n["Properties"]["DnsProperties"]["SOA"]["TTL"], 30, n)
        soa = ask_udp(self.dns_port, name, SOA)
        self.assertEqual([r[2] for r in soa["answers"]], [30], "SOA TTL after the update: %r" % soa)
        nx = ask_udp(self.dns_port, "nope." + name, A)
        self.assertEqual(nx["authority"][0][2], 30, "negative answer's SOA TTL: %r" % nx)

        rc, _, err = self.server.aws("servicediscovery", "update-private-dns-namespace", "--id",
                                     "ns-nope", "--namespace", "Description=x")
        self.assertNotEqual(rc, 0)
        self.assertIn("NamespaceNotFound", err)
        self.cli("servicediscovery", "delete-namespace", "--id", ns)

    def test_boto3_discover_and_errors(self):
        sd = self.client()
        op = sd.create_http_namespace(Name="shop")["OperationId"]
        ns = sd.get_operation(OperationId=op)["Operation"]["Targets"]["NAMESPACE"]
        svc = sd.create_service(Name="cart", NamespaceId=ns,
                                HealthCheckCustomConfig={"FailureThreshold": 1})["Service"]["Id"]
        sd.register_instance(ServiceId=svc, InstanceId="c1",
                             Attributes={"AWS_INSTANCE_IPV4": "198.18.1.1", "version": "v1"})
        sd.register_instance(ServiceId=svc, InstanceId="c2",
                             Attributes={"AWS_INSTANCE_IPV4": "198.18.1.2", "version": "v2",
                                         "AWS_INIT_HEALTH_STATUS": "UNHEALTHY"})
        found = sd.discover_instances(NamespaceName="shop", ServiceName="cart")["Instances"]
        self.assertEqual([i["InstanceId"] for i in found], ["c1"])
        found = sd.discover_instances(NamespaceName="shop", ServiceName="cart", HealthStatus="ALL",
                                      QueryParameters={"version": "v2"})["Instances"]
        self.assertEqual([(i["InstanceId"], i["HealthStatus"]) for i in found], [("c2", "UNHEALTHY")])
        for call, kwargs, code in (
                (sd.get_namespace, {"Id": "ns-nope"}, "NamespaceNotFound"),
                (sd.get_instance, {"ServiceId": svc, "InstanceId": "zz"}, "InstanceNotFound"),
                (sd.delete_namespace, {"Id": ns}, "ResourceInUse"),
                (sd.create_http_namespace, {"Name": "shop"}, "NamespaceAlreadyExists"),
                (sd.discover_instances, {"NamespaceName": "shop", "ServiceName": "nope"}, "ServiceNotFound"),
                (sd.get_operation, {"OperationId": "nope"}, "OperationNotFound")):
            with self.assertRaises(ClientError) as ctx:
                call(**kwargs)
            self.assertEqual(ctx.exception.response["Error"]["Code"], code,
                             "%s(%s)" % (call.__name__, kwargs))
        ops = sd.list_operations(Filters=[{"Name": "TYPE", "Values": ["REGISTER_INSTANCE"],
                                           "Condition": "EQ"}])["Operations"]
        self.assertGreaterEqual(len(ops), 2)
        self.assertTrue(all(o["Status"] == "SUCCESS" for o in ops))

    def test_route53_vpc_association_with_boto3(self):
        r53 = self.client("route53")
        sd = self.client()
        status, _, body = self.server.signed_request(
            "POST", "/weft/v1/networks", json.dumps({"name": "other", "cidrs": ["198.19.0.0/16"]}))
        self.assertEqual(status, 200, body)
        other = json.loads(body)["id"]
        op = sd.create_private_dns_namespace(Name="assoc.local", Vpc=self.vpc)["OperationId"]
        ns = sd.get_operation(OperationId=op)["Operation"]["Targets"]["NAMESPACE"]
        zone = sd.get_namespace(Id=ns)["Namespace"]["Properties"]["DnsProperties"]["HostedZoneId"]
        info = r53.associate_vpc_with_hosted_zone(
            HostedZoneId=zone, VPC={"VPCRegion": self.server.region, "VPCId": other})["ChangeInfo"]
        self.assertEqual(info["Status"], "INSYNC")
        vpcs = r53.get_hosted_zone(Id=zone)["VPCs"]
        self.assertEqual(sorted(v["VPCId"] for v in vpcs), sorted([self.vpc, other]))
        r53.disassociate_vpc_from_hosted_zone(
            HostedZoneId=zone, VPC={"VPCRegion": self.server.region, "VPCId": other})
        with self.assertRaises(ClientError) as ctx:
            r53.disassociate_vpc_from_hosted_zone(
                HostedZoneId=zone, VPC={"VPCRegion": self.server.region, "VPCId": self.vpc})
        self.assertEqual(ctx.exception.response["Error"]["Code"], "LastVPCAssociation")
        with self.assertRaises(ClientError) as ctx:
            r53.get_hosted_zone(Id="ZNOPE")
        self.assertEqual(ctx.exception.response["Error"]["Code"], "NoSuchHostedZone")


if __name__ == "__main__":
    unittest.main()
