import Foundation
import Glibc
import Logging
import Synchronization
import TetherClient
import TetherCore
import TetherSystem

/// `tether mcp`: a stdio MCP gateway. The MCP server runs as a supervised worker on two pipes;
/// newline-delimited JSON-RPC is relayed both ways, unchanged — as long as the server's surface
/// is allowed by a live lease. While it is not, nothing the client sends reaches the server:
/// every request is answered here, in the shape its method's client expects (a `tools/call` gets
/// a tool result with `isError: true` whose text says who revoked what, when and why; a
/// task-augmented one a `failed` task; anything else a JSON-RPC error). A `tools/call`, and the
/// tasks it started, also need `SURFACE.<tool>`, where that surface exists.
///
/// The gateway decides on its own reading of a line and forwards the line's bytes, so it reads
/// strictly (McpReader) and refuses what it cannot read; answers are checked as they come back
/// (a revoke between a request and its answer refuses the answer), and a request the server
/// leaves unanswered while what it asks for is refused — a frozen server answers nothing — is
/// answered here within `settle` and a quarter of a second.
public final class McpGateway: Sendable {
    let surface: String
    let logger: Logger
    /// The client's side: our stdin and stdout.
    let clientIn: Int32
    let clientOut: Int32
    /// The server's side: the write end of its stdin, the read end of its stdout.
    let serverIn: Int32
    let serverOut: Int32
    /// The ends the worker gets (closed here once it has them).
    public let workerStdin: Int32
    public let workerStdout: Int32
    /// How long a forwarded request may go unanswered while refused before the gateway answers it.
    let settle: Duration
    let decisions = Mutex<LiveDecisions?>(nil)
    let started = DispatchSemaphore(value: 0)
    let output = Mutex<Void>(())
    let state = Mutex<State>(State())
    let refused = Atomic<Int>(0)
    let ended = Atomic<Bool>(false)

    /// The JSON-RPC error code of the gateway's refusals (one of JSON-RPC's server errors, none
    /// of which MCP 2025-11-25 defines).
    public static let refusedCode = -32010

    /// What a forwarded request asks for: how its answer is checked, and given here if refused.
    enum Gate: Sendable {
        /// Any other method: the server's surface.
        case plain(String)
        /// `tools/call` of a tool, with `params.task` when task-augmented.
        case tool(String, task: McpJSON?)
        /// A `tasks/*` request about one task: its tool's surfaces (the server's for a task the
        /// gateway does not know).
        case task(String, id: String, tool: String?)
        /// `tasks/list`.
        case list
    }

    struct Pending: Sendable {
        let id: McpId
        let gate: Gate
        let since: ContinuousClock.Instant
    }

    struct State: Sendable {
        /// Requests forwarded and not answered yet.
        var pending: [McpId: Pending] = [:]
        /// Requests answered here while the server still had them: its late answers are dropped.
        var answered: [McpId] = []
        var tasks = McpTasks()
    }

    public init(surface: String, logger: Logger, clientIn: Int32 = 0, clientOut: Int32 = 1, settle: Duration = .milliseconds(500)) throws {
        self.surface = surface
        self.logger = logger
        self.clientIn = clientIn
        self.clientOut = clientOut
        self.settle = settle
        var toServer: [Int32] = [0, 0], fromServer: [Int32] = [0, 0]
        guard pipe(&toServer) == 0, pipe(&fromServer) == 0 else { throw SystemError("pipe", .init(rawValue: errno)) }
        for fd in toServer + fromServer { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        workerStdin = toServer[0]
        serverIn = toServer[1]
        serverOut = fromServer[0]
        workerStdout = fromServer[1]
    }

    /// Requests refused so far.
    public var refusedCount: Int { refused.load(ordering: .relaxed) }

    /// The worker runs: decide from `live` from now on.
    public func attach(_ live: LiveDecisions) {
        decisions.withLock { $0 = live }
        started.signal()
    }

    /// Starts relaying both ways (call once the worker has its ends).
    public func start() {
        close(workerStdin)
        close(workerStdout)
        Thread.detachNewThread { [self] in relayClientToServer() }
        Thread.detachNewThread { [self] in relayServerToClient() }
        Thread.detachNewThread { [self] in watchPending() }
    }

    /// The server exited with `status`: every request it did not answer gets an error.
    public func serverExited(_ status: String) {
        ended.store(true, ordering: .relaxed)
        let left = state.withLock { s -> [Pending] in
            defer { s.pending.removeAll() }
            return Array(s.pending.values)
        }
        for p in left.sorted(by: { $0.since < $1.since }) {
            send(Self.error(p.id, -32000, "the MCP server exited (\(status)) before answering; tether mcp is ending"))
        }
    }

    // MARK: - the client's lines

    func relayClientToServer() {
        var reader = LineReader(fd: clientIn)
        while let line = reader.next() {
            guard let forward = filter(line) else { continue }
            guard LineSocket.writeAll(serverIn, forward + [10]) else { break }
        }
        // The client is gone: so is the server's input (it ends on EOF, as MCP servers do).
        close(serverIn)
    }

    /// What to forward for one line from the client, or nil when it was answered here. A line
    /// is one message or, while MCP 2025-03-26 clients are still served, one batch of them.
    func filter(_ line: [UInt8]) -> [UInt8]? {
        let value: McpJSON, ranges: [Range<Int>]
        do {
            (value, ranges) = try McpReader.read(line, strict: true)
        } catch {
            logger.notice("client line refused", metadata: ["code": "\(error.code)", "why": "\(error.message)"])
            send(Self.error(nil, error.code, error.message))
            return nil
        }
        guard case .array(let batch) = value else { return handle(value) ? line : nil }
        guard !batch.isEmpty else {
            send(Self.error(nil, -32600, "Invalid Request: an empty batch"))
            return nil
        }
        // Refused and invalid messages are answered here, the rest go on together, byte for byte.
        let kept = zip(batch, ranges).filter { handle($0.0) }.map { Array(line[$0.1]) }
        guard !kept.isEmpty else { return nil }
        guard kept.count != batch.count else { return line }
        return [UInt8(ascii: "[")] + Array(kept.joined(separator: [UInt8(ascii: ",")])) + [UInt8(ascii: "]")]
    }

    /// True to forward the message; false when it was answered (or, for a notification or a
    /// response while the server's surface is refused, dropped) here.
    func handle(_ v: McpJSON) -> Bool {
        let m: McpMessage
        do {
            m = try McpMessage.check(v)
        } catch {
            send(Self.error(v["id"].flatMap(McpId.client), error.code, error.message))
            return false
        }
        guard m.kind == .request, let id = m.id else {
            // Nothing reaches the server while its surface is refused (a notification's or an
            // answer's sender expects no answer).
            guard let reason = serverRefusal(m.kind == .response ? "an answer to the server" : m.method) else { return true }
            logger.notice("client message dropped", metadata: ["method": "\(m.method)", "reason": "\(reason)"])
            return false
        }
        let gate: Gate
        switch gateOf(m) {
        case .success(let g): gate = g
        case .failure(let e):
            send(Self.error(id, e.code, e.message))
            return false
        }
        if state.withLock({ s in s.pending[id] != nil || s.answered.contains(id) }) {
            send(Self.error(id, -32600, "Invalid Request: id \(String(decoding: id.text, as: UTF8.self)) is still in use at the server"))
            return false
        }
        if let reason = reason(gate) {
            refuse(gate, id, reason)
            return false
        }
        state.withLock { $0.pending[id] = Pending(id: id, gate: gate, since: .now) }
        return true
    }

    func gateOf(_ m: McpMessage) -> Result<Gate, McpReadError> {
        func invalid(_ s: String) -> Result<Gate, McpReadError> { .failure(McpReadError(code: -32602, message: "Invalid params: " + s)) }
        switch m.method {
        case "tools/call":
            guard let name = m.params?["name"]?.string else { return invalid("tools/call needs params.name, a string") }
            let task = m.params?["task"]
            if let task, !task.isObject { return invalid("params.task must be an object") }
            return .success(.tool(name, task: task))
        case "tasks/list":
            return .success(.list)
        case let method where method.hasPrefix("tasks/"):
            guard let id = m.params?["taskId"]?.string else { return .success(.plain(method)) }
            return .success(.task(method, id: id, tool: state.withLock { $0.tasks[id]?.tool }))
        default:
            return .success(.plain(m.method))
        }
    }

    // MARK: - answers

    func send(_ bytes: [UInt8]) {
        output.withLock { _ in _ = LineSocket.writeAll(clientOut, bytes + [10]) }
    }

    static func line(_ id: McpId?, _ field: String, _ body: [UInt8]) -> [UInt8] {
        Array("{\"jsonrpc\":\"2.0\",\"id\":".utf8) + (id?.text ?? Array("null".utf8)) + Array(",\"\(field)\":".utf8) + body + [
            UInt8(ascii: "}")
        ]
    }

    static func error(_ id: McpId?, _ code: Int, _ message: String) -> [UInt8] {
        line(id, "error", JSONWriter.data(["code": code, "message": message]))
    }
}
