import Foundation
import Glibc
import Testing
import TetherSystem
import TetherTestKit

/// The workers' init and the keeper as `make install` ships them: the small static program
/// (init/tether-init.c), built here by the Makefile's `init` target — against musl where
/// `musl-gcc` is installed (`.ci/run` installs it) — and put beside a hard link to this build's tether binary,
/// where the supervisor looks for it. (Everywhere else the tests run the fallback: the tether
/// binary itself as init and keeper.)
@Suite("The small init program", .serialized, .timeLimit(.minutes(2)))
struct SmallInitTests {
    static let musl = FileManager.default.isExecutableFile(atPath: "/usr/bin/musl-gcc")

    /// A directory beside the build's tether (a hard link needs the same file system) holding a
    /// link to it and the init program built.
    static func install() throws -> String {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        let dir = URL(fileURLWithPath: tetherBinary).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("tether-small-init-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        chmod(dir, 0o755)
        guard link(tetherBinary, dir + "/tether") == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        let (rc, _, err) = try runToEnd("/usr/bin/make", ["-s", "-C", root, "init", "INIT=\(dir)/tether-init"])
        #expect(rc == 0, "the init program builds from its own sources alone: \(err)")
        chmod(dir + "/tether-init", 0o755)
        return dir
    }

    /// The pages a process wrote: its own memory, whatever it shares with others.
    static func privateDirtyKiB(_ pid: pid_t) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/smaps_rollup", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("Private_Dirty:") })
        else { return nil }
        return Int(line.split(separator: " ", omittingEmptySubsequences: true)[1])
    }

    static func child(of pid: pid_t, named name: String) -> pid_t? {
        ProcessTable.snapshot().first { $0.ppid == pid && !$0.isDead && command(of: $0.pid) == name }?.pid
    }

    /// Every live process under `pid`, read from /proc.
    static func descendants(of pid: pid_t) -> [pid_t] {
        let table = ProcessTable.snapshot().filter { !$0.isDead }
        var out: [pid_t] = [], frontier = [pid]
        while let next = frontier.popLast() {
            let kids = table.filter { $0.ppid == next }.map(\.pid)
            out += kids
            frontier += kids
        }
        return out
    }

    static func supervisor(_ dir: String, worker: String) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: dir + "/tether")
        p.arguments = ["profile", "try", "default", "--", "/bin/sh", "-c", worker]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        return p
    }

    /// Each worker's init (and the keeper) is this program, writes a few pages of its own —
    /// 12–20 KiB against musl, 44–48 with glibc's static start — and does its job: the worker's exit
    /// status comes through it, and the keeper it also is kills the worker when the supervisor
    /// is SIGKILLed.
    @Test func initAndKeeperRunFromTheSmallProgram() async throws {
        let dir = try Self.install()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let program = (dir as NSString).resolvingSymlinksInPath + "/tether-init"
        // musl: two pages of data and one to three of stack — the initial stack (arguments,
        // environment, auxiliary vector) starts where address randomisation puts it, so it
        // spans one page or three (20 KiB once on CI); glibc's start alone writes 44–48.
        let bound = Self.musl ? 24 : 64
        let files = workerDirectory("tether-small-init")
        let marker = "small-init-\(UUID().uuidString.prefix(6))"

        // 1. The status path: the worker exits 7 when told; `tether profile try` exits 7.
        let p = try Self.supervisor(dir, worker: "sleep 300 & while [ ! -e \(files)/go ]; do sleep 0.05; done; kill $!; exit 7 # \(marker)")
        var found: (pid_t, pid_t)?
        #expect(
            await eventually(10) {
                guard let i = Self.child(of: p.processIdentifier, named: "tether-init"),
                    let k = Self.child(of: p.processIdentifier, named: "tether-keeper")
                else { return false }
                found = (i, k)
                return !liveProcesses(withMarker: marker).isEmpty
            }, "the worker runs, with an init and a keeper")
        let (initPID, keeperPID) = try #require(found)
        for (role, pid) in [("init", initPID), ("keeper", keeperPID)] {
            #expect(
                (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe")) == program,
                "the \(role) is the small program")
            let kib = try #require(Self.privateDirtyKiB(pid))
            #expect(kib <= bound, "the \(role) wrote \(kib) KiB of its own (bound \(bound), \(Self.musl ? "musl" : "glibc"))")
        }
        FileManager.default.createFile(atPath: files + "/go", contents: nil)
        p.waitUntilExit()
        #expect(p.terminationStatus == 7, "the worker's status, through the init's pipe")

        // 2. The keeper: the supervisor SIGKILLed, the worker's tree dies with it.
        let q = try Self.supervisor(dir, worker: "sleep 300 & sleep 300 # \(marker)")
        var tree: [pid_t] = []
        #expect(
            await eventually(10) {
                guard Self.child(of: q.processIdentifier, named: "tether-keeper") != nil,
                    let i = Self.child(of: q.processIdentifier, named: "tether-init")
                else { return false }
                tree = Self.descendants(of: i)
                return tree.count >= 2  // sh and its sleeps (dash may exec the last)
            }, "the second worker runs")
        kill(q.processIdentifier, SIGKILL)
        q.waitUntilExit()
        #expect(
            await eventually(10) {
                let live = Set(ProcessTable.snapshot().filter { !$0.isDead }.map(\.pid))
                return tree.allSatisfy { !live.contains($0) }
            },
            "the keeper killed the worker's tree: \(tree)")
    }
}
