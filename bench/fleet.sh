#!/usr/bin/env bash
# Fleet benchmarks (authority replicas on PostgreSQL), on demand; each figure against a baseline
# in the same run:
#   - one revoke → the last of N watch streams: one replica on SQLite, one on PostgreSQL, and
#     the streams spread over three replicas on PostgreSQL;
#   - validate req/s (wrk) on SQLite and on PostgreSQL, against /healthz;
#   - revoke → every worker process stopped (from /proc) when the supervisor watches another
#     replica than the operator's, against the same replica.
# Usage: bench/fleet.sh [wrk-seconds] [watchers] [revocations]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}; fan=${2:-10000}; revs=${3:-100}
command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null
bin=${TETHER_BENCH_BIN:-}
if [ -z "$bin" ]; then
  for p in tether tether-bench-authority tether-bench-revocation; do swift build -c release --product $p >/dev/null; done
  bin=.build/release
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
work=$(mktemp -d /tmp/tether-fleet-bench-XXXX)
# The cluster's own directory, directly under /tmp: the server runs as postgres (0700 parents stop it).
pg=$(mktemp -d /tmp/tether-fleet-pg-XXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; bash scripts/pg-cluster.sh stop "$pg"; rm -rf "$work" "$pg"; }
trap cleanup EXIT
db=$(bash scripts/pg-cluster.sh start "$pg")
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 200); do curl -sf "$1/healthz" >/dev/null && return; sleep 0.05; done; echo "no authority at $1" >&2; exit 1; }
url=""
serve() {  # serve NAME EXTRA...: sets $url (not a subshell: the server's pid must be kept)
  local p; p=$(port)
  "$bin/tether" authority serve --listen 127.0.0.1:$p --max-streams-per-key 50000 "${@:2}" >"$work/$1.log" 2>&1 &
  pids+=($!)
  url="http://127.0.0.1:$p"
}

"$bin/tether" authority init --dir "$work/sqlite" >/dev/null
serve sqlite --dir "$work/sqlite"; sqlite=$url
TETHER_DATABASE_URL=$db "$bin/tether" authority init --dir "$work/pgkeys" >/dev/null
r=()
export TETHER_DATABASE_URL=$db
for i in 0 1 2; do serve pg$i; r+=("$url"); done
unset TETHER_DATABASE_URL
for u in "$sqlite" "${r[@]}"; do wait_up "$u"; done
sop=$(cat "$work/sqlite/operator.key"); sag=$(cat "$work/sqlite/agent.key")
pop=$(cat "$work/pgkeys/operator.key"); pag=$(cat "$work/pgkeys/agent.key")
for pair in "$sqlite $sag" "${r[0]} $pag"; do
  set -- $pair
  curl -sf -XPOST -H "x-org-key: $2" -d '{"deviceId":"bench-surface"}' "$1/api/v1/devices/register" >/dev/null
done

echo "== validate, wrk -t2 -c64, ${secs}s each ($(nproc) cores shared by server and wrk)"
rate() { awk '/Requests\/sec/ {print $2}'; }
health=$(wrk -t2 -c64 -d${secs}s "${r[0]}/healthz" | rate)
vsqlite=$(TETHER_BENCH_KEY=$sag wrk -t2 -c64 -d${secs}s -s bench/wrk-validate.lua "$sqlite/api/v1/devices/validate" | rate)
vpg=$(TETHER_BENCH_KEY=$pag wrk -t2 -c64 -d${secs}s -s bench/wrk-validate.lua "${r[0]}/api/v1/devices/validate" | rate)
printf "GET /healthz, a PostgreSQL replica (baseline)  %10.0f req/s\n" "$health"
printf "POST validate, SQLite                          %10.0f req/s\n" "$vsqlite"
printf "POST validate, PostgreSQL replica              %10.0f req/s\n" "$vpg"

echo
echo "== one revoke → $fan watch streams: SQLite"
"$bin/tether-bench-authority" "$sqlite" "$sop" "$sag" --fanout "$fan" | sed 's/^/sqlite: /'
echo "== one revoke → $fan watch streams: one PostgreSQL replica"
"$bin/tether-bench-authority" "${r[1]}" "$pop" "$pag" --fanout "$fan" | sed 's/^/pg1: /'
echo "== one revoke → $fan watch streams spread over three PostgreSQL replicas"
"$bin/tether-bench-authority" "$(IFS=,; echo "${r[*]}")" "$pop" "$pag" --fanout "$fan" | sed 's/^/pg3: /'

echo
echo "== revoke → stopped, supervisor on replica 0, revokes alternating replica 0 and replica 1"
"$bin/tether-bench-revocation" "$revs" --replicas "${r[0]},${r[1]}" --dir "$work/pgkeys"
