#!/usr/bin/env python3
"""An org halt across many workers: one `tether supervise` of N workers and S supervisors of K
workers each (separate processes, separate cgroups), against one authority. Prints the time from
the halt's answer to the last worker process stopped (read from /proc), the ✔ lines of
`tether halt --wait` and `tether resume --wait`, and the supervisor's start-up, RSS and idle
wakeups. Usage: halt.py TETHER N S K [ROUNDS]"""
import os, re, signal, subprocess, sys, tempfile, time, json, urllib.request, statistics

tether, n, s, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rounds = int(sys.argv[5]) if len(sys.argv) > 5 else 3
d = tempfile.mkdtemp(prefix="tether-bench-halt-")
subprocess.run([tether, "authority", "init", "--dir", d], check=True, capture_output=True)
import socket
with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
url = f"http://127.0.0.1:{port}"
auth = subprocess.Popen([tether, "authority", "serve", "--dir", d, "--listen", f"127.0.0.1:{port}", "--max-streams-per-key", "100000"],
                        stdout=subprocess.DEVNULL, stderr=open(d + "/serve.log", "w"))
for _ in range(500):
    try:
        urllib.request.urlopen(url + "/healthz", timeout=1); break
    except Exception:
        time.sleep(0.02)
marker = "tether-bench-halt-" + str(os.getpid())
def config(name, count):
    path = f"{d}/{name}.toml"
    with open(path, "w") as f:
        f.write(f'[authority]\nurl = "{url}"\nkey_file = "{d}/agent.key"\npublic_key = "{d}/signing.pub"\ninstance = "{name}"\n\n'
                '[supervisor]\nshutdown_timeout = "20s"\n\n')
        for i in range(count):
            f.write(f'[[worker]]\nname = "{name}-{i}"\ncommand = ["sh", "-c", "while :; do sleep 5; done", "{marker}"]\n\n')
    return path
def workers():
    """The worker processes: (pid, state) of every process whose command line has the marker, and their children."""
    out = {}
    for p in os.listdir("/proc"):
        if not p.isdigit(): continue
        try:
            st = open(f"/proc/{p}/stat").read()
            r = st.rsplit(")", 1)[1].split()
            out[int(p)] = (r[0], int(r[1]))
        except OSError:
            pass
    mine = set()
    for p in out:
        try:
            # The worker's shell (not its init, whose command line holds the worker's too: an
            # init is held by the cgroup's freezer, `S`, not stopped).
            if open(f"/proc/{p}/comm").read().strip() == "sh" and marker.encode() in open(f"/proc/{p}/cmdline", "rb").read(): mine.add(p)
        except OSError:
            pass
    kids = {p for p, (_, pp) in out.items() if pp in mine}
    return {p: out[p][0] for p in mine | kids if p in out}
total = n + s * k
t0 = time.monotonic()
sups = [subprocess.Popen([tether, "supervise", "--config", config("big", n)], stdout=subprocess.DEVNULL, stderr=open(d + "/big.log", "w"))]
for i in range(s):
    sups.append(subprocess.Popen([tether, "supervise", "--config", config(f"small-{i}", k)], stdout=subprocess.DEVNULL,
                                 stderr=open(d + f"/small-{i}.log", "w")))
def running():
    ws = workers()
    return sum(1 for p, st in ws.items() if st in "SR" and p in ws)
shells = lambda: sum(1 for p in workers())
deadline = time.monotonic() + 600
while time.monotonic() < deadline:
    started = sum(open(f).read().count("worker started") for f in [d + "/big.log"] + [d + f"/small-{i}.log" for i in range(s)])
    if started >= total: break
    time.sleep(0.5)
startup = time.monotonic() - t0
print(f"{total} workers ({n} under one supervise, {s} × {k}) started in {startup:.1f} s", flush=True)
def op(args):
    return subprocess.run([tether] + args + ["--dir", d, "--authority", url], capture_output=True, text=True)
# every surface watched before the halt
for _ in range(600):
    o = json.loads(op(["surfaces", "--json"]).stdout or "{}")
    if sum(1 for x in o.get("devices", []) if x.get("watchers")) >= total: break
    time.sleep(0.5)
time.sleep(5)
big = sups[0].pid
def rss(pid): return int(next(l for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")).split()[1]) / 1024
def switches(pid):
    t = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        for l in open(f"/proc/{pid}/task/{tid}/status"):
            if l.startswith(("voluntary_ctxt", "nonvoluntary_ctxt")): t += int(l.split()[1])
    return t
w0 = switches(big); time.sleep(10); w1 = switches(big)
print(f"the supervise of {n}: RSS {rss(big):.1f} MiB, idle {(w1 - w0) / 10:.2f} wakeups/s (its own threads)", flush=True)
halts, resumes = [], []
for r in range(rounds):
    before = workers()
    t = time.monotonic()
    h = subprocess.Popen([tether, "halt", "--reason", f"bench {r}", "--wait", "60s", "--dir", d, "--authority", url],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    last_running = t
    while True:
        ws = workers()
        if any(st not in "TZD" for st in ws.values()): last_running = time.monotonic()
        elif ws: break
        if time.monotonic() - t > 120: break
    out, err = h.communicate()
    acks, missing = out.count("✔"), out.count("✘")
    if h.returncode != 0: print(f"halt failed ({h.returncode}): {err[-500:]}", flush=True)
    halts.append(last_running - t)
    print(f"halt {r}: sent → last worker process stopped {1000 * (last_running - t):.0f} ms; ✔ {acks} of {total}, ✘ {missing}", flush=True)
    t = time.monotonic()
    out = op(["resume", "--reason", "bench", "--wait", "60s"]).stdout
    acks, missing = out.count("✔"), out.count("✘")
    while any(st == "T" for st in workers().values()) and time.monotonic() - t < 120: pass
    resumes.append(time.monotonic() - t)
    print(f"resume {r}: sent → every process running {1000 * (time.monotonic() - t):.0f} ms (includes --wait); ✔ {acks}, ✘ {missing}", flush=True)
    time.sleep(3)
print(f"halt → last stopped: median {1000 * statistics.median(halts):.0f} ms, worst {1000 * max(halts):.0f} ms over {rounds}")
for p in sups: p.send_signal(signal.SIGTERM)
for p in sups:
    try: p.wait(timeout=60)
    except Exception: p.kill()
auth.terminate(); auth.wait(timeout=30)
