import Foundation
import HTTPTypes
import Hummingbird
import TetherCore

/// Reads a request's body as `T`: at most `maxSize` bytes (413 past it), whole within
/// `timeout` (408: a body sent a byte at a time holds a connection and a task), then decoded
/// by `JSONBody.decode`.
struct BodyReader: Sendable {
    let maxSize: Int
    let timeout: Duration

    func read<T: RequestBody>(_ type: T.Type, from request: Request) async throws -> T {
        let buffer = try await withThrowingTaskGroup(of: ByteBuffer?.self) { group in
            group.addTask {
                var req = request
                do {
                    return try await req.collectBody(upTo: maxSize)
                } catch is CancellationError {
                    return nil
                } catch let e as HTTPResponseError where e.status == .contentTooLarge {
                    throw APIError(.contentTooLarge, "PAYLOAD_TOO_LARGE", "the body is larger than \(maxSize) bytes")
                }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let buffer = first else {
                throw APIError(.requestTimeout, "REQUEST_TIMEOUT", "the body did not arrive within \(DurationText.format(timeout))")
            }
            return buffer
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
