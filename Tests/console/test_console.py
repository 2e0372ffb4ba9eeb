"""The on-call console in a real browser (headless Chromium from Debian, driven by Selenium):
sign-in with a key and with a one-time link, a real `tether run` worker stopped and resumed
from the page with the kernel's word for it (/proc), halt and resume, the audit log and its
exports, and the refusals: an agent key, a missing CSRF token, a foreign origin, an expired
session, a used or expired link. Screenshots of every page at phone and desktop widths go to
$TETHER_CONSOLE_SHOTS (docs/console/ holds the committed ones).

Run by .ci/run after `swift build`:  python3 -m pytest -q Tests/console
"""
import csv
import io
import json
import re
import time
import urllib.error
import urllib.request

from conftest import SHOTS, Authority, eventually, make_browser

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait


def wait_for(b, condition, timeout=20):
    return WebDriverWait(b, timeout, poll_frequency=0.1).until(lambda d: condition())


def text(b, css):
    """The rendered text of the first match, read in one step (the page re-renders live: an
    element found, then read, may be gone in between)."""
    return b.execute_script("const e = document.querySelector(arguments[0]); return e ? e.innerText : ''", css)


def texts(b, css):
    return b.execute_script("return [...document.querySelectorAll(arguments[0])].map((e) => e.innerText)", css)


def shot(b, name):
    """The page at desktop and phone widths, whole (the window as tall as the page)."""
    for label, width in (("desktop", 1280), ("phone", 390)):
        b.set_window_size(width, 900)
        time.sleep(0.3)
        height = b.execute_script("return document.documentElement.scrollHeight")
        b.set_window_size(width, min(max(height + 140, 700), 3000))
        time.sleep(0.3)
        b.save_screenshot(f"{SHOTS}/{name}-{label}.png")
    b.set_window_size(1280, 900)


def sign_in_with_key(b, authority, key):
    b.get(authority.url + "/console")
    assert b.current_url.endswith("/console/sign-in"), b.current_url
    b.find_element(By.ID, "key").send_keys(key)
    b.find_element(By.ID, "key-button").click()


def cookie_header(b):
    return "; ".join(f"{c['name']}={c['value']}" for c in b.get_cookies())


def request(authority, path, b=None, method="GET", body=None, headers=None):
    h = dict(headers or {})
    if b is not None:
        h["Cookie"] = cookie_header(b)
    data = json.dumps(body).encode() if body is not None else None
    if data is not None:
        h.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(authority.url + path, data=data, headers=h, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), e.headers


def surface_article(b, name):
    return f'article.surface[data-id="{name}"]'


# --- sign-in ---------------------------------------------------------------------------------

def test_sign_in_with_an_operator_key(browser, authority, worker):
    b = browser
    b.get(authority.url + "/console")
    assert b.current_url.endswith("/console/sign-in")
    shot(b, "sign-in")
    sign_in_with_key(b, authority, authority.keys["operator"])
    wait_for(b, lambda: b.current_url.endswith("/console") and "Normal" in text(b, "#org"))
    wait_for(b, lambda: b.find_element(By.CSS_SELECTOR, 'dd[data-count="Supervisors connected"]').text == "1")
    session = b.get_cookie("tether_session")
    assert session["httpOnly"] and session["sameSite"] == "Strict" and session["path"] == "/console"
    shot(b, "overview")


def test_an_agent_key_cannot_sign_in(fresh_browser, authority):
    b = fresh_browser
    sign_in_with_key(b, authority, authority.keys["agent"])
    wait_for(b, lambda: "agent key" in text(b, "#signin-error"))
    assert b.get_cookie("tether_session") is None
    b.get(authority.url + "/console/surfaces")
    assert b.current_url.endswith("/console/sign-in")
    # Nor can it make a sign-in link.
    status, body, _ = request(authority, "/api/v1/console/link", method="POST", body={}, headers={"x-org-key": authority.keys["agent"]})
    assert status == 403, body


def test_a_one_time_link_signs_in_once(fresh_browser, authority):
    b = fresh_browser
    link = authority.link()
    assert link.startswith(authority.url + "/console/sign-in?link=")
    b.get(link)
    shot(b, "sign-in-link")
    b.find_element(By.ID, "link-button").click()
    wait_for(b, lambda: b.current_url.endswith("/console") and "Normal" in text(b, "#org"))
    # The same link again, in a browser without the session: refused.
    b.delete_all_cookies()
    b.get(link)
    b.find_element(By.ID, "link-button").click()
    wait_for(b, lambda: "used already" in text(b, "#signin-error"))
    assert b.get_cookie("tether_session") is None
    b.get(authority.url + "/console")
    assert b.current_url.endswith("/console/sign-in")


# --- a real worker, stopped from the page -----------------------------------------------------

def test_the_worker_appears(browser, authority, worker):
    b = browser
    b.get(authority.url + "/console/surfaces")
    art = surface_article(b, worker.surface)
    wait_for(b, lambda: "connected" in text(b, art) and "last report" in text(b, art) and "✔ active" in text(b, art))
    wait_for(b, lambda: "Gates: net ✔ open" in text(b, art))
    shot(b, "surfaces")


def test_a_gate_closes_from_the_console_and_the_worker_keeps_running(browser, authority, worker):
    b = browser
    gate = surface_article(b, worker.surface + ".net")
    wait_for(b, lambda: "net gate of " + worker.surface in text(b, gate))
    b.find_element(By.CSS_SELECTOR, gate + " .toggle").click()
    b.find_element(By.CSS_SELECTOR, gate + " input[name=reason]").send_keys("INC-6: no network for now")
    b.find_element(By.CSS_SELECTOR, gate + " .go").click()
    wait_for(b, lambda: "Gates: net ✘ closed" in text(b, surface_article(b, worker.surface)))
    wait_for(b, lambda: "gate_closed" in text(b, "#changes .change .ack.ok"))
    # A gate stops calls, not processes: nothing is T.
    time.sleep(0.5)
    assert worker.processes() and all(s != "T" for s in worker.processes().values()), worker.processes()
    shot(b, "gate-closed")
    b.find_element(By.CSS_SELECTOR, gate + " .toggle").click()
    b.find_element(By.CSS_SELECTOR, gate + " .go").click()
    wait_for(b, lambda: "Gates: net ✔ open" in text(b, surface_article(b, worker.surface)))


def test_revoke_from_the_console_stops_every_process(browser, authority, worker, receiver):
    b = browser
    b.get(authority.url + "/console/surfaces")
    art = surface_article(b, worker.surface)
    wait_for(b, lambda: "✔ active" in text(b, art))
    b.find_element(By.CSS_SELECTOR, art + " .toggle").click()
    # A revoke needs a reason: refused on the page without one.
    b.find_element(By.CSS_SELECTOR, art + " .go").click()
    wait_for(b, lambda: "needs a reason" in text(b, "#surface-message"))
    assert all(s != "T" for s in worker.processes().values())
    b.find_element(By.CSS_SELECTOR, art + " input[name=reason]").send_keys("INC-7: console test")
    b.find_element(By.CSS_SELECTOR, art + " .go").click()
    # The acknowledgement arrives on the page: ✔ host, stopped at, pids.
    wait_for(b, lambda: "✔" in text(b, "#changes .change .ack.ok") and "stopped" in text(b, "#changes .change .ack.ok"))
    ack = text(b, "#changes .change .ack.ok")
    assert "✘" not in text(b, "#changes .change")
    pids = [int(p) for p in re.search(r"pids ([\d ]+)", ack).group(1).split()]
    assert len(pids) >= 3, ack
    # The kernel: every process of the worker stopped (T), the ones the page names among them.
    procs = eventually(lambda: (lambda p: p if p and all(s == "T" for s in p.values()) else None)(worker.processes()), timeout=5)
    assert procs, worker.processes()
    assert set(procs) <= set(pids) | set(procs) and set(procs) & set(pids), (procs, pids)
    for pid in pids:
        try:
            state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        assert state == "T", (pid, state)
    assert "✘ REVOKED" in text(b, art)
    shot(b, "revoked")
    # The webhook was told, signed.
    got = eventually(lambda: [e for e, ok in receiver.events() if e["event"] == "revoke" and e["subject"] == worker.surface and ok], timeout=10)
    assert got and got[0]["reason"] == "INC-7: console test"
    assert got[0]["actor"] == "operator via console (127.0.0.1)", got[0]


def test_restore_from_the_console(browser, authority, worker):
    b = browser
    art = surface_article(b, worker.surface)
    b.find_element(By.CSS_SELECTOR, art + " .toggle").click()
    # A reason is text, never markup: what a hostile key holder types shows as typed.
    hostile = 'INC-7 resolved <img id="injected" src="/x" onerror="document.title=1">'
    b.find_element(By.CSS_SELECTOR, art + " input[name=reason]").send_keys(hostile)
    b.find_element(By.CSS_SELECTOR, art + " .go").click()
    wait_for(b, lambda: "✔ active" in text(b, art))
    wait_for(b, lambda: hostile in text(b, art + " .last"))
    assert not b.find_elements(By.ID, "injected") and b.title != "1"
    wait_for(b, lambda: "Restore " + worker.surface in text(b, "#changes .change h3"))
    wait_for(b, lambda: "✔" in text(b, "#changes .change .ack.ok"))
    assert eventually(lambda: all(s != "T" for s in worker.processes().values()) and len(worker.processes()) >= 3, timeout=5)


def test_halt_and_resume_from_the_console(browser, authority, worker):
    b = browser
    b.get(authority.url + "/console")
    wait_for(b, lambda: "Normal" in text(b, "#org"))
    b.find_element(By.ID, "halt-reason").send_keys("INC-8: every agent off")
    # Deliberate: not without typing HALT.
    b.find_element(By.ID, "halt-button").click()
    wait_for(b, lambda: "Type HALT" in text(b, "#org-message"))
    assert "Normal" in text(b, "#org")
    b.find_element(By.ID, "halt-confirm").send_keys("HALT")
    b.find_element(By.ID, "halt-button").click()
    wait_for(b, lambda: "ORG HALTED" in text(b, "#org") and "INC-8" in text(b, "#org"))
    assert eventually(lambda: all(s == "T" for s in worker.processes().values()), timeout=5), worker.processes()
    wait_for(b, lambda: "HALT the org" in text(b, "#changes .change h3") and "✔" in text(b, "#changes .change .ack.ok"))
    shot(b, "halted")
    b.find_element(By.ID, "resume-reason").send_keys("INC-8 over")
    b.find_element(By.ID, "resume-button").click()
    wait_for(b, lambda: "Normal" in text(b, "#org"))
    assert eventually(lambda: all(s != "T" for s in worker.processes().values()), timeout=5), worker.processes()


# --- the audit log ----------------------------------------------------------------------------

def test_the_audit_page_shows_it_all(browser, authority, worker):
    b = browser
    b.get(authority.url + "/console/audit")
    rows = lambda: texts(b, "#audit tbody tr")
    wait_for(b, lambda: any("halt" in r for r in rows()))
    page = "\n".join(rows())
    for action in ("revoke", "unrevoke", "halt", "resume"):
        assert re.search(rf"operator via console \(127\.0\.0\.1\)\s+{action}\b", page), (action, page)
    assert "INC-7: console test" in page
    shot(b, "audit")
    # Filter by surface: the org's halt and resume are not the surface's.
    b.find_element(By.ID, "f-surface").send_keys(worker.surface)
    b.find_element(By.CSS_SELECTOR, "#audit-filter button").click()
    wait_for(b, lambda: rows() and all(worker.surface in r for r in rows()))
    # Exports, with the page's filters, in the signed-in session.
    href = b.find_element(By.ID, "export-csv").get_attribute("href")
    status, body, headers = request(authority, href[len(authority.url):], b)
    assert status == 200 and "attachment" in headers.get("Content-Disposition", ""), (status, headers)
    table = list(csv.DictReader(io.StringIO(body)))
    assert {r["action"] for r in table} >= {"revoke", "unrevoke"} and all(r["surface"] == worker.surface for r in table)
    status, body, _ = request(authority, "/console/audit.json?actor=operator&download=1", b)
    entries = json.loads(body)["entries"]
    assert status == 200 and {"halt", "resume", "revoke"} <= {e["action"] for e in entries}
    # Without the session: nothing.
    status, _, _ = request(authority, "/console/audit.csv")
    assert status == 401


# --- refusals ---------------------------------------------------------------------------------

def test_a_change_without_the_csrf_token_or_from_another_origin_is_refused(browser, authority, worker):
    b = browser
    b.get(authority.url + "/console/surfaces")
    token = b.find_element(By.CSS_SELECTOR, 'meta[name="csrf-token"]').get_attribute("content")
    body = {"deviceId": worker.surface, "reason": "forged"}
    status, answer, _ = request(authority, "/console/api/revoke", b, "POST", body)
    assert status == 403 and json.loads(answer)["code"] == "CSRF", answer
    status, answer, _ = request(authority, "/console/api/revoke", b, "POST", body, {"X-CSRF-Token": "x" * len(token)})
    assert status == 403 and json.loads(answer)["code"] == "CSRF", answer
    status, answer, _ = request(authority, "/console/api/revoke", b, "POST", body, {"X-CSRF-Token": token, "Origin": "https://evil.example"})
    assert status == 403 and json.loads(answer)["code"] == "CROSS_ORIGIN", answer
    status, answer, _ = request(authority, "/console/api/halt", b, "POST", {"reason": "forged", "confirm": "HALT"}, {"Sec-Fetch-Site": "cross-site", "X-CSRF-Token": token})
    assert status == 403, answer
    # Without a session, with the token: refused too.
    status, _, _ = request(authority, "/console/api/revoke", None, "POST", body, {"X-CSRF-Token": token})
    assert status == 401
    # Nothing changed: the surface is active, the org running, the worker not stopped.
    status, answer, _ = request(authority, "/console/state.json", b)
    state = json.loads(answer)
    assert not state["org"]["halted"] and not [s for s in state["surfaces"] if s["deviceId"] == worker.surface][0]["revoked"]
    assert all(s != "T" for s in worker.processes().values())
    # The headers every console answer carries.
    _, _, headers = request(authority, "/console/sign-in")
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert headers["X-Frame-Options"] == "DENY" and headers["Cache-Control"] == "no-store"


def test_an_expired_session_and_an_expired_link_are_refused():
    a = Authority('[console]\nidle_timeout = "5s"\nsession_lifetime = "10s"\nlink_lifetime = "5s"\n')
    b = make_browser(1280, 900)
    try:
        sign_in_with_key(b, a, a.keys["operator"])
        wait_for(b, lambda: b.current_url.endswith("/console") and "Normal" in text(b, "#org"))
        cookie = cookie_header(b)
        # Left open and idle, the page is sent to sign in again when its session ends.
        wait_for(b, lambda: "expired=1" in b.current_url, timeout=20)
        assert "Your session ended" in text(b, "main")
        shot(b, "session-ended")
        status, answer, _ = request(a, "/console/state.json", headers={"Cookie": cookie})
        assert status == 401, answer
        b.get(a.url + "/console")
        assert "/console/sign-in" in b.current_url
        # A link used after its lifetime: refused.
        link = a.link()
        time.sleep(6)
        b.get(link)
        b.find_element(By.ID, "link-button").click()
        wait_for(b, lambda: "expired" in text(b, "#signin-error"))
        assert b.get_cookie("tether_session") is None
    finally:
        b.quit()
        a.stop()


def test_sign_out_ends_the_session(fresh_browser, authority):
    b = fresh_browser
    sign_in_with_key(b, authority, authority.keys["operator"])
    wait_for(b, lambda: b.current_url.endswith("/console"))
    cookie = cookie_header(b)
    b.find_element(By.CSS_SELECTOR, ".signout button").click()
    wait_for(b, lambda: b.current_url.endswith("/console/sign-in"))
    status, _, _ = request(authority, "/console/state.json", headers={"Cookie": cookie})
    assert status == 401


def test_webhooks_heard_every_change_signed(receiver):
    events = receiver.events()
    kinds = [e["event"] for e, ok in events if ok]
    assert all(ok for _, ok in events), events
    for k in ("revoke", "restore", "halt", "resume"):
        assert k in kinds, kinds


def test_no_script_errors(browser):
    logs = [l for l in browser.get_log("browser") if l["level"] == "SEVERE" and "favicon" not in l["message"]]
    assert not logs, logs
