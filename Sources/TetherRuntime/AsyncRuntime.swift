import CTetherRuntime
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
    /// What SwiftNIO's `NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor`
    /// does, but with the runtime's hook reached at link time (CTetherRuntime) rather than by
    /// `dlsym`, which finds nothing in the statically linked binary `make install` ships.
    /// Returns false when a hook was set already (the runtime is then left as it is).
    @discardableResult
    public static func useEventLoops() -> Bool {
        // The Swift runtime's hook type: (job, the runtime's own enqueue) -> Void, thin.
        typealias Hook = @convention(thin) (UnownedJob, @convention(thin) (UnownedJob) -> Void) -> Void
        return withUnsafeTemporaryAllocation(of: Hook.self, capacity: 1) { slot in
            // `any()` is the loop of the calling thread when it is one of the group's: a task
            // resumed on a loop stays there, with no thread switch.
            slot.baseAddress!.initialize(to: { job, _ in
                MultiThreadedEventLoopGroup.singleton.any().enqueue(ExecutorJob(job))
            })
            return slot.baseAddress!.withMemoryRebound(to: UnsafeRawPointer.self, capacity: 1) {
                tether_install_enqueue_global_hook($0.pointee) == 1
            }
        }
    }
}
