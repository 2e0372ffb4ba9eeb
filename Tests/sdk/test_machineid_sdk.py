"""The official MachineID Python SDK (machineid-io on PyPI), unchanged, against Tether's authority.

Run by .ci/run after `swift build`:  python3 -m pytest -q Tests/sdk
The SDK's base_url points at a real `tether authority serve` on loopback.
"""
import base64
import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from machineid import MachineID

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TETHER = os.environ.get("TETHER_BIN", os.path.join(ROOT, ".build", "debug", "tether"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def authority():
    state = tempfile.mkdtemp(prefix="tether-sdk-")
    subprocess.run([TETHER, "authority", "init", "--dir", state], check=True, capture_output=True)
    port = free_port()
    server = subprocess.Popen(
        [TETHER, "authority", "serve", "--dir", state, "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(url + "/healthz", timeout=1)
            break
        except OSError:
            time.sleep(0.02)
    else:
        server.kill()
        pytest.fail("the authority did not start")
    keys = {name: open(os.path.join(state, f"{name}.key")).read().strip() for name in ("operator", "agent")}
    keys["public"] = open(os.path.join(state, "signing.pub")).read().strip()
    yield url, keys
    server.terminate()
    server.wait(timeout=10)


def test_agent_lifecycle(authority):
    url, keys = authority
    agent = MachineID(keys["agent"], base_url=url)
    op = MachineID(keys["operator"], base_url=url)

    assert agent.register("agent-01")["status"] == "ok"
    assert agent.register("agent-01")["status"] == "exists"

    d = agent.validate("agent-01")
    assert d["allowed"] is True
    assert d["code"] == "ALLOW"
    assert d["request_id"]

    # An agent key cannot revoke (MachineID's one shared key could); the SDK returns the JSON error.
    refused = agent.revoke("agent-01")
    assert refused["code"] == "FORBIDDEN"
    assert agent.validate("agent-01")["allowed"] is True

    revoked = op.revoke("agent-01")
    assert revoked["status"] == "ok"
    d = agent.validate("agent-01")
    assert d["allowed"] is False
    assert d["code"] == "DEVICE_REVOKED"
    # register() never restores a revoked device
    assert agent.register("agent-01")["status"] == "revoked"
    assert agent.validate("agent-01")["allowed"] is False

    assert op.unrevoke("agent-01")["status"] == "ok"
    assert agent.validate("agent-01")["allowed"] is True
    assert op.restore("agent-01")["status"] == "ok"


def test_list_usage_remove(authority):
    url, keys = authority
    agent = MachineID(keys["agent"], base_url=url)
    op = MachineID(keys["operator"], base_url=url)
    agent.register("agent-02")

    devices = op.list_devices()["devices"]
    assert "agent-02" in [d["deviceId"] for d in devices]
    usage = op.usage()
    assert usage["devices"] >= 1

    assert op.remove("agent-02")["status"] == "ok"
    assert agent.validate("agent-02")["code"] == "DEVICE_NOT_FOUND"
    assert op.remove("agent-02")["code"] == "DEVICE_NOT_FOUND"


def test_bad_key_and_unknown_device(authority):
    url, _ = authority
    stranger = MachineID("org_not_a_key", base_url=url)
    assert stranger.validate("agent-01")["code"] == "UNAUTHORIZED"
    with pytest.raises(ValueError):
        stranger.validate("")


def post(url, key, path, body):
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"x-org-key": key, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


def test_signature_recipe_of_docs_api(authority):
    """docs/api.md's Python recipe verifies a real answer, with the operator's name and reason."""
    url, keys = authority
    agent = MachineID(keys["agent"], base_url=url)
    agent.register("agent-03")
    post(url, keys["operator"], "/api/v1/devices/revoke", {"deviceId": "agent-03", "reason": "INC-481:\nrefund loop"})
    d = post(url, keys["agent"], "/api/v1/devices/validate", {"deviceId": "agent-03", "nonce": "n-1"})
    assert d["code"] == "DEVICE_REVOKED" and d["changedBy"] == "operator"
    assert d["changeReason"] == "INC-481: refund loop"

    # The pinned key set (signing.pub): one key per line, its id derived from the key.
    pinned = {}
    for line in keys["public"].splitlines():
        raw = base64.b64decode(line.split()[0])
        key_id = "ed25519:" + base64.urlsafe_b64encode(raw).decode()[:12]
        pinned[key_id] = Ed25519PublicKey.from_public_bytes(raw)

    fields = ["origin", "keyId", "kind", "revision", "orgRevision", "deviceId", "allowed", "code",
              "request_id", "issuedAt", "expiresAt", "nonce", "changedBy", "changedAt", "changeReason"]
    def text(v): return "" if v is None else ("true" if v is True else "false" if v is False else str(v))
    msg = "\n".join(["tether-decision-v3"] + [f"{f}={text(d.get(f))}" for f in fields]).encode()
    pub = pinned[d["keyId"]]
    pub.verify(base64.b64decode(d["signature"]), msg)
    d["changeReason"] = "nothing to see"
    forged = "\n".join(["tether-decision-v3"] + [f"{f}={text(d.get(f))}" for f in fields]).encode()
    with pytest.raises(InvalidSignature):
        pub.verify(base64.b64decode(d["signature"]), forged)
