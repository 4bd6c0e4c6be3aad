#!/usr/bin/env bash
# The `mesh` hook of ../shared/bench/peers.sh (its header has the contract): runs meshd in
# the foreground inside the namespace peers.sh made, with this host's block and the other
# host as its one peer. Both hosts write the same benchmark-only cluster secret. The cipher
# comes from MESHD_CIPHER (default auto) and is passed as a flag: peers.sh's MESH_CIPHER is
# a free-text label for its report, not meshd's MESH_CIPHER setting.
#   MESHD=/path/to/release/meshd MESH_CMD_A="$PWD/integration/bench/mesh-hook.sh" peers.sh
set -euo pipefail
: "${MESHD:?set MESHD to the meshd binary}"
umask 077
printf 'peers-sh-benchmark-secret-only\n' >"secret.$NODE"
exec "$MESHD" \
  --name "host$NODE" \
  --listen "$UNDERLAY_IP:$MESH_PORT" \
  --peer "$PEER_UNDERLAY_IP:$MESH_PORT" \
  --secret-file "secret.$NODE" \
  --state-dir "state.$NODE" \
  --api-socket "$MESH_WORKDIR/meshd.$NODE.sock" \
  --range "$OVERLAY_PREFIX" \
  --block "$NODE_BLOCK" \
  --mtu "$OVERLAY_MTU" \
  --cipher "${MESHD_CIPHER:-auto}" \
  --log warn
