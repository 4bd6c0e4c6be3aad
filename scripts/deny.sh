#!/usr/bin/env bash
# cargo-deny over the dependency tree (deny.toml): licenses (a crate under a license deny.toml
# does not allow fails the run), advisories (RustSec's database, fetched now; a known
# vulnerable, unsound, unmaintained or yanked crate fails the run), duplicate versions (a
# warning) and sources (crates.io only). The checks take about a second.
#
# The advisory database is a git repository fetched at each run. Where it cannot be fetched
# (a machine or CI run without access to it), the advisories are skipped with one line that
# says so, and the other checks still run: no advisory snapshot is kept in this repository.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/deps.sh
. scripts/deps.sh
ensure_cargo_deny

log=$(mktemp)
trap 'rm -f "$log"' EXIT
if timeout 120 cargo deny --locked fetch db >"$log" 2>&1; then
    cargo deny --offline --locked check --hide-inclusion-graph
else
    why=$(grep -m1 -o -E 'fatal: .*|Could not resolve host.*|timed out.*' "$log" || true)
    echo "cargo deny: advisories NOT checked: the advisory database could not be fetched (${why:-see cargo deny fetch db}); checking licenses, bans and sources only"
    cargo deny --offline --locked check --hide-inclusion-graph licenses bans sources
fi
