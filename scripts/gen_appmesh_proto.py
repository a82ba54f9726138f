#!/usr/bin/env python3
"""Generates api/aws/appmesh/v20190125/appmesh.proto from botocore's App Mesh service model
(the machine-readable form of the App Mesh API reference, Debian's python3-botocore).

Usage (from the repository root; needs only python3 and the python3-botocore package):

    python3 scripts/gen_appmesh_proto.py > api/aws/appmesh/v20190125/appmesh.proto

Every structure shape becomes a message whose field names are the API's JSON member names.
Constraints of the model (required, ranges, lengths, list sizes, enums, patterns, unions) become
custom options read by the validator (src/control/model/schema.cc). Only facts of the model are
carried over (names, types, constraints); its documentation prose is not.

App Mesh "long" shapes become `double` fields with the (integral) option: protobuf prints int64
as a JSON string, and int32 cannot hold every App Mesh long (3000000000 ms is valid); the
validator checks that such a value is a whole number, and JSON output prints it without ".0"."""
import json, sys

MODEL = "/usr/lib/python3/dist-packages/botocore/data/appmesh/2019-01-25/service-2.json"
m = json.load(open(MODEL))
S = m["shapes"]

def skip(name, s):
    if s.get("exception"):
        return True
    if "payload" in s:  # Create*/Describe*/... outputs: the body is the payload shape itself
        return True
    return False

out = []
w = out.append
w("// GENERATED from botocore's App Mesh 2019-01-25 service model (the API reference in")
w("// machine-readable form) by scripts/gen_appmesh_proto.py; regenerate rather than edit by hand.")
w("//")
w("// One message per App Mesh structure shape, field names exactly the API's JSON member names, so")
w("// protobuf's JSON mapping reads and writes the App Mesh wire shapes. Conventions:")
w("//  - enum-typed members are `string` fields with an (enum_values) option (App Mesh enum values such")
w("//    as \"connection-error\" are not proto identifiers); the validator checks them;")
w("//  - App Mesh \"integer\" members are int32; \"long\" members are double with (integral) = true")
w("//    (protobuf prints int64 as a JSON string; int32 is too small), checked to be whole numbers;")
w("//  - timestamps are double epoch seconds, as App Mesh answers;")
w("//  - every scalar is `optional` so an absent member stays absent (and 0/false stays meaningful);")
w("//  - *Input messages hold only the members carried in the request BODY (path and query")
w("//    members are taken from the URL); parse them rejecting unknown fields;")
w("//  - constraints of the model are options: (required), (min_value)/(max_value), (min_length)/")
w("//    (max_length) of strings, (min_items)/(max_items) of lists, (enum_values), (pattern),")
w("//    (integral), and (union) on messages of which exactly one member must be set.")
w('syntax = "proto3";')
w("")
w("package aws.appmesh.v20190125;")
w("")
w('import "google/protobuf/descriptor.proto";')
w("")
w("extend google.protobuf.FieldOptions {")
w("  bool required = 51001;")
w("  int64 min_value = 51002;")
w("  int64 max_value = 51003;")
w("  int32 min_length = 51004;")
w("  int32 max_length = 51005;")
w("  int32 min_items = 51006;")
w("  int32 max_items = 51007;")
w("  string enum_values = 51008;  // comma-separated")
w("  string pattern = 51009;      // RE2, whole string")
w("  bool integral = 51010;       // a double that must hold a whole number (App Mesh long)")
w("}")
w("")
w("extend google.protobuf.MessageOptions {")
w("  bool union = 51101;")
w("}")

def field_type(owner, mname, shape_name):
    s = S[shape_name]
    t = s["type"]
    opts = []
    repeated = False
    if t == "list":
        repeated = True
        if "min" in s and s["min"] > 0:
            opts.append(f"(min_items) = {s['min']}")
        if "max" in s:
            opts.append(f"(max_items) = {s['max']}")
        shape_name = s["member"]["shape"]
        s = S[shape_name]
        t = s["type"]
    if t == "structure":
        ty = shape_name
    elif t == "string":
        ty = "string"
        if "enum" in s:
            opts.append(f"(enum_values) = \"{','.join(s['enum'])}\"")
        if "min" in s and s["min"] > 0:
            opts.append(f"(min_length) = {s['min']}")
        if "max" in s:
            opts.append(f"(max_length) = {s['max']}")
        if "pattern" in s:
            p = s["pattern"].replace("\\", "\\\\").replace('"', '\\"')
            opts.append(f"(pattern) = \"{p}\"")
    elif t in ("integer", "long"):
        ty = "double" if t == "long" else "int32"
        if t == "long":
            opts.append("(integral) = true")
        if "min" in s:
            opts.append(f"(min_value) = {s['min']}")
        if "max" in s:
            opts.append(f"(max_value) = {s['max']}")
    elif t == "boolean":
        ty = "bool"
    elif t == "timestamp":
        ty = "double"
    else:
        raise SystemExit(f"unhandled type {t} for {shape_name}")
    return repeated, ty, opts

for name in sorted(S):
    s = S[name]
    if s["type"] != "structure" or skip(name, s):
        continue
    w("")
    w(f"message {name} {{")
    if s.get("union"):
        w("  option (union) = true;")
    req = set(s.get("required", []))
    num = 1
    for mname in sorted(s["members"]):
        mm = s["members"][mname]
        if "location" in mm:  # carried in the URL, not the body
            continue
        repeated, ty, opts = field_type(name, mname, mm["shape"])
        if mname in req:
            opts.insert(0, "(required) = true")
        label = "repeated " if repeated else ("optional " if ty not in S else "")
        o = f" [{', '.join(opts)}]" if opts else ""
        line = f"  {label}{ty} {mname} = {num}{o};"
        if len(line) > 100 and opts:
            line = f"  {label}{ty} {mname} = {num} [\n      " + ",\n      ".join(opts) + "\n  ];"
        w(line)
        num += 1
    w("}")

sys.stdout.write("\n".join(out) + "\n")
