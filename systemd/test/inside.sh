#!/bin/bash
# Runs inside the booted container (as tether-nspawn-check.service) and writes one line per
# check to /results/log: "ok …", "FAIL …", or "measure …". Powers the container off at the end.
set -u
out=/results/log
: > "$out"
ok()   { echo "ok   $*" >> "$out"; }
bad()  { echo "FAIL $*" >> "$out"; }
check() { local what="$1"; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
waitfor() { local n=$1; shift; for _ in $(seq 1 "$n"); do "$@" && return 0; sleep 0.1; done; return 1; }
now_ms() { date +%s%3N; }
# cgroup v2: /sys/fs/cgroup, or /sys/fs/cgroup/unified on a hybrid host.
cgroot=/sys/fs/cgroup; [ -e /sys/fs/cgroup/unified/cgroup.procs ] && cgroot=/sys/fs/cgroup/unified
cg() { echo "$cgroot/system.slice/$1"; }
worker_cg() { ls -d "$(cg "$1")"/tether.*/"$2".* 2>/dev/null | head -1; }
frozen() { grep -q "^frozen 1" "$(worker_cg "$1" "$2")/cgroup.events"; }
thawed() { grep -q "^frozen 0" "$(worker_cg "$1" "$2")/cgroup.events"; }
all_T() { local d; d="$(worker_cg "$1" "$2")"; [ -n "$d" ] && for p in $(cat "$d/cgroup.procs"); do [ "$(awk '{print $3}' /proc/$p/stat)" = T ] || return 1; done; }
has_worker() { test -n "$(worker_cg "$1" "$2")"; }
# The worker's first process (its shell loop), not the short-lived children it runs.
worker_main() { local d; d="$(worker_cg "$1" "$2")"; [ -n "$d" ] && for p in $(cat "$d/cgroup.procs"); do [ "$(cat /proc/$p/comm)" = sh ] && echo "$p"; done | head -1; }
worker_pids() { local d; d="$(worker_cg "$1" "$2")"; [ -n "$d" ] && cat "$d/cgroup.procs" | sort | tr '\n' ' '; }

trap 'systemctl poweroff --no-block' EXIT

# The authority: Type=notify, so `start` returns once READY=1 came.
t0=$(now_ms)
check "tether-authority starts and reports READY" systemctl start tether-authority
systemctl is-active -q tether-authority || journalctl -u tether-authority -b --no-pager | tail -15 | sed 's/^/  journal: /' >> "$out"
echo "measure authority_ready_ms $(( $(now_ms) - t0 ))" >> "$out"
check "authority status line set" test -n "$(systemctl show -p StatusText --value tether-authority)"
echo "measure authority_status $(systemctl show -p StatusText --value tether-authority)" >> "$out"
install -m 0600 /var/lib/tether/agent.key /etc/tether/agent.key
tether authority public-key > /etc/tether/authority.pub

# The supervisor and its worker.
check "tether-supervisor starts and reports READY" systemctl start tether-supervisor
systemctl is-active -q tether-supervisor || journalctl -u tether-supervisor -b --no-pager | tail -15 | sed 's/^/  journal: /' >> "$out"
check "the demo worker runs in its own cgroup inside the unit's" waitfor 100 has_worker tether-supervisor.service demo
# Out of the supervisor's reach: its own PID and mount namespaces, a dedicated uid, the key covered.
main_pid=$(systemctl show -p MainPID --value tether-supervisor)
# The worker's shell, once it has exec'd (until then the cgroup holds only tether processes),
# in namespaces other than the supervisor's. Asked again for up to 5 s, then the evidence.
own_ns() {
  wpid="$(worker_main tether-supervisor.service demo)"
  [ -n "$wpid" ] || return 1
  local wp wm sp sm
  wp=$(readlink /proc/$wpid/ns/pid) wm=$(readlink /proc/$wpid/ns/mnt) sp=$(readlink /proc/$main_pid/ns/pid) sm=$(readlink /proc/$main_pid/ns/mnt)
  [ -n "$wp" ] && [ -n "$wm" ] && [ "$wp" != "$sp" ] && [ "$wm" != "$sm" ]
}
check "the demo worker has its own PID and mount namespaces" waitfor 50 own_ns
own_ns || {
  d="$(worker_cg tether-supervisor.service demo)"
  echo "  evidence: main $main_pid $(readlink /proc/$main_pid/ns/pid) $(readlink /proc/$main_pid/ns/mnt); worker cgroup ${d:-none}" >> "$out"
  for p in $(cat "$d/cgroup.procs" 2>/dev/null); do echo "  evidence: $p $(cat /proc/$p/comm) $(readlink /proc/$p/ns/pid) $(readlink /proc/$p/ns/mnt)" >> "$out"; done
  journalctl -u tether-supervisor -b --no-pager | tail -15 | sed 's/^/  journal: /' >> "$out"
}
wpid="$(worker_main tether-supervisor.service demo)"
check "the demo worker cannot see the agent key (covered in its mount namespace)" test -z "$(nsenter -t "$wpid" -m cat /etc/tether/agent.key 2>/dev/null)"
check "tether revoke freezes it (cgroup.events frozen 1, every process T)" bash -c "tether revoke demo --reason nspawn --wait 5s >/dev/null && cgroot=$cgroot; $(declare -f cg worker_cg frozen all_T waitfor); waitfor 50 frozen tether-supervisor.service demo && waitfor 50 all_T tether-supervisor.service demo"
echo "measure supervisor_status $(systemctl show -p StatusText --value tether-supervisor)" >> "$out"
check "systemctl status names who revoked it and why" waitfor 50 bash -c "systemctl show -p StatusText --value tether-supervisor | grep -q 'demo revoked .* by operator: nspawn)'"
check "tether restore thaws it (frozen 0)" bash -c "tether restore demo --wait 5s >/dev/null && cgroot=$cgroot; $(declare -f cg worker_cg thawed waitfor); waitfor 50 thawed tether-supervisor.service demo"
# The shipped binary links the Swift runtime statically; its async runtime must still be the
# event loops (the runtime's hook reached at link time, not by dlsym): no libdispatch thread,
# whose first one would start libdispatch's once-a-second timer for good.
no_dispatch() { ! cat /proc/$main_pid/task/*/comm | grep -qE 'qos|dispatch'; }
check "the supervisor runs no libdispatch thread (its async runtime is the event loops)" no_dispatch
no_dispatch || echo "  evidence: threads $(cat /proc/$main_pid/task/*/comm | tr '\n' ' ')" >> "$out"

# Reload: add a worker; the unchanged one keeps its processes.
before="$(worker_main tether-supervisor.service demo)"
cat >> /etc/tether/supervisor.toml <<'TOML'

[[worker]]
name = "second"
command = ["/bin/sh", "-c", "while :; do if /bin/true; then echo ok > /tmp/second-exec; else echo denied > /tmp/second-exec; fi; sleep 0.2; done"]
user = "nobody"
net = "none"
gates = { exec = "second.exec" }
TOML
check "systemctl reload picks up a changed config" bash -c "systemctl reload tether-supervisor && cgroot=$cgroot; $(declare -f cg worker_cg has_worker waitfor); waitfor 100 has_worker tether-supervisor.service second"
check "the unchanged worker was not touched (pid $before)" test -n "$before" -a "$before" = "$(worker_main tether-supervisor.service demo)"

# A gate (docs/gates.md) under the unit's restrictions: the second worker's exec gate.
check "a gated worker runs its programs while its gate is open" waitfor 100 grep -qx ok /tmp/second-exec
grep -qx ok /tmp/second-exec 2>/dev/null || journalctl -u tether-supervisor -b --no-pager | grep -E 'second|gate' | tail -8 | sed 's/^/  journal: /' >> "$out"
check "revoking its gate's surface is acknowledged (gate_closed)" bash -c "tether revoke second.exec --reason nspawn --wait 5s | grep -q gate_closed"
check "the gated exec fails, the worker runs on (not frozen)" bash -c "$(declare -f waitfor); waitfor 50 grep -qx denied /tmp/second-exec && cgroot=$cgroot; $(declare -f cg worker_cg thawed); thawed tether-supervisor.service second"
check "restored, its programs run again" bash -c "tether restore second.exec --wait 5s >/dev/null && $(declare -f waitfor); waitfor 50 grep -qx ok /tmp/second-exec"
journalctl -u tether-supervisor -b --no-pager | grep -E 'gate (denied|closed)' | tail -2 | sed 's/^/  journal: /' >> "$out"

# A killed supervisor is restarted by systemd and leaves no orphan worker.
old_main=$(systemctl show -p MainPID --value tether-supervisor)
old_pids="$(worker_pids tether-supervisor.service demo)"
kill -9 "$old_main"
check "systemd restarts a SIGKILLed supervisor" waitfor 150 bash -c "[ \"\$(systemctl show -p MainPID --value tether-supervisor)\" != 0 ] && [ \"\$(systemctl show -p MainPID --value tether-supervisor)\" != $old_main ] && systemctl is-active -q tether-supervisor"
orphans=0; for p in $old_pids; do [ -d /proc/$p ] && orphans=$((orphans+1)); done
check "no orphan of the killed supervisor's workers ($orphans left)" test "$orphans" -eq 0
check "the demo worker runs again" waitfor 100 has_worker tether-supervisor.service demo

# systemctl stop: everything stops, in order, nothing left in the unit's cgroup.
check "systemctl stop tether-supervisor" systemctl stop tether-supervisor
check "nothing left in the supervisor's cgroup" bash -c "! [ -e $(cg tether-supervisor.service)/cgroup.procs ] || [ -z \"\$(cat $(cg tether-supervisor.service)/cgroup.procs)\" ]"
check "workers were stopped by the supervisor before it exited" bash -c "journalctl -u tether-supervisor -b --no-pager | grep -q 'all workers stopped'"

# One worker per template instance.
t0=$(now_ms)
check "systemctl start tether@demo reports READY" systemctl start tether@demo
echo "measure tether@demo_ready_ms $(( $(now_ms) - t0 ))" >> "$out"
check "tether@demo: revoke freezes" bash -c "tether revoke demo --wait 5s >/dev/null && cgroot=$cgroot; $(declare -f cg worker_cg frozen waitfor); waitfor 50 frozen 'system-tether.slice/tether@demo.service' demo"
echo "measure tether@demo_status $(systemctl show -p StatusText --value tether@demo)" >> "$out"
tether restore demo >/dev/null
systemctl stop tether@demo
# An ordinary user's worker and that user's own systemd (issue 30): a lingering user's manager,
# reached through its runtime directory. The user itself starts a unit with `systemd-run --user`
# (the control): a process outside every namespace, cgroup and filter. Its worker, given the
# variable (--pass-env XDG_RUNTIME_DIR), finds the directory covered and cannot.
if useradd -m tsess 2>/dev/null && loginctl enable-linger tsess 2>/dev/null; then
    suid=$(id -u tsess)
    rt="XDG_RUNTIME_DIR=/run/user/$suid"
    waitfor 100 test -S "/run/user/$suid/systemd/private"
    if runuser -u tsess -- env "$rt" systemd-run --user --quiet --wait /bin/true 2>/dev/null; then
        ok "control: the user's own systemd-run --user starts a unit"
        rm -f /tmp/sess-rc
        runuser -u tsess -- env "$rt" HOME=/home/tsess TETHER_LOG_LEVEL=error tether run --net none --pass-env XDG_RUNTIME_DIR \
            --surface sess -- /bin/sh -c 'systemd-run --user --quiet --wait /bin/true 2>/tmp/sess-err; echo $? > /tmp/sess-rc' >/dev/null 2>&1
        check "the user's worker cannot reach the user's systemd (systemd-run --user: exit $(cat /tmp/sess-rc 2>/dev/null), $(head -c 100 /tmp/sess-err 2>/dev/null))" \
            bash -c '[ -s /tmp/sess-rc ] && [ "$(cat /tmp/sess-rc)" != 0 ]'
    else
        echo "  note: no user manager started for a lingering user in this image: the systemd-run --user check was not run" >> "$out"
        { systemctl status "user@$suid.service" --no-pager 2>&1 | tail -5; ls -la "/run/user/$suid" "/run/user/$suid/systemd" 2>&1 | tail -6;
          runuser -u tsess -- env "$rt" systemd-run --user --quiet --wait /bin/true 2>&1 | tail -2; } | sed 's/^/  diag: /' >> "$out"
    fi
    loginctl disable-linger tsess 2>/dev/null
fi

# Installed from the package: the man pages are there, remove keeps the configuration and the
# state and stops only Tether's services, purge takes them.
if dpkg -s tether >/dev/null 2>&1; then
    if command -v man >/dev/null; then
        check "man -w finds tether-run(1) and tether.toml(5)" bash -c "man -w tether-run && man -w 5 tether.toml"
    else
        echo "  note: no man-db in the image (its package lists could not be fetched): the page files are checked instead" >> "$out"
        check "the package installed tether-run(1) and tether.toml(5)" test -f /usr/share/man/man1/tether-run.1.gz -a -f /usr/share/man/man5/tether.toml.5.gz
    fi
    check "the package installed the completions" test -f /usr/share/bash-completion/completions/tether
    systemctl start tether-supervisor >/dev/null 2>&1
    check "apt-get remove tether" bash -c "apt-get remove -y -q tether >/dev/null 2>&1"
    check "remove stopped Tether's services" bash -c "! systemctl is-active -q tether-supervisor && ! systemctl is-active -q tether-authority"
    check "remove stopped nothing else (dbus still active)" systemctl is-active -q dbus
    check "remove kept the configuration and the state" test -f /etc/tether/supervisor.toml -a -d /var/lib/private/tether
    check "apt-get purge tether" bash -c "apt-get purge -y -q tether >/dev/null 2>&1"
    check "purge removed the configuration and the state" bash -c "! [ -e /etc/tether ] && ! [ -e /var/lib/private/tether ]"
fi
echo "done" >> "$out"
