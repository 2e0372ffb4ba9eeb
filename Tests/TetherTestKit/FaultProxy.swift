import Foundation
import Glibc
import Synchronization
import TetherAuthority
import TetherCore

/// A TCP proxy on loopback between a supervisor and a real authority that injects one fault at
/// a time, switchable while connections are open. It speaks just enough HTTP/1.1 to find a
/// request's end and an answer's body: answers with a `content-length` (validate, register,
/// report) can be rewritten; a chunked answer (the watch stream) is forwarded byte by byte.
///
/// Faults that rewrite decisions (`skew`, `stripSignature`, `corruptSignature`, `replay`)
/// answer the watch stream with 404 and cut the streams already open, so that the supervisor
/// polls through the rewriting path.
public final class FaultProxy: @unchecked Sendable {
    public enum Fault: Sendable, Equatable, CustomStringConvertible {
        case none
        /// Nobody listens: connections are refused; open ones are reset.
        case refuse
        /// Requests are read, then the connection is reset (RST); open streams are reset.
        case reset
        /// Requests are read and never answered; open streams go silent.
        case hang
        /// Answers trickle at one byte per second.
        case slow
        /// Every request gets this HTTP status with a JSON error.
        case status(Int)
        /// `200` with a body that is not JSON.
        case garbage
        /// `200` with a body of this many bytes.
        case oversized(Int)
        /// Signatures removed from decisions.
        case stripSignature
        /// Signatures replaced with another key's.
        case corruptSignature
        /// The last signed allow that passed before, answered again to every validate.
        case replay
        /// Decisions re-signed with the authority's key with their times moved (the authority's
        /// clock off by this many seconds).
        case skew(TimeInterval)

        public var description: String {
            switch self {
            case .status(let s): return "HTTP \(s)"
            case .oversized(let n): return "oversized \(n) B"
            case .skew(let s): return "clock skew \(s > 0 ? "+" : "")\(Int(s)) s"
            case .none: return "none"
            case .refuse: return "refused"
            case .reset: return "reset"
            case .hang: return "hang"
            case .slow: return "1 byte/s"
            case .garbage: return "garbage JSON"
            case .stripSignature: return "unsigned"
            case .corruptSignature: return "wrong signature"
            case .replay: return "replayed allow"
            }
        }

        /// Open streams are cut when the fault starts, so that the client's reconnect meets it
        /// (a stream left up would renew every lease and hide the fault). `hang` and `slow` act
        /// on open streams themselves.
        var cutsStreams: Bool {
            switch self {
            case .none, .hang, .slow: return false
            default: return true
            }
        }

        var rewrites: Bool {
            switch self {
            case .stripSignature, .corruptSignature, .replay, .skew: return true
            default: return false
            }
        }
    }

    public let port: Int
    let upstreamPort: Int
    let signer: DecisionSigner?
    private let state = Mutex<(fault: Fault, listener: Int32, open: Set<Int32>, recorded: Data?)>((.none, -1, [], nil))

    /// `signer`: the authority's signing key, for `skew`.
    public init(upstreamPort: Int, signer: DecisionSigner? = nil) throws {
        self.upstreamPort = upstreamPort
        port = freePort()
        self.signer = signer
        try listen()
    }

    /// The key a state directory's authority signs with (it lives in its database).
    public static func activeSigner(stateDirectory dir: String) async throws -> DecisionSigner {
        let keys = try await SQLiteStore(path: dir + "/authority.sqlite").signingKeys()
        guard let k = keys.last(where: { $0.state == .active }) else { throw StoreError("no active signing key in \(dir)") }
        return try DecisionSigner(rawBase64: k.privateKey)
    }

    public var url: String { "http://127.0.0.1:\(port)" }

    public var fault: Fault {
        get { state.withLock { $0.fault } }
        set { set(newValue) }
    }

    public func set(_ f: Fault) {
        let (closeListener, reopen, toReset) = state.withLock { s -> (Int32, Bool, [Int32]) in
            let old = s.fault
            s.fault = f
            var l: Int32 = -1
            if f == .refuse, s.listener >= 0 {
                l = s.listener
                s.listener = -1
            }
            let cut = f.cutsStreams && f != old
            let fds = cut ? Array(s.open) : []
            return (l, old == .refuse && f != .refuse, fds)
        }
        if closeListener >= 0 {
            shutdown(closeListener, Int32(SHUT_RDWR))
            close(closeListener)
        }
        for fd in toReset { Self.abort(fd) }
        if reopen { try? listen() }
    }

    deinit {
        let (l, fds) = state.withLock { ($0.listener, $0.open) }
        if l >= 0 {
            shutdown(l, Int32(SHUT_RDWR))
            close(l)
        }
        for fd in fds { shutdown(fd, Int32(SHUT_RDWR)) }
    }

    // MARK: - sockets

    private func listen() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = Self.loopback(port)
        let ok = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard ok == 0, Glibc.listen(fd, 128) == 0 else {
            close(fd)
            throw FaultProxyError("cannot listen on 127.0.0.1:\(port): \(String(cString: strerror(errno)))")
        }
        state.withLock { $0.listener = fd }
        Thread.detachNewThread { [weak self] in
            while true {
                let c = accept(fd, nil, nil)
                if c < 0 {
                    if errno == EINTR { continue }
                    return
                }
                guard let self else {
                    close(c)
                    return
                }
                self.state.withLock { _ = $0.open.insert(c) }
                Thread.detachNewThread { self.serve(c) }
            }
        }
    }

    static func loopback(_ port: Int) -> sockaddr_in {
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_addr.s_addr = inet_addr("127.0.0.1")
        a.sin_port = UInt16(port).bigEndian
        return a
    }

    /// Closes with RST rather than FIN.
    static func abort(_ fd: Int32) {
        var l = linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, socklen_t(MemoryLayout<linger>.size))
        shutdown(fd, Int32(SHUT_RDWR))
    }

    private func forget(_ fd: Int32) {
        state.withLock { _ = $0.open.remove(fd) }
        close(fd)
    }

    static func writeAll(_ fd: Int32, _ data: Data) -> Bool {
        data.withUnsafeBytes { buf in
            var off = 0
            while off < buf.count {
                let n = send(fd, buf.baseAddress! + off, buf.count - off, Int32(MSG_NOSIGNAL))
                if n < 0 {
                    if errno == EINTR { continue }
                    return false
                }
                off += n
            }
            return true
        }
    }

    /// Reads until `buffer` holds one whole request (head and content-length body).
    static func readRequest(_ fd: Int32, _ buffer: inout Data) -> Data? {
        while true {
            if let end = buffer.range(of: Data("\r\n\r\n".utf8)) {
                let head = String(decoding: buffer[buffer.startIndex..<end.lowerBound], as: UTF8.self)
                let length = contentLength(head) ?? 0
                let total = end.upperBound - buffer.startIndex + length
                if buffer.count >= total {
                    let req = Data(buffer.prefix(total))
                    buffer.removeFirst(total)
                    return req
                }
            }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = recv(fd, &chunk, chunk.count, 0)
            if n <= 0 {
                if n < 0 && errno == EINTR { continue }
                return nil
            }
            buffer.append(contentsOf: chunk[0..<n])
        }
    }

    static func contentLength(_ head: String) -> Int? {
        for line in head.split(separator: "\r\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2, parts[0].trimmingCharacters(in: .whitespaces).lowercased() == "content-length" {
                return Int(parts[1].trimmingCharacters(in: .whitespaces))
            }
        }
        return nil
    }

    static func response(_ status: Int, _ body: Data, type: String = "application/json") -> Data {
        var d = Data("HTTP/1.1 \(status) Injected\r\ncontent-type: \(type)\r\ncontent-length: \(body.count)\r\n\r\n".utf8)
        d.append(body)
        return d
    }

    // MARK: - one client connection

    private func serve(_ client: Int32) {
        defer { forget(client) }
        var pending = Data()
        while let request = Self.readRequest(client, &pending) {
            let fault = self.fault
            let line = String(decoding: request.prefix(200), as: UTF8.self).split(separator: "\r\n").first.map(String.init) ?? ""
            let isWatch = line.contains("/devices/watch")
            switch fault {
            case .refuse, .reset:
                Self.abort(client)
                return
            case .hang:
                while self.fault == .hang { usleep(50_000) }
                Self.abort(client)
                return
            case .status(let s):
                guard Self.writeAll(client, Self.response(s, Data("{\"error\":\"injected \(s)\"}".utf8))) else { return }
                continue
            case .garbage:
                guard Self.writeAll(client, Self.response(200, Data("{\"allowed\": tru".utf8))) else { return }
                continue
            case .oversized(let n):
                let head = Data("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: \(n)\r\n\r\n{\"pad\":\"".utf8)
                let block = Data(repeating: UInt8(ascii: "x"), count: 65536)
                var sent = 8  // {"pad":"
                guard Self.writeAll(client, head) else { return }
                while sent < n {
                    guard Self.writeAll(client, block.prefix(n - sent)) else { return }
                    sent += min(block.count, n - sent)
                }
                continue
            case let f where f.rewrites && isWatch:
                guard Self.writeAll(client, Self.response(404, Data("{\"error\":\"no stream here\"}".utf8))) else { return }
                continue
            default:
                break
            }
            guard forward(request, from: client, stream: isWatch) else { return }
        }
    }

    /// Sends `request` upstream and the answer back (rewritten when the fault says so).
    /// False when the client connection is done.
    private func forward(_ request: Data, from client: Int32, stream: Bool) -> Bool {
        let up = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        defer { close(up) }
        var addr = Self.loopback(upstreamPort)
        let ok = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(up, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard ok == 0 else {
            return Self.writeAll(client, Self.response(502, Data("{\"error\":\"upstream down\"}".utf8)))
        }
        // One request per upstream connection: the answer ends when upstream closes.
        var req = request
        if let end = req.range(of: Data("\r\n\r\n".utf8)) {
            req.replaceSubrange(end, with: Data("\r\nconnection: close\r\n\r\n".utf8))
        }
        guard Self.writeAll(up, req) else { return false }
        if stream { return pipeStream(up, client) }
        var answer = Data()
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(up, &chunk, chunk.count, 0)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            answer.append(contentsOf: chunk[0..<n])
        }
        answer = rewrite(answer)
        if fault == .slow {
            for b in answer {
                guard fault == .slow else { return Self.writeAll(client, answer) }
                guard Self.writeAll(client, Data([b])) else { return false }
                sleep(1)
            }
            return true
        }
        return Self.writeAll(client, answer)
    }

    /// A live stream: bytes both ways until one side ends, a fault cuts it, or `hang` holds it.
    private func pipeStream(_ up: Int32, _ client: Int32) -> Bool {
        var fds = [pollfd(fd: up, events: Int16(POLLIN), revents: 0), pollfd(fd: client, events: Int16(POLLIN), revents: 0)]
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let f = fault
            if f.cutsStreams {
                Self.abort(client)
                return false
            }
            if f == .hang {
                usleep(50_000)
                continue
            }
            let r = poll(&fds, 2, 100)
            if r < 0 {
                if errno == EINTR { continue }
                return false
            }
            if r == 0 { continue }
            if fds[1].revents != 0 {
                let n = recv(client, &chunk, chunk.count, 0)
                if n <= 0 { return false }
            }
            if fds[0].revents != 0 {
                let n = recv(up, &chunk, chunk.count, 0)
                if n <= 0 { return false }
                if fault == .slow {
                    for b in chunk[0..<n] {
                        guard Self.writeAll(client, Data([b])) else { return false }
                        sleep(1)
                    }
                } else if fault != .hang {
                    guard Self.writeAll(client, Data(chunk[0..<n])) else { return false }
                }
            }
        }
    }

    /// Applies a rewriting fault to a whole HTTP answer with a JSON decision in its body.
    private func rewrite(_ answer: Data) -> Data {
        guard let end = answer.range(of: Data("\r\n\r\n".utf8)) else { return answer }
        let head = String(decoding: answer[answer.startIndex..<end.lowerBound], as: UTF8.self)
        let body = Data(answer[end.upperBound...])
        guard var o = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any], o["code"] != nil, o["allowed"] != nil else {
            return answer
        }
        let fault = self.fault
        switch fault {
        case .replay:
            guard let old = state.withLock({ $0.recorded }) else { return answer }
            return Self.response(200, old)
        case .stripSignature:
            o["signature"] = nil
        case .corruptSignature:
            if let d = Decision(json: o) { o["signature"] = DecisionSigner.generate().sign(d).signature }
        case .skew(let seconds):
            guard let signer, var d = Decision(json: o), let i = Timestamp.parse(d.issuedAt), let e = Timestamp.parse(d.expiresAt) else {
                return answer
            }
            d.issuedAt = Timestamp.string(i.addingTimeInterval(seconds))
            d.expiresAt = Timestamp.string(e.addingTimeInterval(seconds))
            d = signer.sign(d)
            o["issuedAt"] = d.issuedAt
            o["expiresAt"] = d.expiresAt
            o["signature"] = d.signature
        default:
            // The latest signed allow that passed, for a later `replay`.
            if o["allowed"] as? Bool == true, o["signature"] != nil { state.withLock { $0.recorded = body } }
            return answer
        }
        let out = (try? JSONSerialization.data(withJSONObject: o)) ?? body
        let status = head.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 200
        return Self.response(status, out)
    }
}

public struct FaultProxyError: Error, CustomStringConvertible {
    public var description: String
    init(_ d: String) { description = d }
}
