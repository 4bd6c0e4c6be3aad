#!/usr/bin/env bash
# Demo: three hosts (network namespaces) with a pod each, meshd on every host, meshctl status
# of host a and a ping between every pair of pods; everything is removed at the end.
# Run as root on Debian/Ubuntu.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/deps.sh
. scripts/deps.sh
ensure_deps

step "cargo build --workspace --locked"
cargo build --workspace --locked

step "target/debug/mesh-demo"
exec ./target/debug/mesh-demo
