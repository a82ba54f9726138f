"""`weft server`'s HTTP API driven by the real AWS CLI (/usr/bin/aws, Debian's awscli) and boto3
(Debian's python3-boto3): the App Mesh operations for every kind, pagination, delete order, bad
specs, tags, clientToken idempotency, SigV4 failures, the credentials API, and durability across
restarts.

Run by hand: cd test/integration && WEFT_BIN=../../build/bin/weft \
  /usr/bin/python3 -m unittest -v test_control_api
"""

import json
import os
import signal
import stat
import threading
import unittest
import warnings

from control_harness import ControlServer, raw_request

try:
    import boto3  # noqa: F401
    from botocore.exceptions import ClientError
    HAVE_BOTO3 = True
except ImportError:  # pragma: no cover - Debian's python3-boto3 is a test dependency
    HAVE_BOTO3 = False

NODE_SPEC = {
    "listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}],
    "serviceDiscovery": {"dns": {"hostname": "node-a.local"}},
}
ROUTER_SPEC = {"listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}]}
GATEWAY_SPEC = {"listeners": [{"portMapping": {"port": 8443, "protocol": "http"}}]}


def route_spec(node="node-a", weight=1):
    return {"httpRoute": {"match": {"prefix": "/"},
                          "action": {"weightedTargets": [{"virtualNode": node, "weight": weight}]}}}


def gateway_route_spec(service="svc.local"):
    return {"httpRoute": {"match": {"prefix": "/"},
                          "action": {"target": {"virtualService": {
                              "virtualServiceName": service}}}}}


def error_code(exc):
    return exc.response.get("Error", {}).get("Code")


@unittest.skipUnless(HAVE_BOTO3, "boto3 is not installed for this Python (Debian: python3-boto3)")
class ControlApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # botocore leaves its pooled keep-alive sockets to the garbage collector.
        warnings.simplefilter("ignore", ResourceWarning)
        cls.server = ControlServer().start()

    @classmethod
    def tearDownClass(cls):
        cls.server.close()

    def setUp(self):
        warnings.simplefilter("ignore", ResourceWarning)
        self.am = self.server.appmesh_client()

    def fail_with_log(self, msg):
        self.fail("%s\n---- server log (tail):\n%s" % (msg, self.server.log()[-4000:]))

    def assertClientError(self, code, fn, *args, **kwargs):
        try:
            out = fn(*args, **kwargs)
        except ClientError as e:
            self.assertEqual(error_code(e), code,
                             "expected %s, got %s: %s" % (code, error_code(e), e))
            return e
        self.fail_with_log("expected %s, but the call succeeded: %r" % (code, out))

    # ---- first start

    def test_first_start_writes_private_credentials(self):
        mode = stat.S_IMODE(os.stat(self.server.data_dir).st_mode)
        self.assertEqual(mode, 0o700, "data dir mode: expected 0700, got %o" % mode)
        mode = stat.S_IMODE(os.stat(self.server.credentials_file).st_mode)
        self.assertEqual(mode, 0o600, "admin-credentials mode: expected 0600, got %o" % mode)
        with open(self.server.credentials_file) as f:
            text = f.read()
        self.assertIn("[weft]\naws_access_key_id = WKIA", text)
        self.assertIn("aws_secret_access_key = ", text)
        # The region comes from DATA_DIR/aws-config when AWS_CONFIG_FILE points at it.
        env = self.server.env(AWS_CONFIG_FILE=os.path.join(self.server.data_dir, "aws-config"))
        del env["AWS_DEFAULT_REGION"]
        rc, out, err = self.server.aws("appmesh", "list-meshes", env=env)
        self.assertEqual(rc, 0, "list-meshes with the generated aws-config failed: " + err)

    # ---- the AWS CLI

    def test_cli_mesh_lifecycle(self):
        s = self.server
        rc, out, err = s.aws("appmesh", "create-mesh", "--mesh-name", "cli-mesh",
                             "--tags", "key=team,value=blue")
        self.assertEqual(rc, 0, "create-mesh failed: " + err)
        mesh = out["mesh"]
        self.assertEqual(mesh["meshName"], "cli-mesh")
        self.assertEqual(mesh["metadata"]["version"], 1)
        self.assertEqual(mesh["status"]["status"], "ACTIVE")
        self.assertRegex(mesh["metadata"]["arn"],
                         r"^arn:aws:appmesh:us-west-2:\d{12}:mesh/cli-mesh$")

        rc, out, err = s.aws("appmesh", "update-mesh", "--mesh-name", "cli-mesh", "--spec",
                             json.dumps({"egressFilter": {"type": "ALLOW_ALL"}}))
        self.assertEqual(rc, 0, "update-mesh failed: " + err)
        self.assertEqual(out["mesh"]["metadata"]["version"], 2)
        self.assertEqual(out["mesh"]["spec"]["egressFilter"]["type"], "ALLOW_ALL")

        rc, out, err = s.aws("appmesh", "describe-mesh", "--mesh-name", "cli-mesh")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out["mesh"]["metadata"]["version"], 2)
        self.assertEqual(out["mesh"]["metadata"]["uid"], mesh["metadata"]["uid"])

        rc, out, err = s.aws("appmesh", "list-meshes")
        self.assertEqual(rc, 0, err)
        self.assertIn("cli-mesh", [m["meshName"] for m in out["meshes"]])

        rc, out, err = s.aws("appmesh", "delete-mesh", "--mesh-name", "cli-mesh")
        self.assertEqual(rc, 0, "delete-mesh failed: " + err)
        self.assertEqual(out["mesh"]["status"]["status"], "DELETED")
        rc, out, err = s.aws("appmesh", "describe-mesh", "--mesh-name", "cli-mesh")
        self.assertNotEqual(rc, 0, "describe after delete must fail")
        self.assertIn("NotFoundException", err)

    def test_cli_prints_bad_request(self):
        s = self.server
        rc, _, err = s.aws("appmesh", "create-mesh", "--mesh-name", "bad-spec-mesh")
        self.assertEqual(rc, 0, err)
        bad = [
            ("port 70000", "create-virtual-node", "--virtual-node-name", "n1", "--spec",
             {"listeners": [{"portMapping": {"port": 70000, "protocol": "http"}}]}),
            ("protocol ftp", "create-virtual-node", "--virtual-node-name", "n2", "--spec",
             {"listeners": [{"portMapping": {"port": 80, "protocol": "ftp"}}]}),
            ("healthyThreshold 11", "create-virtual-node", "--virtual-node-name", "n3", "--spec",
             {"listeners": [{"portMapping": {"port": 80, "protocol": "http"},
                             "healthCheck": {"protocol": "http", "path": "/",
                                             "healthyThreshold": 11, "unhealthyThreshold": 2,
                                             "intervalMillis": 5000, "timeoutMillis": 2000}}]}),
        ]
        for what, op, name_flag, name, spec_flag, spec in bad:
            rc, out, err = s.aws("appmesh", op, "--mesh-name", "bad-spec-mesh", name_flag, name,
                                 spec_flag, json.dumps(spec))
            self.assertNotEqual(rc, 0, "%s: expected a failure, got %r" % (what, out))
            self.assertIn("BadRequestException", err, "%s: stderr was: %s" % (what, err))
        long_name = "m" * 256
        rc, out, err = s.aws("appmesh", "create-mesh", "--mesh-name", long_name)
        self.assertNotEqual(rc, 0, "a 256-character mesh name must be refused")
        self.assertIn("BadRequestException", err)

    def test_cli_pagination(self):
        s = self.server
        self.am.create_mesh(meshName="page-mesh")
        names = ["node-%02d" % i for i in range(5)]
        for n in names:
            self.am.create_virtual_node(meshName="page-mesh", virtualNodeName=n, spec=NODE_SPEC)
        # The CLI follows nextToken itself with --page-size.
        rc, out, err = s.aws("appmesh", "list-virtual-nodes", "--mesh-name", "page-mesh",
                             "--page-size", "2")
        self.assertEqual(rc, 0, err)
        self.assertEqual(sorted(v["virtualNodeName"] for v in out["virtualNodes"]), names)
        rc, out, err = s.aws("appmesh", "list-virtual-nodes", "--mesh-name", "page-mesh",
                             "--max-items", "3", "--page-size", "2")
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(out["virtualNodes"]), 3)
        self.assertIn("NextToken", out, "expected the CLI to hand back a NextToken: %r" % out)

    # ---- boto3: every kind

    def test_every_kind_create_describe_update_list_delete(self):
        am = self.am
        m = "kinds-mesh"
        am.create_mesh(meshName=m)
        vn = am.create_virtual_node(meshName=m, virtualNodeName="node-a", spec=NODE_SPEC)
        self.assertEqual(vn["virtualNode"]["metadata"]["version"], 1)
        am.create_virtual_router(meshName=m, virtualRouterName="router-a", spec=ROUTER_SPEC)
        am.create_route(meshName=m, virtualRouterName="router-a", routeName="route-a",
                        spec=route_spec())
        am.create_virtual_service(meshName=m, virtualServiceName="svc.local", spec={
            "provider": {"virtualRouter": {"virtualRouterName": "router-a"}}})
        am.create_virtual_gateway(meshName=m, virtualGatewayName="gw-a", spec=GATEWAY_SPEC)
        am.create_gateway_route(meshName=m, virtualGatewayName="gw-a", gatewayRouteName="gr-a",
                                spec=gateway_route_spec())

        kinds = [
            ("virtualNode", am.describe_virtual_node, am.update_virtual_node,
             am.list_virtual_nodes, "virtualNodes", {"virtualNodeName": "node-a"},
             {"listeners": [{"portMapping": {"port": 8081, "protocol": "http"}}],
              "serviceDiscovery": {"dns": {"hostname": "node-a.local"}}}, {}),
            ("virtualRouter", am.describe_virtual_router, am.update_virtual_router,
             am.list_virtual_routers, "virtualRouters", {"virtualRouterName": "router-a"},
             {"listeners": [{"portMapping": {"port": 8080, "protocol": "http2"}}]}, {}),
            ("route", am.describe_route, am.update_route, am.list_routes, "routes",
             {"virtualRouterName": "router-a", "routeName": "route-a"}, route_spec(weight=5),
             {"virtualRouterName": "router-a"}),
            ("virtualService", am.describe_virtual_service, am.update_virtual_service,
             am.list_virtual_services, "virtualServices", {"virtualServiceName": "svc.local"},
             {"provider": {"virtualNode": {"virtualNodeName": "node-a"}}}, {}),
            ("virtualGateway", am.describe_virtual_gateway, am.update_virtual_gateway,
             am.list_virtual_gateways, "virtualGateways", {"virtualGatewayName": "gw-a"},
             {"listeners": [{"portMapping": {"port": 9443, "protocol": "http"}}]}, {}),
            ("gatewayRoute", am.describe_gateway_route, am.update_gateway_route,
             am.list_gateway_routes, "gatewayRoutes",
             {"virtualGatewayName": "gw-a", "gatewayRouteName": "gr-a"},
             {"httpRoute": {"match": {"prefix": "/api"}, "action": {"target": {
                 "virtualService": {"virtualServiceName": "svc.local"}}}}},
             {"virtualGatewayName": "gw-a"}),
        ]
        for kind, describe, update, lister, list_key, ids, new_spec, list_ids in kinds:
            d = describe(meshName=m, **ids)[kind]
            self.assertEqual(d["metadata"]["version"], 1, kind)
            self.assertEqual(d["status"]["status"], "ACTIVE", kind)
            self.assertEqual(d["meshName"], m, kind)
            u = update(meshName=m, spec=new_spec, **ids)[kind]
            self.assertEqual(u["metadata"]["version"], 2, "%s: update must bump the version" % kind)
            self.assertEqual(u["metadata"]["uid"], d["metadata"]["uid"], kind)
            again = describe(meshName=m, **ids)[kind]
            self.assertEqual(again["metadata"]["version"], 2, kind)
            self.assertEqual(again["spec"], u["spec"], kind)
            listed = lister(meshName=m, **list_ids)[list_key]
            self.assertEqual(len(listed), 1, "%s list: %r" % (kind, listed))
            self.assertEqual(listed[0]["arn"], d["metadata"]["arn"], kind)
            self.assertEqual(listed[0]["version"], 2, kind)

        # Delete in a valid order.
        am.delete_gateway_route(meshName=m, virtualGatewayName="gw-a", gatewayRouteName="gr-a")
        am.delete_virtual_gateway(meshName=m, virtualGatewayName="gw-a")
        am.delete_virtual_service(meshName=m, virtualServiceName="svc.local")
        am.delete_route(meshName=m, virtualRouterName="router-a", routeName="route-a")
        am.delete_virtual_router(meshName=m, virtualRouterName="router-a")
        am.delete_virtual_node(meshName=m, virtualNodeName="node-a")
        am.delete_mesh(meshName=m)
        self.assertClientError("NotFoundException", am.describe_mesh, meshName=m)

    def test_delete_order_is_enforced(self):
        am = self.am
        m = "order-mesh"
        am.create_mesh(meshName=m)
        am.create_virtual_node(meshName=m, virtualNodeName="node-a", spec=NODE_SPEC)
        am.create_virtual_service(meshName=m, virtualServiceName="by-node.local", spec={
            "provider": {"virtualNode": {"virtualNodeName": "node-a"}}})
        am.create_virtual_router(meshName=m, virtualRouterName="router-a", spec=ROUTER_SPEC)
        am.create_route(meshName=m, virtualRouterName="router-a", routeName="route-a",
                        spec=route_spec())
        am.create_virtual_gateway(meshName=m, virtualGatewayName="gw-a", spec=GATEWAY_SPEC)
        am.create_gateway_route(meshName=m, virtualGatewayName="gw-a", gatewayRouteName="gr-a",
                                spec=gateway_route_spec("by-node.local"))

        self.assertClientError("ResourceInUseException", am.delete_mesh, meshName=m)
        self.assertClientError("ResourceInUseException", am.delete_virtual_node, meshName=m,
                               virtualNodeName="node-a")
        self.assertClientError("ResourceInUseException", am.delete_virtual_router, meshName=m,
                               virtualRouterName="router-a")
        self.assertClientError("ResourceInUseException", am.delete_virtual_gateway, meshName=m,
                               virtualGatewayName="gw-a")
        # A router that provides a service cannot go either, even without routes.
        am.delete_route(meshName=m, virtualRouterName="router-a", routeName="route-a")
        am.create_virtual_service(meshName=m, virtualServiceName="by-router.local", spec={
            "provider": {"virtualRouter": {"virtualRouterName": "router-a"}}})
        self.assertClientError("ResourceInUseException", am.delete_virtual_router, meshName=m,
                               virtualRouterName="router-a")
        # Nothing was deleted by the refused calls.
        am.describe_virtual_node(meshName=m, virtualNodeName="node-a")
        am.describe_virtual_gateway(meshName=m, virtualGatewayName="gw-a")

    def test_references_and_missing_resources(self):
        am = self.am
        m = "refs-mesh"
        am.create_mesh(meshName=m)
        am.create_virtual_router(meshName=m, virtualRouterName="router-a", spec=ROUTER_SPEC)
        try:
            am.create_route(meshName=m, virtualRouterName="router-a", routeName="to-nowhere",
                            spec=route_spec(node="no-such-node"))
            self.fail_with_log("a route to a virtual node that does not exist must be refused")
        except ClientError as e:
            self.assertIn(error_code(e), ("BadRequestException", "NotFoundException"), str(e))
        self.assertClientError("NotFoundException", am.describe_virtual_node, meshName=m,
                               virtualNodeName="missing")
        self.assertClientError("NotFoundException", am.create_virtual_node,
                               meshName="no-such-mesh", virtualNodeName="n", spec=NODE_SPEC)
        self.assertClientError("BadRequestException", am.create_route, meshName=m,
                               virtualRouterName="router-a", routeName="prio",
                               spec=dict(route_spec(), priority=1001))

    def test_pagination_with_limit_and_next_token(self):
        am = self.am
        am.create_mesh(meshName="boto-page-mesh")
        names = sorted("n%d" % i for i in range(7))
        for n in names:
            am.create_virtual_node(meshName="boto-page-mesh", virtualNodeName=n, spec=NODE_SPEC)
        seen, token, pages = [], None, 0
        while True:
            kwargs = {"meshName": "boto-page-mesh", "limit": 3}
            if token:
                kwargs["nextToken"] = token
            page = am.list_virtual_nodes(**kwargs)
            pages += 1
            self.assertLessEqual(len(page["virtualNodes"]), 3, "limit must be honoured")
            seen += [v["virtualNodeName"] for v in page["virtualNodes"]]
            token = page.get("nextToken")
            if not token:
                break
            self.assertLess(pages, 10, "pagination does not end")
        self.assertEqual(sorted(seen), names)
        self.assertEqual(len(seen), len(set(seen)), "no item may come twice: %r" % seen)
        self.assertGreaterEqual(pages, 3)
        self.assertClientError("BadRequestException", am.list_virtual_nodes,
                               meshName="boto-page-mesh", nextToken="not-a-token")

    def test_tags(self):
        am = self.am
        arn = am.create_mesh(meshName="tags-mesh",
                             tags=[{"key": "team", "value": "blue"}])["mesh"]["metadata"]["arn"]
        tags = am.list_tags_for_resource(resourceArn=arn)["tags"]
        self.assertEqual(tags, [{"key": "team", "value": "blue"}])
        am.tag_resource(resourceArn=arn, tags=[{"key": "env", "value": "test"}])
        tags = {t["key"]: t["value"] for t in am.list_tags_for_resource(resourceArn=arn)["tags"]}
        self.assertEqual(tags, {"team": "blue", "env": "test"})
        am.untag_resource(resourceArn=arn, tagKeys=["team"])
        tags = am.list_tags_for_resource(resourceArn=arn)["tags"]
        self.assertEqual(tags, [{"key": "env", "value": "test"}])
        self.assertClientError(
            "NotFoundException", am.list_tags_for_resource,
            resourceArn=arn.replace("mesh/tags-mesh", "mesh/no-such-mesh"))

    def test_client_token_makes_create_idempotent(self):
        am = self.am
        am.create_mesh(meshName="token-mesh")
        first = am.create_virtual_node(meshName="token-mesh", virtualNodeName="n",
                                       spec=NODE_SPEC, clientToken="token-1")["virtualNode"]
        again = am.create_virtual_node(meshName="token-mesh", virtualNodeName="n",
                                       spec=NODE_SPEC, clientToken="token-1")["virtualNode"]
        self.assertEqual(again["metadata"]["uid"], first["metadata"]["uid"])
        self.assertEqual(again["metadata"]["version"], 1)
        self.assertClientError("ConflictException", am.create_virtual_node,
                               meshName="token-mesh", virtualNodeName="n", spec=NODE_SPEC)

    def test_concurrent_updates_lose_nothing(self):
        am = self.am
        am.create_mesh(meshName="race-mesh")
        errors = []

        def worker(i):
            client = self.server.appmesh_client(retries=5)
            for j in range(5):
                kind = "ALLOW_ALL" if (i + j) % 2 else "DROP_ALL"
                try:
                    client.update_mesh(meshName="race-mesh",
                                       spec={"egressFilter": {"type": kind}})
                except Exception as e:  # noqa: BLE001 - reported below
                    errors.append(repr(e))

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        version = am.describe_mesh(meshName="race-mesh")["mesh"]["metadata"]["version"]
        self.assertEqual(version, 21, "20 updates from 4 writers after create: expected version "
                         "21, got %d" % version)

    # ---- authentication

    def test_bad_signatures_get_403(self):
        s = self.server
        key, secret = s.admin_key()
        # Through the AWS CLI: the error type is printed.
        cases = [
            ("wrong secret", {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret + "x"},
             "InvalidSignatureException"),
            ("unknown key", {"AWS_ACCESS_KEY_ID": "WKIANOSUCHKEY0000000",
                             "AWS_SECRET_ACCESS_KEY": secret}, "UnrecognizedClientException"),
        ]
        for what, extra, code in cases:
            env = s.env(**extra)
            del env["AWS_SHARED_CREDENTIALS_FILE"]
            rc, out, err = s.aws("appmesh", "list-meshes", profile=None, env=env)
            self.assertNotEqual(rc, 0, "%s: expected a failure, got %r" % (what, out))
            self.assertIn(code, err, "%s: stderr was %s" % (what, err))
        # Through boto3.
        bad = s.appmesh_client(key=key, secret="wrong")
        e = self.assertClientError("InvalidSignatureException", bad.list_meshes)
        self.assertEqual(e.response["ResponseMetadata"]["HTTPStatusCode"], 403)
        wrong_region = s.appmesh_client(region="eu-central-1")
        self.assertClientError("InvalidSignatureException", wrong_region.list_meshes)

        # Raw requests: unsigned, tampered after signing, signed for another service.
        from control_harness import raw_request
        status, headers, body = raw_request(s.port, "GET", "/v20190125/meshes",
                                            {"Host": "127.0.0.1"})
        self.assertEqual(status, 403, body)
        self.assertEqual(headers.get("x-amzn-errortype"), "MissingAuthenticationTokenException")

        def tamper(hdrs, body):
            return hdrs, body.replace(b"tamper-a", b"tamper-b")

        status, headers, body = s.signed_request(
            "PUT", "/v20190125/meshes", body=json.dumps({"meshName": "tamper-a"}),
            service="appmesh", tamper=tamper)
        self.assertEqual(status, 403, body)
        self.assertEqual(headers.get("x-amzn-errortype"), "InvalidSignatureException")
        self.assertClientError("NotFoundException", self.am.describe_mesh, meshName="tamper-b")

        status, headers, body = s.signed_request("GET", "/v20190125/meshes", service="weft")
        self.assertEqual(status, 403, body)
        self.assertEqual(headers.get("x-amzn-errortype"), "InvalidSignatureException")

        status, headers, body = s.signed_request("GET", "/no/such/path", service="appmesh")
        self.assertEqual(status, 404, body)

    def test_credentials_api(self):
        s = self.server
        status, _, body = s.signed_request("POST", "/weft/v1/credentials",
                                           body=json.dumps({"description": "ci"}))
        self.assertEqual(status, 200, body)
        new = json.loads(body)
        self.assertTrue(new["accessKeyId"].startswith("WKIA"), new)
        self.assertEqual(len(new["secretAccessKey"]), 40)

        # The new key works with boto3.
        other = s.appmesh_client(key=new["accessKeyId"], secret=new["secretAccessKey"])
        other.list_meshes()

        status, _, body = s.signed_request("GET", "/weft/v1/credentials")
        self.assertEqual(status, 200, body)
        listed = json.loads(body)["credentials"]
        ids = [k["accessKeyId"] for k in listed]
        self.assertIn(new["accessKeyId"], ids)
        self.assertIn(s.admin_key()[0], ids)
        self.assertNotIn(b"secretAccessKey", body, "list must never show secrets")
        self.assertNotIn(new["secretAccessKey"].encode(), body)

        status, _, body = s.signed_request("DELETE", "/weft/v1/credentials/" + new["accessKeyId"])
        self.assertEqual(status, 200, body)
        self.assertClientError("UnrecognizedClientException", other.list_meshes)

        # The last key cannot be deleted (it would lock everyone out).
        status, headers, body = s.signed_request(
            "DELETE", "/weft/v1/credentials/" + s.admin_key()[0])
        self.assertEqual(status, 409, body)
        self.assertEqual(headers.get("x-amzn-errortype"), "ConflictException")
        from control_harness import raw_request
        status, _, body = raw_request(s.port, "GET", "/weft/v1/credentials", {"Host": "x"})
        self.assertEqual(status, 403, body)


@unittest.skipUnless(HAVE_BOTO3, "boto3 is not installed for this Python (Debian: python3-boto3)")
class ControlDurabilityTest(unittest.TestCase):
    def setUp(self):
        warnings.simplefilter("ignore", ResourceWarning)

    def test_writes_survive_restart(self):
        with ControlServer() as s:
            am = s.appmesh_client()
            mesh = am.create_mesh(meshName="durable",
                                  tags=[{"key": "k", "value": "v"}])["mesh"]
            node = am.create_virtual_node(meshName="durable", virtualNodeName="n",
                                          spec=NODE_SPEC)["virtualNode"]
            am.update_virtual_node(meshName="durable", virtualNodeName="n", spec=NODE_SPEC)
            key = s.admin_key()
            with open(s.credentials_file) as f:
                creds_before = f.read()

            s.restart()
            self.assertIn("stopped", s.log(), "expected a clean stop logged")
            am = s.appmesh_client()
            self.assertEqual(s.admin_key(), key, "the admin key must not change on restart")
            with open(s.credentials_file) as f:
                self.assertEqual(f.read(), creds_before)
            m = am.describe_mesh(meshName="durable")["mesh"]
            self.assertEqual(m["metadata"]["uid"], mesh["metadata"]["uid"])
            self.assertEqual(m["metadata"]["arn"], mesh["metadata"]["arn"],
                             "the account id in ARNs must survive a restart")
            n = am.describe_virtual_node(meshName="durable", virtualNodeName="n")["virtualNode"]
            self.assertEqual(n["metadata"]["uid"], node["metadata"]["uid"])
            self.assertEqual(n["metadata"]["version"], 2)
            self.assertEqual(am.list_tags_for_resource(resourceArn=m["metadata"]["arn"])["tags"],
                             [{"key": "k", "value": "v"}])
            # And writes go on from there.
            n = am.update_virtual_node(meshName="durable", virtualNodeName="n",
                                       spec=NODE_SPEC)["virtualNode"]
            self.assertEqual(n["metadata"]["version"], 3)

            # SIGINT stops as cleanly as SIGTERM.
            self.assertEqual(s.stop(signal.SIGINT), 0, s.log())
            s.start()
            am = s.appmesh_client()
            self.assertEqual(am.describe_virtual_node(
                meshName="durable", virtualNodeName="n")["virtualNode"]["metadata"]["version"], 3)

    def test_account_id_and_region_flags(self):
        with ControlServer(region="eu-west-1", account_id="111122223333") as s:
            am = s.appmesh_client()
            arn = am.create_mesh(meshName="m")["mesh"]["metadata"]["arn"]
            self.assertEqual(arn, "arn:aws:appmesh:eu-west-1:111122223333:mesh/m")
            rc, out, err = s.aws("appmesh", "list-meshes")
            self.assertEqual(rc, 0, err)

    def test_different_account_id_is_refused_at_start(self):
        # Review item 6: a --account-id other than the stored one would break stored ARNs.
        with ControlServer(account_id="111122223333") as s:
            s.appmesh_client().create_mesh(meshName="m")
            self.assertEqual(s.stop(), 0, s.log())
            s.account_id = "444455556666"
            with self.assertRaises(AssertionError) as cm:
                s.start(timeout=10)
            msg = str(cm.exception)
            self.assertIn("444455556666", msg)
            self.assertIn("111122223333", msg)
            s.account_id = "111122223333"  # the stored id (or none) still starts
            s.start()
            arn = s.appmesh_client().describe_mesh(meshName="m")["mesh"]["metadata"]["arn"]
            self.assertIn(":111122223333:", arn)

    def test_ports_file_is_private(self):
        # Review item 13: the ports file is written 0600, as documented.
        with ControlServer() as s:
            mode = os.stat(s.ports_file).st_mode & 0o777
            self.assertEqual(mode, 0o600, "ports file mode %o, expected 600" % mode)

    def test_unauthenticated_body_is_not_read(self):
        # Review item 1: a head without a valid signature is answered 403 before its body is
        # read, however large a body it announces.
        import socket
        with ControlServer() as s:
            c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
            try:
                c.sendall(b"PUT /v20190125/meshes HTTP/1.1\r\nHost: x\r\n"
                          b"Content-Length: 8000000\r\n\r\n")
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = c.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                self.assertTrue(data.startswith(b"HTTP/1.1 403"), data[:200])
                self.assertIn(b"MissingAuthenticationTokenException", data)
            finally:
                c.close()
            # A signed head announcing a body over 1 MiB on an App Mesh path: 413 at once
            # (the body is not sent: the server answers before reading it).
            big = b"{" + b" " * (1 << 20) + b"}"

            def head_only(hdrs, body):
                hdrs = dict(hdrs)
                hdrs["Content-Length"] = str(len(big))
                return hdrs, b""
            status, headers, body = s.signed_request(
                "PUT", "/v20190125/meshes", body=big, service="appmesh", tamper=head_only)
            self.assertEqual(status, 413, body)
            self.assertEqual(headers.get("x-amzn-errortype"), "PayloadTooLargeException")

    def test_names_with_slash_and_dot_segments(self):
        # Review items 3 and 4: an encoded '/' is refused as part of a name; dot segments and
        # empty segments are refused before the signature is checked.
        with ControlServer() as s:
            status, headers, body = s.signed_request(
                "PUT", "/v20190125/meshes", body='{"meshName": "a/b"}', service="appmesh")
            self.assertEqual(status, 400, body)
            self.assertIn(b"meshName", body)
            status, headers, body = s.signed_request(
                "GET", "/v20190125/meshes/a%2Fb", service="appmesh")
            self.assertEqual(status, 400, body)
            self.assertIn(b"must not contain '/'", body)
            for path in ("/v20190125/meshes/x/../y", "/v20190125/./meshes",
                         "/v20190125//meshes"):
                status, headers, body = raw_request(
                    s.port, "GET", path, {"Host": "127.0.0.1", "Authorization": "x"})
                self.assertEqual(status, 400, "%s: %s" % (path, body))
                self.assertEqual(headers.get("x-amzn-errortype"), "BadRequestException", path)

    def test_deep_json_and_unknown_target(self):
        # Review item 2 (deep nesting refused quickly) and item 13 (unknown X-Amz-Target: 400).
        import time
        with ControlServer() as s:
            deep = "{\"description\": " + "[" * 10000 + "]" * 10000 + "}"
            t0 = time.monotonic()
            status, headers, body = s.signed_request("POST", "/weft/v1/credentials", body=deep)
            self.assertEqual(status, 400, body)
            self.assertLess(time.monotonic() - t0, 5)
            status, headers, body = s.signed_request(
                "POST", "/", body="{}", service="appmesh",
                headers={"X-Amz-Target": "NoSuchService.Op",
                         "Content-Type": "application/x-amz-json-1.1"})
            self.assertEqual(status, 400, body)
            self.assertEqual(headers.get("x-amzn-errortype"), "UnknownOperationException")

    def test_long_values_beyond_int32(self):
        # Review item 5: App Mesh longs (3000000000 ms) are accepted and answered as integers.
        with ControlServer() as s:
            am = s.appmesh_client()
            am.create_mesh(meshName="m")
            spec = {"listeners": [{"portMapping": {"port": 8080, "protocol": "http"},
                                   "timeout": {"http": {"idle": {"unit": "ms",
                                                                 "value": 3000000000}}}}],
                    "serviceDiscovery": {"dns": {"hostname": "n.local"}}}
            out = am.create_virtual_node(meshName="m", virtualNodeName="n", spec=spec)
            idle = out["virtualNode"]["spec"]["listeners"][0]["timeout"]["http"]["idle"]
            self.assertEqual(idle["value"], 3000000000)
            self.assertIsInstance(idle["value"], int)

    def test_second_server_on_the_same_data_dir_is_refused(self):
        with ControlServer() as s:
            other = ControlServer(data_dir=s.data_dir)
            try:
                with self.assertRaises(AssertionError) as cm:
                    other.start(timeout=10)
                self.assertIn("another weft server", str(cm.exception))
            finally:
                other.close()

    def test_bad_flags_exit_2_with_a_message(self):
        import subprocess
        from control_harness import weft_binary
        for args, needle in ((["--api", "nonsense"], "HOST:PORT"),
                             (["--region", "Bad_Region"], "region"),
                             (["--account-id", "12"], "12 digits"),
                             (["--bogus", "x"], "unknown flag")):
            p = subprocess.run([weft_binary(), "server"] + args, capture_output=True, text=True,
                               timeout=30)
            self.assertEqual(p.returncode, 2, "%r: expected exit 2, got %d: %s"
                             % (args, p.returncode, p.stderr))
            self.assertIn(needle, p.stderr)
        p = subprocess.run([weft_binary(), "server", "--help"], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(p.returncode, 0)
        self.assertIn("--data-dir", p.stdout)


if __name__ == "__main__":
    unittest.main()
