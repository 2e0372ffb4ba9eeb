import Foundation
import HTTPTypes
import Hummingbird
import ServiceLifecycle
import TetherCore

/// `GET /api/v1/devices/watch`: Server-Sent Events.
///
/// The stream opens with the current decision of every surface named, then sends one
/// `decision` event per change (as soon as the change is durable), and re-issues every
/// decision with a fresh lease each third of the lease length, so a quiet stream still renews.
/// Each event carries its sequence number in the stream (`id:` and `seq`) and the client's
/// `nonce`, both signed. On server shutdown it sends `event: shutdown` and ends.
enum WatchStream {
    static func response(authority: Authority, surfaces: [String], instance: String, nonce: String?, context: AuthorityContext) async throws -> Response {
        let sub: (id: Int, stream: AsyncStream<StreamItem>, continuation: AsyncStream<StreamItem>.Continuation)
        do {
            sub = try await authority.hub.subscribe(
                instance: instance, keyName: context.key?.name ?? "", surfaces: Set(surfaces),
                maxStreams: authority.configuration.maxStreams, maxPerKey: authority.configuration.maxStreamsPerKey)
        } catch .closed {
            throw APIError(.serviceUnavailable, "SHUTTING_DOWN", "the authority is shutting down; reconnect to another")
        } catch .tooMany(let why) {
            throw APIError(.tooManyRequests, "TOO_MANY_STREAMS", "\(why); close streams, or raise it (tether authority serve --max-streams-per-key, --max-streams)")
        }
        let logger = context.logger
        var headers = HTTPFields()
        headers[.contentType] = "text/event-stream"
        headers[.cacheControl] = "no-cache"
        headers[.requestID] = context.requestID
        let lease = authority.configuration.leaseLength
        return Response(status: .ok, headers: headers, body: .init { writer in
            let ticker = Task {
                while !Task.isCancelled {
                    try? await Task.sleep(for: lease / 3)
                    if Task.isCancelled { break }
                    sub.continuation.yield(.renew)
                }
            }
            defer { ticker.cancel() }
            var seq: UInt64 = 0
            // The request that caused each surface's current state, for acks: initially this one.
            var cause = Dictionary(uniqueKeysWithValues: surfaces.map { ($0, context.requestID) })

            func send(_ ids: [String]) async throws {
                var text = ""
                for id in ids {
                    seq += 1
                    let d = await authority.decision(for: id, requestID: cause[id] ?? context.requestID, nonce: nonce, seq: seq)
                    text += "event: decision\nid: \(seq)\ndata: \(eventJSON(d))\n\n"
                }
                try await writer.write(ByteBuffer(string: text))
            }

            do {
                try await writer.write(ByteBuffer(string: "retry: 1000\n\n"))
                try await send(surfaces)
                try await withGracefulShutdownHandler {
                    for await item in sub.stream {
                        switch item {
                        case .changed(let ids, let rid):
                            for id in ids { cause[id] = rid }
                            try await send(ids)
                        case .orgChanged(let rid):
                            for id in surfaces { cause[id] = rid }
                            try await send(surfaces)
                        case .renew:
                            try await send(surfaces)
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
            try? await writer.finish(nil)
        })
    }

    static func eventJSON(_ d: Decision) -> String {
        String(decoding: JSONBody.data(DecisionAnswer(decision: d)), as: UTF8.self)
    }
}
