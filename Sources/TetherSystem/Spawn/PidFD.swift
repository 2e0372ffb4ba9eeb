import CSeccomp
import Glibc

/// A process descriptor: signals sent through it cannot reach a recycled pid. Closed when the
/// last owner lets go, which is after the exit monitor has collected the exit status.
public final class PidFD: Sendable {
    public let rawValue: Int32
    public let pid: pid_t

    init(rawValue: Int32, pid: pid_t) {
        self.rawValue = rawValue
        self.pid = pid
    }

    deinit { close(rawValue) }

    /// Sends `sig` to the process itself (not its group). ESRCH once it has exited.
    public func send(_ sig: Int32) -> Bool {
        tether_pidfd_send_signal(rawValue, sig) == 0
    }
}
