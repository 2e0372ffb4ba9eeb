import Foundation
import Synchronization
import TetherCore

/// The holders this replica checked lately, so that a supervisor's reports and reconnects cost
/// no database write each: an entry vouches for its key for `Authority.claimRecheck`, and,
/// while the store does not answer, for as long as the store is away (the key held the
/// instance when it was last asked; a new claim waits for the store).
final class InstanceHolders: Sendable {
    private struct Seen {
        var key: String
        var at: ContinuousClock.Instant
    }
    private let seen = Mutex<[String: Seen]>([:])
    /// When the open streams' claims were last marked seen.
    private let touched = Mutex<ContinuousClock.Instant?>(nil)
    static let kept = 200_000

    func holder(_ instance: String) -> (key: String, age: Duration)? {
        seen.withLock { $0[instance].map { ($0.key, ContinuousClock.now - $0.at) } }
    }

    func held(_ instance: String, by key: String) {
        seen.withLock {
            if $0.count >= Self.kept { $0 = [:] }
            $0[instance] = Seen(key: key, at: .now)
        }
    }

    func forget(_ instance: String) { _ = seen.withLock { $0.removeValue(forKey: instance) } }

    /// True once every `every`: time to mark the open streams' claims seen.
    func touchDue(every: Duration) -> Bool {
        touched.withLock {
            if let t = $0, ContinuousClock.now - t < every { return false }
            $0 = .now
            return true
        }
    }
}

extension Authority {
    /// How long a holder checked against the store is taken on trust here; and, while the
    /// store does not answer, how old a check may be and still vouch.
    static let claimRecheck: Duration = .seconds(10)
    static let claimTrustWhileStoreAway: Duration = .seconds(60)
    /// The prefix of the name a stream gets when it names no instance (one per request): never
    /// claimed, and never an acknowledgement anyone waits for by name.
    static let anonymousPrefix = "anonymous-"

    /// Lets `key` act as `instance` — watch its stream, report as it — when the key holds it or
    /// claims it now; 403 when another key holds it, or another key is scoped to it. A claim of
    /// a key that is revoked or gone is taken over (audited), as is any claim by the key
    /// scoped to the instance. Operator keys act as any instance (they may stop everything
    /// anyway) and claim nothing. A new claim is a write: it takes from the key's write budget.
    func claim(_ instance: String, by key: KeyRecord, requestID: String) async throws {
        guard key.role == .agent, !instance.hasPrefix(Self.anonymousPrefix) || key.instance == instance else { return }
        let keys = await state.currentKeys()
        let scoped = key.instance == instance
        if !scoped,
            let owner = keys.first(where: { $0.role == .agent && $0.revokedAt == nil && $0.instance == instance && $0.name != key.name })
        {
            throw APIError.forbidden(
                "the instance \"\(instance)\" belongs to another key (\"\(owner.name)\" is scoped to it)", key: key.name)
        }
        let cached = holders.holder(instance)
        if let cached, cached.key == key.name, cached.age < Self.claimRecheck { return }
        if cached?.key != key.name, let wait = await claimWrites.take(key.name) {
            var e = APIError(
                .tooManyRequests, "RATE_LIMITED",
                "the key \"\(key.name)\" claims instances faster than \(Int(configuration.writeRate)) a second; retry after \(DurationText.format(wait))"
            )
            e.retryAfter = max(1, Int(wait.components.seconds) + 1)
            throw e
        }
        func change() -> Change { Change(actor: key.name, reason: nil, requestID: requestID, at: Timestamp.string(Date())) }
        var held: InstanceClaim
        do {
            held = try await store.claimInstance(
                instance, keyName: key.name,
                takeOver: scoped ? "the key \(key.name) is scoped to this instance" : nil, change: change())
            // The holder's key was revoked or deleted: a rebuilt host's new key takes over.
            if held.keyName != key.name, !keys.contains(where: { $0.name == held.keyName && $0.revokedAt == nil }) {
                held = try await store.claimInstance(
                    instance, keyName: key.name,
                    takeOver: "the key \(held.keyName) is revoked or gone", change: change())
            }
        } catch {
            if let cached, cached.key == key.name, cached.age < Self.claimTrustWhileStoreAway {
                logger.warning(
                    "an instance's holder was taken from this replica's memory: the store did not answer",
                    metadata: ["instance": "\(instance)", "error": "\(error)"])
                return
            }
            logger.warning(
                "an instance's holder could not be checked: the store did not answer",
                metadata: ["instance": "\(instance)", "error": "\(error)"])
            throw APIError(
                .serviceUnavailable, "NOT_READY",
                "the instance's holder could not be checked: this replica's store did not answer; ask again or another replica")
        }
        guard held.keyName == key.name else {
            throw APIError.forbidden(
                "the instance \"\(instance)\" is held by another key since \(held.claimedAt): each supervisor watches and reports with its own key; if this host was rebuilt with a new key, an operator runs `tether instances release \(instance)`",
                key: key.name)
        }
        holders.held(instance, by: key.name)
    }

    /// Ends an instance's claim, and the streams open as it here (other replicas' streams of the
    /// old key stay open until they reconnect, but nothing they report is counted).
    func release(_ instance: String, change: Change) async throws -> InstanceClaim? {
        let held = try await store.releaseInstance(instance, change: change)
        holders.forget(instance)
        await hub.end(instance: instance)
        return held
    }

    /// How long a claim may go unused before it is forgotten: the report retention, but never
    /// less than a day (a supervisor cut off for an hour comes back to its own instance).
    var claimIdleLimit: Duration { max(configuration.reportRetention, .seconds(24 * 3600)) }

    /// Hourly (or four times within the idle limit): the claims of instances with streams open
    /// here are marked seen, so that a supervisor connected for longer than the idle limit
    /// keeps its instance.
    func touchOpenInstances() async {
        guard holders.touchDue(every: min(.seconds(3600), claimIdleLimit / 4)) else { return }
        let names = Array(Set(await hub.watcherKeys(of: nil).map(\.instance)))
        do { try await store.touchInstances(names, at: Timestamp.string(Date())) } catch {
            logger.warning("the open streams' instances were not marked seen", metadata: ["error": "\(error)"])
        }
    }
}
