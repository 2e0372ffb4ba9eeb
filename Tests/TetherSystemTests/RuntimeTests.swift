import Foundation
import Glibc
import Testing
import TetherRuntime
import TetherTestKit

/// `Sleep`, the supervisor's sleep on the event loops' timers: as long as asked, ended at once
/// by cancellation (before or during), and in the supervisor process no libdispatch at all.
@Suite("the supervisor's async runtime: sleeps on the event loops, no libdispatch", .timeLimit(.minutes(2)))
struct RuntimeTests {
    @Test("a sleep lasts at least its duration, and not much longer on an idle machine")
    func sleepsItsDuration() async throws {
        for ms in [0, 5, 50, 200] {
            let t0 = ContinuousClock.now
            try await Sleep.for(.milliseconds(ms))
            let took = ContinuousClock.now - t0
            #expect(took >= .milliseconds(ms), "\(ms) ms took \(took)")
            #expect(took < .milliseconds(ms) + .seconds(2), "\(ms) ms took \(took)")
        }
        let t0 = ContinuousClock.now
        try await Sleep.until(t0 + .milliseconds(100))
        #expect(ContinuousClock.now - t0 >= .milliseconds(100))
    }

    @Test("cancelled while sleeping: ends at once with CancellationError; cancelled before: never sleeps")
    func cancellation() async throws {
        let t0 = ContinuousClock.now
        let long = Task { try await Sleep.for(.seconds(60)) }
        try await Task.sleep(for: .milliseconds(50))
        long.cancel()
        await #expect(throws: CancellationError.self) { try await long.value }
        #expect(ContinuousClock.now - t0 < .seconds(5))

        let early = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            try await Sleep.for(.seconds(60))
        }
        await #expect(throws: CancellationError.self) { try await early.value }
        #expect(ContinuousClock.now - t0 < .seconds(5))
    }

    @Test("a thousand sleeps at once, cancelled or not, each ends once")
    func many() async throws {
        let ended = await withTaskGroup(of: Bool.self) { group in
            for i in 0..<1000 {
                group.addTask {
                    do {
                        try await Sleep.for(.milliseconds(i % 20))
                        return true
                    } catch { return false }
                }
            }
            return await group.reduce(into: 0) { n, ok in if ok { n += 1 } }
        }
        #expect(ended == 1000)
        let cancelled = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<1000 {
                group.addTask {
                    do {
                        try await Sleep.for(.seconds(60))
                        return false
                    } catch { return error is CancellationError }
                }
            }
            try? await Task.sleep(for: .milliseconds(100))
            group.cancelAll()
            return await group.reduce(into: 0) { n, ok in if ok { n += 1 } }
        }
        #expect(cancelled == 1000)
    }
}
