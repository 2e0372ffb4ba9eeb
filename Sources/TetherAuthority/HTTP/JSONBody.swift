import Foundation
import HTTPTypes
import Hummingbird
import TetherCore

/// Reads a request's body as `T`: at most `maxSize` bytes (413 past it), whole within the
/// server's body deadline (408: `BodyDeadlineHandler` ends a body sent a byte at a time), then
/// decoded by `JSONBody.decode` (400 with what is wrong).
struct BodyReader: Sendable {
    let maxSize: Int
    let timeout: Duration

    func read<T: RequestBody>(_ type: T.Type, from request: Request) async throws -> T {
        var req = request
        let buffer: ByteBuffer
        do {
            buffer = try await req.collectBody(upTo: maxSize)
        } catch let e as HTTPResponseError where e.status == .contentTooLarge {
            throw APIError(.contentTooLarge, "PAYLOAD_TOO_LARGE", "the body is larger than \(maxSize) bytes")
        } catch is BodyDeadlineExceeded {
            throw APIError(.requestTimeout, "REQUEST_TIMEOUT", "the body did not arrive within \(DurationText.format(timeout))")
        }
        do {
            return try JSONBody.decode(type, from: buffer.readableBytes == 0 ? Data("{}".utf8) : Data(buffer.readableBytesView))
        } catch let e as BodyError {
            throw APIError.badRequest(e.message)
        }
    }
}

extension JSONBody {
    /// A JSON answer, keys sorted so answers are stable.
    static func response(_ value: some Encodable, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
        var h = headers
        h[.contentType] = "application/json"
        return Response(status: status, headers: h, body: .init(byteBuffer: ByteBuffer(bytes: data(value))))
    }
}
