// Revocation to stopped, end to end: a real `tether authority serve`, a real `tether run` with a
// worker of three processes, N revoke/restore cycles. For each revoke: from its answer at the
// operator to every process of the worker's cgroup in state `T`, read from /proc. Baseline in
// the same run: the revoke's own round trip. Modes: watch (push) and poll (--no-watch,
// --poll-interval 1s; each revoke lands at a random phase of the poll).
// --sdk: the same worker under bench/sdk_loop.py instead, the pattern MachineID's SDK teaches
// (validate every second, then signal the process group); its processes are found by group.
// Also: the supervisor's idle RSS and CPU over a window (--idle SECONDS).
// --replicas URL0,URL1 --dir DIR: two replicas already serving one database (DIR holds the keys
// `authority init` wrote); the supervisor watches URL0, and the revokes alternate between URL0
// (the same replica) and URL1 (another one): both rows, same run.
// --load worker: the worker itself takes the CPU (a busy thread per core, and a fork loop);
// --load machine: as many busy processes as cores outside the worker (the worker is the usual
// three). --load fork: a fork-heavy worker on an idle machine (a shell loop forking `sleep 0.01`,
// a child loop beside it: a revoke lands on tasks mid-fork); --load fork-busy: the same worker
// with every core busy outside it. The bench and the authority run at nice -10 as the supervisor does, so what is
// measured is the supervisor's wait for the CPU, not theirs; --priority off runs the supervisor
// with TETHER_SUPERVISOR_PRIORITY=off, the control.
// Run: swift run -c release tether-bench-revocation [iterations] [--poll | --sdk | --replicas …] [--idle 60] [--load worker|machine] [--priority off] [--settle 8]
import Foundation
import Glibc
import TetherClient
import TetherCore
import TetherSystem

let args = CommandLine.arguments
let iterations = args.count > 1 ? Int(args[1]) ?? 200 : 200
let pollMode = args.contains("--poll")
let sdkMode = args.contains("--sdk")
let idleSeconds = args.firstIndex(of: "--idle").flatMap { args.count > $0 + 1 ? Int(args[$0 + 1]) : nil }
let load = args.firstIndex(of: "--load").flatMap { args.count > $0 + 1 ? args[$0 + 1] : nil }
let cores = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
let priority = args.firstIndex(of: "--priority").flatMap { args.count > $0 + 1 ? args[$0 + 1] : nil }
if let priority { setenv("TETHER_SUPERVISOR_PRIORITY", priority, 1) }

/// Every thread of `pid` to nice -10, the supervisor's own (threads made later inherit it).
func raisePriority(_ pid: Int32) {
    for t in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? [] {
        if let tid = id_t(t) { _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), tid, -10) }
    }
}
let clock = ContinuousClock()
/// The outside poller's pause between two reads of /proc (TETHER_BENCH_POLL_US, default 50).
let pollMicroseconds = UInt32(ProcessInfo.processInfo.environment["TETHER_BENCH_POLL_US"] ?? "") ?? 50

let tether: String = {
    let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    return exe.deletingLastPathComponent().appendingPathComponent("tether").path
}()

func run(_ a: [String]) -> Int32 {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: tether)
    p.arguments = a
    p.standardOutput = FileHandle.nullDevice
    try! p.run()
    p.waitUntilExit()
    return p.terminationStatus
}

func start(_ a: [String], log: String) -> Process {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: tether)
    p.arguments = a
    FileManager.default.createFile(atPath: log, contents: nil)
    p.standardOutput = FileHandle(forWritingAtPath: log)
    p.standardError = FileHandle(forWritingAtPath: log)
    p.standardInput = FileHandle.nullDevice
    try! p.run()
    return p
}

func read(_ path: String) -> String? { try? String(contentsOfFile: path, encoding: .utf8) }

/// State letter of a process from /proc/PID/stat.
func state(_ pid: Int32) -> Character? {
    guard let s = read("/proc/\(pid)/stat"), let close = s.lastIndex(of: ")") else { return nil }
    return s[s.index(close, offsetBy: 2)]
}

/// Nothing of the worker can run: the supervisor's own rule (`GroupState.allHeld`): every
/// process stopped (`T`) or exited, or — dash runs each command through vfork — a parent waiting
/// uninterruptibly (`D`) on a stopped child, which cannot run until that child execs.
func allHeld(_ pids: [Int32]) -> Bool {
    GroupState(members: pids.compactMap(ProcessTable.stat)).allHeld
}

func percentile(_ xs: [Double], _ p: Double) -> Double {
    let s = xs.sorted()
    return s[min(s.count - 1, Int((Double(s.count - 1) * p).rounded()))]
}

func ms(_ d: Duration) -> Double { Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15 }

let replicaURLs = args.firstIndex(of: "--replicas").flatMap {
    args.count > $0 + 1 ? args[$0 + 1].split(separator: ",").map(String.init) : nil
}
let givenDir = args.firstIndex(of: "--dir").flatMap { args.count > $0 + 1 ? args[$0 + 1] : nil }
/// A fresh directory of its own unless given one: a name made from the PID alone collided with a
/// directory an earlier run left under a reused PID (PIDs wrap at 32768 here), and `authority
/// init` rightly refuses an initialised directory. Removed when the run succeeds.
let dir: String =
    givenDir
    ?? {
        var template = Array((FileManager.default.temporaryDirectory.path + "/tether-bench-revocation-XXXXXX").utf8CString)
        guard mkdtemp(&template) != nil else { fatalError("mkdtemp: \(String(cString: strerror(errno)))") }
        return String(cString: template)
    }()
let url: String
let server: Process?
if let replicaURLs {
    url = replicaURLs[0]
    server = nil
} else {
    guard run(["authority", "init", "--dir", dir]) == 0 else { fatalError("authority init --dir \(dir) failed") }
    let port = 20000 + Int(getpid() % 20000)
    url = "http://127.0.0.1:\(port)"
    server = start(["authority", "serve", "--dir", dir, "--listen", "127.0.0.1:\(port)", "--lease", "15s"], log: dir + "/server.log")
}
/// Busy processes outside the worker (--load machine), in their own group.
var spinners: [Process] = []
var supervisorPID: pid_t = 0
/// The SDK loop's worker group: the loop does not take it down when it ends.
var workerGroup: pid_t = 0
/// Stops what the bench started (exit() runs no defer).
@MainActor func finish(_ message: String? = nil) -> Never {
    if supervisorPID > 0 { kill(supervisorPID, sdkMode ? SIGKILL : SIGINT) }
    if workerGroup > 0 { kill(-workerGroup, SIGKILL) }
    for p in spinners { kill(p.processIdentifier, SIGKILL) }
    usleep(300_000)
    if let server { kill(server.processIdentifier, SIGTERM) }
    if let message {
        FileHandle.standardError.write(Data("\(message)\n".utf8))
        exit(1)
    }
    if givenDir == nil { try? FileManager.default.removeItem(atPath: dir) }
    exit(0)
}
let operatorKey = read(dir + "/operator.key")!.trimmingCharacters(in: .whitespacesAndNewlines)
let op = AuthorityClient(endpoint: AuthorityEndpoint(url: url, key: operatorKey))
/// The other replica's operator client (--replicas): every other revoke goes there.
let otherOp = replicaURLs.map { AuthorityClient(endpoint: AuthorityEndpoint(url: $0[1], key: operatorKey)) }
for _ in 0..<200 where (try? await op.get("/healthz")) == nil { try await Task.sleep(for: .milliseconds(20)) }

let forkHeavy = load == "fork" || load == "fork-busy"
let worker =
    load == "worker"
    ? ["sh", "-c", "for i in $(seq \(cores)); do (while :; do :; done) & done; sleep infinity & while :; do /bin/true; done"]
    : forkHeavy
        ? ["sh", "-c", "(while :; do sleep 0.01; done) & while :; do sleep 0.01; done"]
        : ["sh", "-c", "sleep infinity & sleep infinity & wait"]
let supervisor: Process
let pids: () -> [Int32]
if sdkMode {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent(
        "sdk_loop.py"
    ).path
    p.arguments =
        ["python3", script, url, read(dir + "/agent.key")!.trimmingCharacters(in: .whitespacesAndNewlines), "bench", dir + "/pgid", "--"]
        + worker
    FileManager.default.createFile(atPath: dir + "/run.log", contents: nil)
    p.standardOutput = FileHandle(forWritingAtPath: dir + "/run.log")
    p.standardError = FileHandle(forWritingAtPath: dir + "/run.log")
    try! p.run()
    supervisor = p
    supervisorPID = p.processIdentifier
    var pgid: Int32?
    for _ in 0..<500 where pgid == nil {
        try await Task.sleep(for: .milliseconds(20))
        pgid = read(dir + "/pgid").flatMap { Int32($0) }
    }
    guard let group = pgid else { finish("the SDK loop did not start its worker; see \(dir)/run.log") }
    workerGroup = group
    // Every process of the group, from /proc (field 5 of stat).
    pids = {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { Int32($0) }.filter { pid in
            guard let s = read("/proc/\(pid)/stat"), let close = s.lastIndex(of: ")") else { return false }
            let f = s[s.index(close, offsetBy: 2)...].split(separator: " ")
            return f.count > 2 && Int32(f[2]) == group && f[0] != "Z"
        }
    }
} else {
    var runArgs = [
        "run", "--dir", dir, "--authority", url, "--key-file", dir + "/agent.key", "--public-key", dir + "/signing.pub", "--surface",
        "bench",
    ]
    if pollMode { runArgs += ["--no-watch", "--poll-interval", "1s"] }
    supervisor = start(runArgs + ["--"] + worker, log: dir + "/run.log")
    supervisorPID = supervisor.processIdentifier

    // The worker's cgroup, from the supervisor's "worker started" log line.
    var procsFile: String?
    for _ in 0..<500 where procsFile == nil {
        try await Task.sleep(for: .milliseconds(20))
        guard let log = read(dir + "/run.log"), let r = log.range(of: "cgroup=") else { continue }
        let path = log[r.upperBound...].prefix { $0 != " " && $0 != "\n" }
        if path.hasPrefix("/") { procsFile = path + "/cgroup.procs" }
    }
    guard let procsFile else { finish("worker cgroup not found; see \(dir)/run.log") }
    pids = { (read(procsFile) ?? "").split(separator: "\n").compactMap { Int32($0) } }
}
while pids().count < (forkHeavy ? 2 : 3) { try await Task.sleep(for: .milliseconds(20)) }
if load == "machine" || load == "fork-busy" {
    for _ in 0..<cores {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", "while :; do :; done"]
        try! p.run()
        spinners.append(p)
    }
}
if let server { raisePriority(server.processIdentifier) }
if ProcessInfo.processInfo.environment["TETHER_BENCH_POLLER_NICE"] != "0" { raisePriority(getpid()) }
if load != nil { try await Task.sleep(for: .seconds(1)) }

if let idle = idleSeconds {
    // Idle footprint: RSS and CPU time of the supervisor over the window.
    func cpuTicks(_ pid: Int32) -> Int {
        guard let s = read("/proc/\(pid)/stat"), let close = s.lastIndex(of: ")") else { return 0 }
        let f = s[s.index(close, offsetBy: 2)...].split(separator: " ")
        return Int(f[11])! + Int(f[12])!  // utime, stime
    }
    func rssKB(_ pid: Int32) -> Int {
        let line = (read("/proc/\(pid)/status") ?? "").split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
    }
    let pid = supervisor.processIdentifier
    try await Task.sleep(for: .seconds(2))
    let t0 = cpuTicks(pid), r0 = rssKB(pid)
    try await Task.sleep(for: .seconds(idle))
    let t1 = cpuTicks(pid), r1 = rssKB(pid)
    let hz = Double(sysconf(Int32(_SC_CLK_TCK)))
    print(
        "idle \(idle) s, supervisor (\(sdkMode ? "SDK loop" : pollMode ? "poll 1s" : "watch")): RSS \(r0) KiB → \(r1) KiB; CPU \(Double(t1 - t0) / hz * 1000) ms (\(String(format: "%.3f", Double(t1 - t0) / hz / Double(idle) * 100)) %)"
    )
    finish()
}

// --settle SECONDS: the first revoke only after the supervisor has been quiet that long — past
// ResidentPages.settleAfter, so its stop path runs from pages it must fault back in (run with
// TETHER_RELEASE_PAGES=off for the control). Its time is printed on its own.
let settle = args.firstIndex(of: "--settle").flatMap { args.count > $0 + 1 ? Int(args[$0 + 1]) : nil }
if let settle { try await Task.sleep(for: .seconds(settle)) }

var stopped: [Double] = [], roundTrips: [Double] = [], stoppedOther: [Double] = []
for i in 0..<iterations {
    if pollMode || sdkMode { try await Task.sleep(for: .milliseconds(Int.random(in: 0..<1000))) }
    let sent = clock.now
    let viaOther = otherOp != nil && i % 2 == 1
    _ = try await (viaOther ? otherOp! : op).revoke("bench", reason: "bench \(i)", wait: nil)
    let answered = clock.now
    while true {
        let ps = pids()
        if !ps.isEmpty && allHeld(ps) { break }
        if clock.now - answered > .seconds(10) {
            finish(
                "not stopped after 10 s: \(ps.map { "\($0) \(state($0).map(String.init) ?? "gone")" }.joined(separator: ", ")); see \(dir)/run.log"
            )
        }
        usleep(pollMicroseconds)
    }
    if viaOther { stoppedOther.append(ms(clock.now - answered)) } else { stopped.append(ms(clock.now - answered)) }
    roundTrips.append(ms(answered - sent))
    _ = try await op.restore("bench", reason: nil, wait: nil)
    while true {
        let ps = pids()
        if ps.count >= (forkHeavy ? 2 : 3) && !ps.contains(where: { state($0) == "T" }) { break }
        if clock.now - answered > .seconds(20) { finish("not resumed; see \(dir)/run.log") }
        usleep(200)
    }
}
if !stoppedOther.isEmpty {
    print("revocation → every worker process in T, replicas on one database (\(iterations) revokes, 3 processes):")
    print(
        String(
            format: "  revoke on the supervisor's replica → stopped: median %.2f ms, p99 %.2f ms", percentile(stopped, 0.5),
            percentile(stopped, 0.99)))
    print(
        String(
            format: "  revoke on another replica → stopped: median %.2f ms, p99 %.2f ms", percentile(stoppedOther, 0.5),
            percentile(stoppedOther, 0.99)))
    finish()
}
var mode = sdkMode ? "MachineID SDK loop, validate every 1 s + os.killpg" : pollMode ? "poll 1s" : "watch"
if let load { mode += ", load: \(load)\(priority.map { ", supervisor priority \($0)" } ?? "")" }
print("revocation → every worker process in T (\(mode), \(iterations) revokes, 3 processes):")
print(
    String(
        format: "  revoke answered → stopped: median %.2f ms, p99 %.2f ms, max %.2f ms (p90 %.2f ms)", percentile(stopped, 0.5),
        percentile(stopped, 0.99), stopped.max()!, percentile(stopped, 0.9)))
if let settle { print(String(format: "  first revoke, after %d s quiet: %.3f ms", settle, stopped[0])) }
print(
    String(
        format: "  baseline, the revoke's round trip: median %.2f ms, p99 %.2f ms", percentile(roundTrips, 0.5),
        percentile(roundTrips, 0.99)))
print(String(format: "  ratio (median): ×%.2f", percentile(stopped, 0.5) / percentile(roundTrips, 0.5)))
finish()
