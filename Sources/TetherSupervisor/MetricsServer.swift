import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import TetherRuntime

/// `GET /metrics` over HTTP/1.1 on the event loops, and nothing else: the supervisor's scrape
/// endpoint. Not a Hummingbird application: an application keeps a date cache that a timer
/// refreshes every second — a `Task.sleep`, so libdispatch's pool and its once-a-second
/// monitor as well — in every supervisor with metrics on (the shipped units' default), where
/// an idle supervisor should not wake at all but for its heartbeat and its lease renewals.
enum MetricsServer {
    /// A connection that sends no complete request for this long is closed.
    static let idleTimeout: TimeAmount = .seconds(10)

    /// Serves on `host:port` until cancelled; `body` writes the exposition text at each scrape.
    static func run(host: String, port: Int, logger: Logger, body: @escaping @Sendable () async -> String) async throws {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 16)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: idleTimeout))
                    try channel.pipeline.syncOperations.addHandler(CloseWhenIdle())
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    return try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(wrappingChannelSynchronously: channel)
                }
            }
        try await withTaskCancellationHandler {
            await withDiscardingTaskGroup { group in
                try? await server.executeThenClose { connections in
                    for try await connection in connections {
                        group.addTask { await answer(connection, body: body) }
                    }
                }
            }
        } onCancel: {
            server.channel.close(promise: nil)
        }
    }

    /// Answers each request on `connection`: the metrics for `GET /metrics`, 404 for any other
    /// path, 405 for another method; then closes it (a scrape is one request).
    static func answer(
        _ connection: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, body: @Sendable () async -> String
    ) async {
        try? await connection.executeThenClose { inbound, outbound in
            var head: HTTPRequestHead?
            for try await part in inbound {
                switch part {
                case .head(let h): head = h
                case .body: continue
                case .end:
                    guard let h = head else { return }
                    let path = h.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? h.uri
                    let (status, text): (HTTPResponseStatus, String) =
                        h.method != .GET
                        ? (.methodNotAllowed, "GET only\n")
                        : path != "/metrics"
                            ? (.notFound, "not found: GET /metrics\n")
                            : (.ok, await body())
                    var headers = HTTPHeaders()
                    headers.add(name: "Content-Type", value: status == .ok ? "text/plain; version=0.0.4" : "text/plain")
                    headers.add(name: "Content-Length", value: "\(text.utf8.count)")
                    headers.add(name: "Connection", value: "close")
                    try await outbound.write(.head(HTTPResponseHead(version: h.version, status: status, headers: headers)))
                    try await outbound.write(.body(.byteBuffer(ByteBuffer(string: text))))
                    try await outbound.write(.end(nil))
                    return
                }
            }
        }
    }
}

/// Closes a connection whose reads have been idle for `IdleStateHandler`'s timeout.
private final class CloseWhenIdle: ChannelInboundHandler, Sendable {
    typealias InboundIn = NIOAny

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }
}
