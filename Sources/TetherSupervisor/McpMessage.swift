import TetherCore

/// A request id as the gateway compares it (`key`) and writes it back (`text`). MCP ids are
/// strings or integers; an integer is kept within 15 digits (exact in every JSON reader, a
/// JavaScript one included) and compared by value, so a server that writes `1` back for `01`
/// or `-0` cannot answer past the gateway's pairing of answers to requests.
struct McpId: Hashable, Sendable {
    let key: String
    let text: [UInt8]

    /// A client's id: nil when it is not an MCP id.
    static func client(_ v: McpJSON) -> McpId? {
        switch v {
        case .string(let s):
            var out: [UInt8] = []
            JSONWriter.string(s, into: &out)
            return McpId(key: "s:" + s, text: out)
        case .number(let n):
            let digits = n.hasPrefix("-") ? n.dropFirst() : Substring(n)
            guard !digits.isEmpty, digits.count <= 15, digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber),
                let i = Int64(n)
            else { return nil }
            return McpId(key: "n:\(i)", text: Array(String(i).utf8))
        default: return nil
        }
    }

    /// A server's id, read as leniently as the server wrote it.
    static func server(_ v: McpJSON) -> McpId? {
        if let id = client(v) { return id }
        if case .number(let n) = v, let d = Double(n), d == d.rounded(), abs(d) < 1e15 {
            return McpId(key: "n:\(Int64(d))", text: Array(n.utf8))
        }
        return nil
    }
}

/// One JSON-RPC message from the client, checked for the shape MCP gives it.
struct McpMessage: Sendable {
    enum Kind: Sendable { case request, notification, response }
    let kind: Kind
    let method: String
    let id: McpId?
    let value: McpJSON

    var params: McpJSON? { value["params"] }

    /// The message `v`, or an invalid request (-32600) saying what is wrong with it.
    static func check(_ v: McpJSON) throws(McpReadError) -> McpMessage {
        func invalid(_ m: String) -> McpReadError { McpReadError(code: -32600, message: "Invalid Request: " + m) }
        guard v.isObject else { throw invalid("a message is a JSON object") }
        guard v["jsonrpc"]?.string == "2.0" else { throw invalid("\"jsonrpc\" must be \"2.0\"") }
        var id: McpId?
        if let raw = v["id"] {
            guard let i = McpId.client(raw) else { throw invalid("\"id\" must be a string or an integer of at most 15 digits") }
            id = i
        }
        if let params = v["params"], !params.isObject { throw invalid("\"params\" must be an object") }
        if let m = v["method"] {
            guard let method = m.string else { throw invalid("\"method\" must be a string") }
            guard v["result"] == nil, v["error"] == nil else { throw invalid("a request has no \"result\" or \"error\"") }
            return McpMessage(kind: id == nil ? .notification : .request, method: method, id: id, value: v)
        }
        guard id != nil, (v["result"] == nil) != (v["error"] == nil) else {
            throw invalid("a message is a request (\"method\"), or a response with an \"id\" and one of \"result\" and \"error\"")
        }
        return McpMessage(kind: .response, method: "", id: id, value: v)
    }
}
