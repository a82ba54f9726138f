#!/usr/bin/env bash
# Builds the Crystal backend into OUTDIR (never into the source tree):
#   examples/crossvpc/apps/crystal/build.sh OUTDIR        -> OUTDIR/crystal-backend
# Env: CRYSTAL_RELEASE=1 for an optimised build (slower to compile; the demo does not need it),
#      CRYSTAL_BUILD_TIMEOUT seconds (default 900) bounds the compiler's run,
#      CRYSTAL_CACHE_DIR (default OUTDIR/.crystal-cache, so a rebuild into the same OUTDIR is
#      incremental and nothing is written under $HOME).
# Needs Debian's crystal package and what it links against (scripts/setup.sh installs them):
# gcc, pkg-config, libgc-dev, libevent-dev, libpcre3-dev, libssl-dev, zlib1g-dev.
set -euo pipefail

if [[ $# -ne 1 || -z $1 ]]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi
src_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$1"
out_dir=$(cd "$1" && pwd)

if ! command -v crystal >/dev/null; then
  echo "build.sh: crystal not found (install Debian's crystal package: scripts/setup.sh)" >&2
  exit 1
fi

export CRYSTAL_CACHE_DIR=${CRYSTAL_CACHE_DIR:-$out_dir/.crystal-cache}
flags=(--no-color)
if [[ ${CRYSTAL_RELEASE:-0} == 1 ]]; then flags+=(--release); fi
cmd=(timeout "${CRYSTAL_BUILD_TIMEOUT:-900}" crystal build "${flags[@]}"
     -o "$out_dir/crystal-backend" "$src_dir/src/crystal_backend.cr")
version=$(crystal --version 2>&1) || true
echo "build.sh: ${version%%$'\n'*}; CRYSTAL_CACHE_DIR=$CRYSTAL_CACHE_DIR"
echo "build.sh: ${cmd[*]}"
start=$SECONDS
# Run from OUTDIR: the compiler may leave its temporary files in the working directory.
(cd "$out_dir" && "${cmd[@]}")
echo "build.sh: built $out_dir/crystal-backend in $((SECONDS - start)) s"
