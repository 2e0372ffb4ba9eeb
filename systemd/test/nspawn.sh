#!/usr/bin/env bash
# Tests the units under a real systemd: boots a minimal Debian 12 tree with systemd-nspawn, with
# the tether binary, the units and the example configurations installed, and runs inside.sh as
# a service there. The tree is debootstrapped once and cached ($TETHER_NSPAWN_CACHE, default
# /var/cache/tether-ci/bookworm); each run boots a fresh copy. Bounded; skipped with a loud
# message only where the tree cannot be made or nspawn cannot boot it.
# Usage: systemd/test/nspawn.sh PATH_TO_TETHER_BINARY
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
binary="$(readlink -f "${1:?usage: nspawn.sh PATH_TO_TETHER_BINARY [PATH_TO_DEB]}")"
# With a package: it is what gets installed (apt-get install ./tether….deb), and removed and
# purged at the end; without, the binary, the units and the configurations are copied in.
deb="${2:+$(readlink -f "$2")}"
cache="${TETHER_NSPAWN_CACHE:-/var/cache/tether-ci/bookworm}"

skip() {
    echo "################################################################################" >&2
    echo "# SKIPPED: the real-systemd test could not run here: $*" >&2
    echo "################################################################################" >&2
    exit 0
}

if ! command -v systemd-nspawn >/dev/null || ! command -v debootstrap >/dev/null; then
    apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd-container debootstrap >/dev/null || skip "cannot install systemd-container and debootstrap"
fi
if [ ! -x "$cache/lib/systemd/systemd" ]; then
    rm -rf "$cache.tmp"
    mkdir -p "$(dirname "$cache")"
    echo "debootstrap: a minimal Debian 12 into $cache (once)" >&2
    timeout 900 debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,libseccomp2,libsqlite3-0,procps \
        bookworm "$cache.tmp" http://deb.debian.org/debian >/dev/null || skip "debootstrap failed"
    mv "$cache.tmp" "$cache"
fi

root="$(mktemp -d /var/tmp/tether-nspawn.XXXXXX)"
results="$(mktemp -d)"
trap 'rm -rf "$root" "$results"' EXIT
cp -a "$cache/." "$root/"
if [ -n "$deb" ]; then
    cp "$deb" "$root/var/tmp/tether.deb"
    # libpam-systemd and dbus-user-session: a lingering user's own systemd and session bus
    # (user@UID.service needs its session's runtime directory, `systemd-run --user` the bus in
    # it), which inside.sh's session check attacks from that user's worker.
    timeout 300 systemd-nspawn -q -D "$root" --register=no --keep-unit --pipe \
        sh -c 'cd /var/tmp && { apt-get update -qq && apt-get install -y -q --no-install-recommends ./tether.deb man-db libpam-systemd dbus-user-session \
               || apt-get install -y -q ./tether.deb; }' > "$results/install" 2>&1 \
        || { cat "$results/install" >&2; echo "FAIL: apt-get install ./tether.deb in the image" >&2; exit 1; }
    rm -f "$root/var/tmp/tether.deb"
else
    install -m 0755 "$binary" "$root/usr/local/bin/tether"
    # The workers' init, where `make build` made it beside the binary: as `make install` places it.
    init="$(dirname "$binary")/tether-init"
    if [ -x "$init" ]; then install -D -m 0755 "$init" "$root/usr/local/libexec/tether/tether-init"; fi
    install -d -m 0755 "$root/etc/tether"
    for u in "$repo"/systemd/*.service; do install -m 0644 "$u" "$root/etc/systemd/system/"; done
    for c in "$repo"/systemd/*.toml; do install -m 0644 "$c" "$root/etc/tether/"; done
fi
install -m 0755 "$here/inside.sh" "$root/usr/local/sbin/tether-nspawn-check"
cat > "$root/etc/systemd/system/tether-nspawn-check.service" <<UNIT
[Unit]
Description=Tether's checks under a real systemd
After=multi-user.target
[Service]
Type=oneshot
ExecStart=/usr/local/sbin/tether-nspawn-check
StandardOutput=journal+console
UNIT
mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
ln -sf ../tether-nspawn-check.service "$root/etc/systemd/system/multi-user.target.wants/tether-nspawn-check.service"
echo tether-ci > "$root/etc/hostname"

# A binary linked against the Swift runtime in /opt/swift (a debug build) finds it at the same path.
extra=()
if ldd "$binary" | grep -q "/opt/swift"; then extra+=(--bind-ro=/opt/swift); fi
# nspawn (systemd 252) filters the container's syscalls with a list that lacks pidfd_getfd,
# which the supervisor needs for a worker's gates (docs/gates.md); systemd does not filter a
# service's syscalls unless its unit says so.
start=$(date +%s)
# --private-network: nspawn keeps CAP_NET_ADMIN only for a container with a network of its own,
# and the supervisor needs it for each worker's network namespace (its loopback brought up).
timeout 600 systemd-nspawn -q -D "$root" --boot --register=no --keep-unit "${extra[@]}" --private-network \
    --system-call-filter=pidfd_getfd --bind="$results:/results" > "$results/console" 2>&1 || true
echo "container ran $(( $(date +%s) - start )) s" >&2

if [ ! -s "$results/log" ]; then
    tail -30 "$results/console" >&2
    grep -qi "failed to\|not supported\|permission denied" "$results/console" && ! grep -q "Reached target" "$results/console" \
        && skip "systemd-nspawn could not boot the tree (console above)"
    echo "FAIL: the checks did not run (console above)" >&2
    exit 1
fi
cat "$results/log"
if grep -q "^FAIL" "$results/log" || ! grep -q "^done" "$results/log"; then
    echo "--- console (tail)" >&2
    tail -40 "$results/console" >&2
    exit 1
fi
