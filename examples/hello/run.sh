#!/usr/bin/env bash
# The hello example: weft-proxy in front of a small backend, one request through it.
# Everything runs on 127.0.0.1 with ports picked at run time, and is removed on exit.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
proxy="$root/build/bin/weft-proxy"
[[ -x "$proxy" ]] || { echo "hello: $proxy not found; run 'make build' first" >&2; exit 1; }

work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== starting the backend"
coproc BACKEND { exec /usr/bin/python3 "$here/backend.py"; }
pids+=("$BACKEND_PID")
read -r backend_port <&"${BACKEND[0]}"
echo "   backend on 127.0.0.1:$backend_port"

sed -e "s/BACKEND_PORT/$backend_port/" "$here/proxy.yaml" >"$work/proxy.yaml"
echo "== validating the config"
"$proxy" --validate "$work/proxy.yaml"

echo "== starting weft-proxy"
"$proxy" --config "$work/proxy.yaml" --ports-file "$work/ports.json" &
pids+=("$!")
for _ in $(seq 1 100); do [[ -s "$work/ports.json" ]] && break; sleep 0.05; done
[[ -s "$work/ports.json" ]] || { echo "hello: weft-proxy did not start" >&2; exit 1; }
port=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["listeners"]["ingress"])' "$work/ports.json")
admin=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["admin"])' "$work/ports.json")

echo "== a request through the proxy: curl -i http://127.0.0.1:$port/greeting"
curl -sS -i "http://127.0.0.1:$port/greeting"
echo "== a route with a direct response: curl -i http://127.0.0.1:$port/health"
curl -sS -i "http://127.0.0.1:$port/health"
echo "== what the proxy counted (admin /stats/prometheus on 127.0.0.1:$admin)"
curl -sS "http://127.0.0.1:$admin/stats/prometheus" | grep -E '^weft_listener_downstream_rq_(total|xx_total)' || true
