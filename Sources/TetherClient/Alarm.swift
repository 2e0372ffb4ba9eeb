import Synchronization
import TetherRuntime

/// A sleep that ends at its deadline or as soon as someone rings, whichever comes first: lets
/// a loop sleep until the next thing it has to do instead of waking every second to look.
/// A ring while nobody sleeps is kept for the next sleep, so a ring never gets lost between a
/// loop's look and its sleep.
final class Alarm: Sendable {
    private struct State {
        var sleeper: CheckedContinuation<Void, Never>?
        var timer: Task<Void, Never>?
        var rung = false
    }
    private let state = Mutex(State())

    /// Sleeps for `duration` (forever when nil) or until rung or cancelled.
    func sleep(for duration: Duration?) async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let now = state.withLock { s -> Bool in
                    if s.rung {
                        s.rung = false
                        return true
                    }
                    s.sleeper = c
                    if let duration {
                        s.timer = Task { [self] in
                            do { try await Sleep.for(duration) } catch { return }
                            ring()
                        }
                    }
                    return false
                }
                if now { c.resume() }
            }
        } onCancel: {
            ring()
        }
    }

    /// Wakes the sleeper now, or the next one to sleep.
    func ring() {
        let (sleeper, timer) = state.withLock { s -> (CheckedContinuation<Void, Never>?, Task<Void, Never>?) in
            guard let c = s.sleeper else {
                s.rung = true
                return (nil, nil)
            }
            let t = s.timer
            s.sleeper = nil
            s.timer = nil
            return (c, t)
        }
        timer?.cancel()
        sleeper?.resume()
    }
}
