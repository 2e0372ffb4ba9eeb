import Foundation
import Glibc
import Logging
import ServiceLifecycle
import Synchronization
import TetherCore

/// Bounds an authority's shutdown: a replica must always stop. One replica was found orphaned
/// 49 minutes after its run, its listener closed, ignoring SIGTERM: a graceful shutdown can wait
/// for ever on a watch stream whose client stopped reading, or on a query to a database that
/// stopped answering without closing the connection, and the service group's own signal
/// handling ignores every signal after the first.
///
/// So the signals are taken here, not by the group: the first SIGTERM or SIGINT begins the
/// graceful shutdown and starts the bound; the next, or the bound running out, exits 69 at
/// once with a line that says which. A signal is taken both by a handler (when a thread lets it
/// in) and by a thread waiting in `sigtimedwait` (when every thread blocks it — a process started
/// with them blocked — it stays pending, and the wait takes it); neither depends on the
/// cooperative pool, which may be what is stuck.
enum ShutdownSignals {
    static let exitCode: Int32 = 69
    /// Signals taken so far.
    private static let count = Atomic<Int>(0)
    /// The first signal's way out of the handler: a byte down this pipe.
    private nonisolated(unsafe) static var wake: (read: Int32, write: Int32) = (-1, -1)
    /// The line a second signal writes before exiting: made before any signal can use it.
    private nonisolated(unsafe) static var secondSignalLine: [UInt8] = []

    /// From now on SIGTERM and SIGINT are this type's: the first calls `begin` (once, off the
    /// signal handler) and starts the bound of `limit`.
    static func take(limit: Duration, logger: Logger, begin: @escaping @Sendable () -> Void) {
        secondSignalLine = Array("tether authority: a second signal during shutdown: exiting now (\(exitCode))\n".utf8)
        // Initialised here, not first in the handler.
        _ = count.load(ordering: .relaxed)
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { fatalError("pipe: \(String(cString: strerror(errno)))") }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        wake = (fds[0], fds[1])
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in ShutdownSignals.received() }
        sigemptyset(&action.sa_mask)
        sigaction(SIGTERM, &action, nil)
        sigaction(SIGINT, &action, nil)
        // The pending-signal taker.
        Thread.detachNewThread {
            var set = signals()
            pthread_sigmask(SIG_BLOCK, &set, nil)
            while true { if sigwaitinfo(&set, nil) > 0 { received() } }
        }
        // The first signal's reader: begins the shutdown, then holds it to its bound.
        Thread.detachNewThread {
            var set = signals()
            pthread_sigmask(SIG_BLOCK, &set, nil)
            var byte: UInt8 = 0
            while read(wake.read, &byte, 1) != 1 {}
            logger.notice("shutting down", metadata: ["bound": "\(DurationText.format(limit))"])
            begin()
            Thread.sleep(forTimeInterval: limit.timeInterval)
            logger.critical(
                "shutdown did not finish in time: exiting now", metadata: ["bound": "\(DurationText.format(limit))", "exit": "\(exitCode)"])
            _exit(exitCode)
        }
    }

    private static func signals() -> sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGTERM)
        sigaddset(&set, SIGINT)
        return set
    }

    /// A signal, from the handler or the taker: only async-signal-safe calls (an atomic add,
    /// write(2), _exit(2)).
    private static func received() {
        if count.add(1, ordering: .sequentiallyConsistent).newValue == 1 {
            var byte: UInt8 = 1
            _ = write(wake.write, &byte, 1)
        } else {
            secondSignalLine.withUnsafeBufferPointer { _ = write(2, $0.baseAddress, $0.count) }
            _exit(exitCode)
        }
    }
}

/// The last service of the authority's group, so the first told when its graceful shutdown
/// begins: ends every watch stream and console feed at once, before the server starts waiting
/// for its connections to close.
struct ShutdownFirst: Service {
    let first: @Sendable () async -> Void

    func run() async throws {
        // Returns when the group begins its graceful shutdown; throws when it is cancelled
        // (another service ended first: nothing to do).
        do { try await gracefulShutdown() } catch { return }
        await first()
    }
}
