"""Routing, load balancing and upstream failures."""

import collections
import http.client
import json
import threading
import time
import unittest

import harness as h

API = "api.example.test"


def get(port, path, host=API, headers=None, method="GET", body=None, conn=None, timeout=10):
    """One request with http.client; returns (status, headers dict lower-case, body bytes)."""
    own = conn is None
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        hdrs = {"Host": host}
        hdrs.update(headers or {})
        c.request(method, path, body=body, headers=hdrs)
        r = c.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        if own:
            c.close()


class RoutingTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.a = h.Backend("A")
        cls.addClassCleanup(cls.a.close)
        cls.b = h.Backend("B")
        cls.addClassCleanup(cls.b.close)
        cls.c = h.Backend("C")  # only the overflow cluster uses it
        cls.addClassCleanup(cls.c.close)
        refused = h.free_port_refusing()
        routes = [
            {"name": "direct", "match": {"path": "/direct"},
             "direct_response": {"status": 200, "body": "hello from weft\n"}},
            {"name": "teapot", "match": {"path": "/teapot"},
             "direct_response": {"status": 503, "body": "maintenance"}},
            {"name": "rewrite", "match": {"prefix": "/old/"},
             "route": {"clusters": [{"name": "a"}], "prefix_rewrite": "/new/"}},
            {"name": "hostrw", "match": {"prefix": "/hostrw"},
             "route": {"clusters": [{"name": "a"}], "host_rewrite": "rewritten.internal"}},
            {"name": "canary", "priority": 0,
             "match": {"prefix": "/hdr", "headers": [{"name": "x-canary", "exact": "1"}]},
             "route": {"clusters": [{"name": "b"}]}},
            {"name": "hdr-default", "priority": 5, "match": {"prefix": "/hdr"},
             "route": {"clusters": [{"name": "a"}]}},
            {"name": "post-only", "match": {"path": "/method", "method": "POST"},
             "route": {"clusters": [{"name": "b"}]}},
            {"name": "any-method", "match": {"path": "/method"},
             "route": {"clusters": [{"name": "a"}]}},
            {"name": "query", "match": {"path": "/q", "query_parameters":
                                        [{"name": "v", "exact": "2"}]},
             "route": {"clusters": [{"name": "b"}]}},
            {"name": "regex", "match": {"regex": "/items/[0-9]+"},
             "route": {"clusters": [{"name": "b"}]}},
            {"name": "split", "match": {"prefix": "/split"},
             "route": {"clusters": [{"name": "a", "weight": 80}, {"name": "b", "weight": 20}]}},
            {"name": "rr", "match": {"prefix": "/rr"}, "route": {"clusters": [{"name": "rr"}]}},
            {"name": "lr", "match": {"prefix": "/lr"}, "route": {"clusters": [{"name": "lr"}]}},
            {"name": "refused", "match": {"prefix": "/refused"},
             "route": {"clusters": [{"name": "refused"}]}},
            {"name": "timeout", "match": {"prefix": "/slow"},
             "route": {"clusters": [{"name": "a"}], "timeout": "1s"}},
            {"name": "overflow", "match": {"prefix": "/overflow"},
             "route": {"clusters": [{"name": "overflow"}]}},
            {"name": "fail", "match": {"prefix": "/fail"}, "route": {"clusters": [{"name": "a"}]}},
        ]
        cfg = {
            "admin": h.admin_cfg(),
            "listeners": [{
                "name": "main", "address": "127.0.0.1", "port": 0,
                "route_config": {"virtual_hosts": [
                    {"name": "api", "domains": [API, "*.wild.test"], "routes": routes},
                    {"name": "other", "domains": ["other.test"],
                     "routes": [{"match": {"prefix": "/"},
                                 "direct_response": {"status": 200, "body": "other vhost"}}]},
                ]},
            }],
            "clusters": [
                h.cluster("a", [cls.a.port]),
                h.cluster("b", [cls.b.port]),
                h.cluster("rr", [cls.a.port, cls.b.port], lb_policy="ROUND_ROBIN"),
                h.cluster("lr", [cls.a.port, cls.b.port], lb_policy="LEAST_REQUEST"),
                h.cluster("refused", [refused], connect_timeout="2s"),
                h.cluster("overflow", [cls.c.port], max_connections=1, max_pending_requests=1),
            ],
        }
        cls.proxy = h.Proxy(cfg, name="routing")
        cls.addClassCleanup(cls.proxy.stop)
        cls.proxy.start()
        cls.port = cls.proxy.port("main")

    def expect(self, status, path, exp_status, what):
        self.assertEqual(status, exp_status, "%s (%s): expected %d, got %d"
                         % (what, path, exp_status, status))

    def echo(self, data):
        try:
            return json.loads(data)
        except ValueError:
            self.fail("expected the backend's JSON echo, got %r" % data[:300])

    # ---------------------------------------------------------------------------------------

    def test_no_route_404(self):
        s, hd, body = get(self.port, "/nothing-here")
        self.expect(s, "/nothing-here", 404, "path matching no route")
        self.assertEqual(hd.get("server"), "weft")
        s, _, _ = get(self.port, "/direct", host="unknown.test")
        self.expect(s, "/direct", 404, "Host matching no virtual host")
        before = self.proxy.metric("weft_listener_no_route_total", listener="main")
        get(self.port, "/nothing-here")
        after = self.proxy.metric("weft_listener_no_route_total", listener="main")
        self.assertEqual(after, before + 1, "no_route counter: expected %d, got %d"
                         % (before + 1, after))

    def test_virtual_hosts(self):
        s, _, body = get(self.port, "/anything", host="other.test")
        self.expect(s, "/anything", 200, "other vhost")
        self.assertIn(b"other vhost", body)
        s, _, body = get(self.port, "/direct", host="API.Example.Test:8080")
        self.expect(s, "/direct", 200, "Host is case-insensitive and its port ignored")
        s, _, body = get(self.port, "/direct", host="x.y.wild.test")
        self.expect(s, "/direct", 200, "suffix wildcard domain")

    def test_direct_response(self):
        r = h.curl("http://127.0.0.1:%d/direct" % self.port, "-H", "Host: " + API)
        self.assertEqual(r.status, 200, "direct_response status: %r" % r)
        self.assertEqual(r.body, b"hello from weft\n", "direct_response body")
        s, _, body = get(self.port, "/teapot")
        self.expect(s, "/teapot", 503, "direct_response with status 503")
        self.assertIn(b"maintenance", body)

    def test_prefix_rewrite(self):
        s, _, data = get(self.port, "/old/users?id=7")
        self.expect(s, "/old/users?id=7", 200, "prefix_rewrite route")
        self.assertEqual(self.echo(data)["path"], "/new/users?id=7",
                         "backend should see the rewritten path with the query kept")

    def test_host_rewrite(self):
        s, _, data = get(self.port, "/hostrw/x")
        self.expect(s, "/hostrw/x", 200, "host_rewrite route")
        e = self.echo(data)
        self.assertEqual(e["h"].get("host"), "rewritten.internal",
                         "backend Host should be rewritten, got %r" % e["h"].get("host"))
        s, _, data = get(self.port, "/fail/plain-host")
        self.assertEqual(self.echo(data)["h"].get("host"), API,
                         "without host_rewrite the client's Host is kept")

    def test_header_matcher_and_priority(self):
        s, _, data = get(self.port, "/hdr/x", headers={"x-canary": "1"})
        self.assertEqual(self.echo(data)["backend"], "B", "x-canary: 1 goes to the canary route")
        s, _, data = get(self.port, "/hdr/x", headers={"x-canary": "2"})
        self.assertEqual(self.echo(data)["backend"], "A", "x-canary: 2 falls through")
        s, _, data = get(self.port, "/hdr/x")
        self.assertEqual(self.echo(data)["backend"], "A", "no x-canary falls through")

    def test_method_query_regex(self):
        s, _, data = get(self.port, "/method", method="POST", body=b"x")
        self.assertEqual(self.echo(data)["backend"], "B", "POST /method -> post-only route")
        s, _, data = get(self.port, "/method")
        self.assertEqual(self.echo(data)["backend"], "A", "GET /method -> any-method route")
        s, _, data = get(self.port, "/q?a=1&v=2")
        self.assertEqual(self.echo(data)["backend"], "B", "query v=2 matches")
        s, _, _ = get(self.port, "/q?v=3")
        self.expect(s, "/q?v=3", 404, "query v=3 matches no route")
        s, _, data = get(self.port, "/items/42")
        self.assertEqual(self.echo(data)["backend"], "B", "regex /items/[0-9]+")
        s, _, _ = get(self.port, "/items/42x")
        self.expect(s, "/items/42x", 404, "regex must match the whole path")

    def test_weighted_split(self):
        n = 200
        counts = collections.Counter()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            for i in range(n):
                s, _, data = get(self.port, "/split/%d" % i, conn=conn)
                self.expect(s, "/split", 200, "weighted route")
                counts[self.echo(data)["backend"]] += 1
        finally:
            conn.close()
        # 80/20 over 200: mean 160, sd ~5.7; [130, 190] is more than 5 sd either way.
        self.assertTrue(130 <= counts["A"] <= 190,
                        "weights 80/20 over %d requests: expected A in [130, 190], got %r"
                        % (n, dict(counts)))
        self.assertEqual(counts["A"] + counts["B"], n)

    def _spread(self, prefix, n):
        counts = collections.Counter()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            for i in range(n):
                s, _, data = get(self.port, "%s/%d" % (prefix, i), conn=conn)
                self.expect(s, prefix, 200, "load-balanced route")
                counts[self.echo(data)["backend"]] += 1
        finally:
            conn.close()
        return counts

    def test_round_robin(self):
        counts = self._spread("/rr", 10)
        self.assertEqual(dict(counts), {"A": 5, "B": 5},
                         "round robin over 2 endpoints, 10 sequential requests: expected 5/5, "
                         "got %r" % dict(counts))

    def test_least_request(self):
        counts = self._spread("/lr", 30)
        self.assertTrue(counts["A"] > 0 and counts["B"] > 0,
                        "least request over 2 idle endpoints should use both, got %r"
                        % dict(counts))

    def test_least_request_prefers_idle_host(self):
        # Hold one request on A; while it is in flight every new request should go to B
        # (power of two choices over two hosts always compares both).
        t = threading.Thread(target=get, args=(self.port, "/lr/held"),
                             kwargs={"headers": {"x-backend-gate": "lr-hold"}, "timeout": 30})
        t.start()
        try:
            h.wait_until(lambda: self.a.find(lambda r: r["path"] == "/lr/held") or
                         self.b.find(lambda r: r["path"] == "/lr/held"), 10,
                         what="the held request to reach a backend")
            held_on = "A" if self.a.find(lambda r: r["path"] == "/lr/held") else "B"
            counts = self._spread("/lr/while-held", 10)
            other = "B" if held_on == "A" else "A"
            self.assertEqual(counts[other], 10,
                             "with one request in flight on %s, least request should send all "
                             "10 new requests to %s; got %r" % (held_on, other, dict(counts)))
        finally:
            self.a.release("lr-hold")
            self.b.release("lr-hold")
            t.join(30)

    # ---------------------------------------------------------------------------------------
    # upstream failures

    def test_connect_refused_503(self):
        before = self.proxy.metric("weft_cluster_upstream_cx_connect_fail_total", cluster="refused")
        s, hd, body = get(self.port, "/refused")
        self.expect(s, "/refused", 503, "upstream connection refused")
        self.assertEqual(hd.get("server"), "weft")
        after = self.proxy.metric("weft_cluster_upstream_cx_connect_fail_total", cluster="refused")
        self.assertGreater(after, before, "connect_fail counter should grow (%d -> %d)"
                           % (before, after))

    def test_backend_closes_without_response_502(self):
        s, _, _ = get(self.port, "/fail/close", headers={"x-backend-close": "1"})
        self.expect(s, "/fail/close", 502, "backend closed without a response")
        s, _, _ = get(self.port, "/fail/ok")
        self.expect(s, "/fail/ok", 200, "next request after an upstream reset")

    def test_backend_invalid_response_502(self):
        s, _, _ = get(self.port, "/fail/garbage", headers={"x-backend-garbage": "1"})
        self.expect(s, "/fail/garbage", 502, "backend answered something that is not HTTP")

    def test_route_timeout_504(self):
        before = self.proxy.metric("weft_listener_downstream_rq_timeout_total", listener="main")
        t0 = time.monotonic()
        try:
            s, hd, _ = get(self.port, "/slow/x", headers={"x-backend-gate": "slow-never"},
                           timeout=15)
        finally:
            self.a.release("slow-never")
        elapsed = time.monotonic() - t0
        self.expect(s, "/slow/x", 504, "backend slower than the route timeout (1s)")
        self.assertTrue(0.9 <= elapsed < 5, "504 should come after ~1s (route timeout), came "
                        "after %.2fs" % elapsed)
        after = self.proxy.metric("weft_listener_downstream_rq_timeout_total", listener="main")
        self.assertEqual(after, before + 1, "rq_timeout counter: expected %d, got %d"
                         % (before + 1, after))

    def test_upstream_status_passed_through(self):
        for code in (201, 404, 500, 503):
            s, _, _ = get(self.port, "/fail/status", headers={"x-backend-status": str(code)})
            self.expect(s, "/fail/status", code, "upstream status passes through")

    def test_pool_overflow_503(self):
        # max_connections 1, max_pending_requests 1: one request holds the only connection, a
        # second waits in the queue, a third overflows.
        results = {}

        def run(key):
            results[key] = get(self.port, "/overflow/" + key,
                               headers={"x-backend-gate": "ovf"}, timeout=30)[0]

        t1 = threading.Thread(target=run, args=("first",))
        t1.start()
        t2 = None
        try:
            h.wait_until(lambda: self.c.active == 1, 10, what="the first request to hold C")
            t2 = threading.Thread(target=run, args=("second",))
            t2.start()
            h.wait_until(lambda: self.proxy.metric("weft_cluster_upstream_rq_pending_active",
                                                   cluster="overflow") == 1, 10,
                         what="the second request to be pending")
            before = self.proxy.metric("weft_cluster_upstream_rq_pending_overflow_total",
                                       cluster="overflow")
            s, _, body = get(self.port, "/overflow/third")
            self.expect(s, "/overflow/third", 503,
                        "third request with 1 connection busy and 1 pending")
            after = self.proxy.metric("weft_cluster_upstream_rq_pending_overflow_total",
                                      cluster="overflow")
            self.assertEqual(after, before + 1, "pending overflow counter: expected %d, got %d"
                             % (before + 1, after))
        finally:
            self.c.release("ovf")
            t1.join(30)
            if t2:
                t2.join(30)
        self.assertEqual(results, {"first": 200, "second": 200},
                         "the in-flight and the queued request should both complete with 200")


if __name__ == "__main__":
    unittest.main()
