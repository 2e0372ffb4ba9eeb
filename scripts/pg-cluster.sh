#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests and benchmarks: no system service, nothing outside DIR.
#   scripts/pg-cluster.sh start DIR [PORT]   prints the database URL (user tether, database tether)
#   scripts/pg-cluster.sh stop DIR
#   scripts/pg-cluster.sh restart DIR        (stop fast, start again on the same port)
# Root runs the server as the postgres user (initdb refuses root). Needs Debian's postgresql.
set -euo pipefail
# Descriptors a caller handed down beyond 0-2 (Foundation's Process passes its pipes on) would
# live on in the server, and a caller reading to the end of our output would wait for it.
for fd in $(ls /proc/$$/fd); do
  if [ "$fd" -gt 2 ]; then eval "exec $fd>&-" 2>/dev/null || true; fi
done
cmd=${1:?start, stop or restart}
dir=${2:?a directory}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$bin" ] || { echo "PostgreSQL is not installed (apt-get install postgresql)" >&2; exit 69; }
as=()
if [ "$(id -u)" = 0 ]; then as=(runuser -u postgres --); fi

# The server keeps no descriptor of its caller: a caller reading our output to its end (a test
# harness) would otherwise wait for the server to exit.
pgctl() { "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w "$@" </dev/null >>"$dir/pg_ctl.log" 2>&1; }

# A port below the kernel's ephemeral range: the source port of a connection, or a test
# server's port picked by binding port 0, is taken from that range and could hold the port
# while the server is down for a restart (a chaos test's "Address already in use", 2026-11-26).
pick_port() {
  local low
  low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
  [ "$low" -gt 21000 ] 2>/dev/null || low=32768
  echo $((20000 + RANDOM % (low - 20000)))
}

case "$cmd" in
start)
  fixed=${3:-$(cat "$dir/port" 2>/dev/null || true)}
  port=${fixed:-$(pick_port)}
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; fi
  if [ ! -d "$dir/data" ]; then
    "${as[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
    cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 200
fsync = on
synchronous_commit = on
CONF
  fi
  # A port chosen here may still be another server's (two clusters on one machine): another.
  for try in 1 2 3 4 5; do
    pgctl start -o "-p $port" && break
    if [ -n "$fixed" ] || [ "$try" = 5 ] || ! tail -20 "$dir/server.log" | grep -q "already in use"; then
      tail -20 "$dir/server.log" >&2
      exit 1
    fi
    port=$(pick_port)
  done
  "${as[@]}" "$bin/psql" -h "$dir" -p "$port" -U postgres -qAt -c "SELECT 1 FROM pg_roles WHERE rolname='tether'" | grep -q 1 \
    || "${as[@]}" "$bin/psql" -h "$dir" -p "$port" -U postgres -q -c "CREATE ROLE tether LOGIN CREATEDB" -c "CREATE DATABASE tether OWNER tether"
  echo "$port" >"$dir/port"
  echo "postgresql://tether@127.0.0.1:$port/tether?sslmode=disable"
  ;;
stop)
  [ -d "$dir/data" ] && pgctl stop -m fast || true
  ;;
restart)
  port=$(cat "$dir/port")
  pgctl stop -m fast
  pgctl start -o "-p $port" || { tail -20 "$dir/server.log" >&2; exit 1; }
  ;;
*) echo "start, stop or restart" >&2; exit 64 ;;
esac
