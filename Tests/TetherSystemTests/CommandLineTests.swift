import Foundation
import Glibc
import Logging
import Testing
import TetherCore
@testable import TetherSystem

/// The `tether` executable, run as a user would.
@Suite("tether profile …", .serialized, .timeLimit(.minutes(3)))
struct CommandLineTests {
    struct Run {
        var code: Int32
        var stdout: String
        var stderr: String
    }

    func tether(_ args: [String]) throws -> Run {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tetherBinary)
        p.arguments = args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Run(code: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
    }

    @Test(
        "help before -- prints help and starts nothing (no local authority, no worker)",
        arguments: [["run", "--help"], ["run", "-h"], ["mcp", "--help"], ["hook", "--help"]])
    func helpIsHelp(_ args: [String]) throws {
        let dir = temporaryDirectory("help-state")
        let r = try tether(args + ["--dir", dir])
        if args[0] == "hook" {
            // An agent runs the hook: help is a deny (exit 2) with the help as its reason, since
            // exit 0 would let the tool call run (docs/agents.md).
            #expect(r.code == 2, "\(r.stderr)")
            #expect(r.stderr.contains("USAGE: tether hook") || r.stderr.contains("USAGE: hook"), "\(r.stderr)")
            #expect(r.stdout.contains("deny"), "\(r.stdout)")
        } else {
            #expect(r.code == 0, "\(r.stderr)")
            #expect(r.stdout.contains("USAGE: tether \(args[0])"), "\(r.stdout)")
        }
        // (The hook's help, its deny reason, names the local authority among its options.)
        #expect(args[0] == "hook" || !r.stderr.contains("local authority"), "\(r.stderr)")
        #expect(
            ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).isEmpty, "nothing was initialised in the state directory")
    }

    @Test func versionComesFromOnePlace() throws {
        let r = try tether(["--version"])
        // "0.9.0 (1a2b3c4d5e6f)" from a checkout ("-dirty" with uncommitted changes), "0.9.0" from a tarball.
        let v = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(r.code == 0 && v.hasPrefix(TetherVersion.number), "\(r.stdout)\(r.stderr)")
        let head = try? runToEnd(
            "/usr/bin/git", ["-C", URL(fileURLWithPath: #filePath).deletingLastPathComponent().path, "rev-parse", "--short=12", "HEAD"])
        if let head, head.0 == 0 {
            #expect(v.contains("(\(head.1.trimmingCharacters(in: .whitespacesAndNewlines))"), "the checkout's commit: \(v)")
        }
    }

    @Test func checkPrintsSizes() throws {
        let r = try tether(["profile", "check", "default"])
        #expect(r.code == 0)
        #expect(r.stdout.contains("BPF instructions:"))
        #expect(r.stdout.contains("SCMP_ARCH_X86_64") || r.stdout.contains("SCMP_ARCH_AARCH64"))
    }

    @Test func checkRefusesABadProfileWith78() throws {
        let path = TestPrograms.directory + "/bad-op.json"
        try
            #"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 1, "value": 2, "op": "SCMP_CMP_SOMETIMES"}]}]}"#
            .write(toFile: path, atomically: true, encoding: .utf8)
        let r = try tether(["profile", "check", path])
        #expect(r.code == 78)
        #expect(r.stderr.contains("$.syscalls[0].args[0].op: unknown operator \"SCMP_CMP_SOMETIMES\""))
        let missing = try tether(["profile", "check", "/nonexistent/profile.json"])
        #expect(missing.code == 78)
        #expect(missing.stderr.contains("cannot read the file"))
        let unknown = try tether(["profile", "check", "paranoid"])
        #expect(unknown.code == 78)
        #expect(unknown.stderr.contains("no built-in profile \"paranoid\""))
    }

    @Test func showGivesJSONThatLoadsAgain() throws {
        let r = try tether(["profile", "show", "default"])
        #expect(r.code == 0)
        let p = try ProfileParser.parse(r.stdout)
        #expect(p == BuiltinProfiles.default)
    }

    @Test func tryPropagatesTheExitCode() throws {
        #expect(try tether(["profile", "try", "default", "--", "/bin/sh", "-c", "exit 5"]).code == 5)
        #expect(try tether(["profile", "try", "default", "--", "/bin/sh", "-c", "kill -KILL $$"]).code == 137)
        let denied = try tether(["profile", "try", "default", "--", "setsid", "--wait", "true"])
        #expect(denied.code != 0)
        #expect(denied.stderr.contains("Operation not permitted"))
        let missing = try tether(["profile", "try", "default", "--", "/nonexistent/x"])
        #expect(missing.code == 127)
        #expect(missing.stderr.contains("stage exec"))
        #expect(try tether(["profile", "try", "default"]).code == 64)
    }

    /// SIGKILL the supervisor: PDEATHSIG takes the worker's first process, the keeper takes the
    /// rest (the cgroup, or the process group without one).
    @Test(arguments: [(false, "none"), (true, "default")])
    func nothingSurvivesASIGKILLedSupervisor(_ noCgroup: Bool, _ profile: String) async throws {
        let m = String(format: "%d.%03d", 2000 + Int.random(in: 0..<7000), Int.random(in: 0..<1000))
        // With a cgroup, even a setsid() escapee (allowed by `none`) dies. Without one the
        // default profile keeps everything in the process group, which the keeper kills.
        let escape = profile == "none" ? "setsid sleep \(m)3 &" : "(sleep \(m)3 &);"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tetherBinary)
        p.arguments =
            ["profile", "try"] + (noCgroup ? ["--no-cgroup"] : []) + [
                profile, "--", "/bin/sh", "-c", "sleep \(m)1 & \(escape) exec sleep \(m)2",
            ]
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let sleeps = { processes(withMarker: m).filter { !$0.isDead && command(of: $0.pid) == "sleep" } }
        #expect(await eventually { sleeps().count == 3 }, "three workers up")
        let keeperPID = keeper(of: p.processIdentifier)
        #expect(keeperPID != nil, "the keeper runs beside the supervisor")
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        let gone = await eventually { processes(withMarker: m).allSatisfy(\.isDead) }
        #expect(gone, "survivors: \(processes(withMarker: m))")
        if let keeperPID {
            #expect(await eventually { ProcessTable.stat(keeperPID).map(\.isDead) ?? true }, "the keeper exits after its work")
        }
    }
}

@Suite("The keeper is replaced when it dies", .serialized, .timeLimit(.minutes(2)))
struct KeeperTests {
    @Test func aKilledKeeperIsReplacedAndStillDoesItsJob() async throws {
        let m = String(format: "%d.%03d", 3000 + Int.random(in: 0..<6000), Int.random(in: 0..<1000))
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tetherBinary)
        p.arguments = ["profile", "try", "none", "--", "/bin/sh", "-c", "setsid sleep \(m)1 & exec sleep \(m)2"]
        p.standardInput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        #expect(
            await eventually {
                keeper(of: p.processIdentifier) != nil && processes(withMarker: m).filter { command(of: $0.pid) == "sleep" }.count == 2
            })
        let first = try #require(keeper(of: p.processIdentifier))
        kill(first, SIGKILL)
        #expect(await eventually { keeper(of: p.processIdentifier).map { $0 != first } == true }, "a new keeper")
        try await Task.sleep(for: .milliseconds(100))
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        let gone = await eventually { processes(withMarker: m).filter { command(of: $0.pid) == "sleep" }.allSatisfy(\.isDead) }
        #expect(gone, "the new keeper killed the setsid'd worker: \(processes(withMarker: m))")
    }
}

@Suite("The keeper's program", .serialized, .timeLimit(.minutes(1)))
struct KeeperProgramTests {
    /// A tether-init older than this binary left beside it cannot be the keeper: it exits at
    /// once. The supervisor must then run its own binary as the keeper before any worker starts
    /// — not restart the same program for ever in a tight loop (what it did before the check of
    /// the keeper's first byte).
    @Test func aProgramThatIsNoKeeperIsReplacedByThisBinary() async throws {
        signal(SIGPIPE, SIG_IGN)  // as a supervisor has it (Spawner): the heartbeat may meet a dead keeper
        let notAKeeper = open("/bin/true", O_RDONLY | O_CLOEXEC)
        #expect(notAKeeper >= 0)
        var logger = Logger(label: "keeper-test")
        logger.logLevel = .critical
        let k = try Keeper.start(openKillFile: { -1 }, heartbeatTimeout: .seconds(5), logger: logger, executable: notAKeeper)
        // Started: its keeper runs, from this binary (it said so with its first byte).
        let settled = k.pid
        #expect(command(of: settled) == "tether-keeper", "this binary runs as the keeper")
        #expect(
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(settled)/exe"))
                == (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")))
        try await Task.sleep(for: .seconds(2))
        #expect(k.pid == settled && command(of: settled) == "tether-keeper", "it stays: no restart loop")
    }
}
