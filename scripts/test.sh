#!/usr/bin/env bash
# The test command: installs what the tests need (Debian/Ubuntu, as root), then checks
# formatting and lints, builds, and runs every test, the network-namespace ones included.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/deps.sh
. scripts/deps.sh
ensure_deps

step "cargo fmt --all -- --check"
cargo fmt --all -- --check

step "every crate's clippy.toml keeps the root clippy.toml's settings"
./scripts/clippy-config-check.sh

step "cargo clippy --workspace --all-targets --locked -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo deny (licenses, advisories, duplicate versions, sources)"
./scripts/deny.sh

step "cargo build --workspace --locked"
cargo build --workspace --locked
./scripts/chart-check.sh

step "cargo test --workspace --locked"
cargo test --workspace --locked

step "all checks passed"
