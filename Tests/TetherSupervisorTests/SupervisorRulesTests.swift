import Testing
import TetherCore
@testable import TetherSupervisor

/// The supervisor's decisions as values: restart policy, never relaunching a denied worker,
/// backoff, and what a reload touches.
@Suite("Supervisor rules")
struct SupervisorRulesTests {
    typealias R = SupervisorRules

    @Test("restart policy by exit code: no, on-failure, always")
    func restartPolicy() {
        func after(_ mode: RestartPolicy.Mode, _ code: Int32) -> R.AfterExit {
            R.afterExit(
                retireOnExit: false, replaceOnExit: false, policy: RestartPolicy(mode: mode), code: code, killedForDeny: false,
                allowedNow: true)
        }
        #expect(after(.no, 1) == .stay(code: 1))
        #expect(after(.onFailure, 0) == .stay(code: 0))
        #expect(after(.onFailure, 137) == .restart)
        #expect(after(.always, 0) == .restart)
    }

    @Test("never relaunched while denied: a worker killed for a deny, or whose surface is denied now, waits for the allow")
    func neverWhileDenied() {
        let always = RestartPolicy(mode: .always)
        #expect(
            R.afterExit(retireOnExit: false, replaceOnExit: false, policy: always, code: 137, killedForDeny: true, allowedNow: true)
                == .waitForAllow,
            "killed for a deny: even if an allow came since, the restart waits for the loop's allow")
        #expect(
            R.afterExit(retireOnExit: false, replaceOnExit: false, policy: always, code: 0, killedForDeny: false, allowedNow: false)
                == .waitForAllow)
        #expect(!R.restartDue(allowedNow: false))
        #expect(R.afterLaunchFailure(refusedAtGate: true, allowedNow: false, policy: always) == .waitForAllow)
        #expect(
            R.afterLaunchFailure(refusedAtGate: true, allowedNow: true, policy: RestartPolicy(mode: .no)) == .restart,
            "a start gate's deny while the watch says allowed is tried again, whatever the policy")
        #expect(R.afterLaunchFailure(refusedAtGate: false, allowedNow: true, policy: RestartPolicy(mode: .onFailure)) == .fail)
        #expect(R.afterLaunchFailure(refusedAtGate: false, allowedNow: true, policy: always) == .restart)
    }

    @Test("a reload's leftovers come first: a retired slot is forgotten, a replaced one launches only if allowed")
    func reloadExits() {
        let p = RestartPolicy(mode: .always)
        #expect(R.afterExit(retireOnExit: true, replaceOnExit: true, policy: p, code: 0, killedForDeny: true, allowedNow: true) == .retire)
        #expect(
            R.afterExit(retireOnExit: false, replaceOnExit: true, policy: p, code: 0, killedForDeny: false, allowedNow: true)
                == .replace(launch: true))
        #expect(
            R.afterExit(retireOnExit: false, replaceOnExit: true, policy: p, code: 0, killedForDeny: false, allowedNow: false)
                == .replace(launch: false))
    }

    @Test("backoff doubles to maxDelay; a run of maxDelay or more starts it over")
    func backoff() {
        let p = RestartPolicy(mode: .always, delay: .seconds(1), maxDelay: .seconds(5))
        var d = p.delay
        var waits: [Duration] = []
        for _ in 0..<5 {
            let (now, next) = R.backoff(d, policy: p)
            waits.append(now)
            d = next
        }
        #expect(waits == [.seconds(1), .seconds(2), .seconds(4), .seconds(5), .seconds(5)])
        #expect(R.delay(after: .seconds(4), current: d, policy: p) == .seconds(5))
        #expect(R.delay(after: .seconds(5), current: d, policy: p) == .seconds(1))
    }

    @Test("a reload touches only what changed: added, changed, removed, unchanged; a slot leaving already is not brought back")
    func reloadPlan() {
        func w(_ name: String, _ command: String = "sleep") -> WorkerConfig {
            WorkerConfig(name: name, spec: WorkerSpec(command: [command, "1"]))
        }
        let running = ["a": w("a"), "b": w("b"), "c": w("c"), "d": w("d")]
        let plan = R.reloadPlan(
            order: ["a", "b", "c", "d"], running: running, leaving: ["d"],
            new: [w("b", "true"), w("a"), w("e"), w("d", "true")])
        #expect(plan.added == ["e"])
        #expect(plan.changed == ["b"])
        #expect(plan.removed == ["c"])
        #expect(plan.unchanged == ["a"])
    }
}
