import CSeccomp
import Dispatch
import Foundation
import Glibc
import Synchronization

/// A named thread of its own that sleeps in poll(2) with an eventfd among what it waits on:
/// `poke` wakes it (its set of descriptors changed, or it should end). The supervisor's three
/// such loops — the gate answerer, the exit monitor, the decision sockets' acceptor — are
/// each a `round` run again and again on one of these, until a round returns false.
///
/// Plain threads, not tasks: each blocks in the kernel (seccomp notifications, pidfds, accept)
/// and must answer while the cooperative pool is busy or starved.
public final class PollThread: Sendable {
    /// The eventfd to poll beside the round's own descriptors (non-blocking, close-on-exec).
    /// -1 when none could be made: a round then polls with a timeout instead.
    public let wake: Int32
    private let name: String
    private let ended = DispatchSemaphore(value: 0)
    private let finished = Atomic<Bool>(false)

    public init(name: String) {
        self.name = name
        wake = tether_eventfd()
    }

    deinit { if wake >= 0 { close(wake) } }

    /// Starts the thread: `round` until it returns false, then `end` (on the thread).
    public func start(_ round: @escaping @Sendable () -> Bool, end: @escaping @Sendable () -> Void = {}) {
        let thread = Thread { [self] in
            tether_set_thread_name(String(name.prefix(15)))
            while round() {}
            end()
            finished.store(true, ordering: .releasing)
            ended.signal()
        }
        thread.name = name
        thread.start()
    }

    /// Wakes the thread from its poll.
    public func poke() {
        guard wake >= 0 else { return }
        var one: UInt64 = 1
        _ = write(wake, &one, 8)
    }

    /// Empties the eventfd after a poll found it readable.
    public func drain() {
        guard wake >= 0 else { return }
        var n: UInt64 = 0
        _ = read(wake, &n, 8)
    }

    /// Whether the thread ended.
    public var isFinished: Bool { finished.load(ordering: .acquiring) }

    /// Waits until the thread has ended (any number of callers).
    public func join() {
        ended.wait()
        ended.signal()
    }
}
