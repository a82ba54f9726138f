"""Config push end to end (issue 5, docs/config-push.md): a real `weft server` compiles a mesh
declared through the App Mesh API and streams it over TLS to a real weft-proxy running as the
mesh's virtual gateway; traffic follows the declared routes.

Topology (all on 127.0.0.1):
  client --HTTP--> weft-proxy (virtual gateway gw, listener on a free port)
                     gateway route "/" -> virtual service svc.local -> virtual router r
                     route rt: weighted targets blue / green (virtual nodes, DNS discovery
                     "127.0.0.1", listener port = the backend's port)
  blue, green: the harness's echo backends (their answer names them).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import unittest

from control_harness import ControlServer, wait_until
from harness import Backend, Proxy, curl, proxy_binary

MESH = "m"
GW = "mesh/%s/virtualGateway/gw" % MESH


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def node_spec(port):
    return {
        "listeners": [{"portMapping": {"port": port, "protocol": "http"}}],
        "serviceDiscovery": {"dns": {"hostname": "127.0.0.1"}},
    }


def route_spec(blue, green):
    return {"httpRoute": {
        "match": {"prefix": "/"},
        "action": {"weightedTargets": [{"virtualNode": "blue", "weight": blue},
                                       {"virtualNode": "green", "weight": green}]}}}


class PushTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="weft-push-")
        cls.stream_port = free_port()  # fixed across server restarts: the proxy reconnects to it
        cls.server = ControlServer(extra_args=["--stream", "127.0.0.1:%d" % cls.stream_port])
        cls.server.start()
        cls.blue = Backend("blue")
        cls.green = Backend("green")
        cls.gw_port = free_port()
        am = cls.server.appmesh_client()
        am.create_mesh(meshName=MESH)
        am.create_virtual_node(meshName=MESH, virtualNodeName="blue", spec=node_spec(cls.blue.port))
        am.create_virtual_node(meshName=MESH, virtualNodeName="green",
                               spec=node_spec(cls.green.port))
        am.create_virtual_router(meshName=MESH, virtualRouterName="r", spec={
            "listeners": [{"portMapping": {"port": 80, "protocol": "http"}}]})
        am.create_route(meshName=MESH, virtualRouterName="r", routeName="rt",
                        spec=route_spec(100, 0))
        am.create_virtual_service(meshName=MESH, virtualServiceName="svc.local", spec={
            "provider": {"virtualRouter": {"virtualRouterName": "r"}}})
        am.create_virtual_gateway(meshName=MESH, virtualGatewayName="gw",
                                  spec=cls.gateway_spec())
        am.create_gateway_route(meshName=MESH, virtualGatewayName="gw", gatewayRouteName="all",
                                spec={"httpRoute": {
                                    "match": {"prefix": "/"},
                                    "action": {"target": {"virtualService": {
                                        "virtualServiceName": "svc.local"}}}}})
        cls.token_file = cls.write_token("gw.token", GW)
        cls.state_dir = os.path.join(cls.tmp, "state")
        cls.proxy = cls.start_proxy(cls.token_file, cls.state_dir)
        wait_until(lambda: cls.ready(cls.proxy), 30, what="the gateway proxy's /ready")

    @classmethod
    def tearDownClass(cls):
        for p in (cls.proxy,):
            p.stop()
        cls.server.close()
        cls.blue.close()
        cls.green.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    # ---- helpers

    @property
    def am(self):
        # One client per API port: the port changes when the server restarts.
        cls = type(self)
        if getattr(cls, "_am_port", None) != self.server.port:
            cls._am, cls._am_port = self.server.appmesh_client(), self.server.port
        return cls._am

    @classmethod
    def gateway_spec(cls, tls=None):
        listener = {"portMapping": {"port": cls.gw_port, "protocol": "http"}}
        if tls:
            listener["tls"] = tls
        return {"listeners": [listener]}

    @classmethod
    def write_token(cls, name, resource):
        p = cls.server.weft("token", "create", "--resource", resource)
        if p.returncode != 0:
            raise AssertionError("weft token create failed: %s" % p.stderr)
        token = p.stdout.strip()
        if not token or "\n" in token:
            raise AssertionError("expected the token alone on stdout, got %r" % p.stdout)
        path = os.path.join(cls.tmp, name)
        with open(path, "w") as f:
            f.write(token + "\n")
        return path

    @classmethod
    def start_proxy(cls, token_file, state_dir, resource=GW, name="gw"):
        args = ["--control-plane", "127.0.0.1:%d" % cls.stream_port, "--resource", resource,
                "--token-file", token_file,
                "--ca-file", os.path.join(cls.server.data_dir, "ca-bundle.pem"),
                "--admin", "127.0.0.1:0", "--state-dir", state_dir, "--log-level", "debug"]
        return Proxy(None, name=name, args=args).start(timeout=20)

    @staticmethod
    def ready(proxy):
        try:
            return proxy.admin("/ready")[0] == 200
        except OSError:
            return False

    def get_backend(self):
        r = curl("http://127.0.0.1:%d/hello" % self.gw_port, timeout=5)
        self.assertEqual(r.status, 200, "through the gateway: %r\nproxy log:\n%s"
                         % (r, self.proxy.log_text()))
        return r.json()["backend"]

    def proxies(self):
        p = self.server.weft("proxies", "-o", "json")
        self.assertEqual(p.returncode, 0, p.stderr)
        data = json.loads(p.stdout)
        return data["proxies"] if isinstance(data, dict) else data

    def set_weights(self, blue, green):
        self.am.update_route(meshName=MESH, virtualRouterName="r", routeName="rt",
                             spec=route_spec(blue, green))

    # ---- tests

    def test_1_traffic_follows_declared_weights(self):
        self.set_weights(100, 0)
        wait_until(lambda: all(self.get_backend() == "blue" for _ in range(5)), 15,
                   what="every answer from blue at weights 100/0")
        self.set_weights(0, 100)
        wait_until(lambda: all(self.get_backend() == "green" for _ in range(5)), 15,
                   what="every answer from green after the shift to 0/100")
        self.set_weights(50, 50)
        # Wait for the 50/50 version to be acked, then count.
        wait_until(lambda: self.get_backend() == "blue", 15, what="blue back in rotation")
        counts = {"blue": 0, "green": 0}
        for _ in range(200):
            counts[self.get_backend()] += 1
        for name, n in counts.items():
            self.assertGreater(n, 60, "50/50 weights: expected about 100 of 200 answers from "
                               "each backend, got %r" % counts)
        connected = [p for p in self.proxies() if p["resource"] == GW]
        self.assertEqual(len(connected), 1, "weft proxies: %r" % self.proxies())
        # Versions: the first config, 0/100, 50/50 (100/0 at the start changed nothing).
        self.assertGreaterEqual(connected[0]["versionAcked"], 3, connected[0])

    def test_2_nack_keeps_the_running_config(self):
        self.set_weights(100, 0)
        wait_until(lambda: all(self.get_backend() == "blue" for _ in range(5)), 15,
                   what="every answer from blue")
        rejected_before = self.proxy.metric("weft_control_plane_update_rejected_total") or 0
        # A certificate file that does not exist on the proxy's machine: the server cannot know,
        # the proxy refuses the version and keeps serving the previous one.
        self.am.update_virtual_gateway(meshName=MESH, virtualGatewayName="gw",
                                       spec=self.gateway_spec(tls={
                                           "mode": "STRICT",
                                           "certificate": {"file": {
                                               "certificateChain": "/nonexistent/weft/cert.pem",
                                               "privateKey": "/nonexistent/weft/key.pem"}}}))

        def nacked():
            for p in self.proxies():
                if p["resource"] == GW and p.get("lastNackReason"):
                    return p
            return None
        p = wait_until(nacked, 15, what="weft proxies to show the gateway's NACK")
        self.assertIn("/nonexistent/weft/cert.pem", p["lastNackReason"])
        self.assertGreater(self.proxy.metric("weft_control_plane_update_rejected_total") or 0,
                           rejected_before)
        for _ in range(20):
            self.assertEqual(self.get_backend(), "blue")
        # Fixed: the next version applies again.
        self.am.update_virtual_gateway(meshName=MESH, virtualGatewayName="gw",
                                       spec=self.gateway_spec())
        wait_until(lambda: [p for p in self.proxies() if p["resource"] == GW
                            and p["versionAcked"] == p["versionSent"]], 15,
                   what="the fixed gateway config to be acked")

    def test_3_server_killed_under_load(self):
        self.set_weights(100, 0)
        wait_until(lambda: all(self.get_backend() == "blue" for _ in range(5)), 15,
                   what="every answer from blue")
        stop = threading.Event()
        results = {"ok": 0, "failed": []}

        def load():
            while not stop.is_set():
                r = curl("http://127.0.0.1:%d/load" % self.gw_port, timeout=5)
                if r.status == 200:
                    results["ok"] += 1
                else:
                    results["failed"].append(r)
        threads = [threading.Thread(target=load) for _ in range(2)]
        for t in threads:
            t.start()
        try:
            wait_until(lambda: results["ok"] >= 20, 15, what="load to flow")
            self.server.stop(sig=signal.SIGKILL)
            seen = results["ok"]
            wait_until(lambda: self.proxy.metric("weft_control_plane_connected") == 0, 15,
                       what="the proxy to notice the control plane is gone")
            wait_until(lambda: results["ok"] >= seen + 50, 20, what="load to keep flowing")
            self.server.start()
            wait_until(lambda: self.proxy.metric("weft_control_plane_connected") == 1, 40,
                       what="the proxy to reconnect after the server came back")
            wait_until(lambda: [p for p in self.proxies() if p["resource"] == GW], 15,
                       what="weft proxies to list the reconnected gateway")
        finally:
            stop.set()
            for t in threads:
                t.join(10)
        self.assertEqual(results["failed"], [], "requests failed while the server was down")
        # And the stream works again: a change reaches the proxy.
        self.set_weights(0, 100)
        wait_until(lambda: all(self.get_backend() == "green" for _ in range(5)), 15,
                   what="a change after the reconnect to reach the proxy")

    def test_4_restart_while_server_down_serves_stored_config(self):
        self.set_weights(0, 100)
        wait_until(lambda: all(self.get_backend() == "green" for _ in range(5)), 15,
                   what="every answer from green")
        self.server.stop()
        try:
            self.proxy.stop()
            # stop() removed the proxy's own temp dir, not the state dir.
            type(self).proxy = self.start_proxy(self.token_file, self.state_dir)
            wait_until(lambda: self.ready(self.proxy), 15,
                       what="the restarted proxy to serve its stored config")
            for _ in range(5):
                self.assertEqual(self.get_backend(), "green")
            self.assertEqual(self.proxy.metric("weft_control_plane_connected"), 0)
        finally:
            self.server.start()
        wait_until(lambda: self.proxy.metric("weft_control_plane_connected") == 1, 40,
                   what="the restarted proxy to connect once the server is back")

    def test_5_token_of_another_resource_gets_nothing(self):
        other = self.write_token("blue.token", "mesh/%s/virtualNode/blue" % MESH)
        state = os.path.join(self.tmp, "state-intruder")
        intruder = self.start_proxy(other, state, resource=GW, name="intruder")
        try:
            wait_until(lambda: "PERMISSION_DENIED" in intruder.log_text()
                       or "another resource" in intruder.log_text(), 15,
                       what="the refusal to be logged by the proxy")
            status, _ = intruder.admin("/ready")
            self.assertEqual(status, 503, "a refused proxy must not become ready")
            self.assertEqual(intruder.ports.get("listeners") or {}, {},
                             "a refused proxy must not listen")
            self.assertFalse(os.path.exists(state) and os.listdir(state),
                             "a refused proxy must store no config")
            self.assertEqual(len([p for p in self.proxies() if p["resource"] == GW]), 1,
                             "weft proxies must list only the real gateway: %r" % self.proxies())
        finally:
            intruder.stop()


@unittest.skipUnless(os.geteuid() == 0 and shutil.which("iptables") and shutil.which("setpriv"),
                     "needs root, iptables and setpriv (network namespaces)")
class SidecarTest(unittest.TestCase):
    """A virtual node's sidecar, configured only by the control plane: an unmodified client (curl,
    root) in a private network namespace calls a virtual service by name; iptables redirects the
    call to the sidecar's outbound listener (15001, as pushed), which routes it by Host to the
    provider node's endpoint. The sidecar runs as uid 1337 (exempt) and reaches `weft server`
    in the root namespace over a veth pair, the way App Mesh's VPC endpoints were reached.
    Addresses: 198.18.5.0/30 (the link to the server), 198.18.6.0/24 (the host's network)."""

    SERVER_IP = "198.18.5.1"
    NS_IP = "198.18.5.2"
    HOST_IP = "198.18.6.1"       # the app's host, where the provider node's DNS name points
    SERVICE_IP = "198.18.6.10"   # what the virtual service name resolves to (nothing there)
    APP_PORT = 8081

    def setUp(self):
        self.ns = "weft-push-%d" % os.getpid()
        self.link = "wpush%d" % (os.getpid() % 100000)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.link], capture_output=True)
        self.sh("ip netns add %s" % self.ns, netns=False)
        self.addCleanup(subprocess.run, ["ip", "netns", "del", self.ns], capture_output=True)
        self.sh("ip link add %s type veth peer name eth0 netns %s" % (self.link, self.ns),
                netns=False)
        self.addCleanup(subprocess.run, ["ip", "link", "del", self.link], capture_output=True)
        self.sh("ip addr add %s/30 dev %s" % (self.SERVER_IP, self.link), netns=False)
        self.sh("ip link set %s up" % self.link, netns=False)
        self.sh("ip link set lo up")
        self.sh("ip addr add %s/30 dev eth0" % self.NS_IP)
        self.sh("ip link set eth0 up")
        self.sh("ip link add host0 type veth peer name host1")
        self.sh("ip addr add %s/24 dev host0" % self.HOST_IP)
        self.sh("ip link set host0 up")
        self.sh("ip link set host1 up")
        self.dir = tempfile.mkdtemp(prefix="weft-push-ns-")
        os.chmod(self.dir, 0o755)
        self.addCleanup(shutil.rmtree, self.dir, True)
        with open(os.path.join(self.dir, "hello.txt"), "w") as f:
            f.write("hello from the app\n")
        app = subprocess.Popen(["ip", "netns", "exec", self.ns, "/usr/bin/python3", "-m",
                                "http.server", "--bind", "0.0.0.0", str(self.APP_PORT),
                                "--directory", self.dir],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(app.wait, 10)
        self.addCleanup(app.kill)
        wait_until(lambda: (":%d " % self.APP_PORT) in self.sh("ss -ltnH").stdout,
                   what="the app listening in the namespace")

        self.server = ControlServer(extra_args=["--stream", self.SERVER_IP + ":0"])
        self.server.start()
        self.addCleanup(self.server.close)

    def sh(self, cmd, netns=True, check=True):
        args = (["ip", "netns", "exec", self.ns] if netns else []) + cmd.split()
        r = subprocess.run(args, capture_output=True, text=True, timeout=30)
        if check and r.returncode != 0:
            self.fail("%s failed: %s" % (cmd, r.stderr.strip()))
        return r

    def stream_port(self):
        with open(self.server.ports_file) as f:
            for line in f.read().splitlines():
                if line.startswith("stream="):
                    return int(line[7:])
        self.fail("no stream= line in the server's ports file")

    def test_sidecar_routes_an_intercepted_call_as_pushed(self):
        am = self.server.appmesh_client()
        am.create_mesh(meshName="sc", spec={"egressFilter": {"type": "DROP_ALL"}})
        am.create_virtual_node(meshName="sc", virtualNodeName="web", spec={
            "listeners": [{"portMapping": {"port": self.APP_PORT, "protocol": "http"}}],
            "serviceDiscovery": {"dns": {"hostname": self.HOST_IP}}})
        am.create_virtual_service(meshName="sc", virtualServiceName="web.sc.local", spec={
            "provider": {"virtualNode": {"virtualNodeName": "web"}}})
        am.create_virtual_node(meshName="sc", virtualNodeName="client", spec={
            "backends": [{"virtualService": {"virtualServiceName": "web.sc.local"}}],
            "serviceDiscovery": {"dns": {"hostname": "client.sc.local"}}})
        token = self.server.weft("token", "create", "--resource", "mesh/sc/virtualNode/client")
        self.assertEqual(token.returncode, 0, token.stderr)
        token_file = os.path.join(self.dir, "token")
        with open(token_file, "w") as f:
            f.write(token.stdout)
        os.chmod(token_file, 0o644)  # the data directory is the server's only (0700)
        ca_file = os.path.join(self.dir, "ca.pem")
        shutil.copy(os.path.join(self.server.data_dir, "ca-bundle.pem"), ca_file)
        os.chmod(ca_file, 0o644)
        state = os.path.join(self.dir, "state")
        os.mkdir(state)
        os.chown(state, 1337, 1337)
        log = open(os.path.join(self.dir, "proxy.log"), "wb")
        self.addCleanup(log.close)
        proxy = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "setpriv", "--reuid=1337", "--regid=1337",
             "--clear-groups", os.environ.get("WEFT_PROXY") or proxy_binary(),
             "--control-plane", "%s:%d" % (self.SERVER_IP, self.stream_port()),
             "--resource", "mesh/sc/virtualNode/client", "--token-file", token_file,
             "--ca-file", ca_file, "--state-dir", state, "--admin", "127.0.0.1:9901"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.addCleanup(proxy.wait, 10)
        self.addCleanup(proxy.terminate)

        def proxy_log():
            with open(os.path.join(self.dir, "proxy.log"), errors="replace") as f:
                return f.read()

        def ready():
            if proxy.poll() is not None:
                self.fail("weft-proxy exited: " + proxy_log())
            r = self.sh("curl -s -o /dev/null -w %{http_code} http://127.0.0.1:9901/ready",
                        check=False)
            return r.stdout == "200"
        try:
            wait_until(ready, 30, what="the sidecar's first pushed config")
        except AssertionError as e:
            self.fail("%s\nproxy log:\n%s\nserver log:\n%s"
                      % (e, proxy_log()[-4000:], self.server.log()[-4000:]))

        # As App Mesh's sidecars: every outbound TCP connection not made by the proxy itself
        # goes to the outbound listener (loopback excepted, so the test reads the admin port).
        self.sh("iptables -t nat -A OUTPUT -p tcp -d 127.0.0.1/32 -j RETURN")
        self.sh("iptables -t nat -A OUTPUT -p tcp -m owner ! --uid-owner 1337 -j REDIRECT "
                "--to-ports 15001")
        r = self.sh("curl -s -m 10 -o - -w %%{http_code} --resolve web.sc.local:%d:%s "
                    "http://web.sc.local:%d/hello.txt" % (self.APP_PORT, self.SERVICE_IP,
                                                          self.APP_PORT), check=False)
        self.assertEqual(r.stdout, "hello from the app\n200",
                         "curl through the pushed outbound listener: %r %r\nproxy log:\n%s"
                         % (r.stdout, r.stderr, proxy_log()))
        metrics = self.sh("curl -s http://127.0.0.1:9901/stats/prometheus").stdout
        from harness import metric_value
        self.assertEqual(metric_value(metrics, "weft_cluster_upstream_rq_total",
                                      cluster="cds_egress_sc_web_http_%d" % self.APP_PORT,
                                      appmesh_mesh="sc", appmesh_virtual_node="client"), 1,
                         "App Mesh's cluster name and labels on the egress request count")
        # DROP_ALL: a destination the mesh does not declare is refused.
        r = self.sh("curl -s -m 5 http://%s:9999/" % self.HOST_IP, check=False)
        self.assertNotEqual(r.returncode, 0, "an undeclared destination must be refused")
        metrics = self.sh("curl -s http://127.0.0.1:9901/stats/prometheus").stdout
        self.assertEqual(metric_value(metrics, "weft_listener_downstream_cx_refused_total",
                                      listener="lds_egress_0.0.0.0_15001"), 1)


if __name__ == "__main__":
    unittest.main()
