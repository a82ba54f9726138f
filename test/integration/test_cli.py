"""The `weft` CLI against a real `weft server` on port 0: apply/get/describe/delete with
manifests, credentials, and `weft stack` with a two-stack template pair joined by
Export/Fn::ImportValue, a redeploy, a failing deploy that rolls back, and errors (one line on
stderr, non-zero exit). Uses control_harness.py (ControlServer: temp data dir, admin
credentials, an environment with nothing of the user's AWS setup)."""

import json
import os
import shutil
import tempfile
import unittest

from control_harness import ControlServer, REPO

EXAMPLES = os.path.join(REPO, "examples", "appmesh")


class CliTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = ControlServer().start()
        cls.tmp = tempfile.mkdtemp(prefix="weft-cli-")

    @classmethod
    def tearDownClass(cls):
        cls.server.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def weft(self, *args, ok=True, env=None):
        p = self.server.weft(*args, env=env)
        if ok:
            self.assertEqual(p.returncode, 0, "expected `weft %s` to succeed; stdout:\n%s\nstderr:\n%s"
                             % (" ".join(map(str, args)), p.stdout, p.stderr))
        return p

    def fails(self, *args, env=None, code=None):
        """Runs a command expected to fail: non-zero exit, exactly one line on stderr."""
        p = self.server.weft(*args, env=env)
        self.assertNotEqual(p.returncode, 0, "expected `weft %s` to fail; stdout:\n%s"
                            % (" ".join(map(str, args)), p.stdout))
        if code is not None:
            self.assertEqual(p.returncode, code, "exit code of `weft %s`; stderr: %s"
                             % (" ".join(map(str, args)), p.stderr))
        lines = p.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, "expected one error line from `weft %s`, got:\n%s"
                         % (" ".join(map(str, args)), p.stderr))
        return lines[0]

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def get_json(self, *args):
        return json.loads(self.weft("get", *args, "-o", "json").stdout)

    # ---- help and usage

    def test_help_and_version(self):
        top = self.weft("--help").stdout
        for cmd in ("server", "apply", "get", "describe", "delete", "stack", "credentials"):
            self.assertIn(cmd, top)
        for cmd in ("apply", "get", "describe", "delete", "stack", "credentials", "server"):
            p = self.weft(cmd, "--help")
            self.assertIn("Usage: weft " + cmd, p.stdout + p.stderr, "help of " + cmd)
        self.assertTrue(self.weft("--version").stdout.startswith("weft "))
        self.assertIn("unknown command 'frobnicate'", self.fails("frobnicate", code=2))
        self.assertIn("unknown flag --bogus", self.fails("get", "mesh", "--bogus", code=2))
        self.assertIn("unknown kind 'pods'", self.fails("get", "pods", code=2))
        self.assertIn("--mesh is required", self.fails("describe", "vn", "x", code=2))

    # ---- manifests

    def test_apply_get_describe_delete(self):
        env_dir = os.path.join(self.tmp, "manifests")
        shutil.copytree(EXAMPLES, env_dir, ignore=shutil.ignore_patterns("*stack*"))
        p = self.weft("apply", "-f", env_dir)
        self.assertEqual(p.stdout.splitlines(), [
            "Mesh shop created",
            "VirtualNode shop/cart-v1 created",
            "VirtualNode shop/cart-v2 created",
            "VirtualRouter shop/cart-router created",
            "Route shop/cart-router/canary created",
            "VirtualService shop/cart.shop.local created",
            "6 created, 0 updated, 0 unchanged"], "dependency order, one line per resource")
        again = self.weft("apply", "-f", env_dir).stdout.splitlines()
        self.assertEqual(again[-1], "0 created, 0 updated, 6 unchanged", "\n".join(again))

        # The AWS CLI sees what weft applied.
        rc, out, err = self.server.aws("appmesh", "describe-route", "--mesh-name", "shop",
                                       "--virtual-router-name", "cart-router", "--route-name",
                                       "canary")
        self.assertEqual(rc, 0, err)
        targets = out["route"]["spec"]["httpRoute"]["action"]["weightedTargets"]
        self.assertEqual([(t["virtualNode"], t["weight"]) for t in targets],
                         [("cart-v1", 90), ("cart-v2", 10)])

        # Change one weight and a tag: exactly those resources are updated.
        changed = self.write("canary.yaml", """
kind: Route
mesh: shop
virtualRouter: cart-router
name: canary
spec:
  httpRoute:
    match: {prefix: /}
    action:
      weightedTargets:
        - {virtualNode: cart-v1, weight: 50}
        - {virtualNode: cart-v2, weight: 50}
---
kind: VirtualNode
mesh: shop
name: cart-v1
spec:
  listeners:
    - portMapping: {port: 8080, protocol: http}
      healthCheck: {protocol: http, path: /health, healthyThreshold: 2, unhealthyThreshold: 3,
                    intervalMillis: 5000, timeoutMillis: 2000}
  serviceDiscovery:
    dns: {hostname: cart-v1.shop.local}
tags: {team: checkout}
""")
        p = self.weft("apply", "-f", changed)
        self.assertEqual(p.stdout.splitlines(), ["VirtualNode shop/cart-v1 updated",
                                                 "Route shop/cart-router/canary updated",
                                                 "0 created, 2 updated, 0 unchanged"])
        route = self.get_json("route", "canary", "--mesh", "shop", "--virtual-router",
                              "cart-router")
        self.assertEqual(route["metadata"]["version"], 2)
        self.assertEqual(route["spec"]["httpRoute"]["action"]["weightedTargets"][0]["weight"], 50)

        # get: table, JSON, YAML; across meshes when --mesh is left out.
        table = self.weft("get", "vn", "--mesh", "shop").stdout.splitlines()
        self.assertEqual(table[0].split(), ["NAME", "MESH", "VERSION", "STATUS", "AGE"])
        self.assertEqual([l.split()[:4] for l in table[1:]],
                         [["cart-v1", "shop", "1", "ACTIVE"], ["cart-v2", "shop", "1", "ACTIVE"]])
        nodes = self.get_json("virtualnodes")
        self.assertEqual(sorted(n["virtualNodeName"] for n in nodes if n["meshName"] == "shop"),
                         ["cart-v1", "cart-v2"])
        routes = self.weft("get", "rt", "--mesh", "shop").stdout.splitlines()
        self.assertEqual(routes[1].split()[:4], ["canary", "shop", "cart-router", "2"])
        yaml_out = self.weft("get", "mesh", "shop", "-o", "yaml").stdout
        self.assertIn("meshName: shop", yaml_out)
        described = self.weft("describe", "virtualnode", "cart-v1", "-m", "shop").stdout
        self.assertIn("hostname: cart-v1.shop.local", described)
        self.assertIn("value: checkout", described, "describe shows the tags")
        self.assertIn("VirtualNode shop/nope not found",
                      self.fails("get", "vn", "nope", "--mesh", "shop"))

        # Delete order is enforced by the server; the CLI reports its error in one line.
        line = self.fails("delete", "mesh", "shop")
        self.assertIn("ResourceInUseException", line)
        p = self.weft("delete", "-f", env_dir)
        self.assertEqual(p.stdout.splitlines(), [
            "VirtualService shop/cart.shop.local deleted",
            "Route shop/cart-router/canary deleted",
            "VirtualRouter shop/cart-router deleted",
            "VirtualNode shop/cart-v2 deleted",
            "VirtualNode shop/cart-v1 deleted",
            "Mesh shop deleted"])
        self.assertIn("Mesh shop not found", self.fails("delete", "mesh", "shop"))

    def test_bad_manifests_fail_in_one_line(self):
        bad_kind = self.write("bad-kind.yaml", "kind: Pod\nname: x\n")
        self.assertIn("unknown kind 'Pod'", self.fails("apply", "-f", bad_kind))
        bad_yaml = self.write("bad-yaml.yaml", "kind: Mesh\nname: [unclosed\n")
        self.assertIn("YAML line", self.fails("apply", "-f", bad_yaml))
        missing = os.path.join(self.tmp, "does-not-exist.yaml")
        self.assertIn("cannot read", self.fails("apply", "-f", missing))
        self.weft("apply", "-f", self.write("m.yaml", "kind: Mesh\nname: badspecs\n"))
        bad_spec = self.write("bad-spec.yaml", """
kind: VirtualNode
mesh: badspecs
name: n
spec:
  listeners: [{portMapping: {port: 70000, protocol: http}}]
""")
        line = self.fails("apply", "-f", bad_spec)
        self.assertIn("VirtualNode badspecs/n: BadRequestException", line)
        self.assertIn("70000", line)
        self.weft("delete", "mesh", "badspecs")

    def test_errors_without_a_server_or_credentials(self):
        env = self.server.env(AWS_PROFILE="weft", WEFT_ENDPOINT="http://127.0.0.1:1")
        self.assertIn("cannot connect to weft server at http://127.0.0.1:1",
                      self.fails("get", "mesh", env=env))
        env = self.server.env(AWS_PROFILE="nope")
        self.assertIn("no profile [nope]", self.fails("get", "mesh", env=env))
        env = self.server.env(AWS_SHARED_CREDENTIALS_FILE="/dev/null",
                              AWS_ACCESS_KEY_ID="WKIAAAAAAAAAAAAAAAAA",
                              AWS_SECRET_ACCESS_KEY="wrong")
        self.assertIn("UnrecognizedClientException", self.fails("get", "mesh", env=env))

    # ---- credentials

    def test_credentials(self):
        out = self.weft("credentials", "create", "--description", "ci key", "-o", "json").stdout
        key = json.loads(out)
        self.assertTrue(key["accessKeyId"] and key["secretAccessKey"], out)
        listed = self.weft("credentials", "list").stdout
        self.assertIn(key["accessKeyId"], listed)
        self.assertIn("ci key", listed)
        # The new key works through the environment variables.
        env = self.server.env(AWS_SHARED_CREDENTIALS_FILE="/dev/null",
                              AWS_ACCESS_KEY_ID=key["accessKeyId"],
                              AWS_SECRET_ACCESS_KEY=key["secretAccessKey"])
        self.assertEqual(self.server.weft("get", "mesh", env=env).returncode, 0)
        self.weft("credentials", "delete", key["accessKeyId"])
        self.assertNotIn(key["accessKeyId"], self.weft("credentials", "list").stdout)
        self.assertIn("NotFoundException",
                      self.fails("credentials", "delete", key["accessKeyId"]))

    def test_networks(self):
        out = self.weft("network", "create", "--name", "vpc-a", "--cidr", "198.18.0.0/24",
                        "--cidr", "198.18.1.0/24").stdout
        vpc = out.strip()
        self.assertRegex(vpc, r"^vpc-[0-9a-f]+$", "create prints the id alone: %r" % out)
        listed = json.loads(self.weft("network", "list", "-o", "json").stdout)
        mine = [n for n in listed if n["id"] == vpc]
        self.assertEqual(len(mine), 1, listed)
        self.assertEqual(mine[0]["cidrs"], ["198.18.0.0/24", "198.18.1.0/24"])
        self.assertIn(vpc, self.weft("network", "list").stdout)
        self.assertIn("--cidr is required", self.fails("network", "create", "--name", "x", code=2))
        self.assertIn("is not a CIDR",
                      self.fails("network", "create", "--name", "x", "--cidr", "10.0.0/33"))
        self.assertIn("deleted " + vpc, self.weft("network", "delete", vpc).stdout)
        self.assertIn("NotFoundException", self.fails("network", "delete", vpc))

    # ---- stacks

    def test_stacks_with_exports_imports_updates_and_rollback(self):
        mesh_tmpl = os.path.join(EXAMPLES, "mesh-stack.yaml")
        app_tmpl = os.path.join(EXAMPLES, "app-stack.yaml")
        p = self.weft("stack", "deploy", "--template-file", mesh_tmpl, "--stack-name", "net",
                      "--parameter-overrides", "MeshName=cfn")
        self.assertIn("Mesh (AWS::AppMesh::Mesh): created Mesh cfn", p.stdout)
        # The app stack imports net-MeshName.
        p = self.weft("stack", "deploy", "--template-file", app_tmpl, "--stack-name", "app",
                      "--parameter-overrides", "MeshStack=net", "CanaryWeight=25")
        lines = p.stdout.splitlines()
        self.assertEqual(lines[0], "Creating stack app (6 resources)")
        self.assertIn("  BackendV1 (AWS::AppMesh::VirtualNode): created VirtualNode cfn/backend-v1",
                      lines)
        self.assertTrue([l for l in lines if l.startswith(
            "  Discovery (AWS::ServiceDiscovery::HttpNamespace): created")], lines)
        self.assertEqual(lines[-1], "Stack app: CREATE_COMPLETE")
        order = [l.split()[0] for l in lines[1:-1]]
        self.assertLess(order.index("Router"), order.index("Route"))
        self.assertLess(order.index("BackendV2"), order.index("Route"))

        # What the template asked for is what the server holds (PascalCase → camelCase, numbers).
        rc, out, err = self.server.aws("appmesh", "describe-route", "--mesh-name", "cfn",
                                       "--virtual-router-name", "backend-router", "--route-name",
                                       "default")
        self.assertEqual(rc, 0, err)
        http = out["route"]["spec"]["httpRoute"]
        self.assertEqual([(t["virtualNode"], t["weight"]) for t in http["action"]["weightedTargets"]],
                         [("backend-v1", 90), ("backend-v2", 25)])
        self.assertEqual(http["retryPolicy"]["maxRetries"], 2)
        rc, out, err = self.server.aws("appmesh", "describe-mesh", "--mesh-name", "cfn")
        self.assertEqual(out["mesh"]["spec"]["egressFilter"]["type"], "DROP_ALL")

        described = json.loads(self.weft("stack", "describe", "--stack-name", "app", "-o",
                                         "json").stdout)
        self.assertEqual(described["imports"], ["net-MeshName"])
        self.assertEqual(described["outputs"]["ServiceName"], "backend.app.local")
        self.assertTrue(described["outputs"]["RouteArn"].startswith("arn:aws:appmesh:"))
        net = json.loads(self.weft("stack", "describe", "--stack-name", "net", "-o", "json").stdout)
        self.assertEqual(net["exports"]["net-MeshName"], "cfn")
        listed = self.weft("stack", "list").stdout.splitlines()
        self.assertEqual(listed[0].split(), ["NAME", "STATUS", "RESOURCES", "UPDATED"])
        self.assertEqual(sorted(l.split()[0] for l in listed[1:]), ["app", "net"])

        # An imported stack cannot be deleted; nothing is touched.
        line = self.fails("stack", "delete", "--stack-name", "net")
        self.assertIn("imported by stack 'app'", line)
        rc, out, err = self.server.aws("appmesh", "describe-mesh", "--mesh-name", "cfn")
        self.assertEqual(rc, 0, "the mesh must survive a refused delete: " + err)

        # A second stack may not take over an existing resource, nor export the same name.
        line = self.fails("stack", "deploy", "--template-file", mesh_tmpl, "--stack-name", "net2",
                          "--parameter-overrides", "MeshName=cfn")
        self.assertIn("Mesh cfn already exists (not made by this stack)", line)
        clash = self.write("clash.yaml", """
Resources:
  M: {Type: AWS::AppMesh::Mesh, Properties: {MeshName: clash}}
Outputs:
  N: {Value: !Ref M, Export: {Name: net-MeshName}}
""")
        line = self.fails("stack", "deploy", "--template-file", clash, "--stack-name", "clash")
        self.assertIn("export name 'net-MeshName' is already exported by stack 'net'", line)
        rc, out, err = self.server.aws("appmesh", "list-meshes")
        self.assertNotIn("clash", [m["meshName"] for m in out["meshes"]],
                         "the export clash is found before anything is created")

        # Redeploy without the canary: the route is updated, backend-v2 deleted, others unchanged.
        p = self.weft("stack", "deploy", "--template-file", app_tmpl, "--stack-name", "app",
                      "--parameter-overrides", "MeshStack=net", "WithCanary=false")
        lines = p.stdout.splitlines()
        self.assertIn("  Route (AWS::AppMesh::Route): updated Route cfn/backend-router/default", lines)
        self.assertIn("  BackendV1 (AWS::AppMesh::VirtualNode): unchanged VirtualNode cfn/backend-v1",
                      lines)
        self.assertIn("  BackendV2 (AWS::AppMesh::VirtualNode): deleted VirtualNode cfn/backend-v2",
                      lines)
        self.assertEqual(lines[-1], "Stack app: UPDATE_COMPLETE")
        rc, out, err = self.server.aws("appmesh", "list-virtual-nodes", "--mesh-name", "cfn")
        self.assertEqual([n["virtualNodeName"] for n in out["virtualNodes"]], ["backend-v1"])

        # A deploy that fails half-way rolls back what it created.
        bad = self.write("bad-stack.yaml", """
Resources:
  Good:
    Type: AWS::AppMesh::VirtualNode
    Properties:
      MeshName: !ImportValue net-MeshName
      VirtualNodeName: rollback-me
      Spec: {}
  Bad:
    Type: AWS::AppMesh::VirtualNode
    DependsOn: Good
    Properties:
      MeshName: !ImportValue net-MeshName
      VirtualNodeName: bad
      Spec:
        Listeners: [{PortMapping: {Port: 70000, Protocol: http}}]
""")
        p = self.server.weft("stack", "deploy", "--template-file", bad, "--stack-name", "broken")
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("Bad (AWS::AppMesh::VirtualNode) failed: BadRequestException", p.stderr)
        self.assertIn("rolled back", p.stderr)
        self.assertIn("Good (VirtualNode cfn/rollback-me): rollback: deleting", p.stdout)
        rc, out, err = self.server.aws("appmesh", "list-virtual-nodes", "--mesh-name", "cfn")
        self.assertEqual([n["virtualNodeName"] for n in out["virtualNodes"]], ["backend-v1"],
                         "the rollback removed rollback-me")
        self.assertIn("stack broken does not exist",
                      self.fails("stack", "describe", "--stack-name", "broken"))

        # Template errors are one line, before anything is created.
        cyc = self.write("cycle.yaml", """
Resources:
  A: {Type: AWS::AppMesh::Mesh, DependsOn: B}
  B: {Type: AWS::AppMesh::Mesh, DependsOn: A}
""")
        self.assertIn("circular dependency between resources: A -> B -> A",
                      self.fails("stack", "deploy", "--template-file", cyc, "--stack-name", "c"))
        self.assertIn("has no value", self.fails(
            "stack", "deploy", "--template-file", self.write("p.yaml", """
Parameters: {Needed: {Type: String}}
Resources: {M: {Type: AWS::AppMesh::Mesh, Properties: {MeshName: !Ref Needed}}}
"""), "--stack-name", "p"))

        # Delete in dependency order: app first (it imports), then net.
        p = self.weft("stack", "delete", "--stack-name", "app")
        self.assertEqual(p.stdout.splitlines()[-1], "Stack app: deleted")
        self.weft("stack", "delete", "--stack-name", "net")
        rc, out, err = self.server.aws("appmesh", "list-meshes")
        self.assertNotIn("cfn", [m["meshName"] for m in out["meshes"]])
        self.assertIn("stack net does not exist",
                      self.fails("stack", "delete", "--stack-name", "net"))

    def test_json_template_and_restart_durability(self):
        tmpl = os.path.join(EXAMPLES, "mesh-stack.json")
        self.weft("stack", "deploy", "--template-file", tmpl, "--stack-name", "jsonstack",
                  "--parameter-overrides", "MeshName=jsonmesh", "EgressType=ALLOW_ALL")
        self.server.restart()
        rec = json.loads(self.weft("stack", "describe", "--stack-name", "jsonstack", "-o",
                                   "json").stdout)
        self.assertEqual(rec["exports"], {"jsonstack-MeshName": "jsonmesh",
                                          "jsonstack-MeshArn": rec["outputs"]["MeshArn"]})
        mesh = self.get_json("mesh", "jsonmesh")
        self.assertEqual(mesh["spec"]["egressFilter"]["type"], "ALLOW_ALL")
        tags = self.weft("describe", "mesh", "jsonmesh").stdout
        self.assertIn("value: jsonstack", tags)
        self.weft("stack", "delete", "--stack-name", "jsonstack")


if __name__ == "__main__":
    unittest.main()
