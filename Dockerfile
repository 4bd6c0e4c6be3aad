# syntax=docker/dockerfile:1
# The mesh image: meshd, meshctl and mesh-cni as static binaries on a small Alpine base.
#
#   docker build -t REGISTRY/mesh:0.1.0 .
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/mesh:0.1.0 --push .
#
# The Helm chart (charts/mesh) runs meshd from /usr/local/bin, probes it with meshctl, and
# its init container copies mesh-cni to the node's CNI directory with /bin/sh, cp and mv.

# Build: Rust on Alpine targets musl, whose binaries are linked statically, so they run on
# any Linux of the same architecture, the node's own file system included (mesh-cni runs
# there, started by the container runtime, not in this image). ring, the only dependency
# with C code, needs a C compiler and musl's headers.
ARG RUST_VERSION=1.89
FROM rust:${RUST_VERSION}-alpine AS build
RUN apk add --no-cache musl-dev binutils
WORKDIR /src
COPY . .
# The binaries leave the cached target directory for /out, keeping their symbols (for
# backtraces) but not the line tables; then static is checked: no shared library at all.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p meshd -p meshctl -p mesh-cni \
    && mkdir -p /out \
    && cp target/release/meshd target/release/meshctl target/release/mesh-cni /out/ \
    && strip --strip-debug /out/* \
    && for bin in /out/*; do \
         if readelf -d "$bin" | grep -q NEEDED; then echo "$bin is not static" >&2; exit 1; fi; \
       done

# Runtime: Alpine for a shell, cp and mv (the init container), and nftables: meshd puts its
# filter (table inet mesh) in place with the nft command.
# No iptables: neither meshd nor mesh-cni touch iptables; the portmap plugin chained after
# mesh-cni is the node's own binary and runs on the node with the node's iptables.
# No ip/iproute2: meshd talks netlink itself.
FROM alpine:3.22
RUN apk add --no-cache nftables
COPY --from=build /out/meshd /out/meshctl /out/mesh-cni /usr/local/bin/
LABEL org.opencontainers.image.title="mesh" \
      org.opencontainers.image.description="mesh: meshd, meshctl and mesh-cni (encrypted overlay network)" \
      org.opencontainers.image.licenses="Apache-2.0"
# meshd needs root (CAP_NET_ADMIN) and /dev/net/tun; the chart grants exactly that.
USER 0
ENTRYPOINT ["/usr/local/bin/meshd"]
