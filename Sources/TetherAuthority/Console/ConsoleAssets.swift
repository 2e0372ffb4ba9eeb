/// The console's stylesheet and script, served from the binary (no build step, no CDN).
enum ConsoleAssets {
    /// A stop sign: what the tab shows.
    static let icon =
        ##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><path d="M5 1h6l4 4v6l-4 4H5l-4-4V5z" fill="#a40000"/><rect x="4" y="7" width="8" height="2" fill="#fff"/></svg>"##

    static let css = ##"""
        /* Tether console. System fonts, no images, readable without colour: every state is also a
           word and a symbol; colour only repeats it. Narrow screens get one column. */
        :root { --fg: #111; --bg: #fff; --muted: #555; --line: #bbb; --panel: #f4f4f4; --bad: #a40000; --good: #05641f; --warn: #7a4d00; --focus: #0b57d0; }
        * { box-sizing: border-box; }
        [hidden] { display: none !important; }
        html { font: 16px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--fg); background: var(--bg); }
        body { margin: 0; }
        a { color: #0645ad; }
        code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: .95em; }
        :focus-visible { outline: 3px solid var(--focus); outline-offset: 2px; }
        .skip { position: absolute; left: -999px; top: 0; background: var(--bg); padding: .5rem; }
        .skip:focus { left: .5rem; z-index: 10; }
        .top { display: flex; flex-wrap: wrap; align-items: center; gap: .5rem 1.25rem; padding: .6rem 1rem; border-bottom: 2px solid var(--fg); }
        .brand { font-weight: 700; letter-spacing: .02em; }
        .top nav { display: flex; gap: 1rem; flex-wrap: wrap; }
        .top nav a { text-decoration: none; padding: .25rem 0; }
        .top nav a[aria-current="page"] { font-weight: 700; border-bottom: 3px solid currentColor; }
        .signout { margin-left: auto; display: flex; align-items: center; gap: .5rem; }
        .who::before { content: "signed in as "; color: var(--muted); }
        main { padding: 0 1rem 3rem; max-width: 72rem; }
        h1 { font-size: 1.5rem; margin: 1rem 0 .75rem; }
        h2 { font-size: 1.15rem; margin: 0 0 .5rem; }
        .live { margin: 0; padding: .35rem 1rem; font-size: .9rem; color: var(--muted); border-bottom: 1px solid var(--line); }
        .live.stale { color: var(--warn); font-weight: 600; }
        .live.stale::before { content: "⚠ "; }
        button { font: inherit; padding: .5rem .9rem; border: 2px solid var(--fg); background: var(--bg); color: var(--fg); border-radius: 4px; cursor: pointer; min-height: 2.75rem; }
        button:hover { background: var(--panel); }
        button.danger { border-color: var(--bad); color: #fff; background: var(--bad); font-weight: 700; }
        button.danger:hover { background: #7d0000; }
        input, textarea, select { font: inherit; padding: .45rem; border: 2px solid #666; border-radius: 4px; max-width: 100%; }
        label { font-weight: 600; }
        .stack { display: flex; flex-direction: column; gap: .4rem; max-width: 32rem; }
        .stack button { align-self: flex-start; }
        .panel { border: 1px solid var(--line); border-radius: 6px; padding: 1rem; margin: 1rem 0; background: var(--panel); }
        .message:empty, .note:empty { display: none; }
        .message { color: var(--bad); font-weight: 600; }
        .message::before { content: "✘ "; }
        .message.ok { color: var(--good); }
        .message.ok::before { content: "✔ "; }
        .message.info { color: var(--fg); font-weight: 400; }
        .message.info::before { content: "ⓘ "; }
        .note { border-left: 4px solid var(--warn); padding-left: .5rem; }
        .org { border: 3px solid var(--good); border-radius: 6px; padding: .9rem 1rem; font-size: 1.1rem; }
        .org strong { display: block; font-size: 1.4rem; }
        .org.halted { border-color: var(--bad); background: repeating-linear-gradient(45deg, #fff, #fff 12px, #fbeaea 12px, #fbeaea 24px); }
        .org.halted strong { color: var(--bad); }
        .counts { display: grid; grid-template-columns: repeat(auto-fit, minmax(10rem, 1fr)); gap: .5rem; margin: 1rem 0; }
        .counts div { border: 1px solid var(--line); border-radius: 6px; padding: .6rem .8rem; }
        .counts dt { color: var(--muted); font-size: .9rem; }
        .counts dd { margin: 0; font-size: 1.6rem; font-weight: 700; }
        .change { border-top: 1px solid var(--line); padding: .6rem 0; }
        .change:first-child { border-top: 0; }
        .change h3 { font-size: 1rem; margin: 0 0 .3rem; overflow-wrap: anywhere; }
        .acks { list-style: none; margin: 0; padding: 0; }
        .ack { padding: .15rem 0; overflow-wrap: anywhere; }
        .ack.ok { color: var(--good); }
        .ack.missing { color: var(--bad); font-weight: 600; }
        .filter { display: flex; flex-wrap: wrap; align-items: end; gap: .4rem .8rem; margin: .5rem 0 1rem; }
        .filter label { display: block; width: 100%; }
        .filter > label { width: auto; }
        .surface { border: 1px solid var(--line); border-left: 6px solid var(--good); border-radius: 6px; padding: .8rem 1rem; margin: .75rem 0; }
        .surface.revoked { border-left-color: var(--bad); }
        .surface header { display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: baseline; }
        .surface h2 { margin: 0; overflow-wrap: anywhere; }
        .state { font-weight: 700; }
        .revoked .state { color: var(--bad); }
        .surface .last { margin: .3rem 0; color: var(--muted); overflow-wrap: anywhere; }
        .surface .gates { margin: .3rem 0; font-weight: 600; overflow-wrap: anywhere; }
        .sups { margin: .3rem 0 .6rem; padding-left: 1.2rem; }
        .sups li { overflow-wrap: anywhere; }
        .actions { display: flex; flex-wrap: wrap; gap: .5rem; align-items: flex-start; }
        .actions form { display: flex; flex-wrap: wrap; gap: .4rem; align-items: end; width: 100%; }
        .actions form label { width: 100%; }
        .actions form input { flex: 1 1 16rem; }
        .table-wrap { overflow-x: auto; }
        table.audit { border-collapse: collapse; width: 100%; }
        .audit caption { text-align: left; color: var(--muted); padding: .3rem 0; }
        .audit th, .audit td { border-bottom: 1px solid var(--line); padding: .4rem .5rem; text-align: left; vertical-align: top; overflow-wrap: anywhere; }
        .audit th { border-bottom: 2px solid var(--fg); }
        .exports { margin: 0 0 .5rem; }
        .hint { color: var(--muted); }
        body.signin main { max-width: 30rem; margin: 2rem auto; }
        @media (max-width: 640px) {
          html { font-size: 17px; }
          .top { padding: .5rem .75rem; }
          .signout { margin-left: 0; width: 100%; justify-content: space-between; }
          main { padding: 0 .75rem 2rem; }
          .stack button, .actions button, .filter button { width: 100%; }
          .filter input, .filter select { width: 100%; }
          .audit thead { position: absolute; left: -999px; }
          .audit tr { display: block; border: 1px solid var(--line); border-radius: 6px; margin: .5rem 0; padding: .3rem .5rem; }
          .audit td { display: block; border: 0; padding: .15rem 0; }
          .audit td::before { content: attr(data-label) ": "; font-weight: 600; color: var(--muted); }
        }
        """##

    static let js = ##"""
        // Tether console: renders the state the authority streams (/console/events) into the page's
        // regions. Text goes in as text (textContent), never as markup. Changes are POSTed as JSON
        // with the page's CSRF token.
        "use strict";
        (() => {
          const page = document.body.dataset.page;
          if (page === "sign-in") return;
          const csrf = document.querySelector('meta[name="csrf-token"]').content;
          const $ = (id) => document.getElementById(id);
          const live = $("live");
          let state = null;

          function el(tag, props, ...kids) {
            const e = document.createElement(tag);
            for (const [k, v] of Object.entries(props || {})) {
              if (v === undefined || v === null) continue;
              if (k === "class") e.className = v;
              else if (k === "text") e.textContent = v;
              else e.setAttribute(k, v);
            }
            for (const k of kids) if (k !== null && k !== undefined) e.append(k);
            return e;
          }

          const when = (t) => (t ? t.replace("T", " ").replace(/(\.\d+)?Z$/, " UTC") : "—");
          const pids = (p) => (p && p.length ? "pids " + p.join(" ") : "no processes");
          const signedOut = () => { location.href = "/console/sign-in?expired=1"; };

          async function post(path, body) {
            const r = await fetch(path, {
              method: "POST", credentials: "same-origin",
              headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
              body: JSON.stringify(body),
            });
            const j = await r.json().catch(() => ({}));
            if (r.status === 401) { signedOut(); throw new Error("signed out"); }
            if (!r.ok) throw new Error(j.error || "HTTP " + r.status);
            return j;
          }

          function say(id, text, ok) {
            const m = $(id);
            if (!m) return;
            m.textContent = text;
            m.classList.toggle("ok", ok === true);
            m.classList.toggle("info", ok === "info");
          }

          // --- acknowledgements: as `tether revoke --wait` prints them ---
          const verbs = { revoke: "Revoke", restore: "Restore", halt: "HALT", resume: "Resume" };
          function renderChanges() {
            const box = $("changes");
            if (!box) return;
            const changes = state.changes;
            box.replaceChildren();
            // On the surfaces page the panel shows once there is something to acknowledge.
            if (page === "surfaces") box.closest(".panel").hidden = !changes.length;
            if (!changes.length) { box.append(el("p", { text: "No change made through this authority since it started." })); return; }
            for (const c of changes) {
              const subject = c.subject === "*" ? "the org" : c.subject;
              const head = `${verbs[c.action]} ${subject} — by ${c.actor}, ${when(c.at)}${c.reason ? ": " + c.reason : ""}`;
              const list = el("ul", { class: "acks" });
              for (const a of c.acks) {
                list.append(el("li", { class: "ack ok", text: `✔ ${a.instance} (${a.deviceId}) ${a.state} at ${when(a.at)}, ${pids(a.pids)}` }));
              }
              for (const m of c.missing) {
                list.append(el("li", { class: "ack missing", text: `✘ ${m.instance} (${m.deviceId}): ${c.collecting ? "no acknowledgement yet" : "no acknowledgement"}` }));
              }
              const total = c.acks.length + c.missing.length;
              const summary = total === 0 ? "No supervisor was watching." : `${c.acks.length} of ${total} acknowledged${c.collecting ? ", waiting…" : "."}`;
              box.append(el("article", { class: "change", "data-request": c.requestId }, el("h3", { text: head }), el("p", { class: "summary", text: summary }), list));
            }
          }

          // --- overview ---
          function renderOverview() {
            const o = state.org, box = $("org");
            box.className = "org" + (o.halted ? " halted" : "");
            box.replaceChildren(o.halted
              ? el("p", {}, el("strong", { text: "■ ORG HALTED" }), `by ${o.changedBy || "?"}, ${when(o.changedAt)}${o.reason ? ": " + o.reason : ""}. Every surface is stopped until the org is resumed.`)
              : el("p", {}, el("strong", { text: "● Normal" }), `Each surface runs as its own state says.${o.changedAt ? ` Last resumed by ${o.changedBy || "?"}, ${when(o.changedAt)}.` : ""}`));
            const counts = [["Surfaces", state.counts.surfaces], ["Revoked", state.counts.revoked], ["Supervisors connected", state.counts.supervisors]];
            $("counts").replaceChildren(...counts.map(([k, v]) => el("div", {}, el("dt", { text: k }), el("dd", { text: String(v), "data-count": k }))));
            $("halt-form").hidden = o.halted;
            $("resume-form").hidden = !o.halted;
          }

          function wireOverview() {
            $("halt-form").addEventListener("submit", async (e) => {
              e.preventDefault();
              const reason = $("halt-reason").value.trim(), confirm = $("halt-confirm").value.trim();
              if (!reason) { say("org-message", "A halt needs a reason."); $("halt-reason").focus(); return; }
              if (confirm !== "HALT") { say("org-message", "Type HALT in the confirmation field to halt everything."); $("halt-confirm").focus(); return; }
              try {
                const r = await post("/console/api/halt", { reason, confirm });
                $("halt-reason").value = ""; $("halt-confirm").value = "";
                say("org-message", `Org halted; waiting for ${r.watchers} supervisor stream(s) to acknowledge.`, true);
              } catch (err) { say("org-message", err.message); }
            });
            $("resume-form").addEventListener("submit", async (e) => {
              e.preventDefault();
              try {
                await post("/console/api/resume", { reason: $("resume-reason").value.trim() || undefined });
                $("resume-reason").value = "";
                say("org-message", "Org resumed.", true);
              } catch (err) { say("org-message", err.message); }
            });
          }

          // --- surfaces ---
          function surfaceArticle(s) {
            const art = el("article", { class: "surface", "data-id": s.deviceId, id: "s-" + s.deviceId });
            const toggle = el("button", { type: "button", class: "toggle", "aria-expanded": "false" });
            const reason = el("input", { name: "reason", maxlength: "1000", autocomplete: "off", id: "r-" + s.deviceId });
            const submit = el("button", { type: "submit", class: "go" });
            const cancel = el("button", { type: "button", text: "Cancel" });
            const form = el("form", { hidden: "", novalidate: "" }, el("label", { for: "r-" + s.deviceId, text: "Reason" }), reason, submit, cancel);
            art.append(el("header", {}, el("h2", {}), el("span", { class: "state" })), el("p", { class: "last" }), el("p", { class: "gates" }), el("div", { class: "sups-box" }),
              el("div", { class: "actions" }, toggle, form));
            toggle.addEventListener("click", () => {
              form.hidden = !form.hidden;
              toggle.setAttribute("aria-expanded", String(!form.hidden));
              if (!form.hidden) reason.focus();
            });
            cancel.addEventListener("click", () => { form.hidden = true; toggle.setAttribute("aria-expanded", "false"); toggle.focus(); });
            form.addEventListener("submit", async (e) => {
              e.preventDefault();
              const revoke = !art.classList.contains("revoked");
              const why = reason.value.trim();
              if (revoke && !why) { say("surface-message", `A revoke needs a reason (${s.deviceId}).`); reason.focus(); return; }
              try {
                const r = await post(revoke ? "/console/api/revoke" : "/console/api/restore", { deviceId: s.deviceId, reason: why || undefined });
                reason.value = ""; form.hidden = true; toggle.setAttribute("aria-expanded", "false");
                say("surface-message", `${revoke ? "Revoked" : "Restored"} ${s.deviceId}; ${r.watchers} supervisor stream(s) to acknowledge (below).`, true);
                $("changes-title").scrollIntoView({ block: "start" });
              } catch (err) { say("surface-message", err.message); }
            });
            return art;
          }

          function fillSurface(art, s) {
            art.classList.toggle("revoked", s.revoked);
            art.querySelector("h2").textContent = s.deviceId;
            art.querySelector(".state").textContent = s.revoked ? "✘ REVOKED" : "✔ active";
            art.querySelector(".last").textContent = s.changedBy ? `Last change: by ${s.changedBy}, ${when(s.updatedAt)}${s.reason ? ": " + s.reason : ""}` : `Active since ${when(s.updatedAt)}; never revoked.`;
            const sups = s.supervisors.length
              ? el("ul", { class: "sups" }, ...s.supervisors.map((w) => el("li", {
                  text: `${w.instance} — ${w.connected ? "connected" : "not connected"}; ${w.state ? `last report: ${w.state} at ${when(w.at)}, ${pids(w.pids)}${w.detail ? " — " + w.detail : ""}` : "no report yet"}` })))
              : el("p", { text: "No supervisor has watched it." });
            art.querySelector(".sups-box").replaceChildren(sups);
            // Gates: on the gated surface, each gate's state; on a gate surface, what it gates.
            const gates = art.querySelector(".gates");
            if (s.gates.length) {
              gates.textContent = "Gates: " + s.gates.map((g) => `${g.kind} ${g.closed ? "✘ closed" : "✔ open"}${g.closed && g.detail ? " (" + g.detail + ")" : ""}`).join(" · ");
            } else if (s.gateOf) {
              gates.textContent = `The ${s.gateKind} gate of ${s.gateOf}: revoking it closes the gate (the worker keeps running, its ${s.gateKind} calls fail).`;
            } else {
              gates.textContent = "";
            }
            gates.hidden = !gates.textContent;
            art.querySelector(".toggle").textContent = s.revoked ? "Restore…" : "Revoke…";
            art.querySelector(".go").textContent = (s.revoked ? "Restore " : "Revoke ") + s.deviceId;
            art.querySelector(".go").className = "go" + (s.revoked ? "" : " danger");
          }

          function renderSurfaces() {
            const box = $("surfaces");
            // The authority sends the first 200 surfaces the filter matches (the filter is
            // applied there: a fleet of 100,000 is never sent whole), and how many match.
            const shown = state.surfaces, matching = state.matching;
            const existing = new Map([...box.children].map((a) => [a.dataset.id, a]));
            const keep = new Set(shown.map((s) => s.deviceId));
            for (const [id, a] of existing) if (!keep.has(id)) a.remove();
            shown.forEach((s, i) => {
              let art = existing.get(s.deviceId);
              if (!art) art = surfaceArticle(s);
              fillSurface(art, s);
              if (box.children[i] !== art) box.insertBefore(art, box.children[i] || null);
            });
            if (!shown.length) say("surface-message", state.counts.surfaces ? "No surface matches the filter." : "No surface yet.", "info");
            else if (matching > shown.length) say("surface-message", `Showing ${shown.length} of ${matching} surfaces: filter to find the others.`, "info");
            else if (/^(No surface|Showing)/.test($("surface-message").textContent)) say("surface-message", "");
          }

          // --- audit ---
          const auditFields = ["surface", "actor", "since", "until"];
          function auditQuery() {
            const q = new URLSearchParams();
            for (const f of auditFields) { const v = $("f-" + f).value.trim(); if (v) q.set(f, v); }
            return q;
          }
          let auditTimer = null;
          async function loadAudit() {
            const q = auditQuery();
            $("export-csv").href = "/console/audit.csv?" + q;
            const jq = new URLSearchParams(q); jq.set("download", "1");
            $("export-json").href = "/console/audit.json?" + jq;
            const r = await fetch("/console/audit.json?" + q, { credentials: "same-origin" });
            if (r.status === 401) return signedOut();
            const j = await r.json();
            const body = $("audit").tBodies[0];
            if (!r.ok) { body.replaceChildren(el("tr", {}, el("td", { colspan: "5", text: "✘ " + (j.error || r.status) }))); return; }
            const labels = ["When (UTC)", "Actor", "Action", "Surface", "Reason"];
            body.replaceChildren(...j.entries.map((a) => el("tr", {}, ...[when(a.at), a.actor, a.action, a.deviceId || "—", a.reason || ""].map((t, i) => el("td", { "data-label": labels[i], text: t })))));
            if (!j.entries.length) body.append(el("tr", {}, el("td", { colspan: "5", text: "No entry matches." })));
          }
          function wireAudit() {
            const params = new URLSearchParams(location.search);
            for (const f of auditFields) if (params.get(f)) $("f-" + f).value = params.get(f);
            $("audit-filter").addEventListener("submit", (e) => {
              e.preventDefault();
              history.replaceState(null, "", "/console/audit?" + auditQuery());
              loadAudit();
            });
            loadAudit();
          }

          function render() {
            if (page === "overview") { renderOverview(); renderChanges(); }
            if (page === "surfaces") { renderSurfaces(); renderChanges(); }
            if (page === "audit") { clearTimeout(auditTimer); auditTimer = setTimeout(loadAudit, 300); }
          }

          // The surfaces page's filter, as the authority reads it.
          function viewQuery() {
            if (page !== "surfaces") return "";
            const q = new URLSearchParams();
            const text = $("search").value.trim(), which = $("state-filter").value;
            if (text) q.set("q", text);
            if (which !== "all") q.set("state", which);
            const s = q.toString();
            return s ? "?" + s : "";
          }

          let es = null;
          function connect() {
            const source = new EventSource("/console/events" + viewQuery());
            es = source;
            source.addEventListener("state", (e) => {
              if (source !== es) return;  // a stream of a filter since changed
              state = JSON.parse(e.data);
              live.textContent = `Live — as of ${when(state.now)}`;
              live.className = "live ok";
              render();
            });
            source.addEventListener("signed-out", () => { source.close(); signedOut(); });
            source.onerror = () => {
              if (source !== es) return;
              live.textContent = "Connection lost: reconnecting. What is shown may be out of date.";
              live.className = "live stale";
              if (source.readyState === EventSource.CLOSED) {
                fetch("/console/state.json" + viewQuery(), { credentials: "same-origin" })
                  .then((r) => { if (r.status === 401) signedOut(); else setTimeout(() => { if (source === es) connect(); }, 2000); })
                  .catch(() => setTimeout(() => { if (source === es) connect(); }, 2000));
              }
            };
          }

          if (page === "overview") wireOverview();
          if (page === "surfaces") {
            $("filter").addEventListener("submit", (e) => e.preventDefault());
            // A new filter is a new view: the stream again, with it (after typing pauses).
            let refilter = null;
            const again = () => { clearTimeout(refilter); refilter = setTimeout(() => { if (es) es.close(); connect(); }, 250); };
            $("search").addEventListener("input", again);
            $("state-filter").addEventListener("change", again);
          }
          if (page === "audit") wireAudit();
          connect();
        })();
        """##
}
