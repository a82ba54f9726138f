"""Resilience through the real proxy: retries (on status, connect failure, per-try timeout, with a
body), the circuit breaker's request limit, outlier ejection and active health checks."""

import http.server
import json
import socket
import threading
import unittest
import urllib.error
import urllib.request

from harness import Backend, Proxy, admin_cfg, cluster, listener, route_to, wait_until


class StatusBackend(http.server.ThreadingHTTPServer):
    """Answers every request with `status` (and /health with `health_status`); counts requests."""

    daemon_threads = True

    def __init__(self, status=503, health_status=200):
        self.status = status
        self.health_status = health_status
        self.hits = 0
        self.health_hits = 0
        lock = threading.Lock()
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                n = int(self.headers.get("Content-Length") or 0)
                if n:
                    self.rfile.read(n)
                with lock:
                    if self.path == "/health":
                        outer.health_hits += 1
                    else:
                        outer.hits += 1
                code = outer.health_status if self.path == "/health" else outer.status
                body = b"status %d\n" % code
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

        super().__init__(("127.0.0.1", 0), H)
        self.port = self.server_address[1]
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def close(self):
        self.shutdown()
        self.server_close()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def get(url, data=None, headers=None, timeout=20):
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class ResilienceTest(unittest.TestCase):
    def setUp(self):
        self.good = Backend("good")
        self.addCleanup(self.good.close)

    def start(self, ports, retry=None, **cluster_extra):
        action = {}
        if retry is not None:
            action["retry_policy"] = retry
        cfg = {"node": "it", "admin": admin_cfg(), "drain_time": "2s",
               "listeners": [listener("main", [route_to("svc", **action)])],
               "clusters": [cluster("svc", ports, **cluster_extra)]}
        p = Proxy(cfg).start()
        self.addCleanup(p.stop)
        return p

    def test_server_error_is_retried_on_another_endpoint(self):
        bad = StatusBackend(503)
        self.addCleanup(bad.close)
        p = self.start([bad.port, self.good.port],
                       retry={"max_retries": 2, "http_retry_events": ["server-error"]})
        for i in range(6):
            status, body = get(p.url("/r%d" % i))
            self.assertEqual(status, 200, "request %d: %r" % (i, body))
        # Each attempt on the bad endpoint was followed by exactly one retry, on the good one.
        self.assertGreaterEqual(bad.hits, 1)
        self.assertEqual(p.metric("weft_cluster_upstream_rq_retry_total", cluster="svc"), bad.hits)
        self.assertEqual(p.metric("weft_cluster_upstream_rq_retry_success_total", cluster="svc"),
                         bad.hits)

    def test_without_a_policy_errors_reach_the_client(self):
        bad = StatusBackend(503)
        self.addCleanup(bad.close)
        p = self.start([bad.port, self.good.port])
        statuses = sorted(get(p.url("/x"))[0] for _ in range(4))
        self.assertEqual(statuses, [200, 200, 503, 503])
        self.assertEqual(p.metric("weft_cluster_upstream_rq_retry_total", cluster="svc"), 0)

    def test_connect_failure_is_retried_with_the_request_body(self):
        p = self.start([free_port(), self.good.port],
                       retry={"max_retries": 1, "tcp_retry_events": ["connection-error"]})
        for i in range(4):
            status, body = get(p.url("/post%d" % i), data=b"payload-%d" % i)
            self.assertEqual(status, 200, body)
        posted = [r for r in self.good.requests if r["path"].startswith("/post")]
        self.assertEqual(sorted(r["body"] for r in posted),
                         ["payload-%d" % i for i in range(4)],
                         "every body reached the good backend exactly once")

    def test_retries_stop_at_max_retries(self):
        bad = StatusBackend(502)
        self.addCleanup(bad.close)
        p = self.start([bad.port], retry={"max_retries": 2, "http_retry_events": ["gateway-error"]})
        status, _ = get(p.url("/x"))
        self.assertEqual(status, 502)
        self.assertEqual(bad.hits, 3, "the first attempt and two retries")

    def test_per_try_timeout_moves_to_the_next_endpoint(self):
        # A listener that never answers: connects succeed (backlog), responses never come.
        hole = socket.socket()
        hole.bind(("127.0.0.1", 0))
        hole.listen(64)
        self.addCleanup(hole.close)
        p = self.start([hole.getsockname()[1], self.good.port],
                       retry={"max_retries": 1, "per_try_timeout": "0.3s",
                              "http_retry_events": ["gateway-error"]})
        for i in range(4):
            status, body = get(p.url("/t%d" % i))
            self.assertEqual(status, 200, body)
        retries = p.metric("weft_cluster_upstream_rq_retry_total", cluster="svc")
        self.assertGreaterEqual(retries, 1)
        self.assertEqual(p.metric("weft_cluster_upstream_rq_timeout_total", cluster="svc"), retries,
                         "each retry followed a per-try timeout")

    def test_request_limit_overflows_with_503_that_says_so(self):
        p = self.start([self.good.port], max_requests=1)
        held = threading.Thread(target=get, args=(p.url("/held"),),
                                kwargs={"headers": {"x-backend-gate": "hold"}})
        held.start()
        self.addCleanup(held.join, 30)
        self.addCleanup(self.good.release, "hold")
        wait_until(lambda: p.metric("weft_cluster_upstream_rq_active", cluster="svc") == 1,
                   what="the first request to be in flight")
        status, body = get(p.url("/second"))
        self.assertEqual(status, 503)
        self.assertIn(b"max_requests", body)
        self.assertEqual(p.metric("weft_cluster_upstream_rq_overflow_total", cluster="svc"), 1)

    def test_outlier_detection_ejects_the_failing_endpoint(self):
        bad = StatusBackend(500)
        self.addCleanup(bad.close)
        p = self.start([bad.port, self.good.port],
                       outlier_detection={"max_server_errors": 2, "interval": "1s",
                                          "base_ejection_duration": "30s",
                                          "max_ejection_percent": 50})
        statuses = [get(p.url("/o%d" % i))[0] for i in range(12)]
        self.assertEqual(statuses.count(500), 2, "ejected after 2 consecutive 5xx: %r" % statuses)
        self.assertEqual(p.metric(
            "weft_cluster_outlier_detection_ejections_enforced_total", cluster="svc"), 1)
        status, text = p.admin("/clusters")
        self.assertEqual(status, 200)
        self.assertIn("svc::127.0.0.1:%d::outlier_ejected::1/1\n" % bad.port, text)
        self.assertIn("svc::127.0.0.1:%d::outlier_ejected::0/1\n" % self.good.port, text)

    def test_clusters_shows_on_how_many_workers_an_endpoint_is_ejected(self):
        # Ejection is per worker: with 2 workers the failing endpoint is ejected on those that
        # sent it 2 requests, shown as n of 2 in /clusters, and comes back after 2 s.
        bad = StatusBackend(500)
        self.addCleanup(bad.close)
        cfg = {"node": "it", "admin": admin_cfg(), "drain_time": "2s",
               "listeners": [listener("main", [route_to("svc")])],
               "clusters": [cluster("svc", [bad.port, self.good.port],
                                    outlier_detection={"max_server_errors": 2, "interval": "1s",
                                                       "base_ejection_duration": "2s",
                                                       "max_ejection_percent": 50})]}
        p = Proxy(cfg, concurrency=2).start()
        self.addCleanup(p.stop)
        bad_addr, good_addr = "127.0.0.1:%d" % bad.port, "127.0.0.1:%d" % self.good.port

        def ejected_on():
            status, text = p.admin("/clusters?format=json")
            self.assertEqual(status, 200, text)
            doc = json.loads(text)
            self.assertEqual(doc["workers"], 2, text)
            return {h["address"]: h["outlier_ejected_workers"] for c in doc["clusters"]
                    for h in c["hosts"]}

        self.assertEqual(ejected_on(), {bad_addr: 0, good_addr: 0})
        sent = 0
        while not ejected_on()[bad_addr] and sent < 200:
            get(p.url("/e%d" % sent))
            sent += 1
        hosts = ejected_on()
        self.assertIn(hosts[bad_addr], (1, 2), "ejected on 1 or 2 of the 2 workers: %r" % hosts)
        self.assertEqual(hosts[good_addr], 0, hosts)
        self.assertEqual(p.metric("weft_cluster_outlier_detection_ejections_active",
                                  cluster="svc"), hosts[bad_addr],
                         "the gauge sums the same per-worker ejections")
        status, text = p.admin("/clusters")
        self.assertIn("svc::%s::outlier_ejected::%d/2\n" % (bad_addr, hosts[bad_addr]), text)
        # Back in service at the first sweep after its 2 s ejection, on every worker.
        wait_until(lambda: ejected_on()[bad_addr] == 0, what="the endpoint back on every worker")

    def test_active_health_check_takes_unhealthy_endpoints_out(self):
        sick = StatusBackend(status=200, health_status=503)
        self.addCleanup(sick.close)
        healthy = StatusBackend(status=200, health_status=200)
        self.addCleanup(healthy.close)
        p = self.start([sick.port, healthy.port],
                       health_check={"protocol": "HTTP", "path": "/health", "interval": "5s",
                                     "timeout": "2s", "healthy_threshold": 2,
                                     "unhealthy_threshold": 2})
        wait_until(lambda: sick.health_hits >= 1 and healthy.health_hits >= 1,
                   what="both endpoints probed")
        wait_until(lambda: p.metric("weft_cluster_membership_healthy", cluster="svc") == 1,
                   what="one healthy endpoint")
        for i in range(6):
            self.assertEqual(get(p.url("/h%d" % i))[0], 200)
        self.assertEqual(sick.hits, 0, "no request went to the endpoint failing its health check")
        self.assertEqual(healthy.hits, 6)
        self.assertGreaterEqual(
            p.metric("weft_cluster_health_check_failure_total", cluster="svc"), 1)

    def test_grpc_health_check_uses_the_grpc_health_protocol(self):
        import grpc  # Debian's python3-grpcio
        from concurrent import futures

        def health_server(serving):
            answer = b"\x08\x01" if serving else b"\x08\x02"
            asked = []

            def check(request, context):
                asked.append(request)
                return answer

            handler = grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
                "Check": grpc.unary_unary_rpc_method_handler(
                    check, request_deserializer=lambda b: b, response_serializer=lambda b: b)})
            server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
            server.add_generic_rpc_handlers((handler,))
            port = server.add_insecure_port("127.0.0.1:0")
            server.start()
            self.addCleanup(server.stop, None)
            return port, asked

        up_port, up_asked = health_server(True)
        down_port, down_asked = health_server(False)
        p = self.start([up_port, down_port],
                       health_check={"protocol": "GRPC", "path": "shop.Cart", "interval": "5s",
                                     "timeout": "2s", "healthy_threshold": 2,
                                     "unhealthy_threshold": 2})
        wait_until(lambda: up_asked and down_asked, what="both gRPC servers asked")
        wait_until(lambda: p.metric("weft_cluster_membership_healthy", cluster="svc") == 1,
                   what="one healthy endpoint (SERVING) and one not (NOT_SERVING)")
        self.assertEqual(up_asked[0], b"\x0a\x09shop.Cart", "HealthCheckRequest{service}")
        status, text = p.admin("/clusters?format=json")
        self.assertEqual(status, 200)
        hosts = {h["address"]: h["health"] for c in json.loads(text)["clusters"]
                 for h in c["hosts"]}
        self.assertEqual(hosts["127.0.0.1:%d" % down_port], "unhealthy", text)
        self.assertEqual(hosts["127.0.0.1:%d" % up_port], "healthy", text)

    def test_invalid_policies_are_rejected_with_the_field(self):
        import json
        import os
        import subprocess
        import tempfile
        from harness import proxy_binary
        cfg = {"node": "it", "admin": admin_cfg(),
               "listeners": [listener("main", [route_to(
                   "svc", retry_policy={"max_retries": 1, "http_retry_events": ["teapot"]})])],
               "clusters": [cluster("svc", [self.good.port],
                                    health_check={"protocol": "HTTP", "interval": "1s"})]}
        d = tempfile.mkdtemp()
        path = os.path.join(d, "c.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        r = subprocess.run([proxy_binary(), "--validate", path], capture_output=True, text=True,
                           timeout=30)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("retry_policy", r.stderr)
        self.assertIn("teapot", r.stderr)
        self.assertIn("clusters[0].health_check.interval", r.stderr)
        self.assertIn("clusters[0].health_check.path", r.stderr)


if __name__ == "__main__":
    unittest.main()
