import Foundation
import Glibc
import Testing
import TetherSystem
import TetherTestKit

/// Where the worker's namespaces cannot be made (here: a supervisor started under a filter that
/// refuses every CLONE_NEW*, as in a container without CAP_SYS_ADMIN), Tether refuses to start
/// the worker and says what is missing; `--accept-weak-containment` runs it anyway, and says so
/// in every log line and at the authority.
@Suite("containment: no namespaces to be had", .serialized, .timeLimit(.minutes(5)))
struct WeakTests {
    @Test("refused: exit 69, nothing ran, the message names the missing piece and the way out")
    func refused() async throws {
        let a = try await LiveAuthority(lease: "5s")
        let dir = workerDirectory("e2e-weak")
        let p = try TetherProcess(
            [
                "run", "--dir", a.dir, "--authority", a.url, "--key-file", a.dir + "/agent.key",
                "--public-key", a.dir + "/signing.pub", "--surface", "weak-refused", "--",
                "sh", "-c", "touch \(dir)/ran",
            ], launcher: Escape.noNamespaces)
        #expect(await p.exitCode(within: 20) == 69)
        #expect(!FileManager.default.fileExists(atPath: dir + "/ran"), "the worker never ran")
        #expect(p.stderr.contains("cannot create the worker's namespaces"), "\(p.stderr)")
        #expect(p.stderr.contains("--accept-weak-containment") && p.stderr.contains("Nothing was started"))
    }

    @Test(
        "a transient failure (EAGAIN from the contained clone) is retried and never taken for a refusal: no weak worker, even where weak containment is accepted"
    )
    func transientNotWeak() async throws {
        let a = try await LiveAuthority(lease: "5s")
        let dir = workerDirectory("e2e-weak")
        let p = try TetherProcess(
            [
                "run", "--dir", a.dir, "--authority", a.url, "--key-file", a.dir + "/agent.key",
                "--public-key", a.dir + "/signing.pub", "--surface", "weak-eagain", "--accept-weak-containment", "--",
                "sh", "-c", "touch \(dir)/ran",
            ], launcher: Escape.namespacesAgain)
        #expect(await p.exitCode(within: 30) == 69, "\(p.stderr.suffix(1500))")
        #expect(!FileManager.default.fileExists(atPath: dir + "/ran"), "the worker never ran, weakly or otherwise")
        #expect(!p.stderr.contains("WEAK CONTAINMENT"), "\(p.stderr.suffix(1500))")
        #expect(p.stderr.contains("trying again"), "the retries are logged: \(p.stderr.suffix(1500))")
    }

    @Test("accepted: the worker runs, every log line says containment=WEAK, the authority sees it, a revoke still stops it")
    func accepted() async throws {
        let a = try await LiveAuthority(lease: "5s")
        let m = Workers.marker("weak")
        let file = workerDirectory("e2e-weak") + "/ticks"
        let p = try TetherProcess(
            [
                "run", "--dir", a.dir, "--authority", a.url, "--key-file", a.dir + "/agent.key",
                "--public-key", a.dir + "/signing.pub", "--surface", "weak-accepted", "--accept-weak-containment",
                "--",
            ] + Workers.loop(m, file: file), launcher: Escape.noNamespaces)
        #expect(await eventually(20) { fileSize(file) > 0 }, "\(p.stderr)")
        #expect(p.stderr.contains("WEAK CONTAINMENT"))
        #expect(p.stderr.contains("namespaces=NONE (weak containment)"))
        let started = p.stderr.split(separator: "\n").filter { $0.contains("worker started") }
        #expect(!started.isEmpty && started.allSatisfy { $0.contains("containment=WEAK") }, "\(started)")
        let (rc, out, _) = try a.op(["revoke", "weak-accepted", "--wait", "20s"])
        #expect(rc == 0 && out.contains(":WEAK-CONTAINMENT"), "the acknowledgement names it: \(out)")
        #expect(await eventually(5) { Workers.allStopped(m) })
        #expect(await Workers.stoppedGrowing(file))
        let (_, status, _) = try a.op(["status", "weak-accepted"])
        #expect(status.contains(":WEAK-CONTAINMENT"), "tether status shows it: \(status)")
        p.signal(SIGTERM)
        #expect(await p.exitCode(within: 20) != nil)
    }
}
