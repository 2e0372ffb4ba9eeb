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
    private let listener: LineSocket
    /// The listener's way back to this socket, cut when it stops.
    private let box: AnswerBox
    private let worker = Mutex<Worker?>(nil)
    private let decisions = Mutex<LiveDecisions?>(nil)
    private let stopped = Atomic<Bool>(false)

    /// The variable that carries the path to the worker.
    public static let environmentVariable = LocalDecision.environmentVariable

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
        let box = AnswerBox()
        self.box = box
        do {
            listener = try LineSocket(
                path: path, tooLong: Self.refusal("BAD_REQUEST", "a request is one line of at most \(LineSocket.maxLine) bytes")
            ) {
                box.session($0)
            }
        } catch {
            rmdir(own)
            throw error
        }
        box.socket.withLock { $0 = self }
    }

    /// `/run/tether-decision` for root; `$XDG_RUNTIME_DIR/tether/decision` (or a directory of
    /// the user's under /tmp) otherwise. Never the state directory: workers cannot see it.
    public static func defaultDirectory() -> String {
        if geteuid() == 0 { return "/run/tether-decision" }  // /run/tether is private (dynamic uids)
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
        listener.stop()
        box.socket.withLock { $0 = nil }
        try? FileManager.default.removeItem(atPath: pinnedEtc)
        rmdir(directory)
    }

    /// Where the worker's pinned agent settings are staged (`AgentSettings`), layered over its
    /// /etc: beside the socket, gone with it.
    public var pinnedEtc: String { "\(directory)/\(Self.pinnedEtcName)" }
    static let pinnedEtcName = "etc"

    // MARK: - serving

    /// One line from a peer: answered from the live decisions when the peer is the worker's.
    /// A connection: whether its peer is the worker's is decided once, when it connects; its
    /// lines are answered from the live decisions (for as long as it stays open).
    fileprivate func session(_ peer: pid_t?) -> LineSocket.Answer {
        guard let peer, isWorkers(peer) else {
            let no = Self.refusal("NOT_YOURS", "this socket answers the processes of its own worker only")
            return { _ in no }
        }
        return { [self] line in answer(line) }
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
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = text.lastIndex(of: ")") else {
            return nil
        }
        let fields = text[text.index(after: close)...].split(separator: " ")
        return fields.count > 1 ? pid_t(fields[1]) : nil
    }
}

/// The listener's way back to its `DecisionSocket`: set once both exist, cut by `stop` (the two
/// would otherwise keep each other alive).
private final class AnswerBox: Sendable {
    let socket = Mutex<DecisionSocket?>(nil)

    func session(_ peer: pid_t?) -> LineSocket.Answer {
        guard let s = socket.withLock({ $0 }) else {
            let no = DecisionSocket.refusal("STOPPED", "this worker's supervisor no longer answers on this socket")
            return { _ in no }
        }
        return s.session(peer)
    }
}
