import Foundation
import HTTPTypes
import Hummingbird
import ServiceLifecycle
import TetherCore

/// `GET /api/v1/devices/watch`: Server-Sent Events.
///
/// The stream opens with `event: hello` whose `id:` is the newest revision applied here (or, for
/// a client that resumes with `Last-Event-ID`, that one), then every change it missed of the
/// surfaces it watches; then one `lease` decision per surface (the current state, with a fresh lease). After
/// that: each change's event as soon as it is committed — signed once, the same bytes on every
/// stream of every replica, with its revision as the SSE `id:` — and every third of the lease
/// a renewal of each surface (no `id:`: a renewal is not a change). On server shutdown it sends
/// `event: shutdown` and ends.
enum WatchStream {
    static func response(
        authority: Authority, surfaces: [String], instance: String, after: UInt64?, context: AuthorityContext
    ) async throws -> Response {
        let sub: Subscription
        do {
            sub = try await authority.hub.subscribe(
                instance: instance, keyName: context.key?.name ?? "", surfaces: Set(surfaces), after: after,
                maxStreams: authority.configuration.maxStreams, maxPerKey: authority.configuration.maxStreamsPerKey)
        } catch .closed {
            throw APIError(.serviceUnavailable, "SHUTTING_DOWN", "the authority is shutting down; reconnect to another")
        } catch .tooMany(let why) {
            throw APIError(
                .tooManyRequests, "TOO_MANY_STREAMS",
                "\(why); close streams, or raise it (tether authority serve --max-streams-per-key, --max-streams)")
        }
        // Changes older than the hub holds: from the database.
        var missedChanges = sub.replay ?? []
        if sub.replay == nil, let after {
            do {
                missedChanges = try await missed(authority: authority, after: after, through: sub.head, surfaces: Set(surfaces))
            } catch {
                await authority.hub.unsubscribe(sub.id)
                throw APIError(.serviceUnavailable, "NOT_READY", "cannot read the changes since revision \(after): \(error)")
            }
        }
        let replay = missedChanges
        let logger = context.logger
        let held = surfaces.map { FleetWatcher(instance: instance, surface: $0, keyName: context.key?.name ?? "") }
        authority.watchers.opened(held)
        var headers = HTTPFields()
        headers[.contentType] = "text/event-stream"
        headers[.cacheControl] = "no-cache"
        headers[.requestID] = context.requestID
        let hello =
            "retry: 1000\n\nevent: hello\nid: \(after ?? sub.head)\ndata: {\"revision\":\(sub.head),\"origin\":\"\(authority.origin)\"}\n\n"
        return Response(
            status: .ok, headers: headers,
            body: .init { writer in
                // The newest revision whose event this stream has written (or that it joined at):
                // a renewal never runs ahead of the events, so a supervisor sees each change as
                // its own event first.
                var delivered = max(sub.head, replay.last?.revision ?? 0)
                func renew() async throws {
                    var text = ""
                    for id in surfaces {
                        if let r = await authority.renewal(for: id, delivered: delivered) { text += "event: decision\ndata: \(r)\n\n" }
                    }
                    if !text.isEmpty { try await writer.write(ByteBuffer(string: text)) }
                }
                do {
                    try await writer.write(ByteBuffer(string: hello + replay.map(frame).joined()))
                    try await renew()
                    try await withGracefulShutdownHandler {
                        for await item in sub.stream {
                            switch item {
                            case .frame(let text, let revision):
                                delivered = max(delivered, revision)
                                try await writer.write(ByteBuffer(string: text))
                            case .renew:
                                // A replica out of step with its database renews nothing: the
                                // supervisor goes to another (or its leases run out).
                                if let why = authority.sync.notReady(maxLag: authority.configuration.maxLag) {
                                    try await writer.write(
                                        ByteBuffer(
                                            string:
                                                "event: shutdown\ndata: {\"reason\":\"not ready: \(why.replacingOccurrences(of: "\"", with: "'"))\"}\n\n"
                                        ))
                                    return
                                }
                                try await renew()
                            case .shutdown:
                                try await writer.write(ByteBuffer(string: "event: shutdown\ndata: {}\n\n"))
                                return
                            }
                        }
                    } onGracefulShutdown: {
                        sub.continuation.yield(.shutdown)
                    }
                } catch {
                    // The client went away (or the write failed): nothing to tell anyone.
                    logger.debug("watch stream ended", metadata: ["error": "\(error)"])
                }
                await authority.hub.unsubscribe(sub.id)
                authority.watchers.closed(held)
                try? await writer.finish(nil)
            })
    }

    /// The changes after `after` through `through` that concern `surfaces` (or the org).
    static func missed(authority: Authority, after: UInt64, through: UInt64, surfaces: Set<String>) async throws -> [ChangeEvent] {
        var out: [ChangeEvent] = []
        var from = after
        while from < through {
            let batch = try await authority.changes(after: from, limit: Replicator.batch)
            guard let last = batch.events.last else { break }
            out += batch.events.filter { $0.revision <= through && ($0.subject == OrgSubject.name || surfaces.contains($0.subject)) }
            from = last.revision
        }
        return out
    }

    /// A change as an SSE frame: its revision is the `id:`.
    static func frame(_ e: ChangeEvent) -> String {
        "event: decision\nid: \(e.revision)\ndata: \(e.text)\n\n"
    }

    static func eventJSON(_ d: Decision) -> String {
        String(decoding: DecisionJSON.answer(d), as: UTF8.self)
    }
}
