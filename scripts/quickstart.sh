#!/usr/bin/env bash
# The README's first command: install what shardnet needs (npm packages, and the software Vulkan
# driver where no WebGPU adapter is found), then run `shardnet demo`: a local network of daemons
# trains MNIST in Raft groups and runs a quorum-checked inference task. Extra arguments go to demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/shardnet-xdg}"
exec node bin/shardnet.js demo "$@"
