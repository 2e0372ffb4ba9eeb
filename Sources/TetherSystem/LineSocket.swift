import Foundation
import Glibc
import Synchronization

/// A Unix stream socket that answers one line with one line, for processes on this host: the
/// socket and its threads, without a policy of its own — what to answer, and to whom, is the
/// caller's (`session` gets the peer's pid, as the kernel recorded it at connect, once per
/// connection, and returns what answers that connection's lines).
///
/// Every socket of the process is accepted by one thread (`LineSocketAcceptor`): a thread per
/// socket cost a supervisor of 100 workers 100 threads asleep in poll(2) — each a stack, a
/// malloc cache — 0.9 MiB of its resident memory (docs/BENCHMARKS.md). Each connection is then
/// served on a thread of its own, at most `maxConnections` at once per socket, with 5 s read
/// and write timeouts, lines of at most `maxLine` bytes.
public final class LineSocket: Sendable {
    public typealias Answer = @Sendable (_ line: [UInt8]) -> [UInt8]
    public typealias Session = @Sendable (_ peer: pid_t?) -> Answer

    public let path: String
    fileprivate let fd: Int32
    private let session: Session
    /// Sent (and the connection closed) when a line is longer than `maxLine`.
    private let tooLong: [UInt8]
    private let connections = Atomic<Int>(0)
    private let stopped = Atomic<Bool>(false)
    public static let maxConnections = 32
    public static let maxLine = 4096

    /// Binds `path` (mode 0666: who may ask is decided per connection) and starts answering.
    public init(path: String, tooLong: [UInt8], session: @escaping Session) throws(SystemError) {
        self.path = path
        self.session = session
        self.tooLong = tooLong
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
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        // Non-blocking: the one accepting thread serves every socket, and must never wait in
        // accept(2) on one of them.
        guard rc == 0, chmod(path, 0o666) == 0, listen(s, 64) == 0, fcntl(s, F_SETFL, O_NONBLOCK) == 0 else {
            let e = errno
            close(s)
            unlink(path)
            throw SystemError("bind \(path)", .init(rawValue: e))
        }
        fd = s
        LineSocketAcceptor.shared.add(self)
    }

    /// Stops answering and removes the socket file. (Its descriptor is closed by the accepting
    /// thread, which alone uses it: never while that thread might still poll or accept on it.)
    public func stop() {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        LineSocketAcceptor.shared.remove(self)
        unlink(path)
    }

    /// One waiting connection, taken on the accepting thread and served on a thread of its own.
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
        let answer = session(peer)
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            if let nl = buffer.firstIndex(of: 10) {
                let line = Array(buffer[..<nl])
                buffer.removeSubrange(...nl)
                guard Self.writeAll(c, answer(line) + [10]) else { return }
                continue
            }
            guard buffer.count < Self.maxLine else {
                _ = Self.writeAll(c, tooLong + [10])
                return
            }
            let n = chunk.withUnsafeMutableBytes { read(c, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            buffer.append(contentsOf: chunk[0..<n])
        }
    }

    /// Writes all of `bytes`, through EINTR; false when the peer is gone or timed out.
    public static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            off += n
        }
        return true
    }
}

/// The one thread that accepts for every `LineSocket` of the process. Each round takes at most
/// one connection from each ready socket, and serves none itself, so a process flooding one
/// socket cannot keep another's waiting.
private final class LineSocketAcceptor: Sendable {
    static let shared = LineSocketAcceptor()

    private struct State {
        var sockets: [Int32: LineSocket] = [:]
        /// Descriptors of stopped sockets, closed by the accepting thread at its next round.
        var retired: [Int32] = []
        var running = false
    }
    private let state = Mutex(State())
    private let thread = PollThread(name: "tether-decisions")

    func add(_ socket: LineSocket) {
        let start = state.withLock { s in
            s.sockets[socket.fd] = socket
            defer { s.running = true }
            return !s.running
        }
        if start {
            thread.start { [self] in
                round()
                return true
            }
        } else {
            thread.poke()
        }
    }

    func remove(_ socket: LineSocket) {
        state.withLock { s in
            if s.sockets.removeValue(forKey: socket.fd) != nil { s.retired.append(socket.fd) }
        }
        thread.poke()
    }

    private func round() {
        let (sockets, retired) = state.withLock { s in
            defer { s.retired = [] }
            return (Array(s.sockets.keys), s.retired)
        }
        for fd in retired { close(fd) }
        let wake = thread.wake
        // Without an eventfd (none could be made), the thread looks again every 100 ms.
        var p = [pollfd(fd: wake, events: Int16(POLLIN), revents: 0)] + sockets.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        if poll(&p, nfds_t(p.count), wake >= 0 ? -1 : 100) < 0 { return }  // EINTR
        if p[0].revents != 0 { thread.drain() }
        for q in p.dropFirst() where q.revents != 0 {
            // Still registered: a socket stopped meanwhile is not served (its descriptor stays
            // open until the next round closes it).
            state.withLock { $0.sockets[q.fd] }?.acceptOne()
        }
    }
}
