import Foundation
import Glibc
import TetherCore

/// The sd_notify protocol without libsystemd: datagrams of `KEY=VALUE` lines to the socket in
/// `$NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace). Every call is a no-op when
/// the service manager gave no socket, so the same code runs under systemd and in a terminal.
public final class SystemdNotifier: Sendable {
    private let fd: Int32
    private let address: [UInt8]
    /// Half of `WatchdogSec=`, when the watchdog is on for this process: ping at least this often.
    public let watchdogInterval: Duration?

    /// The notifier systemd set up for this process, if any.
    public static let shared: SystemdNotifier? = SystemdNotifier(environment: Foundation.ProcessInfo.processInfo.environment)

    init?(environment env: [String: String]) {
        guard let path = env["NOTIFY_SOCKET"], !path.isEmpty, path.utf8.count < 108 else { return nil }
        var bytes = Array(path.utf8)
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }  // abstract namespace
        let s = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0 else { return nil }
        fd = s
        address = bytes
        if let usec = env["WATCHDOG_USEC"].flatMap(UInt64.init), usec > 0,
            env["WATCHDOG_PID"].flatMap(Int32.init).map({ $0 == getpid() }) ?? true
        {
            watchdogInterval = .microseconds(Int64(usec / 2))
        } else {
            watchdogInterval = nil
        }
    }

    deinit { close(fd) }

    /// Sends one message; false if it could not be delivered.
    @discardableResult
    public func send(_ fields: [(String, String)]) -> Bool {
        let text = fields.map { "\($0.0)=\($0.1)" }.joined(separator: "\n")
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in address.enumerated() { raw[i] = b }
        }
        let len = socklen_t(MemoryLayout<sa_family_t>.size + address.count)
        let sent = text.utf8CString.withUnsafeBufferPointer { buf in
            withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, buf.baseAddress, buf.count - 1, Int32(MSG_NOSIGNAL), $0, len)
                }
            }
        }
        return sent >= 0
    }

    public func ready(status: String) { send([("READY", "1"), ("STATUS", status)]) }
    public func status(_ text: String) { send([("STATUS", text)]) }
    public func watchdog() { send([("WATCHDOG", "1")]) }
    public func stopping(status: String) { send([("STOPPING", "1"), ("STATUS", status)]) }

    /// Before re-reading configuration; `ready(status:)` when done.
    public func reloading() {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        let usec = UInt64(ts.tv_sec) * 1_000_000 + UInt64(ts.tv_nsec) / 1000
        send([("RELOADING", "1"), ("MONOTONIC_USEC", "\(usec)")])
    }

}

extension SystemdNotifier {
    /// The notifications of this process: systemd's when it gave a socket, none otherwise.
    public static var notifications: ServiceNotifications {
        guard let n = shared else { return .none }
        return ServiceNotifications(
            ready: { n.ready(status: $0) }, status: { n.status($0) }, stopping: { n.stopping(status: $0) },
            reloading: { n.reloading() }, watchdogInterval: n.watchdogInterval, watchdog: { n.watchdog() })
    }
}
