import AsyncHTTPClient
import Synchronization
import Foundation
import Logging
import NIOCore
import TetherCore
import TetherRuntime

public struct WatchSettings: Sendable {
    /// How often to validate each surface while the watch stream is down (or unsupported).
    public var pollInterval: Duration = .seconds(1)
    /// How long an allow is good from an authority that sends no lease (MachineID).
    public var failClosedAfter: Duration = .seconds(15)
    public var reconnectMin: Duration = .milliseconds(100)
    public var reconnectMax: Duration = .seconds(5)
    /// This supervisor's name in the authority's watcher list and acknowledgements.
    public var instance: String
    /// Hold a watch stream (push); false polls only (an authority without one, or by choice).
    public var watch = true

    public init(instance: String) { self.instance = instance }
}

/// Keeps the verdict of a set of surfaces current: one watch stream for all of them (signed
/// events; revisions that never go back), polling while the stream is down, reconnecting with
/// backoff — to the next authority of the list when one fails (replicas of one deployment) —
/// resuming with `Last-Event-ID`, and a timer that turns an unrenewed allow into
/// `LEASE_EXPIRED` at the instant its lease ends. Emits a `Verdict` whenever one changes.
public final class SurfaceWatcher: Sendable {
    /// The authority: one, or the replicas of one deployment (`AuthorityClient.endpoints`).
    let client: AuthorityClient
    let verifier: DecisionVerifier?
    let settings: WatchSettings
    let logger: Logger
    let state: WatchState
    let observe: @Sendable (WatchObservation) -> Void
    public let verdicts: AsyncStream<Verdict>

    /// Changes the set of surfaces watched (a supervisor's configuration was reloaded): leases
    /// of the surfaces kept are kept; the stream reconnects with the new set.
    public func setSurfaces(_ surfaces: [String]) async {
        await state.setSurfaces(surfaces)
    }

    /// One surface's verdict now, from its lease (expired leases deny); nil when not watched.
    public func verdict(of surface: String) async -> Verdict? {
        await state.verdict(of: surface)
    }

    /// Every surface's current verdict and the age of its last decision.
    public func snapshot() async -> [(verdict: Verdict, age: TimeInterval?)] {
        await state.snapshot()
    }

    /// `initial`: decisions already known (the one a worker was started on), so the watcher
    /// does not begin with "no decision yet" — a deny — for them.
    public init(
        client: AuthorityClient, surfaces: [String], verifier: DecisionVerifier?, settings: WatchSettings, initial: [Decision] = [],
        logger: Logger,
        observe: @escaping @Sendable (WatchObservation) -> Void = { _ in }
    ) {
        self.observe = observe
        self.client = client
        self.verifier = verifier
        self.settings = settings
        self.logger = logger
        let (stream, continuation) = AsyncStream<Verdict>.makeStream()
        verdicts = stream
        state = WatchState(
            surfaces: surfaces, failClosedAfter: settings.failClosedAfter.timeInterval, initial: initial, continuation: continuation)
    }

    /// Moves to the next replica (after `failed` failed), once per failure.
    func failOver(from failed: Int) {
        let n = client.endpoints.count
        if client.failOver(from: failed) {
            logger.warning(
                "failing over to the next authority",
                metadata: ["from": "\(client.endpoints[failed].url)", "to": "\(client.endpoints[(failed + 1) % n].url)"])
        }
    }

    /// Runs until cancelled.
    public func run() async {
        await withTaskGroup(of: Void.self) { group in
            if settings.watch { group.addTask { await self.streamLoop() } }
            group.addTask { await self.pollLoop() }
            group.addTask { await self.expiryLoop() }
            await group.waitForAll()
        }
        await state.finish()
    }

    // MARK: - the stream

    func streamLoop() async {
        var backoff = settings.reconnectMin
        var refusals = 0
        while !Task.isCancelled {
            // Each connection is a task of its own, so the expiry loop can drop a stream that
            // stopped renewing (connected, but silent past a lease).
            let index = client.preferredIndex
            let connection = Task { try await self.connect(to: client.endpoints[index]) }
            await state.setConnection(connection)
            let result = await connection.result
            await state.setConnection(nil)
            await state.setStreaming(false)
            if Task.isCancelled {
                connection.cancel()
                return
            }
            switch result {
            case .success(let hadEvents):
                if hadEvents { backoff = settings.reconnectMin }
                // A stream that was up ended: the next one asks for every surface again.
                await state.readmitExcluded()
            case .failure(is PartialWatchRefusal):
                // Refused for some surfaces only: the rest, at once (the set only shrinks).
                continue
            case .failure(let error):
                observe(.error("watch_" + Self.kind(of: error)))
                failOver(from: index)
                if case ClientError.refused = error { refusals += 1 } else { refusals = 0 }
                // An authority without a watch endpoint (MachineID) refuses every time: say so once.
                let level: Logger.Level = refusals > 1 ? .debug : .info
                logger.log(
                    level: level, "watch stream down; polling until it is back",
                    metadata: [
                        "error": "\(error)", "retry_in": "\(backoff)", "authority": "\(client.endpoints[index].url)",
                        "next": "\(client.endpoint.url)",
                    ])
            }
            try? await Sleep.for(backoff)
            backoff = min(backoff * 2, settings.reconnectMax)
        }
    }

    /// One watch connection, until it ends or fails. Returns whether any decision came.
    func connect(to endpoint: AuthorityEndpoint) async throws -> Bool {
        let surfaces = await state.streamSurfaces
        guard !surfaces.isEmpty else {
            // Nothing to watch (yet): idle until the set changes.
            try await Sleep.for(.seconds(3600))
            return false
        }
        let query = surfaces.map { "deviceId=\($0)" }.joined(separator: "&") + "&instance=\(settings.instance)"
        var req = HTTPClientRequest(url: endpoint.url + "/api/v1/devices/watch?" + query)
        req.headers.add(name: "x-org-key", value: endpoint.key)
        // Resume where the last stream (to any replica) ended: the changes missed come first.
        let resumeAfter = await state.lastEventID
        if let last = resumeAfter { req.headers.add(name: "Last-Event-ID", value: String(last)) }
        let resp = try await client.http.execute(req, timeout: .hours(24 * 365))
        guard resp.status == .ok else {
            let status = Int(resp.status.code)
            // Refused because of some of the names (out of the key's scope, gone): those are
            // denied, and the stream carries on for the rest — not a fall back to polling all
            // of them, which one bad name would otherwise cost every surface of the supervisor.
            if status == 403 || status == 404, let named = await Self.refusedNames(resp) {
                let drop = Set(named).intersection(surfaces)
                if !drop.isEmpty, drop.count < surfaces.count {
                    await state.exclude(drop)
                    observe(.error("watch_refused_surfaces"))
                    logger.warning(
                        "the authority refused the watch for some surfaces: denied, the stream carries the rest",
                        metadata: [
                            "refused": "\(drop.sorted().prefix(10).joined(separator: ","))", "count": "\(drop.count)",
                            "status": "\(status)",
                            "authority": "\(endpoint.url)",
                        ])
                    throw PartialWatchRefusal()
                }
            }
            throw ClientError.refused(status: status, code: "HTTP_\(resp.status.code)", message: "watch refused", requestID: nil)
        }
        await state.setStreaming(true)
        logger.info(
            "watch stream up", metadata: ["authority": "\(endpoint.url)", "resumed_after": "\(resumeAfter.map(String.init) ?? "none")"])
        var parser = SSEParser()
        var hadEvents = false
        let watched = Set(surfaces)
        do {
            for try await chunk in resp.body {
                for e in try parser.feed(chunk.readableBytesView) {
                    if e.event == "shutdown" { throw ClientError.unreachable("the authority is shutting down") }
                    if let id = e.id.flatMap(UInt64.init) { await state.sawEventID(id) }
                    guard e.event == "decision" else { continue }
                    guard let d = Decision(jsonData: Data(e.data.utf8)), watched.contains(d.deviceId) || d.deviceId == OrgSubject.name
                    else {
                        await state.failAll(.badResponse)
                        throw ClientError.badResponse("an event that is not a decision for our surfaces")
                    }
                    // A key to learn is fetched from any replica that answers (the client's list).
                    if let verifier, !(await verifier.verify(d, learningFrom: client) && d.kind != .answer) {
                        logger.error(
                            "watch event failed verification: denying",
                            metadata: ["surface": "\(d.deviceId)", "key_id": "\(d.keyId ?? "none")", "revision": "\(d.revision ?? 0)"])
                        observe(.error("bad_signature"))
                        if d.deviceId == OrgSubject.name {
                            await state.failAll(.badSignature)
                        } else {
                            await state.fail(d.deviceId, .badSignature)
                        }
                        throw ClientError.badResponse("bad signature")
                    }
                    switch await state.accept(d) {
                    case .applied, .duplicate:
                        break
                    case .caughtUp:
                        logger.info(
                            "a renewal carried a newer state than the events received: applied",
                            metadata: [
                                "surface": "\(d.deviceId)", "revision": "\(d.revision ?? 0)", "org_revision": "\(d.orgRevision ?? 0)",
                            ])
                    case .stale:
                        // A replica behind what we hold (lagging, or cut off from its database):
                        // its renewals must not extend anything. Go to another.
                        logger.warning(
                            "the authority renews an older state than we hold: going to another",
                            metadata: [
                                "surface": "\(d.deviceId)", "revision": "\(d.revision ?? 0)", "org_revision": "\(d.orgRevision ?? 0)",
                            ])
                        observe(.error("stale"))
                        throw ClientError.unreachable("the authority is behind the revisions we hold")
                    case .foreign(let origin):
                        logger.error("a decision from another authority deployment: denying", metadata: ["origin": "\(origin)"])
                        observe(.error("bad_response"))
                        await state.failAll(.badResponse)
                        throw ClientError.badResponse("a decision from another origin (\(origin))")
                    }
                    hadEvents = true
                    observe(.decision(surface: d.deviceId, code: d.code))
                }
            }
        } catch {
            // A stream that delivered events was up: reconnect at once, whatever ended it.
            if hadEvents {
                logger.info("watch stream broke; reconnecting", metadata: ["error": "\(error)", "authority": "\(endpoint.url)"])
                return true
            }
            throw error
        }
        logger.info("watch stream ended; reconnecting")
        return hadEvents
    }

    /// The `refused` names of a refused watch's answer, if it gives them.
    static func refusedNames(_ resp: HTTPClientResponse) async -> [String]? {
        guard let body = try? await resp.body.collect(upTo: 512 * 1024),
            let o = (try? JSONSerialization.jsonObject(with: Data(body.readableBytesView))) as? [String: Any],
            let names = o["refused"] as? [String]
        else { return nil }
        return names
    }

    // MARK: - polling while the stream is down

    func pollLoop() async {
        // A poll that hangs longer than a few intervals is no answer; the next one may be.
        let timeout = max(settings.pollInterval * 3, .seconds(2))
        var lastError: String?
        while !Task.isCancelled {
            if await !state.streaming {
                for s in await state.surfaces {
                    // The client tries each replica that does not answer; one that answers with
                    // an older state than we hold is passed over here.
                    var client = self.client
                    client.timeout = min(client.timeout, timeout)
                    for _ in 0..<client.endpoints.count {
                        if await poll(s, client, &lastError) { break }
                    }
                }
            }
            // While the stream is up there is nothing to poll: sleep until it goes down.
            if await state.streaming {
                await state.pollAlarm.sleep(for: nil)
            } else {
                try? await Sleep.for(settings.pollInterval)
            }
        }
    }

    /// One validate of `s`. False when the replica that answered is behind what we hold (it
    /// was passed over: ask again).
    func poll(_ s: String, _ client: AuthorityClient, _ lastError: inout String?) async -> Bool {
        let nonce = UUID().uuidString
        let answer: JSONAnswer
        do {
            answer = try await client.validate(s, nonce: nonce)
            lastError = nil
        } catch {
            // The watcher being stopped (the worker exited) is no authority error.
            if Task.isCancelled { return true }
            let text = "\(error)"
            observe(.error(Self.kind(of: error)))
            if text != lastError {
                logger.warning("validate failed", metadata: ["surface": "\(s)", "authority": "\(client.endpoint.url)", "error": "\(text)"])
            }
            lastError = text
            switch error {
            case ClientError.badResponse:
                // An answer that is not one: deny now.
                await state.fail(s, .badResponse)
                return true
            case ClientError.refused(let status, _, _, _) where status < 500:
                // Our key or request refused: the authority will not vouch for us.
                await state.fail(s, .badResponse)
                return true
            default:
                // Unreachable, timed out, 5xx — from every replica (the client tried each):
                // the lease runs out unless a later poll succeeds.
                return true
            }
        }
        guard var d = Decision(jsonData: answer.data), d.deviceId == s else {
            observe(.error("bad_response"))
            await state.fail(s, .badResponse)
            return true
        }
        if d.signature == nil { d.signature = answer.header("x-tether-signature") }
        if let verifier, !(await verifier.verify(d, learningFrom: client) && d.nonce == nonce && d.kind == .answer) {
            observe(.error("bad_signature"))
            await state.fail(s, .badSignature)
            return true
        }
        switch await state.accept(d) {
        case .stale:
            observe(.error("stale"))
            failOver(from: answer.replica)
            return false
        case .foreign:
            observe(.error("bad_response"))
            await state.fail(s, .badResponse)
            return true
        case .applied, .caughtUp, .duplicate:
            observe(.decision(surface: s, code: d.code))
            return true
        }
    }

    // MARK: - lease expiry

    func expiryLoop() async {
        while !Task.isCancelled {
            let next = await state.tick()
            if await state.dropStaleStream() {
                logger.warning("the watch stream is connected but a lease ran out without renewal: reconnecting, polling meanwhile")
            }
            // Sleep until the earliest lease ends; a lease that ends sooner than that (a new
            // allow, a new surface) rings the alarm. Renewals only move the end later: the loop
            // wakes at the old end, finds the new one and sleeps again.
            let wait = next.map { Duration.milliseconds(Int64(max($0.timeIntervalSinceNow, 0) * 1000) + 1) }
            await state.expiryAlarm.sleep(for: wait)
        }
    }
}

/// What a watcher saw, for metrics.
public enum WatchObservation: Sendable {
    case decision(surface: String, code: DecisionCode)
    /// unreachable, http_5xx, refused, bad_response, bad_signature.
    case error(String)
}

extension SurfaceWatcher {
    static func kind(of error: any Error) -> String {
        switch error {
        case ClientError.badResponse: return "bad_response"
        case ClientError.refused(let status, _, _, _): return status >= 500 ? "http_5xx" : "refused"
        default: return "unreachable"
        }
    }
}

/// The leases and the last verdict emitted per surface.
actor WatchState {
    private var leases: [String: Lease]
    private var emitted: [String: Verdict] = [:]
    private let continuation: AsyncStream<Verdict>.Continuation
    private(set) var streaming = false {
        didSet { if !streaming { pollAlarm.ring() } }
    }
    /// Rung when the stream goes down: the poll loop sleeps while it is up.
    nonisolated let pollAlarm = Alarm()
    /// Rung when a lease may end sooner than the expiry loop's sleep.
    nonisolated let expiryAlarm = Alarm()
    /// When the expiry loop wakes next (nil: no lease to watch).
    private var nextExpiry: Date?

    private(set) var surfaces: [String]
    let failClosedAfter: TimeInterval
    private var revisions = Revisions()
    /// The newest SSE `id:` seen: where a new stream, to any replica, resumes.
    private(set) var lastEventID: UInt64?

    init(surfaces: [String], failClosedAfter: TimeInterval, initial: [Decision], continuation: AsyncStream<Verdict>.Continuation) {
        self.surfaces = surfaces
        self.failClosedAfter = failClosedAfter
        var leases = Dictionary(uniqueKeysWithValues: surfaces.map { ($0, Lease(surface: $0, failClosedAfter: failClosedAfter)) })
        var revisions = Revisions()
        for d in initial where [.applied, .caughtUp].contains(revisions.accept(d)) { leases[d.deviceId]?.apply(d, at: Date()) }
        self.leases = leases
        self.revisions = revisions
        self.continuation = continuation
    }

    func sawEventID(_ id: UInt64) { lastEventID = max(lastEventID ?? 0, id) }

    /// Applies a verified decision if its revisions allow (`Revisions.accept`). A halt applies
    /// to every surface; a surface's own change waits under a halt (the renewals that follow a
    /// resume bring each surface's state).
    func accept(_ d: Decision) -> Revisions.Acceptance {
        let a = revisions.accept(d)
        guard a == .applied || a == .caughtUp else { return a }
        let now = Date()
        if d.deviceId == OrgSubject.name {
            guard d.code == .orgHalted else { return a }
            for s in Array(leases.keys) {
                leases[s]?.apply(d, at: now)
                emit(s)
            }
        } else if !(d.kind == .change && revisions.orgHalted) {
            leases[d.deviceId]?.apply(d, at: now)
            emit(d.deviceId)
            leaseChanged(d.deviceId)
        }
        return a
    }

    private var connection: Task<Bool, any Error>?

    func setStreaming(_ on: Bool) { streaming = on }

    /// Surfaces a watch was refused for: left out of the stream (their leases denied) until
    /// a stream that was up ends or the set changes; then asked for again.
    private(set) var excluded: Set<String> = []
    var streamSurfaces: [String] { excluded.isEmpty ? surfaces : surfaces.filter { !excluded.contains($0) } }

    func exclude(_ names: Set<String>) {
        excluded.formUnion(names)
        for s in names { fail(s, .badResponse) }
    }

    func readmitExcluded() { excluded = [] }

    func setSurfaces(_ new: [String]) {
        guard new != surfaces else { return }
        surfaces = new
        excluded = []
        for s in new where leases[s] == nil { leases[s] = Lease(surface: s, failClosedAfter: failClosedAfter) }
        for s in Array(leases.keys) where !new.contains(s) {
            leases[s] = nil
            emitted[s] = nil
            revisions.forget(s)
        }
        connection?.cancel()
        connection = nil
        streaming = false
    }

    func verdict(of s: String) -> Verdict? { leases[s]?.verdict(at: Date()) }

    func snapshot() -> [(verdict: Verdict, age: TimeInterval?)] {
        let now = Date()
        return surfaces.compactMap { s in
            leases[s].map { ($0.verdict(at: now), $0.receivedAt.map { now.timeIntervalSince($0) }) }
        }
    }
    func setConnection(_ t: Task<Bool, any Error>?) { connection = t }

    /// A stream that lets a lease run out is as good as down: cancel it (the stream loop
    /// reconnects; the poll loop covers the gap). True if one was dropped.
    func dropStaleStream() -> Bool {
        guard streaming, let c = connection,
            leases.values.contains(where: { $0.verdict(at: Date()).code == .leaseExpired })
        else { return false }
        c.cancel()
        connection = nil
        streaming = false
        return true
    }

    func fail(_ surface: String, _ code: DecisionCode) {
        leases[surface]?.fail(code)
        emit(surface)
    }

    func failAll(_ code: DecisionCode) {
        for s in Array(leases.keys) { fail(s, code) }
    }

    /// Re-evaluates every lease now; returns the earliest instant an allow ends.
    func tick() -> Date? {
        for s in Array(leases.keys) { emit(s) }
        nextExpiry = leases.values.compactMap { $0.verdict(at: Date()).until }.min()
        return nextExpiry
    }

    /// After a lease changed: wakes the expiry loop if this lease ends before its next look.
    private func leaseChanged(_ surface: String) {
        guard let until = leases[surface]?.verdict(at: Date()).until else { return }
        if nextExpiry.map({ until < $0 }) ?? true { expiryAlarm.ring() }
    }

    private func emit(_ surface: String) {
        guard let v = leases[surface]?.verdict(at: Date()) else { return }
        // Renewals move `until`; only a change of verdict is news.
        guard emitted[surface]?.changeKey != v.changeKey else { return }
        emitted[surface] = v
        continuation.yield(v)
    }

    func finish() { continuation.finish() }
}

/// A watch refused for some of its surfaces, which are now left out: reconnect with the rest.
struct PartialWatchRefusal: Error {}
