#!/usr/bin/env bash
# Builds the cpu backend's native engine (kernels/native/shardnet_cpu.c) against OpenBLAS with
# node-gyp, into kernels/native/build/Release/shardnet_cpu.node. Exits 0 with a sentence on stderr
# when it cannot build (no compiler, no OpenBLAS, no Node headers): the cpu backend then computes on
# its wasm or reference engine, slower but correct.
set -uo pipefail
cd "$(dirname "$0")/../kernels/native"
log() { printf '[build-native] %s\n' "$*" >&2; }

if ! command -v cc >/dev/null 2>&1 && ! command -v gcc >/dev/null 2>&1; then
  log "no C compiler: the cpu backend will use its wasm engine (install build-essential and rerun scripts/build-native.sh)"
  exit 0
fi
# Debian's multiarch folders (x86_64-linux-gnu, aarch64-linux-gnu, ...)
multiarch=$( (cc -print-multiarch || gcc -print-multiarch) 2>/dev/null || echo "$(uname -m)-linux-gnu")
include=${OPENBLAS_INCLUDE_DIR:-/usr/include/$multiarch/openblas-openmp}
libdir=${OPENBLAS_LIB_DIR:-/usr/lib/$multiarch/openblas-openmp}
if [ ! -f "$include/cblas.h" ] || [ ! -e "$libdir/libopenblas.so.0" ]; then
  log "OpenBLAS (OpenMP build) not found in $include and $libdir: the cpu backend will use its wasm engine."
  log "  on Debian/Ubuntu: apt-get install libopenblas-openmp-dev, then rerun scripts/build-native.sh"
  log "  elsewhere: set OPENBLAS_INCLUDE_DIR and OPENBLAS_LIB_DIR to an OpenMP OpenBLAS"
  exit 0
fi
# node-gyp comes with npm; Node's own headers are used where the system has them (no download)
gyp=$(dirname "$(readlink -f "$(command -v npm)")")/../node_modules/node-gyp/bin/node-gyp.js
nodedir=$(node -p 'require("path").resolve(process.execPath, "../..")')
if [ ! -f "$nodedir/include/node/node_api.h" ]; then nodedir=$(npm config get nodedir 2>/dev/null || true); fi
args=(rebuild)
if [ -n "$nodedir" ] && [ -f "$nodedir/include/node/node_api.h" ]; then args+=("--nodedir=$nodedir"); fi
if [ ! -f "$gyp" ]; then
  log "node-gyp not found beside npm: the cpu backend will use its wasm engine"
  exit 0
fi
if ! out=$(OPENBLAS_INCLUDE_DIR="$include" OPENBLAS_LIB_DIR="$libdir" node "$gyp" "${args[@]}" 2>&1); then
  printf '%s\n' "$out" | tail -20 >&2
  log "the native engine did not build (above): the cpu backend will use its wasm engine"
  exit 0
fi
if ! node -e 'require(process.argv[1]).describe()' "$PWD/build/Release/shardnet_cpu.node" >/dev/null 2>&1; then
  log "the native engine built but does not load: the cpu backend will use its wasm engine"
  exit 0
fi
log "native cpu engine: $PWD/build/Release/shardnet_cpu.node"
