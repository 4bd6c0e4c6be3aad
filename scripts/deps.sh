#!/usr/bin/env bash
# Sourced by demo.sh and test.sh: makes sure the commands the demo (`ensure_deps demo`) or the
# tests (`ensure_deps`) run are installed (Debian/Ubuntu packages, installed with apt-get when
# missing) and that a Rust toolchain is there. The demo gets only what it runs.

step() { printf '\n==> %s\n' "$*"; }

ensure_deps() {
    local mode=${1:-test}
    if [ "$(id -u)" -ne 0 ]; then
        echo "$0: mesh creates network namespaces and devices: run it as root" >&2
        exit 1
    fi
    local missing=()
    command -v ip >/dev/null || missing+=(iproute2)
    command -v ping >/dev/null || missing+=(iputils-ping)
    command -v sysctl >/dev/null || missing+=(procps)
    { [ -x /usr/bin/kill ] || [ -x /bin/kill ]; } || missing+=(procps)
    [ -e /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
    # meshd puts its filter (table inet mesh) in place with the nft command.
    command -v nft >/dev/null || missing+=(nftables)
    # The demo resolves every pod's name with dig; the DNS tests query meshd with it too.
    command -v dig >/dev/null || missing+=(bind9-dnsutils)
    if [ "$mode" = demo ]; then
        install_missing "${missing[@]}"
        ensure_rust
        return
    fi
    command -v tcpdump >/dev/null || missing+=(tcpdump)
    command -v socat >/dev/null || missing+=(socat)
    # The CNI tests chain Debian's portmap plugin after mesh-cni; portmap drives iptables.
    [ -x /usr/lib/cni/portmap ] || missing+=(containernetworking-plugins)
    command -v iptables >/dev/null || missing+=(iptables)
    # The podman tests run real containers (podman 4.x with its CNI backend, runc, conmon)
    # from an image made of Debian's static busybox; nsenter (util-linux) enters the hosts.
    command -v podman >/dev/null || missing+=(podman)
    [ -x /usr/sbin/runc ] || missing+=(runc)
    [ -x /usr/bin/conmon ] || missing+=(conmon)
    dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
    command -v nsenter >/dev/null || missing+=(util-linux)
    # The metrics test scrapes /metrics from inside a host namespace.
    command -v curl >/dev/null || missing+=(curl)
    # The DNS test runs dnsmasq as a stub upstream (inside a test namespace; dnsmasq-base is
    # the binary without the system service).
    command -v dnsmasq >/dev/null || missing+=(dnsmasq-base)
    # The handshake-flood benchmark measures pod-to-pod throughput with iperf3.
    command -v iperf3 >/dev/null || missing+=(iperf3)
    install_missing "${missing[@]}"
    # The metrics test validates /metrics with promtool. Only promtool is taken out of Debian's
    # prometheus package: installing the package would start a Prometheus server on this
    # machine (its postinst), which the tests must not do.
    if ! command -v promtool >/dev/null; then
        step "installing promtool (from Debian's prometheus package)"
        local tmp
        tmp=$(mktemp -d)
        apt-get update -q
        chmod 755 "$tmp" # readable by apt's download user
        (cd "$tmp" && apt-get download -q prometheus)
        dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x"
        install -m 0755 "$tmp/x/usr/bin/promtool" /usr/local/bin/promtool
        rm -rf "$tmp"
    fi
    ensure_rust
}

# apt-get install of the packages named, if any are.
install_missing() {
    if [ "$#" -gt 0 ]; then
        step "installing $*"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q
        apt-get install -y -q --no-install-recommends "$@"
    else
        step "system packages present"
    fi
}

ensure_rust() {
    if ! command -v cargo >/dev/null; then
        echo "$0: no cargo on PATH: install a Rust toolchain >= 1.89 (kube 5 needs it) (https://rustup.rs) first" >&2
        exit 1
    fi
    local v
    v=$(rustc --version | awk '{print $2}')
    if [ "$(printf '%s\n1.89.0\n' "$v" | sort -V | head -n1)" != 1.89.0 ]; then
        echo "$0: rustc $v is too old: mesh needs Rust >= 1.89 (rustup update stable)" >&2
        exit 1
    fi
}

# cargo-deny (scripts/deny.sh), when missing. It is not packaged by Debian, so it is built from
# crates.io: once per machine, about 4 minutes on 2 cores. The version is pinned so that a new
# release cannot reject deny.toml and fail a run that changed nothing.
ensure_cargo_deny() {
    if ! cargo deny --version >/dev/null 2>&1; then
        step "installing cargo-deny 0.20.2 (cargo install, once per machine: about 4 minutes)"
        cargo install --locked cargo-deny --version 0.20.2
    fi
}
