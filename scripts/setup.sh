#!/usr/bin/env bash
# Installs every Debian package weft needs to build, test and benchmark.
# Idempotent: packages already present are skipped. The only way anything is installed.
set -euo pipefail

PACKAGES=(
  # build
  build-essential cmake ninja-build pkg-config git
  libprotobuf-dev protobuf-compiler libyaml-cpp-dev libssl-dev libc-ares-dev zlib1g-dev
  libgtest-dev libgmock-dev libbenchmark-dev libre2-dev libnghttp2-dev libsqlite3-dev
  libgrpc++-dev protobuf-compiler-grpc
  clang-format clang-tidy
  # tests: real clients and peers
  python3 curl openssl wrk iproute2 procps iptables nghttp2-client sqlite3
  awscli python3-boto3 python3-grpcio python3-websockets
  python3-h2  # test_upstream_h2: the HTTP/2 server and client of the upstream tests
  bind9-dnsutils  # dig: the registry DNS tests
  # fuzzing for real (see docs/fuzzing.md); the corpus replay under ctest needs only g++
  clang-14 libclang-rt-14-dev
  # side-by-side benchmark peers
  haproxy nginx-light
  dnsperf unbound dnsmasq-base  # bench/dns: the load tool and the DNS peers
  # the demo apps (examples/crossvpc/apps): their runtimes, and what crystal links the backend with
  ruby nodejs crystal gcc libgc-dev libevent-dev libpcre3-dev
  chromium  # the demo test renders the page headless (test_demo)
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The Debian haproxy, nginx and unbound packages start system services; weft only runs them
  # itself.
  for svc in haproxy nginx unbound; do
    $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || $SUDO service "$svc" stop >/dev/null 2>&1 || true
  done
else
  echo "setup: all ${#PACKAGES[@]} packages present"
fi
