"""L4: tcp_proxy listeners, and transparent interception of an unmodified client's traffic
(iptables REDIRECT in a private network namespace, original destination recovery, egress filter,
inbound passthrough to the app's port)."""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from harness import (Backend, Proxy, admin_cfg, cluster, proxy_binary, route_to, wait_until)


class EchoServer:
    """Echoes every byte back; counts connections. `close_after`: close after that many bytes."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.closed = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._echo, args=(c,), daemon=True).start()

    def _echo(self, c):
        with c:
            while True:
                try:
                    data = c.recv(65536)
                except OSError:
                    break
                if not data:
                    break
                c.sendall(data)
        self.closed.set()

    def close(self):
        self.sock.close()


def recv_exactly(s, n, timeout=20.0):
    s.settimeout(timeout)
    out = bytearray()
    while len(out) < n:
        chunk = s.recv(min(1 << 20, n - len(out)))
        if not chunk:
            break
        out += chunk
    return bytes(out)


def tcp_config(port, idle="300s", extra_clusters=()):
    return {"node": "it", "admin": admin_cfg(), "drain_time": "2s",
            "listeners": [{"name": "tcp", "address": "127.0.0.1", "port": 0,
                           "tcp_proxy": {"cluster": "echo", "idle_timeout": idle}}],
            "clusters": [cluster("echo", [port])] + list(extra_clusters)}


class TcpProxyTest(unittest.TestCase):
    def setUp(self):
        self.echo = EchoServer()
        self.addCleanup(self.echo.close)

    def start(self, config):
        p = Proxy(config).start()
        self.addCleanup(p.stop)
        return p

    def test_relays_bytes_both_ways_and_counts_them(self):
        p = self.start(tcp_config(self.echo.port))
        payload = os.urandom(3 << 20)  # above the 1 MiB watermark: backpressure both ways
        with socket.create_connection(("127.0.0.1", p.port("tcp"))) as s:
            sender = threading.Thread(target=s.sendall, args=(payload,))
            sender.start()
            got = recv_exactly(s, len(payload))
            sender.join()
        self.assertEqual(len(got), len(payload), "echo through the proxy came back short")
        self.assertTrue(got == payload, "echo through the proxy came back altered")
        wait_until(lambda: p.metric("weft_listener_downstream_cx_active", listener="tcp") == 0,
                   what="the relay to end after the client closed")
        self.assertEqual(p.metric("weft_listener_downstream_cx_rx_bytes_total", listener="tcp"),
                         len(payload))
        self.assertEqual(p.metric("weft_listener_downstream_cx_tx_bytes_total", listener="tcp"),
                         len(payload))
        self.assertEqual(p.metric("weft_cluster_upstream_cx_total", cluster="echo"), 1)
        wait_until(lambda: p.metric("weft_cluster_upstream_cx_active", cluster="echo") == 0,
                   what="the upstream connection to be closed, not pooled")

    def test_client_bytes_sent_before_close_reach_the_upstream(self):
        p = self.start(tcp_config(self.echo.port))
        with socket.create_connection(("127.0.0.1", p.port("tcp"))) as s:
            s.sendall(b"last words")
        wait_until(self.echo.closed.is_set, what="the upstream to see the relay close")
        self.assertEqual(p.metric("weft_cluster_upstream_cx_tx_bytes_total", cluster="echo"), 10)

    def test_idle_timeout_closes_both_sides(self):
        p = self.start(tcp_config(self.echo.port, idle="0.3s"))
        with socket.create_connection(("127.0.0.1", p.port("tcp"))) as s:
            s.sendall(b"ping")
            self.assertEqual(recv_exactly(s, 4), b"ping")
            s.settimeout(10)
            self.assertEqual(s.recv(10), b"", "the idle relay was not closed")
        self.assertEqual(p.metric("weft_listener_downstream_cx_idle_timeout_total", listener="tcp"),
                         1)

    def test_client_waiting_for_a_pool_slot_is_bounded_by_the_idle_timeout(self):
        # max_connections 1 and one busy relay: the second client waits in the pool's queue,
        # and the idle timeout ends that wait (it used to wait forever, neither served nor
        # closed).
        cfg = tcp_config(self.echo.port, idle="0.5s")
        cfg["clusters"][0]["max_connections"] = 1
        p = self.start(cfg)
        a = socket.create_connection(("127.0.0.1", p.port("tcp")))
        self.addCleanup(a.close)
        a.sendall(b"a")
        self.assertEqual(recv_exactly(a, 1, timeout=5), b"a")
        stop = threading.Event()
        self.addCleanup(stop.set)

        def keep_busy():  # traffic on the first relay, so its own idle timeout never fires
            try:
                while not stop.wait(0.1):
                    a.sendall(b"a")
                    recv_exactly(a, 1, timeout=5)
            except OSError:
                pass
        threading.Thread(target=keep_busy, daemon=True).start()
        b = socket.create_connection(("127.0.0.1", p.port("tcp")))
        self.addCleanup(b.close)
        b.sendall(b"b")
        started = time.monotonic()
        b.settimeout(10)
        try:
            got = b.recv(10)
        except ConnectionResetError:
            got = b""
        elapsed = time.monotonic() - started
        stop.set()
        self.assertEqual(got, b"", "the waiting client should be closed, got %r" % got)
        self.assertLess(elapsed, 5.0, "the wait was not bounded by the 0.5s idle timeout")
        self.assertEqual(self.echo.connections, 1, "the second client got an upstream")
        self.assertEqual(p.metric("weft_listener_downstream_cx_idle_timeout_total", listener="tcp"),
                         1)
        self.assertEqual(p.metric("weft_cluster_upstream_rq_pending_active", cluster="echo"), 0)

    def test_upstream_refusing_closes_the_client_and_counts(self):
        dead = socket.socket()
        dead.bind(("127.0.0.1", 0))
        port = dead.getsockname()[1]
        dead.close()  # nothing listens there now
        p = self.start(tcp_config(port))
        with socket.create_connection(("127.0.0.1", p.port("tcp"))) as s:
            s.settimeout(10)
            try:
                data = s.recv(10)
            except ConnectionResetError:
                data = b""
            self.assertEqual(data, b"")
        wait_until(lambda: p.metric("weft_cluster_upstream_cx_connect_fail_total",
                                    cluster="echo") == 1, what="the connect failure counted")

    def test_validate_rejects_unknown_cluster_and_mixed_protocols(self):
        cfg = tcp_config(self.echo.port)
        cfg["listeners"][0]["tcp_proxy"]["cluster"] = "nope"
        cfg["listeners"][0]["route_config"] = {
            "virtual_hosts": [{"name": "v", "domains": ["*"], "routes": [route_to("echo")]}]}
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d)
        path = os.path.join(d, "c.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        r = subprocess.run([proxy_binary(), "--validate", path],
                           capture_output=True, text=True, timeout=30)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('listeners[0].tcp_proxy.cluster: no cluster named "nope"', r.stderr)
        self.assertIn("not both", r.stderr)


def _have_netns():
    return (os.geteuid() == 0 and shutil.which("ip") and shutil.which("iptables")
            and shutil.which("setpriv"))


@unittest.skipUnless(_have_netns(), "needs root, ip, iptables and setpriv")
class InterceptionTest(unittest.TestCase):
    """An unmodified client (curl, run as root) in a private network namespace calls a service by
    name; iptables redirects its traffic to the proxy's outbound listener, which runs as uid 1337
    and is exempt. Addresses from 198.18.0.0/15 only; nothing leaves the namespace."""

    SERVICE_IP = "198.18.0.10"   # what the service name resolves to (nothing listens there)
    HOST_IP = "198.18.0.1"       # this "host"'s own address
    APP_PORT = 8081              # the real backend, inside the namespace
    OTHER_PORT = 8080            # a web server the mesh does not know, on HOST_IP
    ECHO_PORT = 9001

    def setUp(self):
        self.ns = "weft-it-%d" % os.getpid()
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
        self.sh("ip netns add %s" % self.ns, netns=False)
        self.addCleanup(subprocess.run, ["ip", "netns", "del", self.ns], capture_output=True)
        self.sh("ip link set lo up")
        # A veth pair inside the namespace gives the host an address and a route to the
        # service range (a connect() needs a route before iptables can redirect it).
        self.sh("ip link add weft0 type veth peer name weft1")
        self.sh("ip addr add %s/24 dev weft0" % self.HOST_IP)
        self.sh("ip link set weft0 up")
        self.sh("ip link set weft1 up")
        self.dir = tempfile.mkdtemp(prefix="weft-it-ns-")
        os.chmod(self.dir, 0o777)
        self.addCleanup(shutil.rmtree, self.dir, True)
        # The app: an HTTP server, and a TCP echo server.
        self.spawn(["/usr/bin/python3", "-m", "http.server", "--bind", "0.0.0.0",
                    str(self.APP_PORT), "--directory", self.dir])
        # Port 8080 on the host's address: a destination the http-8080 chain catches by port
        # but whose Host no virtual host names.
        self.spawn(["/usr/bin/python3", "-m", "http.server", "--bind", self.HOST_IP,
                    str(self.OTHER_PORT), "--directory", self.dir])
        echo = ("import socket,threading\n"
                "s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
                "s.bind(('127.0.0.1',%d));s.listen(8)\n"
                "def e(c):\n"
                "  while True:\n"
                "    d=c.recv(65536)\n"
                "    if not d: break\n"
                "    c.sendall(d)\n"
                "  c.close()\n"
                "while True:\n"
                "  c,_=s.accept();threading.Thread(target=e,args=(c,),daemon=True).start()\n"
                % self.ECHO_PORT)
        self.spawn(["/usr/bin/python3", "-c", echo])
        with open(os.path.join(self.dir, "hello.txt"), "w") as f:
            f.write("hello from the app\n")
        self.wait_listening(self.APP_PORT)
        self.wait_listening(self.ECHO_PORT)
        self.wait_listening(self.OTHER_PORT)

    def sh(self, cmd, netns=True, check=True):
        args = (["ip", "netns", "exec", self.ns] if netns else []) + cmd.split()
        r = subprocess.run(args, capture_output=True, text=True, timeout=30)
        if check and r.returncode != 0:
            self.fail("%s failed: %s" % (cmd, r.stderr.strip()))
        return r

    def spawn(self, argv, **kw):
        p = subprocess.Popen(["ip", "netns", "exec", self.ns] + argv, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, **kw)
        self.addCleanup(p.wait, 10)
        self.addCleanup(p.kill)
        return p

    def wait_listening(self, port):
        wait_until(lambda: (":%d " % port) in self.sh("ss -ltnH").stdout,
                   what="port %d listening in the namespace" % port)

    def start_proxy(self, config):
        path = os.path.join(self.dir, "proxy.json")
        with open(path, "w") as f:
            json.dump(config, f)
        ports = os.path.join(self.dir, "ports.json")
        log = open(os.path.join(self.dir, "proxy.log"), "wb")
        self.addCleanup(log.close)
        p = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "setpriv", "--reuid=1337", "--regid=1337",
             "--clear-groups", proxy_binary(), "--config", path, "--ports-file", ports],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.addCleanup(p.wait, 10)
        self.addCleanup(p.terminate)
        wait_until(lambda: os.path.exists(ports) or p.poll() is not None,
                   what="the proxy to start")
        if p.poll() is not None:
            with open(os.path.join(self.dir, "proxy.log")) as f:
                self.fail("proxy exited: " + f.read())
        self.wait_listening(15001)
        return p

    def metrics(self):
        return self.sh("curl -s http://127.0.0.1:9901/stats/prometheus").stdout

    def metric(self, name, **labels):
        from harness import metric_value
        return metric_value(self.metrics(), name, **labels)

    def intercept(self, uid=1337):
        # As App Mesh's sidecars do: every outbound TCP connection not made by the proxy itself
        # goes to the outbound listener (loopback excepted, so the test reads the admin port).
        self.sh("iptables -t nat -A OUTPUT -p tcp -d 127.0.0.1/32 -j RETURN")
        self.sh("iptables -t nat -A OUTPUT -p tcp -m owner ! --uid-owner %d -j REDIRECT "
                "--to-ports 15001" % uid)

    def config(self, egress="DROP_ALL"):
        return {
            "node": "it", "admin": {"address": "127.0.0.1", "port": 9901}, "drain_time": "1s",
            "listeners": [{
                "name": "outbound", "address": "0.0.0.0", "port": 15001,
                "interception": {"direction": "OUTBOUND", "egress_filter": egress},
                "filter_chains": [
                    {"name": "http-8080", "destination_ports": [8080],
                     "route_config": {"virtual_hosts": [
                         {"name": "svc", "domains": ["svc.mesh.local", "svc.mesh.local:8080"],
                          "routes": [route_to("app")]}]}},
                    {"name": "tcp-9000", "destination_ports": [9000],
                     "destination_cidrs": [self.SERVICE_IP + "/32"],
                     "tcp_proxy": {"cluster": "echo"}},
                ]}],
            "clusters": [cluster("app", [self.APP_PORT]), cluster("echo", [self.ECHO_PORT])]}

    def curl(self, url, *extra):
        return self.sh("curl -s -m 10 -o - -w %%{http_code} --resolve svc.mesh.local:8080:%s %s %s"
                       % (self.SERVICE_IP, " ".join(extra), url), check=False)

    def test_outbound_http_by_host_tcp_by_destination_and_drop_all(self):
        self.start_proxy(self.config("DROP_ALL"))
        self.intercept()
        r = self.curl("http://svc.mesh.local:8080/hello.txt")
        self.assertEqual(r.stdout, "hello from the app\n200",
                         "curl through the outbound listener: %r %r" % (r.stdout, r.stderr))
        self.assertEqual(self.metric("weft_cluster_upstream_rq_total", cluster="app"), 1)
        # TCP: matched by the original destination address and port.
        script = ("import socket;s=socket.create_connection(('%s',9000),timeout=10);"
                  "s.sendall(b'over tcp');print(s.recv(100).decode())" % self.SERVICE_IP)
        r = subprocess.run(
            ["ip", "netns", "exec", self.ns, "/usr/bin/python3", "-c", script],
            capture_output=True, text=True, timeout=30)
        self.assertEqual(r.stdout.strip(), "over tcp", r.stderr)
        self.assertEqual(self.metric("weft_cluster_upstream_cx_total", cluster="echo"), 1)
        # Unknown destination with DROP_ALL: refused and counted; nothing reaches the app.
        r = self.curl("http://%s:%d/hello.txt" % (self.HOST_IP, self.APP_PORT))
        self.assertNotIn("hello", r.stdout)
        self.assertEqual(self.metric("weft_listener_downstream_cx_refused_total",
                                     listener="outbound"), 1)
        # An HTTP chain's destination port, but a Host no virtual host names: 404 (DROP_ALL).
        r = self.curl("http://%s:%d/hello.txt" % (self.HOST_IP, self.OTHER_PORT))
        self.assertTrue(r.stdout.endswith("404"), "unrouted Host under DROP_ALL: expected 404, "
                        "got %r %r" % (r.stdout, r.stderr))
        self.assertEqual(self.metric("weft_listener_no_route_total",
                                     listener="outbound/http-8080"), 1)
        self.assertEqual(self.metric("weft_cluster_upstream_rq_total", cluster="passthrough"), 0)

    def test_allow_all_passes_unrouted_http_requests_to_their_destination(self):
        self.start_proxy(self.config("ALLOW_ALL"))
        self.intercept()
        for extra in ("", "--http2-prior-knowledge"):
            r = self.curl("http://%s:%d/hello.txt" % (self.HOST_IP, self.OTHER_PORT), extra)
            self.assertEqual(r.stdout, "hello from the app\n200",
                             "unrouted Host under ALLOW_ALL (curl %s): expected the request "
                             "forwarded to its original destination; got %r %r"
                             % (extra or "HTTP/1.1", r.stdout, r.stderr))
        self.assertEqual(self.metric("weft_cluster_upstream_rq_total", cluster="passthrough"), 2)
        self.assertEqual(self.metric("weft_listener_downstream_rq_total",
                                     listener="outbound/http-8080"), 2)
        self.assertEqual(self.metric("weft_listener_no_route_total",
                                     listener="outbound/http-8080"), 0)
        # A Host a virtual host names is still routed to its cluster.
        r = self.curl("http://svc.mesh.local:8080/hello.txt")
        self.assertEqual(r.stdout, "hello from the app\n200", r.stderr)
        self.assertEqual(self.metric("weft_cluster_upstream_rq_total", cluster="app"), 1)
        self.assertEqual(self.metric("weft_cluster_upstream_rq_total", cluster="passthrough"), 2)

    def test_allow_all_passes_unknown_destinations_through(self):
        self.start_proxy(self.config("ALLOW_ALL"))
        self.intercept()
        r = self.curl("http://%s:%d/hello.txt" % (self.HOST_IP, self.APP_PORT))
        self.assertEqual(r.stdout, "hello from the app\n200", r.stderr)
        self.assertEqual(self.metric("weft_cluster_upstream_cx_total", cluster="passthrough"), 1)
        self.assertEqual(self.metric("weft_listener_downstream_cx_total",
                                     listener="outbound/passthrough"), 1)

    def test_inbound_hands_redirected_traffic_to_the_app_port(self):
        cfg = {"node": "it", "admin": {"address": "127.0.0.1", "port": 9901}, "drain_time": "1s",
               "listeners": [{"name": "inbound", "address": "0.0.0.0", "port": 15001,
                              "interception": {"direction": "INBOUND"}}]}
        self.start_proxy(cfg)
        # Stand-in for the PREROUTING rule of a real host: local connections to the app port go
        # to the inbound listener (the proxy's own connection to the app is exempt).
        self.sh("iptables -t nat -A OUTPUT -p tcp --dport %d -m owner ! --uid-owner 1337 "
                "-j REDIRECT --to-ports 15001" % self.APP_PORT)
        r = self.curl("http://%s:%d/hello.txt" % (self.HOST_IP, self.APP_PORT))
        self.assertEqual(r.stdout, "hello from the app\n200", r.stderr)
        self.assertEqual(self.metric("weft_listener_downstream_cx_total",
                                     listener="inbound/passthrough"), 1)

    def test_connection_that_was_not_redirected_is_refused(self):
        self.start_proxy(self.config("ALLOW_ALL"))
        r = self.sh("curl -s -m 5 http://127.0.0.1:15001/", check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(self.metric("weft_listener_downstream_cx_refused_total",
                                     listener="outbound"), 1)


if __name__ == "__main__":
    unittest.main()
