import Foundation
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTPTypes
import NIOSSL
import NIOTLS

/// How long a connection may take, and how many there may be: what a slow or silent client
/// (one that opens sockets and sends nothing, a TLS handshake that never ends, a body sent a
/// byte at a time) can hold of the authority.
public struct ConnectionLimits: Sendable {
    /// A connection that neither sends a request nor is answered for this long is closed: an
    /// idle keep-alive, a request head that never ends. A watch stream is an answer in
    /// progress, so it is never idle.
    public var idleTimeout: Duration = .seconds(30)
    /// A TLS handshake not done by then: the connection is closed.
    public var handshakeTimeout: Duration = .seconds(10)
    /// A request body not received whole by then: 408 `REQUEST_TIMEOUT`.
    public var bodyTimeout: Duration = .seconds(10)
    /// Open connections at once. Past it the server stops accepting (clients wait in the
    /// listen backlog) rather than fail every request with EMFILE. 0: the open-file limit less
    /// 256 for the database, logs and the process.
    public var maxConnections = 0

    public init() {}

    /// The cap in force, given the process's open-file limit.
    public func connectionCap(openFiles: UInt64) -> Int {
        if maxConnections > 0 { return maxConnections }
        return max(64, Int(min(openFiles, 1 << 20)) - 256)
    }
}

/// Closes a TLS connection whose handshake has not completed within `timeout`. Sits after the
/// TLS handler, where its `handshakeCompleted` event arrives.
final class HandshakeDeadlineHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    private let timeout: TimeAmount
    private var deadline: Scheduled<Void>?
    private var done = false

    init(timeout: Duration) {
        self.timeout = TimeAmount(timeout)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { arm(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        arm(context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted = event as? TLSUserEvent {
            done = true
            deadline?.cancel()
        }
        context.fireUserInboundEventTriggered(event)
    }

    private func arm(_ context: ChannelHandlerContext) {
        guard deadline == nil, !done else { return }
        let channel = context.channel
        deadline = context.eventLoop.scheduleTask(in: timeout) { channel.close(promise: nil) }
    }
}

/// The request that has begun and not ended when `timeout` has passed since its head: the
/// error `BodyDeadlineExceeded` goes up the pipeline, ending the request's body stream, and
/// the route that waits on the body answers 408.
///
/// One timer per connection, not per request: it is armed by a head when none is pending and,
/// when it fires, either finds the request in progress overdue, or re-arms for the deadline of
/// the one in progress, or ends (nothing in progress; the next head arms it again). Scheduling
/// and cancelling a timer for every request cost validate a twentieth of its throughput on a
/// keep-alive connection (and a timer task per request, before that, a tenth).
final class BodyDeadlineHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    private let timeout: TimeAmount
    /// When the head of the request in progress came; nil between requests.
    private var started: NIODeadline?
    private var timer: Scheduled<Void>?

    init(timeout: Duration) {
        self.timeout = TimeAmount(timeout)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            let now = NIODeadline.now()
            started = now
            if timer == nil { arm(context, at: now + timeout) }
        case .end:
            started = nil
        case .body:
            break
        }
        context.fireChannelRead(data)
    }

    private func arm(_ context: ChannelHandlerContext, at deadline: NIODeadline) {
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(deadline: deadline) {
            let (handler, context) = bound.value
            handler.timer = nil
            guard let started = handler.started else { return }
            if NIODeadline.now() >= started + handler.timeout {
                handler.started = nil
                context.fireErrorCaught(BodyDeadlineExceeded())
            } else {
                handler.arm(context, at: started + handler.timeout)
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }
}

/// A request body not received whole in time.
struct BodyDeadlineExceeded: Error {}

extension HTTPServerBuilder {
    /// HTTP/1.1 with the idle timeout and body deadline of `limits`.
    static func http1(limits: ConnectionLimits) -> HTTPServerBuilder {
        let body = limits.bodyTimeout
        return .http1(
            configuration: .init(
                additionalChannelHandlers: [BodyDeadlineHandler(timeout: body)],
                idleTimeout: TimeAmount(limits.idleTimeout)))
    }

    /// HTTP/1.1 over TLS, with a deadline on the handshake as well.
    static func tls(limits: ConnectionLimits, tlsConfiguration: TLSConfiguration) throws -> HTTPServerBuilder {
        let (handshake, body) = (limits.handshakeTimeout, limits.bodyTimeout)
        let http = HTTP1Channel.Configuration(
            additionalChannelHandlers: [HandshakeDeadlineHandler(timeout: handshake), BodyDeadlineHandler(timeout: body)],
            idleTimeout: TimeAmount(limits.idleTimeout))
        return try .tls(.http1(configuration: http), tlsConfiguration: tlsConfiguration)
    }
}
