import Foundation
import Glibc
import Testing
import TetherSystem
import TetherTestKit

/// A worker's first process is born in the worker's cgroup (clone3 with CLONE_INTO_CGROUP),
/// where the kernel lets the supervisor; where it does not — clone3 refused, as under Docker's
/// default seccomp profile — it moves itself there before anything of the worker runs. Either
/// way the worker, read from /proc on the host side, is in the cgroup the supervisor made.
@Suite("A worker's cgroup from its first instruction", .serialized, .timeLimit(.minutes(2)))
struct CgroupBirthTests {
    static func workerCgroup(launcher: [String]) async throws -> (cgroup: String?, exit: Int32?) {
        let marker = "cgroup-birth-\(UUID().uuidString.prefix(6))"
        let p = try TetherProcess(["profile", "try", "default", "--", "/bin/sh", "-c", "sleep 30 # \(marker)"], launcher: launcher)
        var cgroup: String?
        _ = await eventually(15) {
            guard let w = liveProcesses(withMarker: marker).first,
                let text = try? String(contentsOfFile: "/proc/\(w.pid)/cgroup", encoding: .utf8)
            else { return false }
            cgroup = text.split(separator: "\n").first { $0.hasPrefix("0::") }.map { String($0.dropFirst(3)) }
            return cgroup != nil
        }
        p.signal(SIGTERM)
        return (cgroup, await p.exitCode(within: 20))
    }

    @Test(arguments: [("clone3 into the cgroup", false), ("clone3 refused: the child moves itself", true)])
    func theWorkerIsInItsCgroup(_ name: String, _ refuseClone3: Bool) async throws {
        let (cgroup, exit) = try await Self.workerCgroup(launcher: refuseClone3 ? Escape.noClone3 : [])
        let path = try #require(cgroup, "the worker ran (\(name))")
        #expect(path.contains("/tether.") && path.contains("/try."), "in the cgroup the supervisor made (\(name)): \(path)")
        #expect(exit != nil, "the supervisor ended on SIGTERM (\(name))")
    }
}
