#!/usr/bin/env bash
# The handshake-flood benchmark (docs/performance.md, "Handshake flood"): builds meshd,
# meshctl, mesh-flood and mesh-flood-bench in release mode and runs mesh-flood-bench, which
# makes three hosts (network namespaces a, b, x on one underlay bridge, removed at the end),
# measures pod-to-pod iperf3 throughput from a to b alone and under a spoofed-source flood
# of junk handshake initiations from x at each rate, and meshd's CPU per junk datagram.
# Root only. Arguments go to mesh-flood-bench: --seconds S (10), --rates 20000,max,
# --bin-dir DIR (meshd and meshctl of another build, e.g. an older version; with
# --shape v1 for version-1 junk).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/deps.sh
. scripts/deps.sh
ensure_deps
step "cargo build --release --locked -p meshd -p meshctl -p mesh-integration --bins"
cargo build --release --locked -p meshd -p meshctl
cargo build --release --locked -p mesh-integration --bin mesh-flood --bin mesh-flood-bench
step "mesh-flood-bench $*"
exec ./target/release/mesh-flood-bench "$@"
