#!/usr/bin/env bash
# Checks every unit in systemd/: `systemd-analyze verify` with any output at all counted as a
# failure (it exits 0 on unknown keys), and `systemd-analyze security --offline=yes` with each
# unit's exposure printed and held to its bound in systemd/exposure-bounds (which may only go
# down). Usage: systemd/check-units.sh PATH_TO_TETHER_BINARY
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
binary="$(readlink -f "${1:?usage: check-units.sh PATH_TO_TETHER_BINARY}")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

status=0
for unit in "$here"/*.service; do
    name="$(basename "$unit")"
    # verify needs the executables the unit names to exist: point them at this build.
    sed "s|/usr/local/bin/tether|$binary|g" "$unit" > "$work/$name"
    out="$(cd "$work" && systemd-analyze verify "./$name" 2>&1 || true)"
    if [ -n "$out" ]; then
        echo "FAIL verify $name:"; echo "$out" | sed 's/^/  /'; status=1
    else
        echo "ok   verify $name"
    fi
    score="$(cd "$work" && systemd-analyze security --offline=yes "./$name" 2>/dev/null | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')"
    bound="$(awk -v u="$name" '$1 == u { print $2 }' "$here/exposure-bounds")"
    if [ -z "$score" ] || [ -z "$bound" ]; then
        echo "FAIL security $name: score '${score}' bound '${bound}'"; status=1
    elif awk -v s="$score" -v b="$bound" 'BEGIN { exit !(s > b) }'; then
        echo "FAIL security $name: exposure $score is above its bound $bound"; status=1
    else
        echo "ok   security $name: exposure $score (bound $bound)"
    fi
done
exit $status
