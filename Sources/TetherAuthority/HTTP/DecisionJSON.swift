import TetherCore

/// A decision's answer (`DecisionAnswer`) as JSON, written straight into bytes: the same bytes
/// as `JSONBody.data(DecisionAnswer(decision:))` — keys in byte order, slashes unescaped, the
/// escapes Foundation's encoder writes — at a fraction of the cost, since every validate answer
/// and every watch event is one (`FastPathTests` holds the two to the same bytes).
enum DecisionJSON {
    static func answer(_ d: Decision) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(640)
        var first = true
        func key(_ k: StaticString) {
            out.append(first ? 0x7B : 0x2C)
            first = false
            out.append(0x22)
            out.append(contentsOf: UnsafeBufferPointer(start: k.utf8Start, count: k.utf8CodeUnitCount))
            out.append(0x22)
            out.append(0x3A)
        }
        func string(_ k: StaticString, _ v: String?) {
            guard let v else { return }
            key(k)
            JSONWriter.string(v, into: &out)
        }
        func number(_ k: StaticString, _ v: UInt64?) {
            guard let v else { return }
            key(k)
            out.append(contentsOf: String(v).utf8)
        }
        key("allowed")
        out.append(contentsOf: d.allowed ? Array("true".utf8) : Array("false".utf8))
        string("changeReason", d.changeReason)
        string("changedAt", d.changedAt)
        string("changedBy", d.changedBy)
        string("code", d.code.rawValue)
        string("deviceId", d.deviceId)
        string("expiresAt", d.expiresAt)
        string("issuedAt", d.issuedAt)
        string("keyId", d.keyId)
        string("kind", d.kind?.rawValue)
        string("nonce", d.nonce)
        number("orgRevision", d.orgRevision)
        string("origin", d.origin)
        if !d.allowed { string("reason", d.code.rawValue) }
        string("request_id", d.requestID)
        number("revision", d.revision)
        string("signature", d.signature)
        string("status", DecisionAnswer.status(of: d.code))
        out.append(0x7D)
        return out
    }
}
