#!/usr/bin/env bash
# The test command: installs what the tests need (Debian/Ubuntu, as root), then checks
# formatting and lints, builds, and runs every test, the network-namespace ones included.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# Commands the integration tests run, and the Debian package of each.
need_packages() {
    local missing=()
    command -v ip >/dev/null || missing+=(iproute2)
    command -v tcpdump >/dev/null || missing+=(tcpdump)
    command -v socat >/dev/null || missing+=(socat)
    command -v ping >/dev/null || missing+=(iputils-ping)
    command -v sysctl >/dev/null || missing+=(procps)
    { [ -x /usr/bin/kill ] || [ -x /bin/kill ]; } || missing+=(procps)
    [ -e /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
    if [ "${#missing[@]}" -gt 0 ]; then
        if [ "$(id -u)" -ne 0 ]; then
            echo "missing packages ${missing[*]} and not root: install them or run as root" >&2
            exit 1
        fi
        step "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q
        apt-get install -y -q --no-install-recommends "${missing[@]}"
    else
        step "system packages present (iproute2 tcpdump socat iputils-ping procps ca-certificates)"
    fi
}

need_packages

if [ "$(id -u)" -ne 0 ]; then
    echo "the integration tests create network namespaces: run $0 as root" >&2
    exit 1
fi

step "cargo fmt --all -- --check"
cargo fmt --all -- --check

step "cargo clippy --workspace --all-targets --locked -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo build --workspace --locked"
cargo build --workspace --locked

step "cargo test --workspace --locked"
cargo test --workspace --locked

step "all checks passed"
