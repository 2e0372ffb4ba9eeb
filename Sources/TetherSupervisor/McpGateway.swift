import Foundation
import Glibc
import Logging
import Synchronization
import TetherClient
import TetherCore
import TetherSystem

/// `tether mcp`: a stdio MCP gateway. The MCP server runs as a supervised worker on two pipes;
/// newline-delimited JSON-RPC is relayed both ways, unchanged — except a `tools/call`, which goes
/// through only while the server's surface (and `SURFACE.<tool>`, where that surface exists) is
/// allowed by a live lease. A refused call never reaches the server: the client gets a tool
/// result with `isError: true` whose text says who revoked what, when and why.
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
    private let decisions = Mutex<LiveDecisions?>(nil)
    private let started = DispatchSemaphore(value: 0)
    private let output = Mutex<Void>(())
    /// Requests forwarded and not answered yet (their ids as JSON text): answered with an error if
    /// the server goes away first.
    private let pending = Mutex<Set<String>>([])
    private let refused = Atomic<Int>(0)

    public init(surface: String, logger: Logger, clientIn: Int32 = 0, clientOut: Int32 = 1) throws {
        self.surface = surface
        self.logger = logger
        self.clientIn = clientIn
        self.clientOut = clientOut
        var toServer: [Int32] = [0, 0], fromServer: [Int32] = [0, 0]
        guard pipe(&toServer) == 0, pipe(&fromServer) == 0 else { throw SystemError("pipe", .init(rawValue: errno)) }
        for fd in toServer + fromServer { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        workerStdin = toServer[0]
        serverIn = toServer[1]
        serverOut = fromServer[0]
        workerStdout = fromServer[1]
    }

    /// Tool calls refused so far.
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
    }

    /// The server exited with `status`: every request it did not answer gets an error.
    public func serverExited(_ status: String) {
        let ids = pending.withLock { p -> [String] in
            defer { p.removeAll() }
            return Array(p)
        }
        for id in ids.sorted() {
            let message = Array(JSONWriter.data(["code": -32000, "message": "the MCP server exited (\(status)) before answering; tether mcp is ending"]))
            send(Array("{\"jsonrpc\":\"2.0\",\"id\":".utf8) + Array(id.utf8) + Array(",\"error\":".utf8) + message + Array("}".utf8))
        }
    }

    // MARK: - relays

    private func relayClientToServer() {
        var reader = LineReader(fd: clientIn)
        while let line = reader.next() {
            guard let forward = filter(line) else { continue }
            guard DecisionSocket.writeAll(serverIn, forward + [10]) else { break }
        }
        // The client is gone: so is the server's input (it ends on EOF, as MCP servers do).
        close(serverIn)
    }

    private func relayServerToClient() {
        var reader = LineReader(fd: serverOut)
        while let line = reader.next() {
            // A response settles its request.
            if let o = (try? JSONSerialization.jsonObject(with: Data(line))) as? [String: Any], o["method"] == nil,
               let id = o["id"], let text = Self.idText(id) {
                _ = pending.withLock { $0.remove(text) }
            }
            send(line)
        }
        close(serverOut)
    }

    /// What to forward for one line from the client, or nil when it was answered here.
    func filter(_ line: [UInt8]) -> [UInt8]? {
        guard let parsed = try? JSONSerialization.jsonObject(with: Data(line)) else { return line }   // the server says what is wrong
        if let o = parsed as? [String: Any] {
            return handle(o) ? line : nil
        }
        if let batch = parsed as? [Any] {
            // A batch (MCP 2025-03-26): refused calls are answered here, the rest go on together.
            let kept = batch.filter { element in
                guard let o = element as? [String: Any] else { return true }
                return handle(o)
            }
            guard !kept.isEmpty else { return nil }
            guard kept.count != batch.count else { return line }
            return (try? JSONSerialization.data(withJSONObject: kept)).map(Array.init)
        }
        return line
    }

    /// True to forward the message; false when a refused `tools/call` was answered here.
    private func handle(_ o: [String: Any]) -> Bool {
        let idText = o["id"].flatMap(Self.idText)
        guard o["method"] as? String == "tools/call" else {
            if let idText, o["method"] != nil { _ = pending.withLock { $0.insert(idText) } }
            return true
        }
        let tool = ((o["params"] as? [String: Any])?["name"] as? String) ?? ""
        if let reason = refusal(tool: tool) {
            refused.add(1, ordering: .relaxed)
            logger.notice("tools/call refused", metadata: ["tool": "\(tool)", "reason": "\(reason)"])
            if let idText {
                let result = Array(JSONWriter.data(["content": [["type": "text", "text": reason]], "isError": true]))
                send(Array("{\"jsonrpc\":\"2.0\",\"id\":".utf8) + Array(idText.utf8) + Array(",\"result\":".utf8) + result + Array("}".utf8))
            }
            return false
        }
        if let idText { _ = pending.withLock { $0.insert(idText) } }
        return true
    }

    /// Why `tool` may not be called now, or nil. The server's surface decides, then the
    /// tool's own (`SURFACE.<tool>`) where it exists; a stale lease, no decision yet, or no
    /// answer in time refuse.
    func refusal(tool: String) -> String? {
        // The worker is started (attach) before any answer can be given.
        if decisions.withLock({ $0 }) == nil { _ = started.wait(timeout: .now() + 10); started.signal() }
        guard let live = decisions.withLock({ $0 }) else { return "tether: \(tool) refused — the MCP server is not running under its tether yet" }
        guard let main = DecisionSocket.wait({ await live.decide(self.surface) }) else {
            return "tether: \(tool) refused — no decision for \(surface) in time"
        }
        guard main.allowed else { return "tether: \(tool) refused — \(main.sentence)" }
        let toolSurface = "\(surface).\(tool)"
        guard SurfaceName.isValid(toolSurface) else { return nil }
        guard let own = DecisionSocket.wait({ await live.decide(toolSurface) }) else {
            return "tether: \(tool) refused — no decision for \(toolSurface) in time"
        }
        if own.allowed || own.code == DecisionCode.deviceNotFound.rawValue { return nil }
        return "tether: \(tool) refused — \(own.sentence)"
    }

    private func send(_ bytes: [UInt8]) {
        output.withLock { _ in _ = DecisionSocket.writeAll(clientOut, bytes + [10]) }
    }

    // MARK: - helpers

    static func idText(_ id: Any) -> String? {
        if id is NSNull { return nil }
        return (try? JSONSerialization.data(withJSONObject: id, options: .fragmentsAllowed)).map { String(decoding: $0, as: UTF8.self) }
    }
}

/// Lines from a descriptor, without their newline; nil at EOF (a last line without one counts).
struct LineReader {
    let fd: Int32
    var buffer: [UInt8] = []
    var eof = false

    init(fd: Int32) { self.fd = fd }

    mutating func next() -> [UInt8]? {
        while true {
            if let nl = buffer.firstIndex(of: 10) {
                var line = Array(buffer[..<nl])
                buffer.removeSubrange(...nl)
                if line.last == 13 { line.removeLast() }
                if line.isEmpty { continue }
                return line
            }
            if eof {
                guard !buffer.isEmpty else { return nil }
                defer { buffer = [] }
                return buffer
            }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { eof = true; continue }
            buffer.append(contentsOf: chunk[0..<n])
        }
    }
}
