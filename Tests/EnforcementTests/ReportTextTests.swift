import Foundation
import Glibc
import Testing
import TetherCore
import TetherTestKit

/// A worker names its own programs. What Tether reports and logs of such a name is one printable
/// line: a newline in an executable's path neither hides the denial from `tether status` (the
/// authority refuses control characters, and the report was dropped) nor forges a log line.
@Suite("Reports carry a worker's text only escaped", .serialized, .timeLimit(.minutes(5)))
struct ReportTextTests {
    @Test("a gate denial by a program with a newline in its name: escaped in tether status and in the supervisor's log")
    func newlineInExecutable() async throws {
        let a = try await LiveAuthority(lease: "5s")
        let dir = workerDirectory("report-text")
        let evil = dir + "/evil\nFORGED tether: gate opened"
        // The shell itself, not the link /bin/sh is (a copied relative link would dangle).
        try FileManager.default.copyItem(atPath: URL(fileURLWithPath: "/bin/sh").resolvingSymlinksInPath().path, toPath: evil)
        chmod(evil, 0o755)
        // The exec gate's surface registered by a first run, then revoked: the program's exec is denied.
        _ = await (try a.run("rt", ["--gate", "exec=rt.exec"], ["true"])).exitCode(within: 30)
        let (rc, out, _) = try a.op(["revoke", "rt.exec"])
        #expect(rc == 0, "\(out)")
        let p = try a.run(
            "rt", ["--gate", "exec=rt.exec"], [evil, "-c", "exec 2>/dev/null; for i in 1 2 3 4 5 6 7 8; do /bin/true; done"])
        #expect(await p.exitCode(within: 30) != nil)
        #expect(
            await eventually(10) {
                let (_, status, _) = (try? a.op(["status", "rt.exec"])) ?? (1, "", "")
                return status.contains("evil\\nFORGED tether: gate opened")
            }, "tether status shows the denial, the name escaped: \((try? a.op(["status", "rt.exec"]))?.1 ?? "")")
        let log = p.stderr
        #expect(log.contains("evil\\nFORGED"), "the log quotes the name escaped: \(log.suffix(1500))")
        #expect(!log.split(separator: "\n").contains { $0.hasPrefix("FORGED") }, "no line of the log is the worker's: \(log.suffix(2500))")
        #expect(!log.contains("report refused"), "nothing refused: \(log.suffix(1500))")
    }

    @Test("PrintableText: control, format and separator characters escaped, printable text untouched")
    func escaping() {
        #expect(PrintableText.escape("/usr/bin/curl") == "/usr/bin/curl")
        #expect(PrintableText.escape("a\nb\tc\\d") == "a\\nb\\tc\\\\d")
        #expect(PrintableText.escape("x\u{1B}[2Jy") == "x\\u{1B}[2Jy")
        #expect(PrintableText.escape("bidi\u{202E}txt") == "bidi\\u{202E}txt")
        #expect(PrintableText.escape("line\u{2028}sep") == "line\\u{2028}sep")
        #expect(PrintableText.escape("résumé ✓") == "résumé ✓")
        #expect(PrintableText.isPrintable("a\\nb") && !PrintableText.isPrintable("a\nb"), "escaped once is printable; a newline is not")
        #expect(PrintableText.escape(String(repeating: "a", count: 50), limit: 10).unicodeScalars.count == 10)
    }
}
