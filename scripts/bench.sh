#!/usr/bin/env bash
# Builds meshd in release mode and runs the side-by-side overlay benchmark
# (../shared/bench/peers.sh) with meshd as its `mesh` case. Root only; it creates and
# removes its own namespaces (hA, hB). Extra environment (CASES, DURATION, OUT, ...) is
# passed through to peers.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
peers=${PEERS_SH:-$root/../shared/bench/peers.sh}
[ -x "$peers" ] || [ -f "$peers" ] || { echo "bench: $peers not found (set PEERS_SH)" >&2; exit 1; }
cargo build --release --locked -p meshd
export MESHD=$root/target/release/meshd
export MESH_CMD_A=$root/integration/bench/mesh-hook.sh
# peers.sh's report label; MESHD_CIPHER (auto, chacha20-poly1305, aes-256-gcm) is what the
# hook passes to meshd's --cipher.
export MESHD_CIPHER=${MESHD_CIPHER:-auto}
export MESH_CIPHER=${MESH_CIPHER:-"mesh: Noise_IKpsk2 X25519, then --cipher $MESHD_CIPHER (AES-256-GCM where both CPUs have AES, else ChaCha20-Poly1305)"}
export OUT=${OUT:-$root/target/peers.json}
exec bash "$peers"
