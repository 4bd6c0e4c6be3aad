#!/usr/bin/env bash
# Sourced by demo.sh and test.sh: makes sure the commands the demo and the tests run are
# installed (Debian/Ubuntu packages, installed with apt-get when missing) and that a Rust
# toolchain is there.

step() { printf '\n==> %s\n' "$*"; }

ensure_deps() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "$0: mesh creates network namespaces and devices: run it as root" >&2
        exit 1
    fi
    local missing=()
    command -v ip >/dev/null || missing+=(iproute2)
    command -v tcpdump >/dev/null || missing+=(tcpdump)
    command -v socat >/dev/null || missing+=(socat)
    command -v ping >/dev/null || missing+=(iputils-ping)
    command -v sysctl >/dev/null || missing+=(procps)
    { [ -x /usr/bin/kill ] || [ -x /bin/kill ]; } || missing+=(procps)
    [ -e /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
    # The CNI tests chain Debian's portmap plugin after mesh-cni; portmap drives iptables.
    [ -x /usr/lib/cni/portmap ] || missing+=(containernetworking-plugins)
    command -v iptables >/dev/null || missing+=(iptables)
    if [ "${#missing[@]}" -gt 0 ]; then
        step "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q
        apt-get install -y -q --no-install-recommends "${missing[@]}"
    else
        step "system packages present (iproute2 tcpdump socat iputils-ping procps ca-certificates containernetworking-plugins iptables)"
    fi
    if ! command -v cargo >/dev/null; then
        echo "$0: no cargo on PATH: install a Rust toolchain >= 1.85 (https://rustup.rs) first" >&2
        exit 1
    fi
}
