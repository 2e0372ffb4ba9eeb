#!/usr/bin/env bash
# The README's first command: installs what is missing, builds, and runs a demo worker on a
# tether held by the embedded local authority. Revoke it from a second terminal:
#   .build/debug/tether revoke demo      .build/debug/tether restore demo
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for pkg in libseccomp-dev libsqlite3-dev slirp4netns; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "installing ${missing[*]}" >&2
    # The package lists first: on a fresh machine they are stale or empty.
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update -qq >&2 && apt-get install -y "${missing[@]}" >&2
    else
        sudo apt-get update -qq >&2 && sudo apt-get install -y "${missing[@]}" >&2
    fi
fi

swift build --product tether >&2
exec .build/debug/tether run --surface demo -- sh -c '
  sh -c "while :; do sleep 1; done" demo-helper &
  i=0
  while :; do i=$((i+1)); echo "demo worker: tick $i"; sleep 1; done'
