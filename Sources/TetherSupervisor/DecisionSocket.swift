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
    public let surface: String
    let gateSurfaces: Set<String>
    let logger: Logger
    private let fd: Int32
    /// A pipe: a byte on [1] ends the accept loop.
    private let wake: [Int32]
    private let worker = Mutex<Worker?>(nil)
    private let source = Mutex<(@Sendable (String) async -> Verdict?)?>(nil)
    private let subSurfaces = Mutex<(added: [String], missing: [String: Date])>(([], [:]))
    private let addSurface = Mutex<(@Sendable (String) async -> Void)?>(nil)
    private let checkOnce = Mutex<(@Sendable (String) async -> DecisionCheck.Outcome)?>(nil)
    private let connections = Atomic<Int>(0)
    private let stopped = Atomic<Bool>(false)

    /// The variable that carries the path to the worker.
    public static let environmentVariable = LocalDecision.environmentVariable
    /// Sub-surfaces one worker may bring into the watch (each must exist at the authority).
    public static let maxSubSurfaces = 16
    static let maxConnections = 32

    /// Makes the socket under `directory` (created 0711: workers of other uids can reach a
    /// path they know, not list it); the socket itself is 0666 — who may ask is decided per
    /// connection, by the kernel's word on the peer.
    public init(worker name: String, surface: String, gateSurfaces: [String], directory: String = DecisionSocket.defaultDirectory(),
                logger: Logger) throws {
        self.surface = surface
        self.gateSurfaces = Set(gateSurfaces)
        self.logger = logger
        try Self.makeDirectory(directory)
        let safe = String(name.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." ? $0 : "_" }.prefix(48))
        path = "\(directory)/\(safe).\(getpid()).\(UInt32.random(in: 0...UInt32.max)).sock"
        let s = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0 else { throw SystemError("socket", .init(rawValue: errno)) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            close(s)
            throw SystemError("bind", .init(rawValue: ENAMETOOLONG))
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
            raw[bytes.count] = 0
        }
        unlink(path)
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        guard rc == 0, chmod(path, 0o666) == 0, listen(s, 64) == 0 else {
            let e = errno
            close(s)
            unlink(path)
            throw SystemError("bind \(path)", .init(rawValue: e))
        }
        fd = s
        var w: [Int32] = [0, 0]
        guard pipe(&w) == 0 else {
            close(s)
            unlink(path)
            throw SystemError("pipe", .init(rawValue: errno))
        }
        for f in w { _ = fcntl(f, F_SETFD, FD_CLOEXEC) }
        wake = w
        let thread = Thread { [self] in acceptLoop() }
        thread.name = "tether-decisions"
        thread.start()
    }

    deinit {
        close(wake[0])
        close(wake[1])
    }

    /// `/run/tether-decision` for root; `$XDG_RUNTIME_DIR/tether/decision` (or a directory of
    /// the user's under /tmp) otherwise. Never the state directory: workers cannot see it.
    public static func defaultDirectory() -> String {
        if geteuid() == 0 { return "/run/tether-decision" }   // /run/tether is private (dynamic uids)
        if let x = ProcessInfo.processInfo.environment["XDG_RUNTIME_DIR"], !x.isEmpty { return "\(x)/tether/decision" }
        return "/tmp/tether-decision-\(geteuid())"
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

    /// From now on the socket answers `worker`, from `verdict` (the live lease of a surface,
    /// nil when it is not watched). `watch` brings a sub-surface into the watch.
    /// `check` asks the authority once (a sub-surface's first question).
    public func attach(_ worker: Worker, verdict: @escaping @Sendable (String) async -> Verdict?,
                       watch: @escaping @Sendable (String) async -> Void,
                       check: @escaping @Sendable (String) async -> DecisionCheck.Outcome) {
        self.worker.withLock { $0 = worker }
        source.withLock { $0 = verdict }
        addSurface.withLock { $0 = watch }
        checkOnce.withLock { $0 = check }
    }

    /// The sub-surfaces brought into the watch so far.
    public var watchedSubSurfaces: [String] { subSurfaces.withLock { $0.added } }

    /// Stops answering and removes the socket file.
    public func stop() {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        var one: UInt8 = 1
        _ = write(wake[1], &one, 1)
        unlink(path)
    }

    // MARK: - serving

    private func acceptLoop() {
        defer { close(fd) }
        while !stopped.load(ordering: .acquiring) {
            var p = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0), pollfd(fd: wake[0], events: Int16(POLLIN), revents: 0)]
            guard poll(&p, 2, -1) >= 0 || errno == EINTR else { return }
            if p[1].revents != 0 { return }
            guard p[0].revents & Int16(POLLIN) != 0 else { continue }
            guard let c = PeerCredentials.accept(fd) else { continue }
            guard connections.add(1, ordering: .relaxed).newValue <= Self.maxConnections else {
                connections.subtract(1, ordering: .relaxed)
                close(c)
                continue
            }
            Thread.detachNewThread { [self] in
                serve(c)
                close(c)
                connections.subtract(1, ordering: .relaxed)
            }
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
        let sub = asked.hasPrefix(surface + ".") && asked != surface
        guard asked == surface || gateSurfaces.contains(asked) || sub else {
            return Self.refusal("NOT_YOURS", "\(asked) is not this worker's surface, one of its gates' or a sub-surface of \(surface)")
        }
        guard let source = source.withLock({ $0 }) else { return Self.refusal("NOT_READY", "the worker is starting") }
        let v = Self.wait({ await source(asked) }) ?? nil
        // A sub-surface not watched yet, or whose watch has brought no decision yet: asked afresh.
        if sub && (v == nil || v?.requestID == nil) { return subSurface(asked, source: source) }
        guard let v else { return Self.refusal(DecisionCode.leaseExpired.rawValue, "no decision for \(asked) yet") }
        return Self.encode(v)
    }

    /// A sub-surface enters the watch on its first question — if it exists (an unknown one in the
    /// watch would count against the stream's limit of unknown surfaces) and this worker has not
    /// brought in too many. That first answer is a fresh validate (one round trip, fail closed);
    /// every later one comes from the lease.
    private func subSurface(_ s: String, source: @escaping @Sendable (String) async -> Verdict?) -> [UInt8] {
        let state = subSurfaces.withLock { ($0.added.count, $0.missing[s]) }
        if let at = state.1, Date().timeIntervalSince(at) < 5 {
            return Self.refusal(DecisionCode.deviceNotFound.rawValue, "\(s) does not exist at the authority; an operator can create it")
        }
        guard state.0 < Self.maxSubSurfaces else {
            return Self.refusal("TOO_MANY", "this worker already watches \(Self.maxSubSurfaces) sub-surfaces")
        }
        guard let add = addSurface.withLock({ $0 }), let check = checkOnce.withLock({ $0 }) else {
            return Self.refusal("NOT_READY", "the worker is starting")
        }
        guard let outcome = Self.wait({ await check(s) }) else {
            return Self.refusal(DecisionCode.authorityUnreachable.rawValue, "no answer about \(s) in time")
        }
        var o: [String: Any] = ["surface": s]
        switch outcome {
        case .allowed(let d):
            o["allowed"] = true
            o["code"] = d.code.rawValue
            o["request_id"] = d.requestID
            if !d.expiresAt.isEmpty { o["until"] = d.expiresAt }
        case .denied(let d, let code, let detail):
            o["allowed"] = false
            o["code"] = code.rawValue
            if let d {
                o["request_id"] = d.requestID
                if let by = d.changedBy { o["changedBy"] = by }
                if let at = d.changedAt { o["changedAt"] = at }
                if let why = d.changeReason { o["reason"] = why }
            }
            if code == .deviceNotFound {
                subSurfaces.withLock { $0.missing[s] = Date() }
                o["error"] = "\(s) does not exist at the authority; an operator can create it"
                return Array(JSONWriter.data(o))
            }
            if code != .deviceRevoked && code != .orgHalted { o["error"] = detail }
        case .unreachable(let m):
            return Self.refusal(DecisionCode.authorityUnreachable.rawValue, m)
        }
        let first = subSurfaces.withLock { state -> Bool in
            guard !state.added.contains(s) else { return false }
            state.added.append(s)
            return true
        }
        if first { Task { await add(s) } }
        return Array(JSONWriter.data(o))
    }

    // MARK: - helpers

    static func encode(_ v: Verdict) -> [UInt8] {
        var o: [String: Any] = ["allowed": v.allowed, "code": v.code.rawValue, "surface": v.surface]
        if let u = v.until { o["until"] = Timestamp.string(u) }
        if let r = v.requestID { o["request_id"] = r }
        if let by = v.changedBy { o["changedBy"] = by }
        if let at = v.changedAt { o["changedAt"] = Timestamp.string(at) }
        if let why = v.changeReason { o["reason"] = why }
        if let rev = v.revision { o["revision"] = rev }
        return Array(JSONWriter.data(o))
    }

    static func refusal(_ code: String, _ message: String) -> [UInt8] {
        Array(JSONWriter.data(["allowed": false, "code": code, "error": message]))
    }

    /// Runs `body` on the cooperative pool and waits for it: this is a plain thread.
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
