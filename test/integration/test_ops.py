"""Operating weft-proxy: admin endpoints, access logs, reload (SIGHUP), drain (SIGTERM), load
(wrk), several workers, and the CLI."""

import http.client
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest

import harness as h


class AdminTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.certs = h.Certs()
        cls.addClassCleanup(cls.certs.close)
        cls.backend = h.Backend("admin")
        cls.addClassCleanup(cls.backend.close)
        cfg = h.simple_config(cls.backend.port)
        cfg["node"] = "it/admin-node"
        cfg["listeners"].append(h.listener("secure", [h.route_to("backend")], tls={
            "mode": "STRICT", "certificate": {
                "certificate_chain_file": cls.certs.pem("server"),
                "private_key_file": cls.certs.key("server")}}))
        cls.proxy = h.Proxy(cfg, name="admin")
        cls.addClassCleanup(cls.proxy.stop)
        cls.proxy.start()

    def test_ready(self):
        status, body = self.proxy.admin("/ready")
        self.assertEqual((status, body.strip()), (200, "LIVE"), "/ready on a live proxy")

    def test_server_info(self):
        status, body = self.proxy.admin("/server_info")
        self.assertEqual(status, 200)
        info = json.loads(body)
        self.assertEqual(info.get("state"), "LIVE", "/server_info state: %r" % info)
        self.assertEqual(info.get("node"), "it/admin-node")
        self.assertEqual(info.get("concurrency"), 1)

    def test_prometheus_counts_requests(self):
        before = self.proxy.metric("weft_listener_downstream_rq_total", listener="main")
        before_2xx = self.proxy.metric("weft_listener_downstream_rq_xx_total", listener="main",
                                       response_code_class="2xx")
        n = 5
        for i in range(n):
            r = h.curl("http://127.0.0.1:%d/count/%d" % (self.proxy.port("main"), i))
            self.assertEqual(r.status, 200)
        text = self.proxy.metrics()
        after = h.metric_value(text, "weft_listener_downstream_rq_total", listener="main")
        self.assertEqual(after - before, n, "weft_listener_downstream_rq_total{listener=main} "
                         "should grow by %d, grew by %d" % (n, after - before))
        after_2xx = h.metric_value(text, "weft_listener_downstream_rq_xx_total", listener="main",
                                   response_code_class="2xx")
        self.assertEqual(after_2xx - before_2xx, n, "2xx counter")
        self.assertIn("# TYPE weft_listener_downstream_rq_total counter", text)
        # Histogram lines: buckets with le, a +Inf bucket equal to _count, and _sum.
        samples = h.parse_prometheus(text)
        buckets = [(lb, v) for name, lb, v in samples
                   if name == "weft_listener_downstream_rq_time_bucket"
                   and lb.get("listener") == "main"]
        self.assertTrue(buckets, "no weft_listener_downstream_rq_time_bucket lines")
        inf = [v for lb, v in buckets if lb.get("le") == "+Inf"]
        count = h.metric_value(text, "weft_listener_downstream_rq_time_count", listener="main")
        self.assertEqual(inf, [count], "+Inf bucket should equal _count")
        self.assertGreaterEqual(count, n)
        values = [v for _, v in buckets]
        self.assertEqual(values, sorted(values), "histogram buckets must be cumulative")
        self.assertIn("weft_listener_downstream_rq_time_sum{", text)
        self.assertGreaterEqual(
            h.metric_value(text, "weft_cluster_upstream_rq_total", cluster="backend"), n)

    def test_stats_json_and_text(self):
        status, body = self.proxy.admin("/stats?format=json")
        self.assertEqual(status, 200)
        json.loads(body)  # must be valid JSON
        status, body = self.proxy.admin("/stats")
        self.assertEqual(status, 200)
        self.assertIn("weft_listener_downstream_rq_total", body)

    def test_clusters_lists_endpoints(self):
        status, body = self.proxy.admin("/clusters")
        self.assertEqual(status, 200)
        self.assertIn("backend::127.0.0.1:%d" % self.backend.port, body,
                      "/clusters should list the endpoint; got:\n%s" % body)
        status, body = self.proxy.admin("/clusters?format=json")
        data = json.loads(body)
        addrs = [hh["address"] for c in data["clusters"] for hh in c["hosts"]]
        self.assertIn("127.0.0.1:%d" % self.backend.port, addrs)

    def test_config_dump_redacts_keys(self):
        status, body = self.proxy.admin("/config_dump")
        self.assertEqual(status, 200)
        dump = json.loads(body)
        self.assertNotIn(self.certs.key("server"), body,
                         "/config_dump must not show the private key path")
        self.assertIn("[redacted]", body, "private_key_file should read [redacted]")
        self.assertIn(self.certs.pem("server"), body, "the certificate path is not secret")
        self.assertEqual(dump.get("node"), "it/admin-node")

    def test_unknown_admin_path_and_method(self):
        status, _ = self.proxy.admin("/nope")
        self.assertEqual(status, 404)
        c = http.client.HTTPConnection("127.0.0.1", self.proxy.admin_port, timeout=5)
        try:
            c.request("POST", "/stats", body=b"")
            self.assertEqual(c.getresponse().status, 405, "admin is read-only")
        finally:
            c.close()


class AccessLogTest(unittest.TestCase):
    def test_text_and_json_logs(self):
        backend = h.Backend("al")
        self.addCleanup(backend.close)
        logdir = tempfile.mkdtemp(prefix="weft-it-logs-")
        self.addCleanup(shutil.rmtree, logdir, True)
        text_log = os.path.join(logdir, "access.log")
        json_log = os.path.join(logdir, "access.json")
        default_log = os.path.join(logdir, "default.log")
        cfg = {
            "admin": h.admin_cfg(),
            "listeners": [h.listener("main", [
                h.route_to("backend", prefix="/logged"),
                {"match": {"path": "/direct"}, "direct_response": {"status": 202, "body": "d"}},
            ], access_logs=[
                {"path": text_log,
                 "text_format": "%RESPONSE_CODE% %REQ(:METHOD)% %REQ(:PATH)% %UPSTREAM_CLUSTER%\n"},
                {"path": json_log, "json_format": {"fields": {
                    "status": "%RESPONSE_CODE%", "path": "%REQ(:PATH)%",
                    "method": "%REQ(:METHOD)%", "rid": "%REQ(X-REQUEST-ID)%",
                    "tenant": "%REQ(X-TENANT)%", "ctype": "%RESP(CONTENT-TYPE)%"}}},
                {"path": default_log},
            ])],
            "clusters": [h.cluster("backend", [backend.port])],
        }
        with h.Proxy(cfg, name="accesslog") as proxy:
            port = proxy.port()
            sent = [("GET", "/logged/a", 200), ("POST", "/logged/b", 200),
                    ("GET", "/direct", 202), ("GET", "/unrouted", 404)]
            for method, path, exp in sent:
                r = h.curl("http://127.0.0.1:%d%s" % (port, path), "-X", method,
                           "-H", "x-request-id: rid-%s" % path.strip("/").replace("/", "-"),
                           "-H", "x-tenant: t-%s" % method.lower())
                self.assertEqual(r.status, exp, "%s %s: expected %d, got %r"
                                 % (method, path, exp, r))

            def lines(path):
                try:
                    with open(path) as f:
                        ls = [l for l in f.read().splitlines() if l.strip()]
                except FileNotFoundError:
                    return None
                return ls if len(ls) >= len(sent) else None

            text_lines = h.wait_until(lambda: lines(text_log), 10,
                                      what="%d lines in the text access log" % len(sent))
            self.assertEqual(text_lines, ["200 GET /logged/a backend", "200 POST /logged/b backend",
                                          "202 GET /direct -", "404 GET /unrouted -"],
                             "text access log lines")

            json_lines = h.wait_until(lambda: lines(json_log), 10,
                                      what="%d lines in the JSON access log" % len(sent))
            entries = []
            for l in json_lines:
                try:
                    entries.append(json.loads(l))
                except ValueError:
                    self.fail("JSON access log line is not JSON: %r" % l)
            got = [(str(e.get("status")), e.get("method"), e.get("path")) for e in entries]
            self.assertEqual(got, [(str(s), m, p) for m, p, s in sent], "JSON access log entries")
            self.assertEqual(entries[0].get("rid"), "rid-logged-a")
            # Any request header and upstream response header a format names is printed.
            self.assertEqual(entries[0].get("tenant"), "t-get",
                             "%%REQ(X-TENANT)%% should print the request header; got %r" % entries[0])
            self.assertEqual(entries[1].get("tenant"), "t-post")
            self.assertTrue(entries[0].get("ctype"),
                            "%%RESP(CONTENT-TYPE)%% should print the backend's content-type; got %r"
                            % entries[0])

            default_lines = h.wait_until(lambda: lines(default_log), 10,
                                         what="lines in the default-format access log")
            for (method, path, status), line in zip(sent, default_lines):
                self.assertIn(path, line, "default format line should show the path")
                self.assertIn(" %d " % status, line, "default format line should show the "
                              "status: %r" % line)


RELOAD_YAML = """
admin: {address: 127.0.0.1, port: 0}
listeners:
  - name: main
    address: 127.0.0.1
    port: 0
    route_config:
      virtual_hosts:
        - name: all
          domains: ["*"]
          routes:
            - match: {path: /version}
              direct_response: {status: 200, body: "%s"}
            - match: {prefix: /}
              route: {clusters: [{name: backend}]}
clusters:
  - name: backend
    endpoints: [{address: 127.0.0.1, port: %d}]
"""


class ReloadTest(unittest.TestCase):
    def test_sighup_reload(self):
        backend = h.Backend("reload")
        self.addCleanup(backend.close)
        proxy = h.Proxy(RELOAD_YAML % ("one", backend.port), name="reload")
        self.addCleanup(proxy.stop)
        proxy.start()
        port = proxy.port("main")

        conn = h.connect(port)
        self.addCleanup(conn.close)
        rd = h.SockReader(conn)

        def ask(path="/version"):
            conn.sendall(b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % path.encode())
            return rd.read_response()

        self.assertEqual(ask().body.strip(), b"one", "before reload")
        proxy.reload(RELOAD_YAML % ("two", backend.port))
        self.assertEqual(h.curl("http://127.0.0.1:%d/version" % port).body.strip(), b"two",
                         "a new connection after the reload gets the new route")
        resp = ask()
        self.assertEqual(resp.status, 200, "the keep-alive connection opened before the reload "
                         "should still work; got %r" % resp)
        self.assertEqual(resp.body.strip(), b"two",
                         "the next request on the old connection uses the new routes")
        self.assertEqual(ask("/proxied").json()["path"], "/proxied")
        self.assertEqual(proxy.port("main"), port, "the listener keeps its port across reloads")

        # Invalid: a syntax error, then a rule violation. Both refused, old config serves.
        for bad in ("listeners: [ {name: main, port: }\n  - oops: [",
                    RELOAD_YAML.replace("name: backend}", "name: nowhere}") % ("three",
                                                                                backend.port)):
            proxy.reload(bad, expect_ok=False)
            self.assertTrue(proxy.running(), "an invalid config must not stop the proxy")
            self.assertEqual(h.curl("http://127.0.0.1:%d/version" % port).body.strip(), b"two",
                             "after a refused reload the old config keeps serving")
            self.assertEqual(ask().body.strip(), b"two", "old connection after refused reload")
        self.assertEqual(proxy.metric("weft_server_config_update_rejected_total"), 2)
        self.assertEqual(proxy.metric("weft_server_config_update_success_total"), 1)


class DrainTest(unittest.TestCase):
    def test_sigterm_drains(self):
        backend = h.Backend("drain")
        self.addCleanup(backend.close)
        cfg = h.simple_config(backend.port)
        cfg["drain_time"] = "20s"
        proxy = h.Proxy(cfg, name="drain")
        self.addCleanup(proxy.stop)
        proxy.start()
        port = proxy.port()

        result = {}

        def slow():
            try:
                (resp,), _ = h.send_raw(port, b"GET /slow HTTP/1.1\r\nHost: a\r\n"
                                        b"x-backend-gate: drain\r\n\r\n", timeout=30)
                result["resp"] = resp
            except Exception as e:  # noqa: BLE001 - reported below
                result["error"] = e

        t = threading.Thread(target=slow)
        t.start()
        try:
            h.wait_until(lambda: backend.active == 1, 10, what="the slow request at the backend")
            proxy.signal(signal.SIGTERM)
            h.wait_until(lambda: h.port_refuses(port), 10,
                         what="the listener to refuse new connections after SIGTERM")
            status, body = proxy.admin("/server_info")
            self.assertEqual(json.loads(body).get("state"), "DRAINING",
                             "/server_info while draining: %s" % body)
            self.assertEqual(proxy.admin("/ready")[0], 503, "/ready while draining")
            self.assertTrue(proxy.running(), "the proxy must wait for the in-flight request")
        finally:
            backend.release("drain")
            t.join(30)
        self.assertNotIn("error", result, "in-flight request failed during drain: %r" % result)
        resp = result["resp"]
        self.assertEqual(resp.status, 200, "the in-flight request should finish with 200: %r"
                         % resp)
        self.assertEqual((resp.header("connection") or "").lower(), "close",
                         "a response sent while draining closes the connection")
        code = proxy.wait_exit(10)
        self.assertEqual(code, 0, "exit code after drain; log:\n" + proxy.log_text())

    def test_sigterm_idle_exits_promptly(self):
        # Three rounds: an exit-time crash with an idle keep-alive connection open showed up in
        # about half of the runs once, so one round alone would miss it too often.
        backend = h.Backend("drain-idle")
        self.addCleanup(backend.close)
        for round_ in range(3):
            proxy = h.Proxy(h.simple_config(backend.port), name="drain-idle")
            self.addCleanup(proxy.stop)
            proxy.start()
            # An idle keep-alive connection must not hold the drain up.
            conn = h.connect(proxy.port())
            self.addCleanup(conn.close)
            conn.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            h.SockReader(conn).read_response()
            t0 = time.monotonic()
            proxy.signal(signal.SIGTERM)
            code = proxy.wait_exit(4)
            self.assertEqual(code, 0, "round %d: exit code after SIGTERM with an idle keep-alive "
                             "connection (negative = killed by that signal); log:\n%s"
                             % (round_, proxy.log_text()))
            self.assertLess(time.monotonic() - t0, 3, "an idle proxy should exit well before "
                            "drain_time (5s)")

    def test_sigterm_with_access_log_drains_and_flushes(self):
        # Regression: the access-log writer thread once started before the signals were blocked,
        # so SIGTERM could land on it and kill the process instead of draining it.
        backend = h.Backend("drain-log")
        self.addCleanup(backend.close)
        logdir = tempfile.mkdtemp(prefix="weft-it-drainlog-")
        self.addCleanup(shutil.rmtree, logdir, True)
        log_path = os.path.join(logdir, "access.log")
        for round_ in range(3):
            cfg = h.simple_config(backend.port,
                                  access_logs=[{"path": log_path,
                                                "text_format": "%REQ(:PATH)% %RESPONSE_CODE%\n"}])
            proxy = h.Proxy(cfg, name="drain-log")
            self.addCleanup(proxy.stop)
            proxy.start()
            path = "/logged-before-exit-%d" % round_
            self.assertEqual(h.curl(proxy.url(path)).status, 200)
            proxy.signal(signal.SIGTERM)
            code = proxy.wait_exit(5)
            self.assertEqual(code, 0, "round %d: SIGTERM with an access log should drain and exit 0"
                             " (negative = killed by the signal); log:\n%s"
                             % (round_, proxy.log_text()))
            with open(log_path) as f:
                text = f.read()
            self.assertIn(path + " 200", text, "the access log should be flushed before exit; "
                          "file holds:\n" + text)


class LoadTest(unittest.TestCase):
    def run_wrk(self, concurrency):
        if not shutil.which("wrk"):
            self.skipTest("wrk is not installed (apt-get install wrk)")
        backend = h.Backend("wrk")
        self.addCleanup(backend.close)
        proxy = h.Proxy(h.simple_config(backend.port), concurrency=concurrency,
                        name="wrk%d" % concurrency)
        self.addCleanup(proxy.stop)
        proxy.start()
        res = h.wrk(proxy.url("/bench"), connections=8, duration="2s")
        self.assertEqual(res["rc"], 0, "wrk failed:\n" + res["output"])
        self.assertEqual(res["socket_errors"], 0, "wrk socket errors:\n" + res["output"])
        self.assertEqual(res["non_2xx"], 0, "wrk non-2xx responses:\n" + res["output"])
        self.assertGreater(res["requests"], 100, "wrk made too few requests:\n" + res["output"])
        rq = proxy.metric("weft_listener_downstream_rq_total", listener="main")
        self.assertGreaterEqual(rq, res["requests"], "proxy counted fewer requests than wrk did")
        return proxy, res

    def test_wrk_burst(self):
        self.run_wrk(1)

    def test_concurrency_2(self):
        proxy, _ = self.run_wrk(2)
        info = json.loads(proxy.admin("/server_info")[1])
        self.assertEqual(info.get("concurrency"), 2, "/server_info concurrency: %r" % info)
        self.assertEqual(proxy.metric("weft_server_concurrency"), 2)
        # Many fresh connections in parallel are spread over both workers and all succeed.
        statuses = []
        lock = threading.Lock()

        def one(i):
            r = h.curl(proxy.url("/par/%d" % i))
            with lock:
                statuses.append(r.status)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        self.assertEqual(statuses, [200] * 16, "16 parallel requests with 2 workers")


class DnsClusterTest(unittest.TestCase):
    """A DNS cluster: the endpoint is a name resolved asynchronously (c-ares; /etc/hosts first)."""

    def test_dns_endpoint_resolves_and_serves(self):
        backend = h.Backend("dns")
        self.addCleanup(backend.close)
        cfg = h.simple_config(backend.port)
        cfg["clusters"] = [{"name": "backend", "type": "DNS",
                            "endpoints": [{"address": "localhost", "port": backend.port}]}]
        proxy = h.Proxy(cfg, name="dns")
        self.addCleanup(proxy.stop)
        proxy.start()
        # Until the first answer the cluster has no hosts (503); then requests flow.
        h.wait_until(lambda: h.curl(proxy.url("/dns")).status == 200, 10,
                     what="a request through the DNS cluster to succeed")
        status, body = proxy.admin("/clusters")
        self.assertIn("backend::127.0.0.1:%d" % backend.port, body,
                      "/clusters should list the resolved address of localhost; got:\n" + body)
        self.assertIn("hostname::localhost", body,
                      "/clusters should name the host the address came from; got:\n" + body)
        self.assertEqual(proxy.metric("weft_cluster_membership_endpoints", cluster="backend"), 1)


class CliTest(unittest.TestCase):
    def run_cli(self, *args):
        return subprocess.run([h.proxy_binary()] + list(args), capture_output=True, text=True,
                              timeout=10)

    def test_help(self):
        r = self.run_cli("--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("--config", r.stdout)

    def test_validate(self):
        d = tempfile.mkdtemp(prefix="weft-it-cli-")
        self.addCleanup(shutil.rmtree, d, True)
        good = os.path.join(d, "good.json")
        with open(good, "w") as f:
            json.dump(h.simple_config(8080), f)
        r = self.run_cli("--validate", good)
        self.assertEqual(r.returncode, 0, "valid config: %s %s" % (r.stdout, r.stderr))
        bad = os.path.join(d, "bad.yaml")
        with open(bad, "w") as f:
            f.write("admin: {port: 0}\nlisteners:\n  - name: x\n    prot: 80\n")
        r = self.run_cli("--validate", bad)
        self.assertEqual(r.returncode, 1, "invalid config should exit 1")
        self.assertIn("prot", r.stderr, "the message should name the bad field: %s" % r.stderr)
        self.assertIn("port", r.stderr, "and suggest the right one: %s" % r.stderr)
        # A bad regex is refused by --validate exactly as the running proxy would refuse it.
        cfg = h.simple_config(8080)
        cfg["listeners"][0]["route_config"]["virtual_hosts"][0]["routes"][0]["match"] = {
            "regex": "("}
        bad_regex = os.path.join(d, "bad_regex.json")
        with open(bad_regex, "w") as f:
            json.dump(cfg, f)
        r = self.run_cli("--validate", bad_regex)
        self.assertEqual(r.returncode, 1, "an invalid regex should fail --validate")
        self.assertIn("match.regex", r.stderr, "the message should name the field: %s" % r.stderr)

    def test_bad_config_refuses_to_start(self):
        proxy = h.Proxy({"admin": h.admin_cfg(), "listeners": [h.listener(
            "main", [h.route_to("missing")])]}, name="badstart")
        self.addCleanup(proxy.stop)
        with self.assertRaises(h.ProxyError) as cm:
            proxy.start(timeout=5)
        self.assertIn("missing", str(cm.exception), "start error should name the bad cluster")


if __name__ == "__main__":
    unittest.main()
