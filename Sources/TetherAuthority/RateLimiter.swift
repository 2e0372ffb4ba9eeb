import Foundation
import TetherCore

/// A token bucket per key: `rate` tokens a second, at most `burst` held. What a supervisor
/// sends (a registration per surface at start, a report per stop or resume) stays far below it;
/// a flood from one key is answered 429 and costs the store nothing.
actor RateLimiter {
    let rate: Double
    let burst: Double
    private var buckets: [String: (tokens: Double, at: ContinuousClock.Instant)] = [:]

    init(rate: Double, burst: Double) {
        self.rate = rate
        self.burst = burst
    }

    /// Takes a token for `key`; nil if allowed, else how long until one is there.
    func take(_ key: String, now: ContinuousClock.Instant = .now) -> Duration? {
        var (tokens, at) = buckets[key] ?? (burst, now)
        let elapsed = now - at
        tokens = min(burst, tokens + rate * elapsed.timeInterval)
        if buckets.count > 100_000 { buckets.removeAll(keepingCapacity: true) }  // keys are few; never unbounded
        guard tokens >= 1 else {
            buckets[key] = (tokens, now)
            return .milliseconds(Int64(((1 - tokens) / rate * 1000).rounded(.up)))
        }
        buckets[key] = (tokens - 1, now)
        return nil
    }
}
