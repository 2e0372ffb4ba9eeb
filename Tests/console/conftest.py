"""Shared set-up of the console's browser tests: a real authority, a real supervised worker,
headless Chromium from Debian driven by Selenium (from PyPI, in $TETHER_TEST_PYDEPS)."""
import hashlib
import hmac
import http.server
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import pytest

deps = os.environ.get("TETHER_TEST_PYDEPS", "/var/cache/tether-ci/pydeps")
if os.path.isdir(deps):
    sys.path.insert(0, deps)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TETHER = os.environ.get("TETHER_BIN", os.path.join(ROOT, ".build", "debug", "tether"))
SHOTS = os.environ.get("TETHER_CONSOLE_SHOTS") or tempfile.mkdtemp(prefix="tether-console-shots-")
SECRET = "console-test-webhook-secret-0123456789"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    """A webhook receiver on loopback: records every POST, answers 200."""

    def __init__(self):
        self.posts = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.posts.append((dict(self.headers), body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self):
        out = []
        for headers, body in self.posts:
            ts = headers.get("X-Tether-Webhook-Timestamp", "")
            sig = headers.get("X-Tether-Webhook-Signature", "")
            want = "v1=" + hmac.new(SECRET.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
            out.append((json.loads(body), hmac.compare_digest(sig, want)))
        return out


class Authority:
    def __init__(self, settings=""):
        self.dir = tempfile.mkdtemp(prefix="tether-console-")
        subprocess.run([TETHER, "authority", "init", "--dir", self.dir], check=True, capture_output=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [TETHER, "authority", "serve", "--dir", self.dir, "--listen", f"127.0.0.1:{self.port}", "--lease", "3s"]
        if settings:
            path = os.path.join(self.dir, "authority.toml")
            with open(path, "w") as f:
                f.write(settings)
            args += ["--config", path]
        self.log = open(os.path.join(self.dir, "serve.log"), "w")
        self.server = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=self.log)
        for _ in range(750):
            try:
                urllib.request.urlopen(self.url + "/healthz", timeout=1)
                break
            except OSError:
                if self.server.poll() is not None:
                    raise RuntimeError("the authority exited: " + open(self.log.name).read())
                time.sleep(0.02)
        else:
            raise RuntimeError("the authority did not start")
        self.keys = {n: open(os.path.join(self.dir, f"{n}.key")).read().strip() for n in ("operator", "agent")}

    def tether(self, *args):
        return subprocess.run([TETHER, *args, "--dir", self.dir, "--authority", self.url], capture_output=True, text=True, timeout=60)

    def link(self):
        r = self.tether("console")
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    def stop(self):
        self.server.terminate()
        self.server.wait(timeout=10)


class Worker:
    """`tether run` supervising a Python worker and two forked children, all with a marker
    in their command line (found in /proc), under a network gate (`SURFACE.net`)."""

    def __init__(self, authority, surface):
        self.marker = f"tether-console-{surface}-{os.getpid()}"
        self.surface = surface
        code = ("import os,time\n"
                "for _ in range(2):\n"
                "    if os.fork() == 0:\n"
                "        break\n"
                "while True:\n"
                "    time.sleep(0.2)\n")
        self.proc = subprocess.Popen(
            [TETHER, "run", "--dir", authority.dir, "--authority", authority.url, "--key-file", authority.dir + "/agent.key",
             "--public-key", authority.dir + "/signing.pub", "--surface", surface, "--gate", f"net={surface}.net",
             "--", "/usr/bin/python3", "-c", code, self.marker],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(authority.dir, f"run-{surface}.log"), "w"))

    def processes(self):
        """pid → state letter, of every worker process (Python, with the marker; not the
        supervisor, whose own command line names it too) — the kernel's view."""
        out = {}
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
                if not argv[0].endswith(b"python3") or self.marker.encode() not in argv:
                    continue
                with open(f"/proc/{pid}/stat") as f:
                    out[int(pid)] = f.read().rsplit(")", 1)[1].split()[0]
            except OSError:
                pass
        return out

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def eventually(condition, timeout=10.0, every=0.1):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(every)
    return condition()


@pytest.fixture(scope="session")
def receiver():
    return Receiver()


@pytest.fixture(scope="session")
def authority(receiver):
    secret = os.path.join(tempfile.mkdtemp(prefix="tether-console-secret-"), "webhook.secret")
    with open(secret, "w") as f:
        f.write(SECRET)
    os.chmod(secret, 0o600)
    a = Authority(f"""
[notify]
ack_timeout = "2s"

[[notify.webhook]]
name = "test"
url = "{receiver.url}"
format = "json"
secret_file = "{secret}"
""")
    yield a
    a.stop()


@pytest.fixture(scope="session")
def worker(authority):
    w = Worker(authority, "console-demo")
    assert eventually(lambda: len(w.processes()) >= 3), "the worker did not start"
    yield w
    w.stop()


def make_browser(width, height):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    o = webdriver.ChromeOptions()
    o.binary_location = os.environ.get("TETHER_CHROMIUM", "/usr/bin/chromium")
    for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", f"--window-size={width},{height}",
                "--force-device-scale-factor=1", "--lang=en-US"]:
        o.add_argument(arg)
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(os.environ.get("TETHER_CHROMEDRIVER", "/usr/bin/chromedriver")), options=o)


@pytest.fixture(scope="session")
def browser():
    b = make_browser(1280, 900)
    yield b
    b.quit()


@pytest.fixture()
def fresh_browser():
    b = make_browser(1280, 900)
    yield b
    b.quit()
