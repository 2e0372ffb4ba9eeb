#!/usr/bin/env bash
# Tether's benchmarks, on demand (CI runs only the --quick smoke):
#   bash bench/run.sh           release build; ~25 min; writes bench/results/ and docs/BENCHMARKS.md
#   bash bench/run.sh --quick   the debug build, tiny counts, results in a temporary directory
# Extra arguments go to bench/run.py (e.g. --only 1,3 --watchers 2000).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
quick=()
if [ "${1:-}" = "--quick" ]; then quick=(--quick); shift; fi

# The tools compared against and driving the load: Debian packages, and the MachineID SDK.
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v bwrap >/dev/null || need+=(bubblewrap)
command -v firejail >/dev/null || need+=(firejail)
command -v cc >/dev/null || need+=(gcc libc6-dev)
command -v curl >/dev/null || need+=(curl)
command -v bc >/dev/null || need+=(bc)
# Docker's default seccomp profile as Debian ships it (containers-common's seccomp.json).
[ -e /usr/share/containers/seccomp.json ] || need+=(golang-github-containers-common)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
python3 -c "import machineid" 2>/dev/null || python3 -m pip install -q --disable-pip-version-check machineid-io

if [ ${#quick[@]} -gt 0 ]; then
  swift build >/dev/null
  bin=.build/debug
else
  swift build -c release >/dev/null
  bin=.build/release
  # The binary `make install` ships (static Swift runtime), for the launch rows beside it.
  make build >/dev/null
  # The launch row's small-launcher reference: only TetherCore and TetherSystem, built alike.
  swift build -c release --scratch-path .build-release --product tether-bench-launch-floor --static-swift-stdlib >/dev/null
fi
# The workers' init as `make install` ships it (a small static C program); without it every
# worker's init would be a fresh exec of the whole tether binary.
make -s init INIT="$bin/tether-init" >/dev/null
exec python3 bench/run.py --bin "$bin" "${quick[@]}" "$@"
