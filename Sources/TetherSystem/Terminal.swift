import Dispatch
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
public final class SignalForwarder: Sendable {
    public static let forwarded: [Int32] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH]
    private let sources: Mutex<[DispatchSourceSignal]>

    public convenience init(worker: Worker) {
        self.init(handler: { worker.signalGroup($0) })
    }

    public init(handler: @escaping @Sendable (Int32) -> Void) {
        var list: [DispatchSourceSignal] = []
        for sig in Self.forwarded {
            signal(sig, SIG_IGN)   // handled by the source; the child path resets it for the worker
            let src = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            src.setEventHandler { handler(sig) }
            src.resume()
            list.append(src)
        }
        sources = Mutex(list)
    }

    public func stop() {
        sources.withLock { list in
            for s in list { s.cancel() }
            list = []
        }
        for sig in Self.forwarded { signal(sig, SIG_DFL) }
    }
}
