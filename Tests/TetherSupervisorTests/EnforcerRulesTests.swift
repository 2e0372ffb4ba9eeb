import Glibc
import Testing
import TetherClient
import TetherCore
@testable import TetherSupervisor

/// The enforcer's rules as values: each event and each confirmed outcome, no worker, no clock.
@Suite("Enforcer rules")
struct EnforcerRulesTests {
    static let allow = Verdict(surface: "a1", allowed: true, code: .allow, requestID: "r-allow", until: nil)
    static let deny = Verdict(surface: "a1", allowed: false, code: .deviceRevoked, requestID: "r-deny", until: nil)

    @Test("stop: a deny freezes; a second deny does nothing; an allow thaws; a deny again freezes again")
    func stopPolicy() {
        var r = EnforcerRules(policy: StopPolicy(onRevoke: .stop))
        #expect(r.on(.verdict(Self.allow, at: .now)) == .none, "an allow of a running worker changes nothing")
        #expect(r.on(.verdict(Self.deny, at: .now)) == .freeze(Self.deny))
        #expect(r.after(.frozen) == .none)
        #expect(r.phase == .frozen)
        #expect(r.on(.verdict(Self.deny, at: .now)) == .none, "frozen already")
        #expect(r.on(.verdict(Self.allow, at: .now)) == .thaw(Self.allow))
        #expect(r.after(.thawed) == .none && r.phase == .running)
        #expect(r.on(.verdict(Self.deny, at: .now)) == .freeze(Self.deny))
        #expect(r.killedBy == nil, "a freeze is not a kill")
    }

    @Test("fail closed: a freeze the kernel does not confirm becomes a kill, and the worker counts as denied")
    func freezeFails() {
        var r = EnforcerRules(policy: StopPolicy(onRevoke: .stop))
        _ = r.on(.verdict(Self.deny, at: .now))
        #expect(r.after(.freezeFailed) == .kill(Self.deny))
        #expect(r.after(.killed(confirmed: true)) == .none)
        #expect(r.phase == .killed && r.killedBy == Self.deny)
        #expect(r.on(.verdict(Self.allow, at: .now)) == .none, "a killed worker is never thawed")
        #expect(r.on(.shutdown(grace: .seconds(1))) == .none)
    }

    @Test("a thaw the kernel does not confirm leaves the worker held; the next allow tries again")
    func thawFails() {
        var r = EnforcerRules(policy: StopPolicy(onRevoke: .stop))
        _ = r.on(.verdict(Self.deny, at: .now))
        _ = r.after(.frozen)
        _ = r.on(.verdict(Self.allow, at: .now))
        #expect(r.after(.thawFailed) == .none && r.phase == .frozen)
        #expect(r.on(.verdict(Self.allow, at: .now)) == .thaw(Self.allow))
    }

    @Test("kill_after: scheduled at each freeze; fires only for the freeze it was scheduled for")
    func killAfter() {
        var r = EnforcerRules(policy: StopPolicy(onRevoke: .stop, killAfter: .seconds(600)))
        _ = r.on(.verdict(Self.deny, at: .now))
        guard case .scheduleKill(let after, let first) = r.after(.frozen) else {
            Issue.record("no kill_after scheduled")
            return
        }
        #expect(after == .seconds(600))
        // Thawed and frozen again before it fires: the first one is stale.
        _ = r.on(.verdict(Self.allow, at: .now))
        _ = r.after(.thawed)
        _ = r.on(.verdict(Self.deny, at: .now))
        guard case .scheduleKill(_, let second) = r.after(.frozen) else {
            Issue.record("no second kill_after")
            return
        }
        #expect(second != first)
        #expect(r.on(.killAfter(epoch: first)) == .none, "stale")
        #expect(r.on(.killAfter(epoch: second)) == .kill(Self.deny))
        _ = r.after(.killed(confirmed: true))
        #expect(r.killedBy == Self.deny)
    }

    @Test("kill and term: a deny kills, or SIGTERMs with the grace period and kills what outlives it")
    func killAndTerm() {
        var k = EnforcerRules(policy: StopPolicy(onRevoke: .kill))
        #expect(k.on(.verdict(Self.deny, at: .now)) == .kill(Self.deny))
        var t = EnforcerRules(policy: StopPolicy(onRevoke: .term, grace: .seconds(3)))
        #expect(t.on(.verdict(Self.deny, at: .now)) == .terminate(grace: .seconds(3), Self.deny))
        #expect(t.phase == .stopping)
        #expect(t.on(.verdict(Self.deny, at: .now)) == .none, "a stop in progress is not begun again")
        #expect(t.after(.outlivedGrace) == .kill(Self.deny))
        _ = t.after(.killed(confirmed: false))
        #expect(t.phase == .killed && t.killedBy == Self.deny, "an unconfirmed kill still ends the run as denied")
    }

    @Test("signals: passed on while running; an ending signal to a frozen worker kills it; a shutdown terminates without a verdict")
    func signals() {
        var r = EnforcerRules(policy: StopPolicy(onRevoke: .stop))
        #expect(r.on(.signal(SIGUSR1)) == .signal(SIGUSR1))
        #expect(r.on(.signal(SIGTERM)) == .signal(SIGTERM), "a running worker handles its own SIGTERM")
        _ = r.on(.verdict(Self.deny, at: .now))
        _ = r.after(.frozen)
        #expect(r.on(.signal(SIGUSR1)) == .signal(SIGUSR1))
        #expect(r.on(.signal(SIGINT)) == .kill(Self.deny))
        var s = EnforcerRules(policy: StopPolicy(onRevoke: .stop, grace: .seconds(2)))
        #expect(s.on(.shutdown(grace: .seconds(5))) == .terminate(grace: .seconds(5), nil))
        _ = s.after(.endedOnTerm)
        #expect(s.phase == .killed && s.killedBy == nil, "a shutdown is not a deny")
        #expect(s.on(.tick) == .liveness)
    }
}

extension EnforcerRulesTests {
    @Test("a thaw the kernel does not confirm keeps the pending kill_after: the worker stays frozen, so it is still killed in time")
    func killAfterSurvivesAFailedThaw() {
        var r = EnforcerRules(policy: StopPolicy(onRevoke: .stop, killAfter: .seconds(60)))
        _ = r.on(.verdict(Self.deny, at: .now))
        guard case .scheduleKill(_, let epoch) = r.after(.frozen) else {
            Issue.record("no kill_after scheduled")
            return
        }
        #expect(r.on(.verdict(Self.allow, at: .now)) == .thaw(Self.allow))
        #expect(r.after(.thawFailed) == .none && r.phase == .frozen)
        #expect(
            r.on(.killAfter(epoch: epoch)) == .kill(Self.allow), "the last verdict names the kill; the worker was frozen past kill_after")
    }
}

extension EnforcerRulesTests {
    static func verdict(_ allowed: Bool, _ requestID: String?) -> Verdict {
        Verdict(surface: "a1", allowed: allowed, code: allowed ? .allow : .deviceRevoked, requestID: requestID, until: nil)
    }

    @Test("a new change that needs no step is acknowledged with the state the worker is in; the first verdict and a repeat are not")
    func acknowledgesChangesThatNeedNoStep() {
        var r = EnforcerRules(policy: StopPolicy(onRevoke: .stop))
        #expect(r.on(.verdict(Self.verdict(true, "start"), at: .now)) == .none, "the decision it started on: reported as started")
        #expect(r.on(.verdict(Self.verdict(true, "start"), at: .now)) == .none, "said again by a reconnecting stream")
        // A revoke and its restore, overtaken before they reached the worker: the restore is new.
        let restore = Self.verdict(true, "r-restore")
        #expect(r.on(.verdict(restore, at: .now)) == .acknowledge(restore, .running))
        #expect(r.on(.verdict(restore, at: .now)) == .none)
        let deny = Self.verdict(false, "r-deny")
        #expect(r.on(.verdict(deny, at: .now)) == .freeze(deny))
        _ = r.after(.frozen)
        // A halt of a frozen worker: it is stopped already, and says so for the halt.
        let halt = Self.verdict(false, "r-halt")
        #expect(r.on(.verdict(halt, at: .now)) == .acknowledge(halt, .stopped))
        #expect(r.on(.verdict(Self.verdict(false, nil), at: .now)) == .none, "a lease that ran out is no change to acknowledge")
        var killed = EnforcerRules(policy: StopPolicy(onRevoke: .kill))
        _ = killed.on(.verdict(Self.verdict(true, "a"), at: .now))
        _ = killed.on(.verdict(deny, at: .now))
        _ = killed.after(.killed(confirmed: true))
        #expect(killed.on(.verdict(Self.verdict(true, "b"), at: .now)) == .none, "a killed worker acknowledges nothing more")
    }
}
