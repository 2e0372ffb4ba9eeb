import Foundation
import Glibc
import Testing
import TetherSystem
import TetherTestKit

/// The supervisor's own scheduling: its priority over its workers', and how little it wakes
/// when nothing happens.
@Suite("the supervisor's priority and its idle wakeups", .serialized, .timeLimit(.minutes(5)))
struct QuietSupervisorTests {
    /// (policy, nice) of every thread of `pid`: fields 41 and 19 of /proc/PID/task/TID/stat.
    static func scheduling(_ pid: pid_t) -> [(policy: Int, nice: Int)] {
        let tids = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        return tids.compactMap { tid in
            guard let s = try? String(contentsOfFile: "/proc/\(pid)/task/\(tid)/stat", encoding: .utf8),
                let close = s.lastIndex(of: ")")
            else { return nil }
            let f = s[s.index(close, offsetBy: 2)...].split(separator: " ")
            guard f.count > 38, let policy = Int(f[38]), let nice = Int(f[16]) else { return nil }
            return (policy, nice)
        }
    }

    static func keeper(of pid: pid_t) -> pid_t? {
        ProcessTable.snapshot().first { $0.ppid == pid && command(of: $0.pid) == "tether-keeper" && !$0.isDead }?.pid
    }

    @Test(
        "the supervisor and its keeper run 10 nice levels up, every thread of its async runtime too; its workers run as it was started and cannot raise themselves"
    )
    func priority() async throws {
        let a = try await LiveAuthority(lease: "15s")
        errno = 0
        let start = Int(getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0))
        let raised = max(-20, start - 10)
        let file = workerDirectory("e2e") + "/sched"
        // The worker (an unprivileged uid) reads its scheduling, then tries to raise itself.
        let script = """
            { chrt -p $$ | head -1 | sed 's/.*: //'; nice; renice -n \(raised) -p $$ >/dev/null 2>&1; echo "renice=$?"; \
              chrt -r -p 1 $$ >/dev/null 2>&1; echo "rr=$?"; nice; } > '\(file).tmp'; mv '\(file).tmp' '\(file)'; sleep 60
            """
        let p = try a.run("sched-1", [], ["sh", "-c", script])
        #expect(await eventually(20) { FileManager.default.fileExists(atPath: file) }, "\(p.stderr.suffix(800))")
        let lines = ((try? String(contentsOfFile: file, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
        #expect(
            lines == ["SCHED_OTHER", "\(start)", "renice=1", "rr=1", "\(start)"],
            "the worker runs as the supervisor was started and stays so: \(lines)")
        // At least raised (libdispatch gives a thread of a higher QoS class a few levels more).
        #expect(
            Self.scheduling(p.pid).allSatisfy { $0.policy == Int(SCHED_OTHER) && $0.nice <= raised },
            "every supervisor thread at \(raised): \(Self.scheduling(p.pid))")
        if let k = Self.keeper(of: p.pid) {
            #expect(Self.scheduling(k).allSatisfy { $0.nice <= raised }, "the keeper acts for the supervisor: raised too")
        } else {
            Issue.record("no keeper found")
        }
        // The async runtime is SwiftNIO's event loops (AsyncRuntime.useEventLoops), not
        // libdispatch's pool, whose threads come and go (and set their own nice values).
        // After 7 s idle and a revoke that makes the runtime work again, every thread is
        // still raised, and none is libdispatch's.
        try await Task.sleep(for: .seconds(7))
        _ = try a.op(["revoke", "sched-1", "--reason", "threads"])
        #expect(await eventually(10) { p.stderr.contains("worker stopped") }, "\(p.stderr.suffix(800))")
        #expect(Self.scheduling(p.pid).allSatisfy { $0.nice <= raised }, "every thread raised: \(Self.scheduling(p.pid))")
        #expect(Self.dispatchThreads(p.pid).isEmpty, "no libdispatch thread: \(Self.dispatchThreads(p.pid))")
        p.signal(SIGTERM)
        #expect(await p.exitCode(within: 20) != nil)

        // The control: TETHER_SUPERVISOR_PRIORITY=off leaves the supervisor as it started.
        let file2 = workerDirectory("e2e") + "/sched"
        let q = try a.run(
            "sched-2", [], ["sh", "-c", script.replacingOccurrences(of: file, with: file2)],
            env: ["TETHER_SUPERVISOR_PRIORITY": "off"])
        #expect(await eventually(20) { FileManager.default.fileExists(atPath: file2) }, "\(q.stderr.suffix(800))")
        #expect(Self.scheduling(q.pid).allSatisfy { $0.nice > raised }, "\(Self.scheduling(q.pid))")
        q.signal(SIGTERM)
        #expect(await q.exitCode(within: 20) != nil)
    }

    static func threads(_ pid: pid_t) -> [String] {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
    }

    /// The names of `pid`'s libdispatch threads (com.apple.root.…-qos…, cut to the kernel's 15
    /// characters: "oot.default-qos", "-qos.overcommit").
    static func dispatchThreads(_ pid: pid_t) -> [String] {
        threads(pid).compactMap { tid in
            let name = ((try? String(contentsOfFile: "/proc/\(pid)/task/\(tid)/comm", encoding: .utf8)) ?? "")
                .trimmingCharacters(in: .whitespacesAndNewlines)
            return name.contains("qos") || name.contains("dispatch") ? name : nil
        }
    }

    /// Voluntary context switches of every thread of `pids`, by thread.
    static func switches(_ pids: [pid_t]) -> [String: Int] {
        var out: [String: Int] = [:]
        for pid in pids {
            for tid in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? [] {
                guard let s = try? String(contentsOfFile: "/proc/\(pid)/task/\(tid)/status", encoding: .utf8) else { continue }
                for line in s.split(separator: "\n") where line.hasPrefix("voluntary_ctxt_switches:") {
                    out["\(pid)/\(tid)"] = Int(line.split(separator: "\t").last ?? "") ?? 0
                }
            }
        }
        return out
    }

    @Test("an idle supervisor with its keeper sleeps: no libdispatch thread, a few wakeups a second, not one per timer tick")
    func idleWakeups() async throws {
        // The default lease: its renewals (every 5 s) are the only traffic expected.
        let a = try await LiveAuthority(lease: "15s")
        let p = try a.run("idle-1", [], ["sleep", "60"])
        #expect(await eventually(20) { p.stderr.contains("worker started") && Self.keeper(of: p.pid) != nil }, "\(p.stderr.suffix(800))")
        try await Task.sleep(for: .seconds(2))
        let procs = [p.pid] + [Self.keeper(of: p.pid)].compactMap { $0 }
        // Sampled every 250 ms: threads of a pool that come and go count too.
        var first = Self.switches(procs), last = first
        let window = 6.0
        let t0 = ContinuousClock.now
        while ContinuousClock.now - t0 < .seconds(window) {
            try await Task.sleep(for: .milliseconds(250))
            for (k, n) in Self.switches(procs) {
                if first[k] == nil { first[k] = 0 }
                last[k] = n
            }
        }
        let perSecond = Double(last.reduce(0) { $0 + $1.value - (first[$1.key] ?? 0) }) / window
        // About 1.5/s here: the 2 s heartbeat and the keeper's wakeup to read it, lease
        // renewals every 5 s. It was 24/s with a heartbeat and lease checks on the async
        // runtime's timers, and 3/s with libdispatch's once-a-second monitor timer. No
        // libdispatch thread may exist: the first would start that timer for good.
        // Voluntary switches only: a loaded machine adds preemptions, not wakeups.
        #expect(Self.dispatchThreads(p.pid).isEmpty, "no libdispatch thread: \(Self.dispatchThreads(p.pid))")
        #expect(perSecond < 5, "\(perSecond) wakeups/s")
        p.signal(SIGTERM)
        #expect(await p.exitCode(within: 20) != nil)
    }

    /// The resident pages of `pid` mapped from files (its executable, its libraries), in KiB.
    static func fileResident(_ pid: pid_t) -> Int {
        let s = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        let line = s.split(separator: "\n").first { $0.hasPrefix("RssFile:") } ?? ""
        return Int(line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first ?? "") ?? 0
    }

    @Test(
        "a settled supervisor lets go of the pages it ran only to start, and still stops its worker at once: the stop path reads back from the page cache"
    )
    func startupPagesReleased() async throws {
        let a = try await LiveAuthority(lease: "15s")
        let m = Workers.marker("pages")
        let p = try a.run(
            "pages-1", [],
            ["sh", "-c", "sh -c 'while :; do sleep 1; done' \"$0-a\" & sh -c 'while :; do sleep 1; done' \"$0-b\" & wait", m],
            env: ["TETHER_LOG_LEVEL": "debug"])
        #expect(await eventually(20) { p.stderr.contains("worker started") }, "\(p.stderr.suffix(800))")
        let started = Self.fileResident(p.pid)
        // ResidentPages.settleAfter (5 s) after the start.
        #expect(await eventually(15) { p.stderr.contains("released start-up pages") }, "\(p.stderr.suffix(800))")
        try await Task.sleep(for: .seconds(1))
        let settled = Self.fileResident(p.pid)
        #expect(settled < started / 2, "file-backed resident pages \(started) KiB at the start, \(settled) KiB once settled")
        // Everything the stop needs runs from pages it must fault back in.
        let t0 = ContinuousClock.now
        let (rc, _, _) = try a.op(["revoke", "pages-1", "--reason", "pages"])
        #expect(rc == 0)
        #expect(await eventually(10) { Workers.allStopped(m, atLeast: 3) }, "\(liveProcesses(withMarker: m).map(\.state))")
        let took = ContinuousClock.now - t0
        #expect(took < .seconds(2), "every process stopped \(took) after the revoke")
        p.signal(SIGTERM)
        #expect(await p.exitCode(within: 20) != nil)

        // The control: TETHER_RELEASE_PAGES=off keeps them.
        let q = try a.run("pages-2", [], ["sleep", "600"], env: ["TETHER_LOG_LEVEL": "debug", "TETHER_RELEASE_PAGES": "off"])
        #expect(await eventually(20) { q.stderr.contains("worker started") }, "\(q.stderr.suffix(800))")
        let before = Self.fileResident(q.pid)
        try await Task.sleep(for: .seconds(8))
        #expect(!q.stderr.contains("released start-up pages"))
        #expect(Self.fileResident(q.pid) > before * 3 / 4, "kept: \(before) KiB, then \(Self.fileResident(q.pid)) KiB")
        q.signal(SIGTERM)
        #expect(await q.exitCode(within: 20) != nil)
    }

    @Test(
        "a worker hammering its decision socket from every core is still stopped at once: the flood cannot hold the runtime that stops it")
    func floodedSocketStillStops() async throws {
        let a = try await LiveAuthority()
        let m = Workers.marker("flood")
        let dir = workerDirectory("e2e")
        let served = "\(dir)/served-\(m)"
        let script = "\(dir)/flood-\(m).py"
        // Each asker connects, asks, reads the answer and starts again, as fast as it is served.
        try """
        import os, socket, sys
        n = 0
        while True:
            c = socket.socket(socket.AF_UNIX)
            c.connect(os.environ["TETHER_DECISION_SOCKET"])
            c.sendall(b'{"surface": "flood-1"}\\n')
            c.makefile().readline()
            c.close()
            n += 1
            if n % 100 == 0:
                open(sys.argv[1], "a").write("x")
        """.write(toFile: script, atomically: true, encoding: .utf8)
        chmod(script, 0o644)
        FileManager.default.createFile(atPath: served, contents: nil)
        chmod(served, 0o666)
        let askers = 4 * ProcessInfo.processInfo.activeProcessorCount
        let shell = (0..<askers).map { _ in "python3 \(script) \(served) \(m) &" }.joined(separator: " ") + " wait"
        let p = try a.run("flood-1", [], ["sh", "-c", shell, m])
        #expect(await eventually(30) { fileSize(served) > 20 && liveProcesses(withMarker: m).count > askers }, "\(p.stderr.suffix(800))")
        let t0 = ContinuousClock.now
        let (rc, _, _) = try a.op(["revoke", "flood-1", "--reason", "flood"])
        #expect(rc == 0)
        #expect(await eventually(10) { Workers.allStopped(m, atLeast: askers + 1) }, "\(liveProcesses(withMarker: m).map(\.state))")
        let took = ContinuousClock.now - t0
        // Idle, a stop takes about a millisecond after the revoke's answer; 2 s is a margin for a
        // loaded test machine, far below what a runtime held by the flood would take.
        #expect(took < .seconds(2), "every asker stopped \(took) after the revoke")
        p.signal(SIGTERM)
        #expect(await p.exitCode(within: 20) != nil)
    }

}
