import CSeccomp
import Foundation
import Glibc
import Synchronization

/// The caller's terminal, when the worker should take it over. A worker in its own process
/// group on the caller's terminal stops (SIGTTIN) on its first read unless it is made the
/// terminal's foreground group.
public enum ForegroundTerminal {
    /// The terminal on stdin, if the supervisor is its foreground group now.
    public static func claimable() -> Int32? {
        guard isatty(0) == 1, tcgetpgrp(0) == getpgrp() else { return nil }
        return 0
    }

    /// Takes the terminal back for the supervisor's group after the worker exits. SIGTTOU is
    /// ignored for the call: a background group may not otherwise set the foreground.
    public static func reclaim() {
        let old = signal(SIGTTOU, SIG_IGN)
        _ = tcsetpgrp(0, getpgrp())
        signal(SIGTTOU, old)
    }
}

/// Forwards SIGINT, SIGTERM, SIGHUP, SIGQUIT and SIGWINCH received by the supervisor to the
/// worker's process group, as a terminal would deliver them (or to a handler that decides).
///
/// The signals are caught by a handler that writes each one's number to a pipe (signals.c),
/// read by a thread of the forwarder's own that sleeps until one comes. Not libdispatch's
/// signal sources: their manager thread starts libdispatch's workqueue monitor, a timer that
/// wakes the process every second for the rest of its life (docs/containment.md, "The
/// supervisor's side").
/// One forwarder at a time per process (the supervisor commands make one each).
public final class SignalForwarder: Sendable {
    public static let forwarded: [Int32] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH]

    /// The relay's pipe, made once and kept open: a handler running late must never write into
    /// a descriptor number reused for something else.
    private static let relay: (read: Int32, write: Int32) = {
        var fds: [Int32] = [-1, -1]
        let rc = tether_pipe_nonblock(&fds)
        precondition(rc == 0, "the signal relay's pipe: errno \(-rc)")
        return (fds[0], fds[1])
    }()
    private static let handler = Mutex<(@Sendable (Int32) -> Void)?>(nil)
    private static let reader = Mutex(false)

    public convenience init(worker: Worker) {
        self.init(handler: { worker.signalGroup($0) })
    }

    public init(handler: @escaping @Sendable (Int32) -> Void) {
        let relay = Self.relay
        Self.handler.withLock { $0 = handler }
        Self.reader.withLock { started in
            guard !started else { return }
            started = true
            let thread = Thread { Self.readLoop(relay.read) }
            thread.name = "tether-signals"
            thread.start()
        }
        let rc = Self.forwarded.withUnsafeBufferPointer { tether_signal_relay_install(relay.write, $0.baseAddress, $0.count) }
        precondition(rc == 0, "installing the signal relay: errno \(-rc)")
    }

    /// Signals back to their default action; the forwarder's handler is dropped.
    public func stop() {
        Self.forwarded.withUnsafeBufferPointer { tether_signal_relay_default($0.baseAddress, $0.count) }
        Self.handler.withLock { $0 = nil }
    }

    private static func readLoop(_ fd: Int32) {
        var buf = [UInt8](repeating: 0, count: 64)
        while true {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, -1) > 0 else { continue }  // EINTR
            let n = read(fd, &buf, buf.count)
            guard n > 0 else { continue }  // EAGAIN: another wakeup took it
            let act = handler.withLock { $0 }
            for i in 0..<n { act?(Int32(buf[i])) }
        }
    }
}
