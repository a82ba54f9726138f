"""The registry learns from the proxies (issue 6, docs/registry.md "Instances from proxies"): a
real weft-proxy sidecar of a virtual node with awsCloudMap discovery auto-registers its app in
`weft server`'s Cloud Map, reports the app's health from its own health checks, and is
deregistered when it drains; a caller's compiled config follows.

Topology (all on 127.0.0.1): a Cloud Map HTTP namespace apps.local with service web (custom
health); virtual node web (listener on the app's port, HTTP health check /health, awsCloudMap
apps.local/web); its sidecar (weft-proxy --app-address 127.0.0.1); the app is the harness's echo
backend. Virtual node caller has virtual service web.svc (provider web) as a backend.

The sidecar binds the compiled inbound/outbound listeners (0.0.0.0:15000 and :15001), so this
module must not run beside another test that binds them.
"""

import json
import os
import shutil
import signal
import socket
import tempfile
import time
import unittest

from control_harness import ControlServer, wait_until
from harness import Backend, Proxy

MESH = "m"
WEB = "mesh/%s/virtualNode/web" % MESH
CALLER = "mesh/%s/virtualNode/caller" % MESH
STALE_AFTER_S = 3


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class RegistryFeedTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="weft-feed-")
        cls.stream_port = free_port()
        cls.server = ControlServer(extra_args=[
            "--stream", "127.0.0.1:%d" % cls.stream_port,
            "--proxy-stale-after", "%ds" % STALE_AFTER_S])
        cls.server.start()
        cls.app = Backend("web")
        sd = cls.sd_client()
        op = sd.create_http_namespace(Name="apps.local")["OperationId"]
        ns = sd.get_operation(OperationId=op)["Operation"]["Targets"]["NAMESPACE"]
        cls.service_id = sd.create_service(
            Name="web", NamespaceId=ns,
            HealthCheckCustomConfig={"FailureThreshold": 1})["Service"]["Id"]
        am = cls.server.appmesh_client()
        am.create_mesh(meshName=MESH)
        am.create_virtual_node(meshName=MESH, virtualNodeName="web", spec={
            "listeners": [{
                "portMapping": {"port": cls.app.port, "protocol": "http"},
                "healthCheck": {"protocol": "http", "path": "/health", "intervalMillis": 5000,
                                "timeoutMillis": 2000, "healthyThreshold": 2,
                                "unhealthyThreshold": 2}}],
            "serviceDiscovery": {"awsCloudMap": {
                "namespaceName": "apps.local", "serviceName": "web",
                "attributes": [{"key": "stage", "value": "blue"}]}}})
        am.create_virtual_service(meshName=MESH, virtualServiceName="web.svc", spec={
            "provider": {"virtualNode": {"virtualNodeName": "web"}}})
        am.create_virtual_node(meshName=MESH, virtualNodeName="caller", spec={
            "listeners": [{"portMapping": {"port": free_port(), "protocol": "http"}}],
            "serviceDiscovery": {"dns": {"hostname": "127.0.0.1"}},
            "backends": [{"virtualService": {"virtualServiceName": "web.svc"}}]})
        cls.proxy = None

    @classmethod
    def tearDownClass(cls):
        if cls.proxy:
            cls.proxy.stop()
        cls.server.close()
        cls.app.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    # ---- helpers

    @classmethod
    def sd_client(cls):
        from botocore.config import Config
        # DiscoverInstances goes to data-<host> unless the prefix is off (docs/registry.md).
        return cls.server._boto_session().client(
            "servicediscovery", endpoint_url=cls.server.endpoint,
            config=Config(inject_host_prefix=False, retries={"total_max_attempts": 1}))

    def start_sidecar(self, name):
        p = self.server.weft("token", "create", "--resource", WEB)
        self.assertEqual(p.returncode, 0, p.stderr)
        token_file = os.path.join(self.tmp, name + ".token")
        with open(token_file, "w") as f:
            f.write(p.stdout.strip() + "\n")
        args = ["--control-plane", "127.0.0.1:%d" % self.stream_port, "--resource", WEB,
                "--token-file", token_file,
                "--ca-file", os.path.join(self.server.data_dir, "ca-bundle.pem"),
                "--admin", "127.0.0.1:0", "--state-dir", os.path.join(self.tmp, name),
                "--host", "sidecar-" + name, "--app-address", "127.0.0.1",
                "--log-level", "debug"]
        proxy = Proxy(None, name=name, args=args).start(timeout=20)
        type(self).proxy = proxy
        return proxy

    def discover(self, health="ALL"):
        return self.sd_client().discover_instances(
            NamespaceName="apps.local", ServiceName="web", HealthStatus=health)["Instances"]

    def health_of(self, instance_id):
        st = self.sd_client().get_instances_health_status(ServiceId=self.service_id)["Status"]
        return st.get(instance_id)

    def caller_endpoints(self):
        p = self.server.weft("describe", "proxy-config", "--resource", CALLER)
        self.assertEqual(p.returncode, 0, p.stderr)
        config = json.loads(p.stdout)
        out = []
        for c in config.get("clusters", []):
            if c["name"].startswith("cds_egress_%s_web_" % MESH):
                out += ["%s:%s" % (e["address"], e["port"]) for e in c.get("endpoints", [])]
        return out

    def logs(self):
        return "\nsidecar log:\n%s\nserver log:\n%s" % (
            self.proxy.log_text() if self.proxy else "-", self.server.log()[-6000:])

    def start_caller(self):
        p = self.server.weft("token", "create", "--resource", CALLER)
        self.assertEqual(p.returncode, 0, p.stderr)
        token_file = os.path.join(self.tmp, "caller.token")
        with open(token_file, "w") as f:
            f.write(p.stdout.strip() + "\n")
        args = ["--control-plane", "127.0.0.1:%d" % self.stream_port, "--resource", CALLER,
                "--token-file", token_file,
                "--ca-file", os.path.join(self.server.data_dir, "ca-bundle.pem"),
                "--admin", "127.0.0.1:0", "--state-dir", os.path.join(self.tmp, "caller"),
                "--host", "caller"]
        proxy = Proxy(None, name="caller", args=args).start(timeout=20)
        type(self).proxy = proxy
        return proxy

    def running_endpoints(self, proxy):
        """The web cluster's hosts in the running proxy (its admin /clusters), sorted."""
        out = []
        for line in proxy.admin("/clusters")[1].splitlines():
            parts = line.split("::")
            if (len(parts) == 4 and parts[0].startswith("cds_egress_%s_web_" % MESH)
                    and parts[2] == "health_flags"):
                out.append(parts[1])
        return sorted(out)

    # ---- the tests (each one lifecycle, in order; one proxy at a time: they bind 15000/15001)

    def test_caller_follows_registry_changes_within_a_second(self):
        """Instance and health changes made through the Cloud Map API reach a running caller
        proxy's load balancer (not only its compiled config) within a second each."""
        sd = self.sd_client()
        port = free_port()
        caller = self.start_caller()
        deadline_s = 1.0
        measured = []

        def change_then_wait(what, change, want):
            t0 = time.monotonic()
            change()
            got = wait_until(lambda: self.running_endpoints(caller) == want or None,
                             10, interval=0.01,
                             what="%s in the running caller: want %s, has %s%s" % (
                                 what, want, self.running_endpoints(caller), self.logs()))
            elapsed = time.monotonic() - t0
            measured.append((what, elapsed))
            self.assertTrue(got)
            self.assertLessEqual(elapsed, deadline_s,
                                 "%s took %.3f s to reach the running caller (want <= %.1f s)"
                                 % (what, elapsed, deadline_s))

        attrs = {"AWS_INSTANCE_IPV4": "127.0.0.1", "AWS_INSTANCE_PORT": str(port),
                 "stage": "blue"}
        ep = "127.0.0.1:%d" % port
        ep2 = "127.0.0.2:%d" % port
        try:
            change_then_wait("a registered instance", lambda: sd.register_instance(
                ServiceId=self.service_id, InstanceId="user-1", Attributes=attrs), [ep])
            change_then_wait("a second instance", lambda: sd.register_instance(
                ServiceId=self.service_id, InstanceId="user-2",
                Attributes=dict(attrs, AWS_INSTANCE_IPV4="127.0.0.2")), [ep, ep2])
            change_then_wait("user-1 UNHEALTHY", lambda: sd.update_instance_custom_health_status(
                ServiceId=self.service_id, InstanceId="user-1", Status="UNHEALTHY"), [ep2])
            change_then_wait("user-1 HEALTHY again",
                             lambda: sd.update_instance_custom_health_status(
                                 ServiceId=self.service_id, InstanceId="user-1",
                                 Status="HEALTHY"), [ep, ep2])
            change_then_wait("user-2 deregistered", lambda: sd.deregister_instance(
                ServiceId=self.service_id, InstanceId="user-2"), [ep])
            print("registry change -> running caller: " + ", ".join(
                "%s %.0f ms" % (w, e * 1000) for w, e in measured))
        finally:
            for iid in ("user-1", "user-2"):
                try:
                    sd.deregister_instance(ServiceId=self.service_id, InstanceId=iid)
                except Exception:  # noqa: BLE001 - already gone
                    pass
            caller.stop()
            type(self).proxy = None


    def test_sidecar_registers_reports_health_and_deregisters(self):
        sidecar = self.start_sidecar("a")
        want_id = "sidecar-a-127.0.0.1"
        want_endpoint = "127.0.0.1:%d" % self.app.port

        # 1. Auto-registration: DiscoverInstances shows it with the proxy's address and port.
        found = wait_until(lambda: [i for i in self.discover() if i["InstanceId"] == want_id],
                           20, what="the sidecar's instance in DiscoverInstances" + self.logs())
        attrs = found[0]["Attributes"]
        self.assertEqual(attrs.get("AWS_INSTANCE_IPV4"), "127.0.0.1", found)
        self.assertEqual(attrs.get("AWS_INSTANCE_PORT"), str(self.app.port), found)
        self.assertEqual(attrs.get("stage"), "blue", found)
        self.assertEqual(attrs.get("weft:auto"), "1", found)
        wait_until(lambda: self.health_of(want_id) == "HEALTHY", 20,
                   what="the instance HEALTHY (the app answers its health check)" + self.logs())

        # 2. The caller's config gets that endpoint.
        wait_until(lambda: want_endpoint in self.caller_endpoints(), 10,
                   what="%s in the caller's compiled config" % want_endpoint + self.logs())

        # 3. The app goes down: the sidecar's health check fails, the instance turns UNHEALTHY
        #    (2 failed checks 5 s apart) and the caller loses the endpoint.
        self.app.close()
        wait_until(lambda: self.health_of(want_id) == "UNHEALTHY", 30,
                   what="the instance UNHEALTHY after the app stopped" + self.logs())
        self.assertEqual([i["InstanceId"] for i in self.discover("HEALTHY")], [])
        wait_until(lambda: want_endpoint not in self.caller_endpoints(), 10,
                   what="the endpoint gone from the caller's config" + self.logs())

        # 4. SIGTERM: the sidecar drains, says goodbye, the instance is deregistered at once
        #    (well before the stale timeout would act).
        sidecar.signal(signal.SIGTERM)
        wait_until(lambda: not [i for i in self.discover() if i["InstanceId"] == want_id],
                   STALE_AFTER_S + 1, what="the instance deregistered after SIGTERM" + self.logs())
        sidecar.wait_exit(20)
        type(self).proxy = None

    def test_z_lost_sidecar_is_deregistered_after_twice_stale_after(self):
        sidecar = self.start_sidecar("b")
        want_id = "sidecar-b-127.0.0.1"
        wait_until(lambda: [i for i in self.discover() if i["InstanceId"] == want_id], 20,
                   what="the second sidecar registered" + self.logs())
        sidecar.kill()  # no goodbye: the stream is lost, the instance stays for a while
        self.assertTrue([i for i in self.discover() if i["InstanceId"] == want_id],
                        "a lost (not drained) sidecar's instance must not go at once")
        wait_until(lambda: not [i for i in self.discover() if i["InstanceId"] == want_id],
                   STALE_AFTER_S * 2 + 5,
                   what="the lost sidecar's instance deregistered after 2 x stale" + self.logs())
        type(self).proxy = None

if __name__ == "__main__":
    unittest.main()
