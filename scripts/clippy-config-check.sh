#!/usr/bin/env bash
# Clippy reads only the clippy.toml nearest a crate: a crate with its own (the sans-I/O cores,
# for their disallowed methods and types) would silently lose a setting added to the root
# clippy.toml. This fails, naming the file and the line, when a crate's clippy.toml lacks one of
# the root's settings.
set -euo pipefail
cd "$(dirname "$0")/.."

status=0
while IFS= read -r f; do
    while IFS= read -r line; do
        case "$line" in '' | '#'*) continue ;; esac
        if ! grep -qxF -- "$line" "$f"; then
            echo "$f: lacks \`$line\` from the root clippy.toml (clippy reads only the nearest clippy.toml)" >&2
            status=1
        fi
    done <clippy.toml
done < <(find . -path ./clippy.toml -prune -o \( -name target -o -name .git \) -prune -o -name clippy.toml -print)
exit "$status"
