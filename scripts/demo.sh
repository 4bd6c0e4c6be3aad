#!/usr/bin/env bash
# Demo: three hosts (network namespaces), meshd on every host with automatic IPAM, a pod on
# each made by mesh-cni, meshctl status of host a, a ping between every pair of pods and every
# pod's name resolved on every host; everything is removed at the end.
# Run as root on Debian/Ubuntu.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/deps.sh
. scripts/deps.sh
ensure_deps demo

step "cargo build --workspace --locked"
cargo build --workspace --locked

step "target/debug/mesh-demo"
exec ./target/debug/mesh-demo
