import Foundation
import Glibc

/// A TCP connection to a loopback port driven byte by byte: what a slow or silent client does
/// to a server, which an HTTP client library will not do.
public final class RawSocket: @unchecked Sendable {
    public private(set) var fd: Int32

    public init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            let e = errno
            // Closed here and marked: a class whose initializer throws once its properties are
            // set still runs deinit, and a second close of the number — by then perhaps another
            // thread's socket — took a socket from under SwiftNIO (EBADF in getpeername).
            close(fd)
            fd = -1
            throw POSIXError(.init(rawValue: e) ?? .EIO)
        }
    }

    deinit { if fd >= 0 { close(fd) } }

    public func send(_ text: String) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// Reads until the peer closes or `timeout` passes. `closed`: the peer closed (or reset).
    public func readUntilClosed(timeout: Duration) -> (data: Data, closed: Bool, after: Duration) {
        let start = ContinuousClock.now
        var data = Data()
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let left = timeout - (ContinuousClock.now - start)
            if left <= .zero { return (data, false, ContinuousClock.now - start) }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ms = Int32(max(1, left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000))
            guard poll(&p, 1, ms) > 0 else { continue }
            let n = recv(fd, &buf, buf.count, 0)
            if n <= 0 { return (data, true, ContinuousClock.now - start) }
            data.append(contentsOf: buf[0..<n])
        }
    }

    /// The first bytes that arrive within `timeout` (empty: none).
    public func readFirst(timeout: Duration) -> Data {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ms = Int32(timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        guard poll(&p, 1, ms) > 0 else { return Data() }
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = recv(fd, &buf, buf.count, 0)
        return n > 0 ? Data(buf[0..<n]) : Data()
    }

    /// Reads what arrives within `timeout` without waiting for the close.
    public func read(for timeout: Duration) -> Data {
        readUntilClosed(timeout: timeout).data
    }
}
