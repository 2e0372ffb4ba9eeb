"""The hook-latency benchmark's worker: runs inside a worker of `tether run`, where the decision
socket answers. Times each command from spawn to exit, N rounds interleaved, the hook's payload
on stdin; writes one line per command to OUT: "NAME ms ms ms ...".

    hook_latency.py OUT N NAME=COMMAND...
"""
import os
import subprocess
import sys
import time

out, n = sys.argv[1], int(sys.argv[2])
commands = [a.split("=", 1) for a in sys.argv[3:]]
payload = b'{"hook_event_name": "PreToolUse", "tool_name": "Bash", "tool_input": {"command": "ls"}}'
times = {name: [] for name, _ in commands}
for _ in range(n):
    for name, cmd in commands:
        t0 = time.perf_counter()
        r = subprocess.run(cmd.split(), input=payload, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        times[name].append((time.perf_counter() - t0) * 1000)
        if r.returncode != 0:
            sys.exit(f"{name} exited {r.returncode}: {r.stderr.decode()[-300:]}")
with open(out, "w") as f:
    for name, xs in times.items():
        f.write(name + " " + " ".join(f"{x:.3f}" for x in xs) + "\n")
