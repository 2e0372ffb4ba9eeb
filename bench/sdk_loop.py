"""The pattern MachineID's SDK teaches, as a baseline supervisor: start the worker in its own
process group, call validate every second, and signal the group when the answer says no.

Stops with SIGSTOP (and resumes with SIGCONT on an allow) rather than SIGKILL, so that the
benchmark can revoke and restore the same worker many times and compare like with like: the
time until every process of the worker is in state T.

Usage: python3 bench/sdk_loop.py URL AGENT_KEY SURFACE PGID_FILE -- CMD...
"""
import os
import signal
import subprocess
import sys
import time

from machineid import MachineID

url, key, surface, pgid_file = sys.argv[1:5]
cmd = sys.argv[sys.argv.index("--") + 1:]
client = MachineID(key, base_url=url)
client.register(surface)
worker = subprocess.Popen(cmd, start_new_session=True)
with open(pgid_file, "w") as f:
    f.write(str(worker.pid))
stopped = False
while worker.poll() is None:
    try:
        allowed = client.validate(surface).get("allowed") is True
    except Exception:
        allowed = False  # fail closed, as the SDK's docs advise
    if not allowed and not stopped:
        os.killpg(worker.pid, signal.SIGSTOP)
        stopped = True
    elif allowed and stopped:
        os.killpg(worker.pid, signal.SIGCONT)
        stopped = False
    time.sleep(1)
