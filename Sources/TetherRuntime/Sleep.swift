import NIOCore
import NIOPosix
import Synchronization

/// `Task.sleep`, on a SwiftNIO event loop's timer instead of libdispatch's.
///
/// In Swift 6.3 every `Task.sleep` is a libdispatch timer, whatever the global executor: the
/// first one starts libdispatch's manager thread, and with it the workqueue monitor that wakes
/// the process once a second for the rest of its life. The supervisor sleeps only through
/// here, so that when it runs on the event loops (`AsyncRuntime.useEventLoops`) nothing in it
/// starts libdispatch at all. Cancellation ends a sleep at once with `CancellationError`, as
/// `Task.sleep` does.
public enum Sleep {
    public static func `for`(_ duration: Duration) async throws {
        try await until(NIODeadline.now() + TimeAmount(duration))
    }

    public static func until(_ deadline: ContinuousClock.Instant) async throws {
        try await `for`(ContinuousClock.now.duration(to: deadline))
    }

    static func until(_ deadline: NIODeadline) async throws {
        try Task.checkCancellation()
        let sleeper = Sleeper()
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
                let timer = MultiThreadedEventLoopGroup.singleton.any().scheduleTask(deadline: deadline) { sleeper.end(nil) }
                sleeper.start(c, timer)
            }
        } onCancel: {
            sleeper.end(CancellationError())
        }
    }
}

/// One sleep: resumed exactly once, by its timer or by its cancellation, whichever comes first.
private final class Sleeper: Sendable {
    private struct State {
        var waiter: CheckedContinuation<Void, any Error>?
        var timer: Scheduled<Void>?
        /// Ended before it started (cancelled between the check and the continuation).
        var ended: (any Error)??
    }
    private let state = Mutex(State())

    func start(_ c: CheckedContinuation<Void, any Error>, _ timer: Scheduled<Void>) {
        let early = state.withLock { s -> (any Error)?? in
            if let ended = s.ended { return ended }
            s.waiter = c
            s.timer = timer
            return nil
        }
        guard let early else { return }
        timer.cancel()
        if let error = early { c.resume(throwing: error) } else { c.resume() }
    }

    func end(_ error: (any Error)?) {
        let (waiter, timer) = state.withLock { s -> (CheckedContinuation<Void, any Error>?, Scheduled<Void>?) in
            guard let w = s.waiter else {
                if s.ended == nil { s.ended = .some(error) }
                return (nil, nil)
            }
            defer {
                s.waiter = nil
                s.timer = nil
            }
            return (w, s.timer)
        }
        guard let waiter else { return }
        if let error {
            timer?.cancel()
            waiter.resume(throwing: error)
        } else {
            waiter.resume()
        }
    }
}
