import CSeccomp
import Foundation
import Glibc
import Synchronization

/// The one thread every worker is forked from.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, not the process: a
/// worker forked from a cooperative-pool thread dies when the pool retires that thread. This
/// thread is started once and never exits, so the signal fires only when the supervisor dies.
final class SpawnThread: Sendable {
    static let shared = SpawnThread()

    private let jobs = Mutex<[@Sendable () -> Void]>([])
    private let ready = DispatchSemaphore(value: 0)

    private init() {
        let thread = Thread { [self] in
            // The kernel's name for the thread, which a child that fails before exec keeps.
            tether_set_thread_name("tether-spawn")
            while true {
                ready.wait()
                let job = jobs.withLock { $0.removeFirst() }
                job()
            }
        }
        thread.name = "tether-spawn"
        thread.start()
    }

    /// Runs `body` on the spawn thread. Fork/exec is quick (the child reports through a pipe),
    /// so the thread is held for milliseconds at most.
    func run<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { (c: CheckedContinuation<T, Never>) in
            jobs.withLock { $0.append { c.resume(returning: body()) } }
            ready.signal()
        }
    }
}
