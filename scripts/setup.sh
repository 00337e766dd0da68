#!/usr/bin/env bash
# Installs everything shardnet needs on a fresh machine: the npm packages, the GPT model kind's
# corpus (Debian's linux-doc-6.1 documentation sources), the cpu backend's native engine (OpenBLAS
# and a C compiler, then scripts/build-native.sh) and, where Dawn finds no WebGPU adapter on
# Debian/Ubuntu, Mesa's software Vulkan driver (lavapipe). Where it cannot install a package (not
# root, another OS) it prints what to run; without the driver shardnet uses its cpu backend, without
# the corpus only the GPT kind's training is unavailable.
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/shardnet-xdg}"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR" 2>/dev/null || true

log() { printf '[setup] %s\n' "$*" >&2; }

# Runs the shell command $1 as root: directly when root, else through passwordless sudo. Returns 125
# without running it when neither is possible, else the command's own status.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    bash -c "$1" >&2
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo bash -c "$1" >&2
  else
    return 125
  fi
}

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  log "shardnet needs Node.js 20 or newer (found $(node --version 2>/dev/null || echo none)); install it and run this again."
  exit 1
fi

# `npm install` rather than `npm ci`: it follows package-lock.json just the same, and npm ci refuses
# lock files written with omit-lockfile-registry-resolved (set on some machines) as "out of sync".
log "installing npm packages"
npm install --no-fund --no-audit --loglevel=error

# The GPT model kind trains on the documentation sources of linux-doc-6.1 (kernels/data/corpus.ts
# builds its fixed training/validation split from them and checks their SHA-256s). The package is
# Debian bookworm's; other releases may not offer it, which only the GPT kind's training needs.
corpus_dir=/usr/share/doc/linux-doc-6.1/html/_sources
corpus_cmd='apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends linux-doc-6.1'
if [ -d "$corpus_dir" ]; then
  log "GPT corpus sources: $corpus_dir"
elif ! command -v apt-get >/dev/null 2>&1; then
  log "the GPT corpus is Debian's linux-doc-6.1 package ($corpus_dir); this system has no apt-get: install it from a Debian bookworm .deb to train the GPT kind."
else
  log "installing the GPT corpus (linux-doc-6.1)"
  corpus_status=0
  as_root "$corpus_cmd" || corpus_status=$?
  if [ "$corpus_status" -eq 125 ]; then
    log "not root: to train the GPT kind, run as root:"
    log "  $corpus_cmd"
  elif [ "$corpus_status" -ne 0 ] || [ ! -d "$corpus_dir" ]; then
    log "linux-doc-6.1 could not be installed (this release may not offer it: it is Debian bookworm's); the GPT kind cannot train until $corpus_dir exists."
  fi
fi

# The cpu backend's native engine: C kernels over OpenBLAS (OpenMP build), compiled for this
# machine. Without a compiler or OpenBLAS the cpu backend uses its wasm engine instead.
blas_cmd='apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends build-essential libopenblas-openmp-dev'
multiarch=$(gcc -print-multiarch 2>/dev/null || echo "$(uname -m)-linux-gnu")
if [ ! -f "/usr/include/$multiarch/openblas-openmp/cblas.h" ] && [ -z "${OPENBLAS_INCLUDE_DIR:-}" ] && command -v apt-get >/dev/null 2>&1; then
  log "installing OpenBLAS and a C compiler for the native cpu engine"
  blas_status=0
  as_root "$blas_cmd" || blas_status=$?
  if [ "$blas_status" -eq 125 ]; then
    log "not root: for the native cpu engine, run as root: $blas_cmd"
  elif [ "$blas_status" -ne 0 ]; then
    log "OpenBLAS could not be installed; the cpu backend will use its wasm engine."
  fi
fi
bash scripts/build-native.sh

if adapter=$(node scripts/probe-webgpu.mjs 2>/dev/null); then
  log "WebGPU adapter: $adapter"
  exit 0
fi
log "no WebGPU adapter found; trying to install the software Vulkan driver (Mesa lavapipe)"

install_cmd=""
if [ -r /etc/os-release ]; then
  . /etc/os-release
  case "${ID:-}" in
    debian)
      if [ "${VERSION_CODENAME:-}" = bookworm ]; then
        # bookworm's Mesa 22 is too old for Dawn: take Mesa from the backports suite of the same mirror
        install_cmd='uri=$(awk '"'"'/^URIs:/{print $2; exit}'"'"' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true); uri=${uri:-http://deb.debian.org/debian}; echo "deb $uri bookworm-backports main" > /etc/apt/sources.list.d/backports.list && apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q -t bookworm-backports mesa-vulkan-drivers libvulkan1'
      else
        install_cmd='apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q mesa-vulkan-drivers libvulkan1'
      fi
      ;;
    ubuntu)
      install_cmd='apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q mesa-vulkan-drivers libvulkan1'
      ;;
  esac
fi

if [ -z "$install_cmd" ]; then
  log "this is not Debian or Ubuntu: install your distribution's Mesa Vulkan drivers (lavapipe) for WebGPU; until then shardnet uses its cpu backend."
  exit 0
fi
driver_status=0
as_root "$install_cmd" || driver_status=$?
if [ "$driver_status" -eq 125 ]; then
  log "not root: to enable WebGPU, run as root:"
  log "  $install_cmd"
  log "until then shardnet uses its cpu backend."
  exit 0
elif [ "$driver_status" -ne 0 ]; then
  exit "$driver_status"
fi

if adapter=$(node scripts/probe-webgpu.mjs 2>/dev/null); then
  log "WebGPU adapter: $adapter"
else
  log "the driver is installed but Dawn still finds no adapter ($adapter); shardnet will use its cpu backend."
fi
