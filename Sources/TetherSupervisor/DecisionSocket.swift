import CSeccomp
import Foundation
import Glibc
import Logging
import Synchronization
import TetherClient
import TetherCore
import TetherSystem

/// A worker's decision socket: a Unix socket, its path in the worker's `TETHER_DECISION_SOCKET`,
/// that answers "is this surface allowed right now?" from the supervisor's live lease — no
/// network round trip, the same fail-closed rules — for the tools inside the worker (`tether
/// hook`, a git hook, the agent itself).
///
/// It answers only the worker it belongs to, and only about that worker's own surfaces: its
/// surface, its gates' surfaces, and sub-surfaces of its surface (`agent-01.mcp.github`). The
/// asker is identified by the kernel — `SO_PEERCRED`'s pid, then that process's PID namespace,
/// cgroup or ancestry — never by anything it says. Everyone else gets `NOT_YOURS`.
///
/// Protocol: one JSON object per line each way. `{"surface": "agent-01.exec"}` (or `{}` for
/// the worker's own surface) → `{"allowed", "code", "surface", "until", "changedBy",
/// "changedAt", "reason", "revision"}`; a refusal → `{"allowed": false, "code", "error"}`.
public final class DecisionSocket: Sendable {
    public let path: String
    /// The socket's own directory (one per worker, made by the supervisor): the worker's mount
    /// namespace shows it read-only, and no other directory of decision sockets — so no worker
    /// can remove or replace its own socket or another worker's and answer its hooks itself.
    public let directory: String
    public let surface: String
    fileprivate let fd: Int32
    private let worker = Mutex<Worker?>(nil)
    private let decisions = Mutex<LiveDecisions?>(nil)
    private let connections = Atomic<Int>(0)
    private let stopped = Atomic<Bool>(false)

    /// The variable that carries the path to the worker.
    public static let environmentVariable = LocalDecision.environmentVariable
    static let maxConnections = 32

    /// Makes the socket under `directory` (created 0711: workers of other uids can reach a
    /// path they know, not list it); the socket itself is 0666 — who may ask is decided per
    /// connection, by the kernel's word on the peer.
    public init(worker name: String, surface: String, directory: String = DecisionSocket.defaultDirectory()) throws {
        self.surface = surface
        try Self.makeDirectory(directory)
        Self.removeStale(in: directory)
        let safe = String(name.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." ? $0 : "_" }.prefix(48))
        let own = "\(directory)/\(safe).\(getpid()).\(UInt32.random(in: 0...UInt32.max))"
        // 0711 as its parent: a worker of another uid reaches the socket by its path.
        guard mkdir(own, 0o711) == 0, chmod(own, 0o711) == 0 else { throw SystemError("mkdir \(own)", .init(rawValue: errno)) }
        self.directory = own
        path = own + "/decision.sock"
        let s = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0 else {
            rmdir(own)
            throw SystemError("socket", .init(rawValue: errno))
        }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            close(s)
            rmdir(own)
            throw SystemError("bind", .init(rawValue: ENAMETOOLONG))
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
            raw[bytes.count] = 0
        }
        unlink(path)
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        // Non-blocking: the one accepting thread serves every worker's socket, and must never
        // wait in accept(2) on one of them.
        guard rc == 0, chmod(path, 0o666) == 0, listen(s, 64) == 0, fcntl(s, F_SETFL, O_NONBLOCK) == 0 else {
            let e = errno
            close(s)
            unlink(path)
            rmdir(own)
            throw SystemError("bind \(path)", .init(rawValue: e))
        }
        fd = s
        DecisionAcceptor.shared.add(self)
    }

    /// `/run/tether-decision` for root; `$XDG_RUNTIME_DIR/tether/decision` (or a directory of
    /// the user's under /tmp) otherwise. Never the state directory: workers cannot see it.
    public static func defaultDirectory() -> String {
        if geteuid() == 0 { return "/run/tether-decision" }   // /run/tether is private (dynamic uids)
        if let x = ProcessInfo.processInfo.environment["XDG_RUNTIME_DIR"], !x.isEmpty { return "\(x)/tether/decision" }
        return "/tmp/tether-decision-\(geteuid())"
    }

    /// Sockets left by supervisors that were killed (the pid in their name is gone): a
    /// directory NAME.PID.RANDOM holding decision.sock (or, from before, a NAME.PID.RANDOM.sock).
    static func removeStale(in dir: String) {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] {
            let legacy = name.hasSuffix(".sock")
            let parts = name.split(separator: ".")
            let pidIndex = parts.count - (legacy ? 3 : 2)
            guard parts.count >= (legacy ? 4 : 3), pidIndex >= 0, let pid = pid_t(parts[pidIndex]), pid > 0 else { continue }
            guard kill(pid, 0) != 0 && errno == ESRCH else { continue }
            if legacy {
                unlink("\(dir)/\(name)")
            } else {
                unlink("\(dir)/\(name)/decision.sock")
                try? FileManager.default.removeItem(atPath: "\(dir)/\(name)/\(pinnedEtcName)")
                rmdir("\(dir)/\(name)")
            }
        }
    }

    static func makeDirectory(_ dir: String) throws {
        var path = ""
        for part in dir.split(separator: "/") {
            path += "/\(part)"
            if mkdir(path, 0o755) != 0 && errno != EEXIST { throw SystemError("mkdir \(path)", .init(rawValue: errno)) }
        }
        // The last one: 0711, and ours (a directory someone else made under /tmp is not used).
        var st = stat()
        guard lstat(dir, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR, st.st_uid == geteuid() else {
            throw SystemError("\(dir) is not a directory of ours", .init(rawValue: EPERM))
        }
        chmod(dir, 0o711)
    }

    /// From now on the socket answers `worker`, from `decisions`.
    public func attach(_ worker: Worker, decisions: LiveDecisions) {
        self.worker.withLock { $0 = worker }
        self.decisions.withLock { $0 = decisions }
    }

    /// Stops answering and removes the socket file. (Its descriptor is closed by the accepting
    /// thread, which alone uses it: never while that thread might still poll or accept on it.)
    public func stop() {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        DecisionAcceptor.shared.remove(self)
        unlink(path)
        try? FileManager.default.removeItem(atPath: pinnedEtc)
        rmdir(directory)
    }

    /// Where the worker's pinned agent settings are staged (`AgentSettings`), layered over its
    /// /etc: beside the socket, gone with it.
    public var pinnedEtc: String { "\(directory)/\(Self.pinnedEtcName)" }
    static let pinnedEtcName = "etc"

    // MARK: - serving

    /// One waiting connection, taken on the accepting thread and served on a thread of its own
    /// (at most `maxConnections` at once per socket).
    fileprivate func acceptOne() {
        guard !stopped.load(ordering: .acquiring), let c = PeerCredentials.accept(fd) else { return }
        guard connections.add(1, ordering: .relaxed).newValue <= Self.maxConnections else {
            connections.subtract(1, ordering: .relaxed)
            close(c)
            return
        }
        Thread.detachNewThread { [self] in
            serve(c)
            close(c)
            connections.subtract(1, ordering: .relaxed)
        }
    }

    private func serve(_ c: Int32) {
        // A slow or silent peer holds nothing for long.
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let peer = PeerCredentials.pid(of: c)
        let mine = peer.map { isWorkers($0) } ?? false
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            if let nl = buffer.firstIndex(of: 10) {
                let line = Array(buffer[..<nl])
                buffer.removeSubrange(...nl)
                let answer = mine ? answer(line) : Self.refusal("NOT_YOURS", "this socket answers the processes of its own worker only")
                guard Self.writeAll(c, answer + [10]) else { return }
                continue
            }
            guard buffer.count < 4096 else {
                _ = Self.writeAll(c, Self.refusal("BAD_REQUEST", "a request is one line of at most 4096 bytes") + [10])
                return
            }
            let n = chunk.withUnsafeMutableBytes { read(c, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            buffer.append(contentsOf: chunk[0..<n])
        }
    }

    /// Whether the process `pid` belongs to the attached worker: in its PID namespace (a
    /// contained worker), else in its cgroup, else below its first process.
    func isWorkers(_ pid: pid_t) -> Bool {
        guard let w = worker.withLock({ $0 }) else { return false }
        if w.contained {
            guard let theirs = Self.pidNamespace(pid), let ours = Self.pidNamespace(w.pid) else { return false }
            return theirs == ours && w.pid != pid
        }
        if let cg = w.cgroup, let theirs = Self.cgroupPath(pid) {
            return theirs == cg.relativePath || theirs.hasPrefix(cg.relativePath + "/")
        }
        var p = pid
        for _ in 0..<64 {
            if p == w.pid { return true }
            guard let parent = Self.parent(of: p), parent > 1 else { return false }
            p = parent
        }
        return false
    }

    private func answer(_ line: [UInt8]) -> [UInt8] {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(line))) as? [String: Any] else {
            return Self.refusal("BAD_REQUEST", "expected a JSON object: {\"surface\": \"…\"}")
        }
        let asked: String
        switch object["surface"] {
        case nil, is NSNull: asked = surface
        case let s as String: asked = s
        default: return Self.refusal("BAD_REQUEST", "\"surface\" must be a string")
        }
        guard SurfaceName.isValid(asked) else { return Self.refusal("BAD_REQUEST", "\"\(asked.prefix(64))\" is not a surface name") }
        guard let decisions = decisions.withLock({ $0 }) else { return Self.refusal("NOT_READY", "the worker is starting") }
        guard let a = Self.wait({ await decisions.decide(asked) }) else {
            return Self.refusal(DecisionCode.authorityUnreachable.rawValue, "no decision in time")
        }
        return Array(JSONWriter.data(a.json))
    }

    // MARK: - helpers

    static func refusal(_ code: String, _ message: String) -> [UInt8] {
        Array(JSONWriter.data(["allowed": false, "code": code, "error": message]))
    }

    /// Runs `body` on the cooperative pool and waits for it (at most 5 s), from a plain thread:
    /// the socket's and the MCP gateway's.
    static func wait<T: Sendable>(_ body: @escaping @Sendable () async -> T) -> T? {
        let box = Mutex<T?>(nil)
        let done = DispatchSemaphore(value: 0)
        Task {
            let v = await body()
            box.withLock { $0 = v }
            done.signal()
        }
        guard done.wait(timeout: .now() + 5) == .success else { return nil }
        return box.withLock { $0 }
    }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            off += n
        }
        return true
    }

    static func pidNamespace(_ pid: pid_t) -> String? {
        var buf = [CChar](repeating: 0, count: 64)
        let n = readlink("/proc/\(pid)/ns/pid", &buf, buf.count - 1)
        return n > 0 ? String(cString: buf) : nil
    }

    static func cgroupPath(_ pid: pid_t) -> String? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/cgroup", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("0::") { return String(line.dropFirst(3)) }
        return nil
    }

    static func parent(of pid: pid_t) -> pid_t? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        return fields.count > 1 ? pid_t(fields[1]) : nil
    }
}

/// The one thread that accepts for every decision socket of the process. A thread per socket
/// cost a supervisor of 100 workers 100 threads asleep in poll(2) — each a stack, a malloc
/// cache — 0.9 MiB of its resident memory (docs/BENCHMARKS.md). Each round takes at most one
/// connection from each ready socket, and serves none itself, so a worker flooding its own
/// socket cannot keep another's waiting.
private final class DecisionAcceptor: Sendable {
    static let shared = DecisionAcceptor()

    private struct State {
        var sockets: [Int32: DecisionSocket] = [:]
        /// Descriptors of stopped sockets, closed by the accepting thread at its next round.
        var retired: [Int32] = []
        var running = false
    }
    private let state = Mutex(State())
    /// Wakes the thread when the set of sockets changes. (Without one — no descriptor left when
    /// the first socket was made — the thread looks again every 100 ms.)
    private let wake: Int32 = tether_eventfd()

    func add(_ socket: DecisionSocket) {
        let start = state.withLock { s in
            s.sockets[socket.fd] = socket
            defer { s.running = true }
            return !s.running
        }
        if start {
            let thread = Thread { [self] in run() }
            thread.name = "tether-decisions"
            thread.start()
        } else {
            poke()
        }
    }

    func remove(_ socket: DecisionSocket) {
        state.withLock { s in
            if s.sockets.removeValue(forKey: socket.fd) != nil { s.retired.append(socket.fd) }
        }
        poke()
    }

    private func poke() {
        var one: UInt64 = 1
        _ = write(wake, &one, 8)
    }

    private func run() {
        while true {
            let (sockets, retired) = state.withLock { s in
                defer { s.retired = [] }
                return (Array(s.sockets.keys), s.retired)
            }
            for fd in retired { close(fd) }
            var p = [pollfd(fd: wake, events: Int16(POLLIN), revents: 0)] + sockets.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            if poll(&p, nfds_t(p.count), wake >= 0 ? -1 : 100) < 0 { continue }   // EINTR
            if p[0].revents != 0 {
                var n: UInt64 = 0
                _ = read(wake, &n, 8)
            }
            for q in p.dropFirst() where q.revents != 0 {
                // Still registered: a socket stopped meanwhile is not served (its descriptor
                // stays open until the next round closes it).
                state.withLock { $0.sockets[q.fd] }?.acceptOne()
            }
        }
    }
}
