#!/usr/bin/env bash
# Authority benchmarks, on demand (not in CI): validate requests/second with wrk (2 threads,
# loopback) against /healthz in the same run, then revoke-to-watcher latency.
# Usage: bench/authority.sh [seconds] [revocations] [watchers]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}; revs=${2:-2000}; fan=${3:-2000}
command -v wrk >/dev/null || { apt-get install -y -qq wrk >/dev/null; }
# TETHER_BENCH_BIN: binaries already built (bench/run.sh); else a release build here.
bin=${TETHER_BENCH_BIN:-}
if [ -z "$bin" ]; then
  swift build -c release --product tether >/dev/null
  swift build -c release --product tether-bench-authority >/dev/null
  swift build -c release --product tether-bench-bare >/dev/null
  bin=.build/release
fi
# 10,000 watch streams: 20,000 descriptors on this host (both ends).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
dir=$(mktemp -d /tmp/tether-bench-XXXX)
$bin/tether authority init --dir "$dir" >/dev/null
port=$((20000 + RANDOM % 20000))
# One agent key holds every stream here: lift the per-key cap (1,000 by default) above the count.
$bin/tether authority serve --dir "$dir" --listen 127.0.0.1:$port --max-streams-per-key 50000 2>/dev/null &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do curl -sf http://127.0.0.1:$port/healthz >/dev/null && break; sleep 0.05; done
op=$(cat "$dir/operator.key"); agent=$(cat "$dir/agent.key")
curl -sf -XPOST -H "x-org-key: $agent" -d '{"deviceId":"bench-surface"}' http://127.0.0.1:$port/api/v1/devices/register >/dev/null

# The framework's own figure: a bare Hummingbird route with a constant JSON body, same build
# settings, same machine, interleaved with Tether's routes (rounds alternate; medians).
bareport=$((port + 1))
$bin/tether-bench-bare $bareport 2>/dev/null &
bare_pid=$!
trap 'kill $server $bare_pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do curl -sf http://127.0.0.1:$bareport/bare >/dev/null && break; sleep 0.05; done
rounds=${TETHER_BENCH_ROUNDS:-5}
echo "== wrk, 2 threads, 64 connections, ${secs}s each, $rounds rounds, loopback ($(nproc) cores shared by server and wrk)"
rps() { awk '/Requests\/sec/ {print $2}'; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
b=(); h=(); v=()
for r in $(seq $rounds); do
  b+=("$(wrk -t2 -c64 -d${secs}s -s bench/wrk-validate.lua http://127.0.0.1:$bareport/bare | rps)")
  h+=("$(wrk -t2 -c64 -d${secs}s http://127.0.0.1:$port/healthz | rps)")
  v+=("$(TETHER_BENCH_KEY=$agent wrk -t2 -c64 -d${secs}s -s bench/wrk-validate.lua http://127.0.0.1:$port/api/v1/devices/validate | rps)")
  echo "round $r: bare ${b[-1]}, healthz ${h[-1]}, validate ${v[-1]}"
done
bare=$(printf "%s\n" "${b[@]}" | median); health=$(printf "%s\n" "${h[@]}" | median); validate=$(printf "%s\n" "${v[@]}" | median)
printf "bare Hummingbird route (baseline) %10.0f req/s  ×1.00\n" "$bare"
printf "GET /healthz                      %10.0f req/s  ×%.2f\n" "$health" "$(echo "$health / $bare" | bc -l)"
printf "POST validate (auth, signed)      %10.0f req/s  ×%.2f\n" "$validate" "$(echo "$validate / $bare" | bc -l)"
echo
echo "== revoke → watch event"
$bin/tether-bench-authority http://127.0.0.1:$port "$op" "$agent" "$revs"
echo
echo "== one change to $fan watchers"
$bin/tether-bench-authority http://127.0.0.1:$port "$op" "$agent" --fanout "$fan"
