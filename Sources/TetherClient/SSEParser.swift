/// One Server-Sent Event.
public struct ServerSentEvent: Sendable, Equatable {
    public var event: String
    public var id: String?
    public var data: String
}

/// Incremental Server-Sent Events parser (the WHATWG event-stream format): feed it bytes as
/// they arrive, take complete events out. Bounded: a line longer than `maxLine`, or an event
/// whose data lines add up to more than `maxEvent`, is an error, so a garbage stream — or one
/// endless event of short lines — cannot grow memory without limit.
public struct SSEParser: Sendable {
    public let maxLine: Int
    public let maxEvent: Int
    private var line: [UInt8] = []
    private var event = ""
    private var id: String?
    private var data: [String] = []
    private var dataBytes = 0
    private var lastWasCR = false

    public struct TooLong: Error {}

    public init(maxLine: Int = 1 << 20, maxEvent: Int = 1 << 20) {
        self.maxLine = maxLine
        self.maxEvent = maxEvent
    }

    public mutating func feed<Bytes: Sequence>(_ bytes: Bytes) throws -> [ServerSentEvent] where Bytes.Element == UInt8 {
        var out: [ServerSentEvent] = []
        for b in bytes {
            if b == 0x0A && lastWasCR {
                lastWasCR = false
                continue
            }  // CRLF
            lastWasCR = b == 0x0D
            if b == 0x0A || b == 0x0D {
                if let e = endLine() { out.append(e) }
                if dataBytes > maxEvent { throw TooLong() }
            } else {
                line.append(b)
                if line.count > maxLine { throw TooLong() }
            }
        }
        return out
    }

    private mutating func endLine() -> ServerSentEvent? {
        defer { line.removeAll(keepingCapacity: true) }
        if line.isEmpty {
            // Blank line: dispatch.
            defer {
                event = ""
                data = []
                dataBytes = 0
            }
            guard !data.isEmpty else { return nil }
            return ServerSentEvent(event: event.isEmpty ? "message" : event, id: id, data: data.joined(separator: "\n"))
        }
        let text = String(decoding: line, as: UTF8.self)
        if text.hasPrefix(":") { return nil }  // comment
        var field = text, value = ""
        if let colon = text.firstIndex(of: ":") {
            field = String(text[..<colon])
            value = String(text[text.index(after: colon)...])
            if value.hasPrefix(" ") { value.removeFirst() }
        }
        switch field {
        case "event": event = value
        case "data":
            data.append(value)
            dataBytes += value.utf8.count + 1
        case "id": id = value
        default: break
        }
        return nil
    }
}
