import NIOCore
import NIOPosix

/// Where the supervisor's async code runs.
public enum AsyncRuntime {
    /// Makes SwiftNIO's event loops (`MultiThreadedEventLoopGroup.singleton`, one thread per
    /// core) Swift Concurrency's global executor, in place of libdispatch's thread pool. Call
    /// first thing in `main`, before any task runs; once per process.
    ///
    /// Why, for the supervisor commands: libdispatch on Linux starts a workqueue monitor with
    /// its first pool thread, a timer on its manager thread that fires every second for the life
    /// of the process — the largest single source of an idle supervisor's wakeups (1 of 3 a
    /// second). With the event loops as the executor, its sleeps on their timers (`Sleep`) and
    /// its signals through a pipe (`SignalForwarder`), the supervisor never starts libdispatch.
    /// A task resumed by the watch stream's bytes runs on the loop that read them, without a
    /// thread switch. Not for the authority server: measured, its throughput was lower.
    ///
    /// Returns false when the runtime has no hook for it (the supervisor then runs on
    /// libdispatch as before; nothing else changes).
    @discardableResult
    public static func useEventLoops() -> Bool {
        NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
    }
}
