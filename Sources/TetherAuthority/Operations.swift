import Foundation
import TetherCore

/// A revoke, restore, halt or resume as made: what it left, how many watch streams held its
/// subject when it was made, and — when the caller waited — who acknowledged it.
public struct ChangeResult<Value: Sendable>: Sendable {
    public var value: Value
    public var watchers: Int
    public var acks: AckResult?
}

/// What on-call and supervisors ask of the authority, whichever door they come in by (the API,
/// the console): the routes read a request and write an answer, and call these — never the
/// store. The order that makes an acknowledgement trustworthy (whom to expect, then the change,
/// then its publication) is written once, here.
extension Authority {
    private struct NoSuchSurface: Error {}

    /// Revokes or restores a surface, expecting acknowledgements from every stream that watches
    /// it on any replica; with `wait`, waits for them. nil when no surface has that name.
    public func changeSurface(
        _ deviceId: String, revoke: Bool, change: Change, wait: Duration?
    ) async throws -> ChangeResult<SurfaceRecord>? {
        let watchers = await fleetWatchers(of: [deviceId])
        do {
            let (record, acks) = try await tracked(
                revoke ? .revoke : .restore, subject: deviceId, change: change, watchers: watchers, wait: wait
            ) {
                guard let r = try await setRevoked(deviceId, revoke, change: change) else { throw NoSuchSurface() }
                return r
            }
            return ChangeResult(value: record, watchers: watchers.count, acks: acks)
        } catch is NoSuchSurface {
            return nil
        }
    }

    /// Halts or resumes the org, expecting acknowledgements from every stream of every replica.
    public func changeOrg(halt: Bool, change: Change, wait: Duration?) async throws -> ChangeResult<OrgState> {
        var watchers = await fleetWatchers(of: nil)
        // A resume runs nothing revoked on its own: those surfaces' supervisors keep them
        // stopped and owe the resume no answer.
        if !halt {
            var revoked: [String: Bool] = [:]
            for w in watchers where revoked[w.surface] == nil { revoked[w.surface] = await state.snapshot(w.surface).0?.revoked ?? false }
            watchers = watchers.filter { revoked[$0.surface] != true }
        }
        let (org, acks) = try await tracked(
            halt ? .halt : .resume, subject: OrgSubject.name, change: change, watchers: watchers, wait: wait
        ) {
            try await setHalted(halt, change: change)
        }
        return ChangeResult(value: org, watchers: watchers.count, acks: acks)
    }

    /// A supervisor's report, from a key already checked to hold its instance: stored, counted
    /// toward the change it answers, and relayed to the other replicas (the operator waiting
    /// for it may be on another).
    public func record(_ report: Report) async throws {
        try await store.addReport(report)
        await reported(report)
        if let shared = store as? any SharedStore {
            do { try await shared.publishReport(report) } catch {
                logger.warning(
                    "the report was not relayed to the other replicas", metadata: ["error": "\(error)", "surface": "\(report.deviceId)"])
            }
        }
    }

    // MARK: - reads

    /// A surface's reports, newest first.
    public func reports(of deviceId: String, limit: Int) async throws -> [Report] {
        try await store.reports(deviceId: deviceId, limit: limit)
    }

    /// The audit log, newest first (`AuthorityStore.audit`).
    public func audit(
        limit: Int, deviceId: String?, actor: String?, since: String?, until: String?, before: Int64? = nil
    ) async throws -> [AuditEntry] {
        try await store.audit(limit: limit, deviceId: deviceId, actor: actor, since: since, until: until, before: before)
    }

    /// The newest report of each supervisor on each of `deviceIds`.
    public func latestReports(of deviceIds: [String]) async throws -> [Report] { try await store.latestReports(of: deviceIds) }

    public func usage() async throws -> Usage { try await store.usage() }

    /// Which key holds each instance.
    public func instances() async throws -> [InstanceClaim] { try await store.instances() }

    /// Committed changes after a revision (a resuming stream's catch-up).
    func changes(after revision: UInt64, limit: Int) async throws -> ChangeBatch {
        try await store.changes(after: revision, limit: limit)
    }
}
