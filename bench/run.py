#!/usr/bin/env python3
"""Tether's benchmarks: every figure a ratio against a baseline measured in the same run.

Run through bench/run.sh (it installs the tools and builds); this does the measuring:

    python3 bench/run.py --bin .build/release            # full: writes bench/results/, docs/BENCHMARKS.md
    python3 bench/run.py --bin .build/debug --quick      # smoke: tiny counts, a temporary directory

Sections: revocation-to-stopped latency (watch, poll 1 s, the MachineID SDK loop), launch
overhead (plain exec, bwrap, firejail, tether profile try, tether run), seccomp cost per
syscall, the authority (wrk, 10,000 watchers), the supervisor's footprint (1 and 100 workers),
the fleet (replicas on PostgreSQL: validate, 10,000 watchers on one and three replicas, a revoke
on another replica than the supervisor's).
"""
import argparse
import datetime
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROWS = []  # (section, what, median, p99, unit, baseline, baseline median, ratio)


def pct(xs, p):
    s = sorted(xs)
    return s[min(len(s) - 1, int(round((len(s) - 1) * p)))]


def row(section, what, median, p99, unit, baseline, base_median):
    ratio = median / base_median if base_median else float("nan")
    ROWS.append((section, what, median, p99, unit, baseline, base_median, ratio))
    p99s = "—" if p99 is None else f"{p99:,.2f}"
    print(f"  {what:<46} {median:>12,.2f} {p99s:>12} {unit:<6} ×{ratio:,.2f} vs {baseline} ({base_median:,.2f})", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Authority:
    """A real `tether authority serve` in a fresh state directory."""

    def __init__(self, tether, lease="15s"):
        self.dir = tempfile.mkdtemp(prefix="tether-bench-")
        subprocess.run([tether, "authority", "init", "--dir", self.dir], check=True, capture_output=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([tether, "authority", "serve", "--dir", self.dir, "--listen", f"127.0.0.1:{self.port}",
                                      "--lease", lease], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(500):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.02)
        self.operator = open(os.path.join(self.dir, "operator.key")).read().strip()
        self.agent = open(os.path.join(self.dir, "agent.key")).read().strip()

    def auth_args(self):
        return ["--dir", self.dir, "--authority", self.url, "--key-file", os.path.join(self.dir, "agent.key"),
                "--public-key", os.path.join(self.dir, "signing.pub")]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=20)


def machine():
    cores = os.cpu_count()
    mem = int(open("/proc/meminfo").read().split()[1]) / 1024 / 1024
    osname = next((l.split("=", 1)[1].strip().strip('"') for l in open("/etc/os-release") if l.startswith("PRETTY_NAME=")), "?")
    swift = subprocess.run(["swift", "--version"], capture_output=True, text=True).stdout.strip().splitlines()
    swift = next((l for l in swift if "Swift version" in l), "?")
    cg = "cgroup v2 at /sys/fs/cgroup/unified (hybrid)" if os.path.exists("/sys/fs/cgroup/unified/cgroup.procs") else "cgroup v2 at /sys/fs/cgroup"
    return (f"Machine: {cores} cores, {mem:.0f} GiB, {osname}, kernel {platform.release()}, {swift}\n{cg}; "
            f"measured {datetime.date.today().isoformat()}")


# MARK: - 1. revocation to stopped

def revocation(args, out):
    print("== 1. revocation → every worker process in T (read from /proc)", flush=True)
    n = 3 if args.quick else args.revocations
    # watch-host: the worker in the host's network namespace (TETHER_NET=host), as before every
    # worker had one of its own: the stop path with and without it, in the same run.
    for mode, flag in (("watch", []), ("watch-host", []), ("poll", ["--poll"]), ("sdk", ["--sdk"])):
        env = dict(os.environ, TETHER_NET="host") if mode == "watch-host" else None
        r = subprocess.run([os.path.join(args.bin, "tether-bench-revocation"), str(n)] + flag,
                           capture_output=True, text=True, timeout=3600, env=env)
        open(os.path.join(out, f"revocation-{mode}.txt"), "w").write(r.stdout + r.stderr)
        m = re.search(r"stopped: median ([\d.]+) ms, p99 ([\d.]+) ms", r.stdout)
        b = re.search(r"round trip: median ([\d.]+) ms, p99 ([\d.]+) ms", r.stdout)
        if not (m and b):
            sys.exit(f"tether-bench-revocation {mode} failed:\n{r.stdout}{r.stderr}")
        what = {"watch": "tether run, watch stream", "watch-host": "tether run, watch stream, --net host (no network namespace)",
                "poll": "tether run, poll every 1 s", "sdk": "MachineID SDK loop: validate 1 s + os.killpg"}[mode]
        if mode == "watch-host":
            row("revocation", f"{what} ({n} revokes)", float(m[1]), float(m[2]), "ms", "tether run, watch stream (its own network namespace, this run)", idle)
        else:
            row("revocation", f"{what} ({n} revokes)", float(m[1]), float(m[2]), "ms", "the revoke's round trip", float(b[1]))
        if mode == "watch":
            idle = float(m[1])
    # Under load: the worker spinning on every core plus a fork loop, then as many busy
    # processes as cores outside the worker; each with the supervisor's raised priority (nice
    # -10) and without it (TETHER_SUPERVISOR_PRIORITY=off, the control). Against the idle watch
    # row above.
    cores = os.cpu_count()
    for load, what in (("worker", f"worker spinning on every core ({cores} busy threads) + a fork loop"),
                       ("machine", f"machine loaded ({cores} busy processes outside the worker)"),
                       ("fork", "a fork-heavy worker (a loop forking sleep 0.01, a child loop beside it), idle machine"),
                       ("fork-busy", f"the fork-heavy worker, {cores} busy processes outside it")):
        for flag, label in (([], ""), (["--priority", "off"], ", control: supervisor priority off")):
            r = subprocess.run([os.path.join(args.bin, "tether-bench-revocation"), str(n), "--load", load] + flag,
                               capture_output=True, text=True, timeout=3600)
            open(os.path.join(out, f"revocation-load-{load}{'-' + flag[1] if flag else ''}.txt"), "w").write(r.stdout + r.stderr)
            m = re.search(r"stopped: median ([\d.]+) ms, p99 ([\d.]+) ms", r.stdout)
            if not m:
                sys.exit(f"tether-bench-revocation --load {load} failed:\n{r.stdout}{r.stderr}")
            row("revocation", f"tether run, watch stream, {what}{label} ({n} revokes)", float(m[1]), float(m[2]), "ms",
                "tether run, watch stream, idle (this run)", idle)


# MARK: - 2. launch overhead

def launch(args, out):
    print("== 2. launch overhead: start to exit of /bin/true, interleaved", flush=True)
    n = 5 if args.quick else args.launches
    t = os.path.join(args.bin, "tether")
    a = Authority(t)
    variants = [
        ("plain exec", ["/bin/true"]),
        ("bwrap --dev-bind / / --unshare-pid", ["bwrap", "--dev-bind", "/", "/", "--unshare-pid", "/bin/true"]),
        ("firejail --noprofile --seccomp", ["firejail", "--quiet", "--noprofile", "--seccomp", "/bin/true"]),
        ("tether profile try default", [t, "profile", "try", "default", "--", "/bin/true"]),
        # The worker's network namespace and its stack (slirp4netns), against none and the host's.
        ("tether profile try default --net none", [t, "profile", "try", "default", "--net", "none", "--", "/bin/true"]),
        ("tether profile try default --net host", [t, "profile", "try", "default", "--net", "host", "--", "/bin/true"]),
        ("tether run (authority on loopback)", [t, "run"] + a.auth_args() + ["--surface", "launch-bench", "--", "/bin/true"]),
        ("tether run (authority on loopback) --net host", [t, "run"] + a.auth_args() + ["--net", "host", "--surface", "launch-bench", "--", "/bin/true"]),
    ]
    # The binary `make install` ships (Swift runtime linked statically: no dynamic symbol
    # lookups at start), where there is one; bench/run.sh builds it.
    static = os.path.join(ROOT, ".build-release", "release", "tether")
    if os.path.exists(static) and not args.quick:
        variants.append(("tether profile try default, static binary (make install)", [static, "profile", "try", "default", "--", "/bin/true"]))
        variants.append(("tether run (authority on loopback), static binary (make install)",
                         [static, "run"] + a.auth_args() + ["--surface", "launch-bench", "--", "/bin/true"]))
    # What a small launcher would take: `profile try` from a binary with only TetherCore and
    # TetherSystem linked (no argument parser, HTTP, authority, console or PostgreSQL code),
    # built the same static way; bench/run.sh builds it.
    floor = os.path.join(ROOT, ".build-release", "release", "tether-bench-launch-floor")
    if os.path.exists(floor) and not args.quick:
        variants.append(("profile try default from a binary with only TetherCore and TetherSystem (static)", [floor, "default", "/bin/true"]))
    if args.baseline:
        # The same command with an earlier build (--baseline DIR), interleaved: the cost of a change.
        bt = os.path.join(args.baseline, "tether")
        variants.append((f"tether profile try default, {args.baseline_label}", [bt, "profile", "try", "default", "--", "/bin/true"]))
        variants.append((f"tether run, {args.baseline_label}", [bt, "run"] + a.auth_args() + ["--surface", "launch-bench", "--", "/bin/true"]))
    times = {name: [] for name, _ in variants}
    env = dict(os.environ, TETHER_LOG_LEVEL="error")
    for i in range(n + 1):
        for name, cmd in variants:
            t0 = time.perf_counter_ns()
            r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
            dt = (time.perf_counter_ns() - t0) / 1e6
            if r.returncode != 0:
                sys.exit(f"{name} failed ({r.returncode}): {r.stderr.decode()[-500:]}")
            if i > 0:  # the first round warms caches
                times[name].append(dt)
    a.stop()
    with open(os.path.join(out, "launch.txt"), "w") as f:
        for name, xs in times.items():
            f.write(f"{name}: median {statistics.median(xs):.3f} ms, p99 {pct(xs, 0.99):.3f} ms, n={len(xs)}\n")
    base = statistics.median(times["plain exec"])
    for name, xs in times.items():
        row("launch", name, statistics.median(xs), pct(xs, 0.99), "ms", "plain exec", base)


# MARK: - 3. seccomp cost

def seccomp(args, out, work):
    print("== 3. seccomp cost: getppid + read(/dev/zero, 1 byte), ns per iteration", flush=True)
    loop = os.path.join(work, "syscall_loop")
    subprocess.run(["cc", "-O2", "-o", loop, os.path.join(ROOT, "bench", "probes", "syscall_loop.c")], check=True)
    # Rounds of every variant in turn, so that drift (frequency, the other core) spreads evenly.
    rounds, batches, iters = (2, 5, 1000) if args.quick else (10, 40, 20000)
    t = os.path.join(args.bin, "tether")
    docker = "/usr/share/containers/seccomp.json"
    variants = [("no filter (plain exec)", [])]
    variants.append(("profile none (ABI check only)", [t, "profile", "try", "none", "--"]))
    variants.append(("default, binary tree", [t, "profile", "try", "default", "--"]))
    variants.append(("default, linear", [t, "profile", "try", "--linear-filter", "default", "--"]))
    if os.path.exists(docker):
        variants.append(("Docker default (containers-common), binary tree", [t, "profile", "try", docker, "--"]))
        variants.append(("Docker default (containers-common), linear", [t, "profile", "try", "--linear-filter", docker, "--"]))
    else:
        print(f"  (no {docker}: install golang-github-containers-common for Docker's default profile)")
    results = {name: [] for name, _ in variants}
    env = dict(os.environ, TETHER_LOG_LEVEL="error")
    for _ in range(rounds):
        for name, prefix in variants:
            r = subprocess.run(prefix + [loop, str(batches), str(iters)], capture_output=True, text=True, env=env)
            if r.returncode != 0:
                sys.exit(f"{name} failed: {r.stderr[-500:]}")
            results[name] += [float(x) for x in r.stdout.split()]
    with open(os.path.join(out, "seccomp.txt"), "w") as f:
        for name, xs in results.items():
            f.write(f"{name}: median {statistics.median(xs):.2f} ns, p99 {pct(xs, 0.99):.2f} ns "
                    f"({rounds} rounds × {batches} batches of {iters}, interleaved)\n")
    base = statistics.median(results["no filter (plain exec)"])
    for name, xs in results.items():
        row("seccomp", name, statistics.median(xs), pct(xs, 0.99), "ns", "no filter", base)


# MARK: - 7. gates

def gates(args, out, work):
    print("== 7. gates: the calls a gate covers, with the gate open, against no gate (ns per iteration)", flush=True)
    probe = os.path.join(work, "gate_calls")
    subprocess.run(["cc", "-O2", "-o", probe, os.path.join(ROOT, "bench", "probes", "gate_calls.c")], check=True)
    os.chmod(probe, 0o755)
    rounds = 2 if args.quick else 8
    t = os.path.join(args.bin, "tether")
    all_gates = ["--gate-open", "exec", "--gate-open", "net", "--gate-open", "write"]
    # (what, mode, batches, iterations, the gate that covers it)
    cases = [
        ("execve of itself, in a chain", "exec", 3, 20 if args.quick else 200, ["--gate-open", "exec"]),
        ("execve of itself, in a chain, on one CPU", "exec-1cpu", 3, 20 if args.quick else 200, ["--gate-open", "exec"]),
        ("socket + connect + accept + close, loopback TCP", "connect", 5, 100 if args.quick else 2000, ["--gate-open", "net"]),
        # The same on the host's loopback (--net host, no namespace of its own): the namespace's share.
        ("socket + connect + accept + close, loopback TCP, --net host", "connect-host", 5, 100 if args.quick else 2000, ["--gate-open", "net"]),
        ("one connect after 200 µs asleep (a lone gated call)", "lone", 5, 50 if args.quick else 500, ["--gate-open", "net"]),
        ("open O_RDONLY + close, under a write gate", "open", 5, 1000 if args.quick else 20000, ["--gate-open", "write"]),
        ("getppid, under all three gates", "getppid", 5, 1000 if args.quick else 50000, all_gates),
    ]
    env = dict(os.environ, TETHER_LOG_LEVEL="error")
    results = {}
    for _ in range(rounds):
        for what, mode, batches, iters, gate in cases:
            for label, flags in (("no gate", []), ("gate open", gate)):
                pin = ["taskset", "-c", "0"] if mode.endswith("-1cpu") else []
                net = ["--net", "host"] if mode.endswith("-host") else []
                call = mode.replace("-1cpu", "").replace("-host", "")
                cmd = pin + [t, "profile", "try", "default"] + net + flags + ["--", probe, call, str(batches), str(iters)]
                r = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if r.returncode != 0:
                    sys.exit(f"{what} ({label}) failed: {r.stderr[-500:]}")
                results.setdefault((what, label), []).extend(float(x) for x in r.stdout.split())
    # The control: a minimal C listener answering the same exec chain, to tell the kernel's (and
    # this machine's) cost of a gated exec from Tether's.
    raw = os.path.join(work, "raw_notify")
    subprocess.run(["cc", "-O2", "-o", raw, os.path.join(ROOT, "bench", "probes", "raw_notify.c")], check=True)
    what = "execve of itself, in a chain, minimal C listener (control)"
    cases.append((what, "raw", 0, 0, []))
    for _ in range(rounds):
        for label, flag in (("no gate", "0"), ("gate open", "1")):
            r = subprocess.run([raw, flag, probe, "exec", "3", "20" if args.quick else "200"], capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(f"{what} ({label}) failed: {r.stderr[-500:]}")
            results.setdefault((what, label), []).extend(float(x) for x in r.stdout.split())
    with open(os.path.join(out, "gates.txt"), "w") as f:
        for what, _, _, _, _ in cases:
            base, gated = statistics.median(results[(what, "no gate")]), statistics.median(results[(what, "gate open")])
            f.write(f"{what}: no gate {base:.0f} ns, gate open {gated:.0f} ns, added {gated - base:+.0f} ns ({rounds} rounds, interleaved)\n")
            row("gates", what + ", gate open", gated, pct(results[(what, "gate open")], 0.99), "ns", "no gate", base)


# MARK: - 8. agent hooks

def hooks(args, out, work):
    print("== 8. tether hook: process start to answer, through the decision socket (ms)", flush=True)
    n = 5 if args.quick else 200
    t = os.path.join(args.bin, "tether")
    # The binary `make install` installs (Swift runtime linked statically), where there is one.
    static = os.path.join(ROOT, ".build-release", "release", "tether")
    a = Authority(t)
    try:
        os.chmod(work, 0o755)
        result = os.path.join(work, "hook-times")
        open(result, "w").close()
        os.chmod(result, 0o666)
        probe = os.path.join(work, "hook_latency.py")
        shutil.copy(os.path.join(ROOT, "bench", "probes", "hook_latency.py"), probe)
        os.chmod(probe, 0o644)
        cmds = ["true=/bin/true", f"hook={t} hook claude-code"]
        if os.path.exists(static):
            cmds.append(f"hook-static={static} hook claude-code")
        # Inside a worker: the decision socket answers its own worker's processes only.
        r = subprocess.run([t, "run"] + a.auth_args() + ["--surface", "bench-hook", "--", "/usr/bin/python3", probe, result, str(n)] + cmds,
                           capture_output=True, text=True, timeout=1800, env=dict(os.environ, TETHER_LOG_LEVEL="error"))
        if r.returncode != 0:
            sys.exit(f"hook bench failed: {r.stderr[-800:]}")
        times = {l.split()[0]: [float(x) for x in l.split()[1:]] for l in open(result) if l.strip()}
        # The same question over HTTP from outside: `tether check` (validate, signature checked).
        check = []
        for _ in range(n):
            t0 = time.perf_counter()
            subprocess.run([t, "check", "bench-hook"] + a.auth_args()[2:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            check.append((time.perf_counter() - t0) * 1000)
        times["check"] = check
    finally:
        a.stop()
    base = statistics.median(times["true"])
    with open(os.path.join(out, "hooks.txt"), "w") as f:
        for name, xs in times.items():
            f.write(f"{name}: median {statistics.median(xs):.2f} ms, p99 {pct(xs, 0.99):.2f} ms, n={len(xs)}\n")
    labels = {"hook": "tether hook → decision socket", "hook-static": "tether hook → decision socket, static binary (make install)",
              "check": "tether check → authority over HTTP"}
    for name, label in labels.items():
        if name in times:
            row("hooks", label, statistics.median(times[name]), pct(times[name], 0.99), "ms", "/bin/true (same run)", base)


# MARK: - 4. the authority

def authority(args, out):
    print("== 4. the authority: validate throughput (wrk), one change to N watchers", flush=True)
    secs, revs, fan = (2, 20, 50) if args.quick else (10, 2000, args.watchers)
    r = subprocess.run(["bash", os.path.join(ROOT, "bench", "authority.sh"), str(secs), str(revs), str(fan)],
                       capture_output=True, text=True, env=dict(os.environ, TETHER_BENCH_BIN=args.bin), timeout=3600)
    open(os.path.join(out, "authority.txt"), "w").write(r.stdout + r.stderr)
    bare = re.search(r"bare Hummingbird route \(baseline\)\s+([\d.]+) req/s", r.stdout)
    h = re.search(r"GET /healthz\s+([\d.]+) req/s", r.stdout)
    v = re.search(r"POST validate \(auth, signed\)\s+([\d.]+) req/s", r.stdout)
    one = re.search(r"revoke sent → event at watcher\s+median\s+([-\d.]+) ms\s+p99\s+([-\d.]+) ms", r.stdout)
    opened = re.search(r"(\d+) watch streams open", r.stdout)
    allw = re.search(r"median time for one change to reach all (\d+) watchers: ([\d.]+) ms(?:, max ([\d.]+) ms)?", r.stdout)
    if not (bare and h and v and allw and opened):
        sys.exit(f"bench/authority.sh failed:\n{r.stdout[-3000:]}{r.stderr[-2000:]}")
    # Against the framework's own figure (a bare Hummingbird route, constant JSON), medians of
    # interleaved rounds.
    row("authority", "bare Hummingbird route, constant JSON, wrk -t2 -c64", float(bare[1]), None, "req/s", "bare Hummingbird route", float(bare[1]))
    row("authority", "GET /healthz, wrk -t2 -c64", float(h[1]), None, "req/s", "bare Hummingbird route", float(bare[1]))
    row("authority", "POST validate (key check, signed), wrk -t2 -c64", float(v[1]), None, "req/s", "bare Hummingbird route", float(bare[1]))
    if one:
        base_one = float(one[1])
    else:
        base_one = float("nan")
    row("authority", f"one revoke → all {opened[1]} open watchers (of {allw[1]} asked)" if opened[1] != allw[1] else f"one revoke → all {allw[1]} watchers", float(allw[2]),
        float(allw[3]) if allw[3] else None, "ms", "revoke sent → event, 1 watcher", base_one)


# MARK: - 9. pages: the list, the audit log and the console at 100,000 surfaces

def http(method, url, key=None, body=None, cookie=None, headers=None):
    import urllib.request
    h = dict(headers or {})
    if key: h["X-Org-Key"] = key
    if cookie: h["Cookie"] = cookie
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else __import__("json").dumps(body).encode()
        h.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, method=method, headers=h)
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k): return None
    opener = urllib.request.build_opener(NoRedirect)
    try:
        r = opener.open(req, timeout=60)
        return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def seeded_authority(tether, n):
    """An authority whose SQLite file holds n surfaces (seeded directly: registration is rate
    limited per key) and 2,000 audit entries, then served."""
    import sqlite3
    d = tempfile.mkdtemp(prefix="tether-bench-pages-")
    subprocess.run([tether, "authority", "init", "--dir", d], check=True, capture_output=True)
    db = sqlite3.connect(os.path.join(d, "authority.sqlite"))
    now = datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%S.000Z")
    db.executemany("INSERT INTO surfaces (device_id, revoked, created_at, updated_at, revision) VALUES (?, 0, ?, ?, 0)",
                   ((f"agent-{i:06d}", now, now) for i in range(n)))
    db.executemany("INSERT INTO audit (at, actor, action, device_id, reason, request_id) VALUES (?, 'bench', 'register', ?, NULL, ?)",
                   ((now, f"agent-{i:06d}", f"seed-{i}") for i in range(2000)))
    db.commit()
    db.close()
    port = free_port()
    proc = subprocess.Popen([tether, "authority", "serve", "--dir", d, "--listen", f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "serve.log"), "w"))
    url = f"http://127.0.0.1:{port}"
    for _ in range(3000):
        try:
            if http("GET", url + "/healthz")[0] == 200: break
        except OSError:
            pass
        time.sleep(0.02)
    return d, proc, url, open(os.path.join(d, "operator.key")).read().strip()


def console_cookie(url, key):
    """Signs in to the console as the operator key: its session cookie."""
    import urllib.parse
    _, h, _ = http("GET", url + "/console/sign-in")
    pre = next(c.split(";")[0].split("=", 1)[1] for c in h.get_all("Set-Cookie") if c.startswith("tether_signin="))
    body = urllib.parse.urlencode({"key": key, "pre": pre}).encode()
    _, h, _ = http("POST", url + "/console/sign-in", body=body, cookie="tether_signin=" + pre,
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    return next(c.split(";")[0] for c in h.get_all("Set-Cookie") if c.startswith("tether_session="))


def pages(args, out):
    print("== 9. pages: the surface list, the audit log and the console, 1,000 vs 100,000 surfaces", flush=True)
    small, big = (100, 5000) if args.quick else (1000, 100000)
    rounds = 5 if args.quick else 20
    tether = os.path.join(args.bin, "tether")
    timed = {}
    log = []
    for n in (small, big):
        d, proc, url, key = seeded_authority(tether, n)
        try:
            rss = rss_kib(proc.pid)
            def many(f):
                xs = []
                for i in range(rounds):
                    t = time.perf_counter(); st, _, body = f(i); xs.append((time.perf_counter() - t) * 1000)
                    assert st == 200, body[:300]
                return xs
            lst = many(lambda i: http("GET", url + "/api/v1/devices/list?limit=1000", key=key))
            page = __import__("json").loads(http("GET", url + "/api/v1/devices/list?limit=1000", key=key)[2])
            assert len(page["devices"]) == min(n, 1000) and page["total"] == n, (len(page["devices"]), page.get("total"))
            last = many(lambda i: http("GET", url + f"/api/v1/devices/list?limit=1000&after=agent-{n - 1001:06d}", key=key))
            aud = many(lambda i: http("GET", url + "/api/v1/audit?limit=100&before=1500", key=key))
            cookie = console_cookie(url, key)
            # A change, then the console's state: rebuilt for it (a build per change, at most
            # four a second): what each viewer's update costs.
            cons = []
            for i in range(rounds):
                http("POST", url + "/api/v1/devices/revoke" if i % 2 == 0 else url + "/api/v1/devices/unrevoke", key=key,
                     body={"deviceId": "agent-000003", "reason": "bench"})
                time.sleep(0.3)
                t = time.perf_counter()
                st, _, b = http("GET", url + "/console/state.json", cookie=cookie)
                cons.append((time.perf_counter() - t) * 1000)
                assert st == 200, b[:200]
            state = __import__("json").loads(b)
            # Each a new search (a view not built before): the scan of every name, then its page.
            search = many(lambda i: http("GET", url + f"/console/state.json?q=agent-{i:02d}", cookie=cookie))
            size = len(b)
            timed[n] = dict(list=lst, last=last, audit=aud, console=cons, search=search, rss=rss_kib(proc.pid), rss0=rss, size=size,
                            shown=len(state["surfaces"]), matching=state["matching"])
            log.append(f"{n} surfaces: RSS {rss} KiB after start; list {statistics.median(lst):.2f} ms, console {statistics.median(cons):.2f} ms ({size} bytes, {len(state['surfaces'])} shown of {state['matching']})")
        finally:
            proc.terminate(); proc.wait(timeout=30)
            shutil.rmtree(d, ignore_errors=True)
    open(os.path.join(out, "pages.txt"), "w").write("\n".join(log) + "\n")
    s, b = timed[small], timed[big]
    for k, what in (("list", "GET devices/list?limit=1000, first page"), ("last", "GET devices/list, last page (?after=)"),
                    ("audit", "GET audit?limit=100&before=…"), ("console", "console state.json after a change (its page of 200)"),
                    ("search", "console state.json, a search (?q=) over every name")):
        row("pages", f"{what}, {big:,} surfaces", statistics.median(b[k]), pct(b[k], 0.99), "ms", f"the same, {small:,} surfaces", statistics.median(s[k]))
    per = (b["rss0"] - s["rss0"]) * 1024 / (big - small)
    row("pages", f"authority RSS after start, {big:,} surfaces", b["rss0"] / 1024, None, "MiB", f"{small:,} surfaces", s["rss0"] / 1024)
    print(f"  memory per surface (in memory, from the two starts): {per:.0f} bytes; console answer {b['size']:,} bytes vs {s['size']:,}", flush=True)


# MARK: - 10. an org halt across many workers

def halt(args, out):
    print("== 10. an org halt: one supervise of many workers beside many small supervisors (bench/halt.py)", flush=True)
    n, s_, k, rounds = (10, 2, 5, 1) if args.quick else (500, 50, 10, 3)
    r = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "halt.py"), os.path.join(args.bin, "tether"), str(n), str(s_), str(k), str(rounds)],
                       capture_output=True, text=True, timeout=3600)
    open(os.path.join(out, "halt.txt"), "w").write(r.stdout + r.stderr)
    stops = [int(x) for x in re.findall(r"sent → last worker process stopped (\d+) ms", r.stdout)]
    acks = re.findall(r"✔ (\d+) of (\d+), ✘ (\d+)", r.stdout)
    started = re.search(r"started in ([\d.]+) s", r.stdout)
    if not (stops and acks and started) or any(a[0] != a[1] or a[2] != "0" for a in acks):
        sys.exit(f"bench/halt.py failed or missed acknowledgements:\n{r.stdout[-3000:]}{r.stderr[-2000:]}")
    total = n + s_ * k
    row("halt", f"tether halt → last of {total} workers stopped ({n} under one supervise, {s_} × {k}; every ✔)", statistics.median(stops),
        max(stops), "ms", "—", float("nan"))


# MARK: - 6. the fleet

def fleet(args, out):
    print("== 6. the fleet: replicas on PostgreSQL (bench/fleet.sh)", flush=True)
    secs, fan, revs = (2, 50, 4) if args.quick else (10, args.watchers, 100)
    r = subprocess.run(["bash", os.path.join(ROOT, "bench", "fleet.sh"), str(secs), str(fan), str(revs)],
                       capture_output=True, text=True, env=dict(os.environ, TETHER_BENCH_BIN=args.bin), timeout=3600)
    open(os.path.join(out, "fleet.txt"), "w").write(r.stdout + r.stderr)
    def num(pattern):
        m = re.search(pattern, r.stdout)
        if not m:
            sys.exit(f"bench/fleet.sh failed ({pattern}):\n{r.stdout[-3000:]}{r.stderr[-2000:]}")
        return m
    h = float(num(r"GET /healthz, a PostgreSQL replica \(baseline\)\s+([\d.]+)")[1])
    vs = float(num(r"POST validate, SQLite\s+([\d.]+)")[1])
    vp = float(num(r"POST validate, PostgreSQL replica\s+([\d.]+)")[1])
    row("fleet", "POST validate, SQLite, wrk -t2 -c64", vs, None, "req/s", "GET /healthz (PostgreSQL replica)", h)
    row("fleet", "POST validate, PostgreSQL replica, wrk -t2 -c64", vp, None, "req/s", "POST validate, SQLite", vs)
    # The SQLite row against the figure before one signature per change (a signature per
    # stream: docs/BENCHMARKS.md of 2026-11-25, 10,000 watchers); the PostgreSQL rows against
    # the SQLite one of this run.
    base = None
    for tag, what in (("sqlite", "SQLite, one replica"), ("pg1", "PostgreSQL, one replica"), ("pg3", "PostgreSQL, spread over three replicas")):
        m = num(tag + r": median time for one change to reach all (\d+) watchers: ([-\d.]+) ms, max ([-\d.]+) ms")
        med = max(0.0, float(m[2]))
        if base is None:
            row("fleet", f"one revoke → all {m[1]} watch streams, {what} (max of 6 as p99)", med, max(0.0, float(m[3])), "ms",
                "a signature per stream (before, 10,000 watchers, earlier run)", 1811.3)
            base = med
        else:
            row("fleet", f"one revoke → all {m[1]} watch streams, {what} (max of 6 as p99)", med, max(0.0, float(m[3])), "ms",
                "SQLite, one replica (this run)", base or float("nan"))
    same = num(r"revoke on the supervisor's replica → stopped: median ([\d.]+) ms, p99 ([\d.]+) ms")
    other = num(r"revoke on another replica → stopped: median ([\d.]+) ms, p99 ([\d.]+) ms")
    row("fleet", f"revoke on another replica → stopped ({revs} revokes, half each)", float(other[1]), float(other[2]), "ms",
        "revoke on the supervisor's replica", float(same[1]))


# MARK: - 5. footprint

def proc_stat(pid):
    s = open(f"/proc/{pid}/stat").read()
    f = s[s.rindex(")") + 2:].split()
    return int(f[11]) + int(f[12])


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def switches(pid):
    """Context switches (voluntary and involuntary) of each thread of pid, by thread id."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            n = 0
            for line in open(f"/proc/{pid}/task/{tid}/status"):
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    n += int(line.split()[1])
            out[(pid, tid)] = n
        except OSError:
            pass
    return out


def rss_anon_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    return 0


def children_running(pid):
    n = 0
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                s = open(f"/proc/{p}/stat").read()
                if int(s[s.rindex(")") + 2:].split()[1]) == pid:
                    n += 1
            except OSError:
                pass
    return n


def children_named(pid, name):
    """pid's children whose command is `name`: the workers' inits (tether-init, one per worker,
    PID 1 of its namespace) or the supervisor's keeper (tether-keeper, its dead man's switch)."""
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                s = open(f"/proc/{p}/stat").read()
                if int(s[s.rindex(")") + 2:].split()[1]) == pid and (
                        s[s.index("(") + 1:s.rindex(")")] == name or open(f"/proc/{p}/cmdline", "rb").read().startswith(name.encode())):
                    out.append(int(p))
            except OSError:
                pass
    return out


def pss_kib(pid):
    try:
        for line in open(f"/proc/{pid}/smaps_rollup"):
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def idle(pid, window):
    """Over the window: RSS (MiB) of pid plus the proportional set size of its keeper and its
    workers' inits; its anonymous RSS (MiB); CPU (%) and wakeups/s of all of them together.
    Wakeups are context switches of every thread, sampled every 250 ms so that threads which
    come and go meanwhile (a thread pool's) count too."""
    time.sleep(2)
    procs = [pid] + children_named(pid, "tether-init") + children_named(pid, "tether-keeper")
    first, last = {}, {}
    for p in procs:
        first.update(switches(p))
    last.update(first)
    c0, t0 = sum(map(proc_stat, procs)), time.monotonic()
    while time.monotonic() - t0 < window:
        time.sleep(0.25)
        for p in procs:
            for k, n in switches(p).items():
                first.setdefault(k, 0)   # a thread born in the window: every switch of it counts
                last[k] = n
    c1, t1 = sum(map(proc_stat, procs)), time.monotonic()
    hz = os.sysconf("SC_CLK_TCK")
    rss = rss_kib(pid) + sum(pss_kib(p) for p in procs[1:])
    wakeups = sum(last[k] - first[k] for k in last)
    return rss / 1024, rss_anon_kib(pid) / 1024, (c1 - c0) / hz / (t1 - t0) * 100, wakeups / (t1 - t0)


def builds_with_control(builds, env, kept):
    """Each build as it runs, then the first build again with its start-up pages kept
    (TETHER_RELEASE_PAGES=off: the control for ResidentPages)."""
    out = [(b, label, env) for b, label in builds]
    b, label = builds[0]
    return out + [(b, label + ", start-up pages kept (TETHER_RELEASE_PAGES=off)", kept)]


def footprint(args, out, work):
    print("== 5. footprint: an idle supervisor's RSS, CPU and wakeups", flush=True)
    window = 3 if args.quick else args.idle
    t = os.path.join(args.bin, "tether")
    a = Authority(t)
    env = dict(os.environ, TETHER_LOG_LEVEL="warning")
    results = {}

    # The baseline: the MachineID SDK loop supervising one worker.
    sdk = subprocess.Popen([sys.executable, os.path.join(ROOT, "bench", "sdk_loop.py"), a.url, a.agent, "fp-sdk",
                            os.path.join(work, "sdk.pgid"), "--", "sleep", "infinity"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    results["MachineID SDK loop, 1 worker"] = idle(sdk.pid, window)
    sdk.kill()
    sdk.wait()
    try:
        os.killpg(int(open(os.path.join(work, "sdk.pgid")).read()), signal.SIGKILL)
    except (OSError, ValueError):
        pass

    builds = [(t, "")]
    # The binary `make install` ships (Swift runtime linked statically): no shared Swift or
    # Foundation libraries to map, and its own way to the runtime's hooks.
    static = os.path.join(ROOT, ".build-release", "release", "tether")
    if os.path.exists(static) and not args.quick:
        builds.append((static, ", static binary (make install)"))
    if args.baseline:
        builds.append((os.path.join(args.baseline, "tether"), f" ({args.baseline_label})"))
    # The control for ResidentPages: the same binary keeping the pages it ran to start.
    kept = dict(env, TETHER_RELEASE_PAGES="off")
    for binary, label, e in builds_with_control(builds, env, kept):
        run = subprocess.Popen([binary, "run"] + a.auth_args() + ["--surface", "fp-run", "--", "sleep", "infinity"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=e)
        results[f"tether run, 1 worker{label}"] = idle(run.pid, window)
        run.send_signal(signal.SIGTERM)
        run.wait(timeout=30)

    for n in (1, 100):
        path = os.path.join(work, f"supervise-{n}.toml")
        with open(path, "w") as f:
            f.write(f'[authority]\nurl = "{a.url}"\nkey_file = "{a.dir}/agent.key"\npublic_key = "{a.dir}/signing.pub"\n\n')
            for i in range(n):
                f.write(f'[[worker]]\nname = "fp-{n}-{i}"\ncommand = ["sleep", "infinity"]\n\n')
        for binary, label, e in builds_with_control(builds, env, kept):
            sv = subprocess.Popen([binary, "supervise", "--config", path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=e)
            deadline = time.monotonic() + 120
            while children_running(sv.pid) < n and time.monotonic() < deadline:
                time.sleep(0.2)
            if children_running(sv.pid) < n:
                sys.exit(f"tether supervise started {children_running(sv.pid)} of {n} workers")
            results[f"tether supervise, {n} worker{'s' if n > 1 else ''}{label}"] = idle(sv.pid, window)
            sv.send_signal(signal.SIGTERM)
            sv.wait(timeout=60)
    a.stop()
    with open(os.path.join(out, "footprint.txt"), "w") as f:
        f.write(f"idle window {window} s (after 2 s settling)\n")
        for name, (rss, anon, cpu, wake) in results.items():
            f.write(f"{name}: RSS {rss:.1f} MiB (anonymous {anon:.1f} MiB), CPU {cpu:.3f} %, {wake:.2f} wakeups/s\n")
    base = results["MachineID SDK loop, 1 worker"]
    for name, (rss, anon, cpu, wake) in results.items():
        row("footprint", f"{name}: RSS", rss, None, "MiB", "SDK loop RSS", base[0])
    for name, (rss, anon, cpu, wake) in results.items():
        row("footprint", f"{name}: anonymous RSS", anon, None, "MiB", "SDK loop anonymous RSS", base[1])
    for name, (rss, anon, cpu, wake) in results.items():
        row("footprint", f"{name}: CPU", cpu, None, "%", "SDK loop CPU", base[2])
    for name, (rss, anon, cpu, wake) in results.items():
        row("footprint", f"{name}: wakeups", wake, None, "/s", "SDK loop wakeups", base[3])


# MARK: - the report

def table():
    lines = ["| section | measured | median | p99 | unit | baseline (same run) | baseline median | ratio |",
             "| --- | --- | ---: | ---: | --- | --- | ---: | ---: |"]
    for section, what, med, p99, unit, base, bmed, ratio in ROWS:
        p99s = "—" if p99 is None else f"{p99:,.2f}"
        lines.append(f"| {section} | {what} | {med:,.2f} | {p99s} | {unit} | {base} | {bmed:,.2f} | ×{ratio:,.2f} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="directory with tether and the tether-bench-* programs")
    ap.add_argument("--quick", action="store_true", help="tiny counts, results in a temporary directory: a smoke test")
    ap.add_argument("--only", default="1,2,3,4,5,6,7,8,9,10", help="sections to run, e.g. 1,3")
    ap.add_argument("--revocations", type=int, default=200)
    ap.add_argument("--launches", type=int, default=200)
    ap.add_argument("--watchers", type=int, default=10000)
    ap.add_argument("--idle", type=int, default=60, help="idle window in seconds for the footprint")
    ap.add_argument("--baseline", help="directory of an earlier build's tether: launch and footprint measure it too, interleaved")
    ap.add_argument("--baseline-label", default="baseline build", help="how the table names the --baseline build")
    args = ap.parse_args()
    args.bin = os.path.abspath(args.bin)
    if args.baseline:
        args.baseline = os.path.abspath(args.baseline)
    work = tempfile.mkdtemp(prefix="tether-bench-work-")
    # Workers of a root supervisor run as a dedicated uid: the probes built here must be theirs to run.
    os.chmod(work, 0o755)
    out = work if args.quick else os.path.join(ROOT, "bench", "results")
    os.makedirs(out, exist_ok=True)
    desc = machine()
    print(desc, flush=True)
    only = set(args.only.split(","))
    if "1" in only: revocation(args, out)
    if "2" in only: launch(args, out)
    if "3" in only: seccomp(args, out, work)
    if "4" in only: authority(args, out)
    if "5" in only: footprint(args, out, work)
    if "6" in only: fleet(args, out)
    if "7" in only: gates(args, out, work)
    if "8" in only: hooks(args, out, work)
    if "9" in only: pages(args, out)
    if "10" in only: halt(args, out)
    # Sections not run this time keep their rows from the last full run.
    import json
    saved = os.path.join(out, "rows.json")
    if not args.quick and os.path.exists(saved) and only != {"1", "2", "3", "4", "5", "6", "7", "8", "9", "10"}:
        names = {"1": "revocation", "2": "launch", "3": "seccomp", "4": "authority", "5": "footprint", "6": "fleet", "7": "gates", "8": "hooks", "9": "pages", "10": "halt"}
        ran = {names[k] for k in only}
        kept = [tuple(r) for r in json.load(open(saved)) if r[0] not in ran]
        ROWS[:] = sorted(kept + ROWS, key=lambda r: list(names.values()).index(r[0]))
    if not args.quick:
        json.dump(ROWS, open(saved, "w"), indent=1)
    report = table()
    print("\n" + report)
    open(os.path.join(out, "MACHINE.txt"), "w").write(desc + f"\nbinaries: {args.bin}\n")
    open(os.path.join(out, "table.md"), "w").write(report + "\n")
    if not args.quick:
        doc = os.path.join(ROOT, "docs", "BENCHMARKS.md")
        head = open(doc).read().split("<!-- table -->")[0] if os.path.exists(doc) else "# Benchmarks\n\n"
        tail = open(doc).read().split("<!-- /table -->")[1] if os.path.exists(doc) and "<!-- /table -->" in open(doc).read() else "\n"
        open(doc, "w").write(head + "<!-- table -->\n" + desc.replace("\n", "  \n") + "\n\n" + report + "\n<!-- /table -->" + tail)
        print(f"\nwrote {out}/ and {doc}")
    shutil.rmtree(work, ignore_errors=True) if not args.quick else None


if __name__ == "__main__":
    main()
