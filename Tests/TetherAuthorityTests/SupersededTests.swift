import Foundation
import Testing
import TetherCore

@testable import TetherAuthority

/// A supervisor applies the newest verdict first; its report on that change answers every older
/// change it still owed an answer — from its own key, never for the change it names or a newer one.
@Suite("acknowledgements: superseded changes")
struct SupersededTests {
    static let host = FleetWatcher(instance: "host-a", surface: "a1", keyName: "agent")

    static func change(_ rid: String) -> Change { Change(actor: "op", reason: nil, requestID: rid, at: "2026-12-07T00:00:00Z") }

    static func report(_ rid: String, _ state: String, key: String = "agent") -> Report {
        Report(
            deviceId: "a1", instance: "host-a", state: state, pids: [42], at: "2026-12-07T00:00:01Z", requestID: rid,
            receivedAt: "2026-12-07T00:00:01Z", keyName: key)
    }

    /// Three changes of one surface, committed in order: revoke r1, restore r2, revoke r3.
    static func tracked() async -> Acknowledgements {
        let acks = Acknowledgements()
        for (i, (action, rid)) in [(ChangeAction.revoke, "r1"), (.restore, "r2"), (.revoke, "r3")].enumerated() {
            await acks.expect(action, subject: "a1", change: change(rid), expected: [host], keep: .seconds(60))
            await acks.saw(rid, revision: UInt64(10 + i))
            await acks.published(rid)
        }
        return acks
    }

    @Test("the newest change's stop answers the older ones: the revoke as stopped, the restore as superseded")
    func newestAnswersOlder() async throws {
        let acks = await Self.tracked()
        await acks.deliver(Self.report("r3", "stopped"))
        #expect(await acks.change("r3")?.acked.map(\.state) == ["stopped"])
        #expect(await acks.change("r2")?.acked.map(\.state) == ["superseded"])
        #expect(await acks.change("r2")?.acked.first?.requestID == "r2")
        #expect(await acks.change("r2")?.acked.first?.pids == [], "superseded names no processes")
        #expect(await acks.change("r1")?.acked.map(\.state) == ["stopped"], "the worker is stopped, as r1 asked")
        #expect(await acks.change("r1")?.missing.isEmpty == true)
    }

    @Test("an older change's report never answers a newer one: the latest always needs its own")
    func olderDoesNotAnswerNewer() async throws {
        let acks = await Self.tracked()
        await acks.deliver(Self.report("r1", "stopped"))
        #expect(await acks.change("r1")?.acked.map(\.state) == ["stopped"])
        #expect(await acks.change("r2")?.acked.isEmpty == true)
        #expect(await acks.change("r3")?.acked.isEmpty == true)
        // r2's report (resumed) supersedes nothing newer either, and r1 is answered already.
        await acks.deliver(Self.report("r2", "resumed"))
        #expect(await acks.change("r2")?.acked.map(\.state) == ["resumed"])
        #expect(await acks.change("r3")?.missing.count == 1)
    }

    @Test("another key's report supersedes nothing; nor does a report on a change this replica never saw")
    func onlyTheHoldersKey() async throws {
        let acks = await Self.tracked()
        await acks.deliver(Self.report("r3", "stopped", key: "stolen"))
        for rid in ["r1", "r2", "r3"] { #expect(await acks.change(rid)?.acked.isEmpty == true, "\(rid)") }
        await acks.deliver(Self.report("r-unknown", "stopped"))
        for rid in ["r1", "r2", "r3"] { #expect(await acks.change(rid)?.acked.isEmpty == true, "\(rid)") }
    }
}

extension SupersededTests {
    @Test(
        "a report a change still waits for is owed (not held to the key's write budget) — once, in a state it accepts, from the holder's key only"
    )
    func owed() async throws {
        let acks = await Self.tracked()
        func owes(_ rid: String?, _ instance: String = "host-a", key: String = "agent", state: String = "stopped") async -> Bool {
            await acks.owes(rid, instance: instance, deviceId: "a1", keyName: key, state: state)
        }
        #expect(await !owes("r3", key: "stolen"), "another key's is not")
        #expect(await !owes("r3", "host-b"), "a watcher the change did not expect")
        #expect(await !owes("r-unknown"))
        #expect(await !owes(nil))
        #expect(await !owes("r3", state: "running"), "a state that does not answer a revoke")
        #expect(await owes("r3"))
        #expect(await !owes("r3"), "once: the same answer again pays its way")
        #expect(await owes("r2", state: "resumed"))
        await acks.deliver(Self.report("r3", "stopped"))
        #expect(await !owes("r1"), "answered by r3's report: owes nothing more")
    }
}
