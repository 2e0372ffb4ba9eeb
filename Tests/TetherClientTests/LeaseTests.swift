import Foundation
import Testing
import TetherClient
import TetherCore

/// The lease rules, on a clock the test sets: no process, no server, no sleep.
@Suite("Leases: fail closed, on the supervisor's clock")
struct LeaseTests {
    @Test func leaseBookkeepingFailsClosed() {
        let now = Date()
        func decision(_ allowed: Bool = true, _ code: DecisionCode = .allow, issued: Date?, expires: Date?) -> Decision {
            Decision(
                deviceId: "a1", allowed: allowed, code: code, requestID: "r",
                issuedAt: issued.map(Timestamp.string) ?? "", expiresAt: expires.map(Timestamp.string) ?? "")
        }
        var l = Lease(surface: "a1", failClosedAfter: 30)
        #expect(l.verdict(at: now).code == .authorityUnreachable, "nothing known yet: deny")
        l.apply(decision(issued: now, expires: now.addingTimeInterval(15)), at: now)
        #expect(l.verdict(at: now.addingTimeInterval(14)).allowed)
        #expect(l.verdict(at: now.addingTimeInterval(15.01)).code == .leaseExpired)
        // An authority clock an hour off either way: the lease's length counts from receipt.
        for skew in [-3600.0, 3600.0] {
            l.apply(decision(issued: now.addingTimeInterval(skew), expires: now.addingTimeInterval(skew + 15)), at: now)
            #expect(l.verdict(at: now.addingTimeInterval(1)).allowed, "skew \(skew)")
            #expect(l.verdict(at: now.addingTimeInterval(16)).code == .leaseExpired, "skew \(skew)")
        }
        // MachineID: no lease fields, so fail_closed_after applies.
        l.apply(decision(issued: nil, expires: nil), at: now)
        #expect(l.verdict(at: now.addingTimeInterval(29)).allowed)
        #expect(l.verdict(at: now.addingTimeInterval(31)).code == .leaseExpired)
        // A lease of no length, a deny, a fault.
        l.apply(decision(issued: now, expires: now), at: now)
        #expect(l.verdict(at: now).code == .leaseExpired)
        l.apply(decision(false, .deviceRevoked, issued: now, expires: now.addingTimeInterval(15)), at: now)
        #expect(l.verdict(at: now).code == .deviceRevoked)
        l.apply(decision(true, .deviceRevoked, issued: now, expires: now.addingTimeInterval(15)), at: now)
        #expect(!l.verdict(at: now).allowed, "allowed=true with a deny code is a deny")
        l.apply(decision(issued: now, expires: now.addingTimeInterval(15)), at: now)
        l.fail(.badSignature)
        #expect(l.verdict(at: now).code == .badSignature, "a fault stands until a good decision")
        l.apply(decision(issued: now, expires: now.addingTimeInterval(15)), at: now)
        #expect(l.verdict(at: now).allowed)
    }

    @Test("a repeated allow does not renew; an authority clock stepped back an hour starts a new baseline")
    func repeatsAndClockSteps() {
        let now = Date()
        func decision(issued: Date, expires: Date) -> Decision {
            Decision(
                deviceId: "a1", allowed: true, code: .allow, requestID: "r",
                issuedAt: Timestamp.string(issued), expiresAt: Timestamp.string(expires))
        }
        var l = Lease(surface: "a1", failClosedAfter: 15)
        l.apply(decision(issued: now, expires: now.addingTimeInterval(15)), at: now)
        // The same answer again 10 s later (a cache, a stuck clock): the lease still ends at 15 s.
        l.apply(decision(issued: now, expires: now.addingTimeInterval(15)), at: now.addingTimeInterval(10))
        #expect(l.verdict(at: now.addingTimeInterval(16)).code == .leaseExpired)
        // A minute back is still a repeat, not a renewal.
        l.apply(decision(issued: now.addingTimeInterval(-60), expires: now.addingTimeInterval(-45)), at: now.addingTimeInterval(12))
        #expect(l.verdict(at: now.addingTimeInterval(16)).code == .leaseExpired)
        // An hour back: the authority's clock was stepped; the lease counts from receipt again.
        l.apply(decision(issued: now.addingTimeInterval(-3600), expires: now.addingTimeInterval(-3585)), at: now.addingTimeInterval(14))
        #expect(l.verdict(at: now.addingTimeInterval(28)).allowed)
        #expect(l.verdict(at: now.addingTimeInterval(29.5)).code == .leaseExpired)
    }
}
