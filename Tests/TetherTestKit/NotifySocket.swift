import Foundation
import Glibc
import Synchronization

/// A stand-in for systemd's notification socket: a datagram socket on a path, collecting what
/// a service sends through `$NOTIFY_SOCKET`.
public final class NotifySocket: Sendable {
    public let path: String
    private let fd: Int32
    private final class Received: Sendable { let list = Mutex<[String]>([]) }
    private let received = Received()

    public init() throws {
        path = temporaryDirectory("notify") + "/notify.sock"
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        self.fd = fd
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in path.utf8.enumerated() { raw[i] = b }
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else { throw POSIXError(.EADDRINUSE) }
        Thread.detachNewThread { [received] in
            var buf = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = recv(fd, &buf, buf.count, 0)
                if n <= 0 { return }
                let text = String(decoding: buf[0..<n], as: UTF8.self)
                received.list.withLock { $0.append(text) }
            }
        }
    }

    /// Every message so far, in order.
    public var messages: [String] { received.list.withLock { $0 } }

    /// Whether any message has a line `line` (e.g. "READY=1").
    public func saw(_ line: String) -> Bool { messages.contains { $0.split(separator: "\n").contains { $0 == line } } }

    public func statuses() -> [String] {
        messages.flatMap { $0.split(separator: "\n") }.filter { $0.hasPrefix("STATUS=") }.map { String($0.dropFirst(7)) }
    }

    deinit {
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
    }
}
