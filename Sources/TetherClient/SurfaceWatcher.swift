import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import TetherCore

public struct WatchSettings: Sendable {
    /// How often to validate each surface while the watch stream is down (or unsupported).
    public var pollInterval: Duration = .seconds(1)
    /// How long an allow is good from an authority that sends no lease (MachineID).
    public var failClosedAfter: Duration = .seconds(15)
    public var reconnectMin: Duration = .milliseconds(100)
    public var reconnectMax: Duration = .seconds(5)
    /// This supervisor's name in the authority's watcher list and acknowledgements.
    public var instance: String

    public init(instance: String) { self.instance = instance }
}

/// Keeps the verdict of a set of surfaces current: one watch stream for all of them (signed
/// events, their nonce and an unbroken sequence checked), polling while the stream is down,
/// reconnecting with backoff, and a timer that turns an unrenewed allow into `LEASE_EXPIRED` at
/// the instant its lease ends. Emits a `Verdict` whenever one changes.
public final class SurfaceWatcher: Sendable {
    let client: AuthorityClient
    let surfaces: [String]
    let verifier: DecisionVerifier?
    let settings: WatchSettings
    let logger: Logger
    let state: WatchState
    public let verdicts: AsyncStream<Verdict>

    public init(client: AuthorityClient, surfaces: [String], verifier: DecisionVerifier?, settings: WatchSettings, logger: Logger) {
        self.client = client
        self.surfaces = surfaces
        self.verifier = verifier
        self.settings = settings
        self.logger = logger
        let (stream, continuation) = AsyncStream<Verdict>.makeStream()
        verdicts = stream
        state = WatchState(surfaces: surfaces, failClosedAfter: settings.failClosedAfter.seconds, continuation: continuation)
    }

    /// Runs until cancelled.
    public func run() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.streamLoop() }
            group.addTask { await self.pollLoop() }
            group.addTask { await self.expiryLoop() }
            await group.waitForAll()
        }
        await state.finish()
    }

    // MARK: - the stream

    func streamLoop() async {
        var backoff = settings.reconnectMin
        while !Task.isCancelled {
            let nonce = UUID().uuidString
            let query = surfaces.map { "deviceId=\($0)" }.joined(separator: "&") + "&instance=\(settings.instance)&nonce=\(nonce)"
            var req = HTTPClientRequest(url: client.endpoint.url + "/api/v1/devices/watch?" + query)
            req.headers.add(name: "x-org-key", value: client.endpoint.key)
            do {
                let resp = try await client.http.execute(req, timeout: .hours(24 * 365))
                guard resp.status == .ok else {
                    logger.warning("watch refused; polling", metadata: ["status": "\(resp.status.code)"])
                    throw ClientError.badResponse("watch answered \(resp.status.code)")
                }
                await state.setStreaming(true)
                backoff = settings.reconnectMin
                var parser = SSEParser()
                var expectedSeq: UInt64 = 1
                for try await chunk in resp.body {
                    for e in try parser.feed(chunk.readableBytesView) {
                        if e.event == "shutdown" { throw ClientError.unreachable("the authority is shutting down") }
                        guard e.event == "decision" else { continue }
                        guard let o = try? JSONSerialization.jsonObject(with: Data(e.data.utf8)) as? [String: Any],
                              let d = Decision(json: o), surfaces.contains(d.deviceId)
                        else {
                            await state.failAll(.badResponse)
                            throw ClientError.badResponse("an event that is not a decision for our surfaces")
                        }
                        if let verifier {
                            guard verifier.verify(d), d.nonce == nonce, d.seq == expectedSeq else {
                                logger.error("watch event failed verification: denying", metadata: ["surface": "\(d.deviceId)", "seq": "\(d.seq ?? 0)"])
                                await state.fail(d.deviceId, .badSignature)
                                throw ClientError.badResponse("bad signature, nonce or sequence")
                            }
                        }
                        expectedSeq = (d.seq ?? expectedSeq) + 1
                        await state.apply(d)
                    }
                }
                throw ClientError.unreachable("the watch stream ended")
            } catch {
                await state.setStreaming(false)
                if Task.isCancelled { return }
                logger.info("watch stream down; polling until it is back", metadata: ["error": "\(error)", "retry_in": "\(backoff)"])
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, settings.reconnectMax)
            }
        }
    }

    // MARK: - polling while the stream is down

    func pollLoop() async {
        while !Task.isCancelled {
            if await !state.streaming {
                for s in surfaces {
                    let nonce = UUID().uuidString
                    guard let answer = try? await client.validate(s, nonce: nonce) else { continue }   // unreachable: the lease runs out
                    guard var d = Decision(json: answer.object), d.deviceId == s else {
                        await state.fail(s, .badResponse)
                        continue
                    }
                    if d.signature == nil { d.signature = answer.header("x-tether-signature") }
                    if let verifier, !(verifier.verify(d) && d.nonce == nonce) {
                        await state.fail(s, .badSignature)
                        continue
                    }
                    await state.apply(d)
                }
            }
            try? await Task.sleep(for: settings.pollInterval)
        }
    }

    // MARK: - lease expiry

    func expiryLoop() async {
        while !Task.isCancelled {
            let next = await state.tick()
            // Sleep until the earliest lease ends (at most 1 s, so new leases are picked up).
            let wait = min(max(next.map { $0.timeIntervalSinceNow } ?? 1, 0.001), 1)
            try? await Task.sleep(for: .milliseconds(Int64(wait * 1000) + 1))
        }
    }
}

/// The leases and the last verdict emitted per surface.
actor WatchState {
    private var leases: [String: Lease]
    private var emitted: [String: Verdict] = [:]
    private let continuation: AsyncStream<Verdict>.Continuation
    private(set) var streaming = false

    init(surfaces: [String], failClosedAfter: TimeInterval, continuation: AsyncStream<Verdict>.Continuation) {
        leases = Dictionary(uniqueKeysWithValues: surfaces.map { ($0, Lease(surface: $0, failClosedAfter: failClosedAfter)) })
        self.continuation = continuation
    }

    func setStreaming(_ on: Bool) { streaming = on }

    func apply(_ d: Decision) {
        leases[d.deviceId]?.apply(d, at: Date())
        emit(d.deviceId)
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
        return leases.values.compactMap { $0.verdict(at: Date()).until }.min()
    }

    private func emit(_ surface: String) {
        guard let v = leases[surface]?.verdict(at: Date()) else { return }
        var key = v
        key.until = nil   // renewals move `until`; only a change of verdict is news
        var last = emitted[surface]
        last?.until = nil
        guard last != key else { return }
        emitted[surface] = v
        continuation.yield(v)
    }

    func finish() { continuation.finish() }
}

extension Duration {
    var seconds: TimeInterval { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
