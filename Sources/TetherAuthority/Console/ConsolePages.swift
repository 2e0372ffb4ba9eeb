import Foundation

/// The console's HTML: each page is a shell — navigation, forms, empty regions — that
/// console.js fills from the live state. Nothing inline (the Content-Security-Policy allows
/// this origin's script and stylesheet only); every value written here is escaped.
enum ConsolePages {
    enum Page: String { case overview, surfaces, audit }

    static func escape(_ s: String) -> String {
        var out = ""
        for c in s {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(c)
            }
        }
        return out
    }

    static func head(_ title: String, csrf: String? = nil) -> String {
        """
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <meta name="referrer" content="same-origin">
        \(csrf.map { "<meta name=\"csrf-token\" content=\"\(escape($0))\">\n" } ?? "")<title>\(escape(title)) · Tether console</title>
        <link rel="stylesheet" href="/console/assets/console.css">
        <link rel="icon" href="/console/assets/icon.svg" type="image/svg+xml">
        <script src="/console/assets/console.js" defer></script>
        </head>
        """
    }

    static func page(_ page: Page, keyName: String, csrf: String) -> String {
        let titles: [Page: String] = [.overview: "Overview", .surfaces: "Surfaces", .audit: "Audit log"]
        func link(_ p: Page, _ href: String) -> String {
            "<a href=\"\(href)\"\(p == page ? " aria-current=\"page\"" : "")>\(titles[p]!)</a>"
        }
        return head(titles[page]!, csrf: csrf) + """
            <body data-page="\(page.rawValue)">
            <a class="skip" href="#main">Skip to content</a>
            <header class="top">
              <span class="brand">Tether</span>
              <nav aria-label="Console">\(link(.overview, "/console"))\(link(.surfaces, "/console/surfaces"))\(link(.audit, "/console/audit"))</nav>
              <form class="signout" method="post" action="/console/sign-out">
                <input type="hidden" name="csrf" value="\(escape(csrf))">
                <span class="who">\(escape(keyName))</span>
                <button type="submit">Sign out</button>
              </form>
            </header>
            <p id="live" class="live" role="status" aria-live="polite">Connecting…</p>
            <main id="main" tabindex="-1">
            <h1>\(titles[page]!)</h1>
            \(body(page))
            </main>
            </body>
            </html>
            """
    }

    static func body(_ page: Page) -> String {
        switch page {
        case .overview:
            return """
                <section id="org" class="org" aria-label="Org state"></section>
                <dl id="counts" class="counts"></dl>
                <section class="panel" aria-labelledby="halt-title">
                  <h2 id="halt-title">Emergency stop</h2>
                  <form id="halt-form" class="stack" novalidate>
                    <p>Stops every worker of every surface, on every host, until the org is resumed.</p>
                    <label for="halt-reason">Reason (required, shown to everyone)</label>
                    <textarea id="halt-reason" name="reason" rows="2" maxlength="1000" required></textarea>
                    <label for="halt-confirm">Type HALT to confirm</label>
                    <input id="halt-confirm" name="confirm" autocomplete="off" autocapitalize="characters" spellcheck="false">
                    <button type="submit" class="danger" id="halt-button">■ Halt everything</button>
                  </form>
                  <form id="resume-form" class="stack" hidden novalidate>
                    <label for="resume-reason">Reason</label>
                    <textarea id="resume-reason" name="reason" rows="2" maxlength="1000"></textarea>
                    <button type="submit" id="resume-button">▶ Resume the org</button>
                  </form>
                  <p id="org-message" class="message" role="alert"></p>
                </section>
                <section class="panel" aria-labelledby="changes-title">
                  <h2 id="changes-title">Recent changes and acknowledgements</h2>
                  <div id="changes"></div>
                </section>
                """
        case .surfaces:
            return """
                <form id="filter" class="filter" role="search">
                  <label for="search">Filter</label>
                  <input id="search" type="search" placeholder="surface or supervisor" autocomplete="off">
                  <label for="state-filter">State</label>
                  <select id="state-filter">
                    <option value="all">all</option>
                    <option value="active">active</option>
                    <option value="revoked">revoked</option>
                  </select>
                </form>
                <p id="surface-message" class="message" role="alert"></p>
                <section class="panel" aria-labelledby="changes-title" hidden>
                  <h2 id="changes-title">Acknowledgements</h2>
                  <div id="changes"></div>
                </section>
                <div id="surfaces" class="surfaces"></div>
                """
        case .audit:
            return """
                <form id="audit-filter" class="filter">
                  <label for="f-surface">Surface</label>
                  <input id="f-surface" name="surface" autocomplete="off">
                  <label for="f-actor">Actor (key name)</label>
                  <input id="f-actor" name="actor" autocomplete="off">
                  <label for="f-since">Since (UTC)</label>
                  <input id="f-since" name="since" type="datetime-local">
                  <label for="f-until">Until (UTC)</label>
                  <input id="f-until" name="until" type="datetime-local">
                  <button type="submit">Apply</button>
                </form>
                <p class="exports">Export: <a id="export-csv" href="/console/audit.csv">CSV</a> · <a id="export-json" href="/console/audit.json?download=1">JSON</a></p>
                <div class="table-wrap">
                <table id="audit" class="audit">
                  <caption>Newest first</caption>
                  <thead><tr><th scope="col">When (UTC)</th><th scope="col">Actor</th><th scope="col">Action</th><th scope="col">Surface</th><th scope="col">Reason</th></tr></thead>
                  <tbody></tbody>
                </table>
                </div>
                """
        }
    }

    static func signIn(pre: String, link: String?, note: String?, error: String?) -> String {
        var main = ""
        if let note { main += "<p class=\"note\" role=\"status\">\(escape(note))</p>\n" }
        if let error { main += "<p class=\"message\" role=\"alert\" id=\"signin-error\">\(escape(error))</p>\n" }
        if let link {
            main += """
                <form method="post" action="/console/sign-in" class="stack" id="link-form">
                  <input type="hidden" name="pre" value="\(escape(pre))">
                  <input type="hidden" name="link" value="\(escape(link))">
                  <p>This one-time link signs you in once. It was made by <code>tether console</code>.</p>
                  <button type="submit" id="link-button">Sign in with this link</button>
                </form>
                <p>Or with a key:</p>
                """
        }
        main += """
            <form method="post" action="/console/sign-in" class="stack" id="key-form">
              <input type="hidden" name="pre" value="\(escape(pre))">
              <label for="key">Operator key</label>
              <input id="key" name="key" type="password" autocomplete="off" spellcheck="false" required>
              <button type="submit" id="key-button">Sign in</button>
            </form>
            <p class="hint">No key at hand? On a host with Tether's CLI: <code>tether console</code> prints a one-time link.</p>
            """
        return head("Sign in") + """
            <body data-page="sign-in" class="signin">
            <main id="main">
            <h1><span class="brand">Tether</span> console</h1>
            \(main)
            </main>
            </body>
            </html>
            """
    }
}
