import Foundation
import Glibc
import TetherCore

/// Asks a worker's decision socket (`TETHER_DECISION_SOCKET`, served by its supervisor from
/// the live lease). Every failure — no socket, a timeout, a malformed answer — is a deny.
public enum LocalDecision {
    /// The variable that carries the socket's path into the worker.
    public static let environmentVariable = "TETHER_DECISION_SOCKET"

    public struct Answer: Sendable, Equatable {
        public var allowed: Bool
        public var code: String
        public var surface: String?
        public var changedBy: String?
        public var changedAt: String?
        public var reason: String?
        /// For a refusal of the question itself (NOT_YOURS, BAD_REQUEST), or a failure to ask.
        public var error: String?

        public init(
            allowed: Bool, code: String, surface: String? = nil, changedBy: String? = nil, changedAt: String? = nil,
            reason: String? = nil, error: String? = nil
        ) {
            self.allowed = allowed
            self.code = code
            self.surface = surface
            self.changedBy = changedBy
            self.changedAt = changedAt
            self.reason = reason
            self.error = error
        }

        public static func failure(_ code: String, _ error: String) -> Answer {
            Answer(allowed: false, code: code, surface: nil, changedBy: nil, changedAt: nil, reason: nil, error: error)
        }
    }

    /// One question; `surface` nil asks about the worker's own surface.
    public static func ask(socket path: String, surface: String?, timeout: Duration = .seconds(2)) -> Answer {
        let fd = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return .failure("SOCKET_UNAVAILABLE", "socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            return .failure("SOCKET_UNAVAILABLE", "the socket path is too long")
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
            raw[bytes.count] = 0
        }
        let ms = Int(timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        var tv = timeval(tv_sec: ms / 1000, tv_usec: (ms % 1000) * 1000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else {
            return .failure(
                "SOCKET_UNAVAILABLE",
                "cannot reach the decision socket \(path): \(String(cString: strerror(errno))) — is the supervisor running?")
        }
        let request = Array(JSONWriter.data(surface.map { ["surface": $0] } ?? [:])) + [10]
        var off = 0
        while off < request.count {
            // MSG_NOSIGNAL: a socket closed under us is an answer (a deny), not a SIGPIPE that
            // kills the hook — which the agents would take as "let it run".
            let n = request[off...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return .failure("SOCKET_UNAVAILABLE", "the decision socket took no question") }
            off += n
        }
        var line: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 2048)
        while !line.contains(10) {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                return .failure("TIMEOUT", "no answer from the decision socket within \(DurationText.format(timeout))")
            }
            guard n > 0 else { return .failure("SOCKET_UNAVAILABLE", "the decision socket closed without an answer") }
            line.append(contentsOf: chunk[0..<n])
            if line.count > 65536 { return .failure("BAD_RESPONSE", "the answer is too long") }
        }
        return parse(Array(line[..<line.firstIndex(of: 10)!]))
    }

    /// "agent-01 is DEVICE_REVOKED (by alice at …: INC-42): detail", for people: what the hook,
    /// the MCP gateway and the decision socket's users say.
    public static func describe(
        surface: String, code: String, changedBy: String?, changedAt: String?, reason: String?, error: String?
    ) -> String {
        var who: [String] = []
        if let changedBy { who.append("by \(changedBy)") }
        if let changedAt { who.append("at \(changedAt)") }
        var text = "\(surface) is \(code)"
        if !who.isEmpty || reason != nil {
            text += " (\(who.joined(separator: " "))\(reason.map { (who.isEmpty ? "" : ": ") + $0 } ?? ""))"
        }
        if let error { text += ": \(error)" }
        return text
    }

    static func parse(_ line: [UInt8]) -> Answer {
        guard let o = (try? JSONSerialization.jsonObject(with: Data(line))) as? [String: Any],
            let allowed = o["allowed"] as? Bool, let code = o["code"] as? String
        else {
            return .failure("BAD_RESPONSE", "the decision socket's answer is not a decision")
        }
        // Only an explicit ALLOW allows.
        return Answer(
            allowed: allowed && code == DecisionCode.allow.rawValue, code: code, surface: o["surface"] as? String,
            changedBy: o["changedBy"] as? String, changedAt: o["changedAt"] as? String, reason: o["reason"] as? String,
            error: o["error"] as? String)
    }
}
