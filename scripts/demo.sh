#!/usr/bin/env bash
# Demo: three hosts (network namespaces) with a pod each, meshd on every host, meshctl status
# of host a and a ping between every pair of pods; everything is removed at the end.
# Run as root on Debian/Ubuntu.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
    echo "the demo creates network namespaces: run $0 as root" >&2
    exit 1
fi

missing=()
command -v ip >/dev/null || missing+=(iproute2)
command -v tcpdump >/dev/null || missing+=(tcpdump)
command -v socat >/dev/null || missing+=(socat)
command -v ping >/dev/null || missing+=(iputils-ping)
command -v sysctl >/dev/null || missing+=(procps)
{ [ -x /usr/bin/kill ] || [ -x /bin/kill ]; } || missing+=(procps)
[ -e /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
if [ "${#missing[@]}" -gt 0 ]; then
    step "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

step "cargo build --workspace --locked"
cargo build --workspace --locked

step "target/debug/mesh-demo"
exec ./target/debug/mesh-demo
