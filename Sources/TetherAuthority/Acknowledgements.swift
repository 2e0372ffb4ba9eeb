import Foundation
import TetherCore

/// Who acknowledged a change, and who did not in time.
public struct AckResult: Sendable {
    public var acked: [Report]
    /// `instance` of each watcher (and the surface) that had not reported when the wait ended.
    public var missing: [(instance: String, deviceId: String)]
}

/// A revoke, restore, halt or resume made through this replica, and its acknowledgements so
/// far: what `tether revoke --wait`, the console and the `acks_missing` notification read.
public struct TrackedChange: Sendable {
    public var action: ChangeAction
    /// The surface, or `OrgSubject.name` for a halt or resume.
    public var subject: String
    public var change: Change
    /// Every (instance, surface) expected to report, in order.
    public var expected: [(instance: String, deviceId: String)]
    public var acked: [Report]
    /// How long acknowledgements are collected; past it, what is missing stays missing.
    public var until: Date

    public var missing: [(instance: String, deviceId: String)] {
        expected.filter { e in !acked.contains { $0.instance == e.instance && $0.deviceId == e.deviceId } }
    }
}

public enum ChangeAction: String, Sendable, CaseIterable {
    case revoke, restore, halt, resume

    /// The report states that acknowledge it.
    var accepting: Set<String> {
        switch self {
        case .revoke, .halt: Set(ReportState.stops.map(\.rawValue))
        case .restore, .resume: Set(ReportState.runs.map(\.rawValue))
        }
    }
}

/// Collects the acknowledgements of changes: the reports, on the change's request id, of the
/// supervisors that watched the surface when it changed — each counted only from the key that
/// holds that watcher's stream, so another agent key cannot forge the "stopped" on-call reads.
///
/// A change is tracked from before it is published (no fast report can arrive before anyone
/// listens for it) until `keep` after it; the newest `kept` changes stay readable after that.
///
/// **Superseded.** A supervisor applies the newest verdict first (`Enforcer`): of a burst of
/// changes it acts on the last and skips the ones in between. Its report on a change therefore
/// answers every older change it still owes an answer: each is counted for that watcher as
/// `superseded` (or as the report's own state, when that is what the older change asked for — a
/// revoke overtaken by a halt: stopped). Only from the key that holds the watcher's stream, and
/// only for changes older by revision (a stream delivers changes in revision order): a report
/// can never supersede the change it names or a newer one, so the latest change always needs
/// its own report.
actor Acknowledgements {
    private struct Pair: Hashable {
        let instance: String
        let deviceId: String
    }

    private struct Entry {
        var tracked: TrackedChange
        var accepting: Set<String>
        var keys: [Pair: Set<String>]
        var pending: Set<Pair>
        var waiters: [UUID: CheckedContinuation<AckResult, Never>] = [:]
        var published = false
        /// Watchers whose report was let past the key's write budget (`owes`): once each.
        var exempted: Set<Pair> = []
    }

    private var entries: [String: Entry] = [:]
    /// Request ids, oldest first.
    private var order: [String] = []
    static let kept = 100
    /// The revisions of the latest changes committed or replicated here, by request id: what a
    /// report's change is placed by. Bounded (`revisionsKept`), oldest forgotten first.
    private var revisions: [String: UInt64] = [:]
    private var revisionOrder: [String] = []
    private var revisionHead = 0
    static let revisionsKept = 4096
    /// Fired when a report is counted (the console's live view).
    private let onChange: @Sendable () -> Void

    init(onChange: @escaping @Sendable () -> Void = {}) { self.onChange = onChange }

    /// Starts collecting for `change` (not yet published) from `expected`, for `keep`.
    func expect(_ action: ChangeAction, subject: String, change: Change, expected: [FleetWatcher], keep: Duration) {
        var keys: [Pair: Set<String>] = [:]
        for w in expected { keys[Pair(instance: w.instance, deviceId: w.surface), default: []].insert(w.keyName) }
        let pairs = keys.keys.sorted { ($0.instance, $0.deviceId) < ($1.instance, $1.deviceId) }
        let tracked = TrackedChange(
            action: action, subject: subject, change: change, expected: pairs.map { ($0.instance, $0.deviceId) },
            acked: [], until: Date().addingTimeInterval(keep.timeInterval))
        entries[change.requestID] = Entry(tracked: tracked, accepting: action.accepting, keys: keys, pending: Set(pairs))
        order.append(change.requestID)
        if order.count > Self.kept, let old = order.first, entries[old]?.waiters.isEmpty ?? true {
            order.removeFirst()
            entries[old] = nil
        }
    }

    /// The change was made: it shows from now on.
    func published(_ requestID: String) {
        entries[requestID]?.published = true
        onChange()
    }

    /// The change failed: nothing to collect.
    func cancel(_ requestID: String) {
        guard let e = entries.removeValue(forKey: requestID) else { return }
        order.removeAll { $0 == requestID }
        for c in e.waiters.values { c.resume(returning: AckResult(acked: [], missing: [])) }
    }

    /// Waits until every expected report is in, or `timeout` passes. Any number may wait.
    func wait(_ requestID: String, timeout: Duration) async -> AckResult {
        guard let e = entries[requestID] else { return AckResult(acked: [], missing: []) }
        if e.pending.isEmpty { return result(e) }
        let id = UUID()
        return await withCheckedContinuation { c in
            entries[requestID]?.waiters[id] = c
            Task { [weak self] in
                try? await Task.sleep(for: timeout)
                await self?.endWait(requestID, id)
            }
        }
    }

    private func endWait(_ requestID: String, _ id: UUID) {
        guard let e = entries[requestID], let c = e.waiters[id] else { return }
        entries[requestID]?.waiters[id] = nil
        c.resume(returning: result(e))
    }

    /// A change was committed (here or on another replica) at `revision`.
    func saw(_ requestID: String, revision: UInt64) {
        guard revisions.updateValue(revision, forKey: requestID) == nil else { return }
        revisionOrder.append(requestID)
        if revisionOrder.count - revisionHead > Self.revisionsKept {
            revisions[revisionOrder[revisionHead]] = nil
            revisionHead += 1
            if revisionHead > Self.revisionsKept {
                revisionOrder.removeFirst(revisionHead)
                revisionHead = 0
            }
        }
    }

    func deliver(_ report: Report) {
        guard let rid = report.requestID else { return }
        let pair = Pair(instance: report.instance, deviceId: report.deviceId)
        var counted = false
        if let e = entries[rid], e.accepting.contains(report.state) { counted = count(report, as: report.state, for: rid, pair) }
        // Older changes this watcher still owes an answer are answered by this one.
        if let revision = revisions[rid] {
            for old in order where old != rid {
                guard let e = entries[old], let r = revisions[old], r < revision, e.pending.contains(pair) else { continue }
                counted = count(report, as: e.accepting.contains(report.state) ? report.state : Self.superseded, for: old, pair) || counted
            }
        }
        if counted { onChange() }
    }

    /// The state an overtaken change is counted as when the report's own state is not one it asked for.
    static let superseded = "superseded"

    /// Counts `report` (as `state`) for change `rid` and watcher `pair`, from the key that holds
    /// the pair's stream, while the change is collected; false when it does not count.
    private func count(_ report: Report, as state: String, for rid: String, _ pair: Pair) -> Bool {
        guard var e = entries[rid], Date() <= e.tracked.until, e.keys[pair]?.contains(report.keyName) == true,
            e.pending.remove(pair) != nil
        else { return false }
        var ack = report
        ack.state = state
        ack.requestID = rid
        if state != report.state { ack.pids = [] }
        e.tracked.acked.append(ack)
        if e.pending.isEmpty {
            for c in e.waiters.values { c.resume(returning: result(e)) }
            e.waiters = [:]
        }
        entries[rid] = e
        return true
    }

    /// A change and its acknowledgements so far.
    func change(_ requestID: String) -> TrackedChange? { entries[requestID]?.tracked }

    /// Whether change `requestID` still waits for this watcher's report, from this key: such a
    /// report is what an operator waits for, and is not held to the key's write budget (an
    /// org halt of 2,000 workers on one key is 2,000 of them at once). Bounded by the changes
    /// made and the watchers they expected: a key cannot make more of them by sending more.
    /// Only for a state the change accepts, and once per watcher: a report that would not
    /// answer it (a `running` for a revoke) gets no pass, nor does the same answer sent again.
    func owes(_ requestID: String?, instance: String, deviceId: String, keyName: String, state: String) -> Bool {
        guard let requestID, var e = entries[requestID], Date() <= e.tracked.until, e.accepting.contains(state) else { return false }
        let pair = Pair(instance: instance, deviceId: deviceId)
        guard e.pending.contains(pair), e.keys[pair]?.contains(keyName) == true, e.exempted.insert(pair).inserted else { return false }
        entries[requestID] = e
        return true
    }

    /// The changes made through this replica, newest first.
    func recent(limit: Int = 20) -> [TrackedChange] {
        order.reversed().lazy.compactMap { self.entries[$0] }.filter(\.published).prefix(limit).map(\.tracked)
    }

    private func result(_ e: Entry) -> AckResult {
        AckResult(
            acked: e.tracked.acked,
            missing: e.pending.sorted { ($0.instance, $0.deviceId) < ($1.instance, $1.deviceId) }.map { ($0.instance, $0.deviceId) })
    }

    /// Server shutdown: every wait ends with what it has.
    func shutdown() {
        for (rid, e) in entries {
            for c in e.waiters.values { c.resume(returning: result(e)) }
            entries[rid]?.waiters = [:]
        }
    }
}
