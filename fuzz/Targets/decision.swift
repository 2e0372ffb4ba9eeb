import Foundation

// The canonical signed form. A decision read from any JSON (as a supervisor reads an answer
// or a watch event) either is refused, or is canonical and its signed bytes read back to the
// very same fields: no two decisions share the bytes one signature covers. And a decision the
// authority writes reads back equal.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Data(UnsafeBufferPointer(start: data, count: size))
    guard let object = try? JSONSerialization.jsonObject(with: bytes) as? [String: Any],
        let d = Decision(json: object)
    else { return 0 }
    if d.isCanonical {
        // Bytes, not Characters: "=" and a combining mark are one Character.
        let lines = Array(d.canonicalBytes).split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).map(Array.init)
        let names = [
            "origin", "keyId", "kind", "revision", "orgRevision", "deviceId", "allowed", "code", "request_id",
            "issuedAt", "expiresAt", "nonce", "changedBy", "changedAt", "changeReason",
        ]
        precondition(lines.count == names.count + 1 && lines[0] == Array("tether-decision-v3".utf8), "a field split a line")
        var fields: [String: String] = [:]
        for (name, line) in zip(names, lines.dropFirst()) {
            let prefix = Array((name + "=").utf8)
            precondition(line.starts(with: prefix), "a line is not \(name)")
            fields[name] = String(decoding: line.dropFirst(prefix.count), as: UTF8.self)
        }
        precondition(fields["deviceId"] == d.deviceId && fields["allowed"] == (d.allowed ? "true" : "false"))
        precondition(fields["code"] == d.code.rawValue && fields["request_id"] == d.requestID)
        precondition(fields["issuedAt"] == d.issuedAt && fields["expiresAt"] == d.expiresAt)
        precondition(fields["nonce"] == (d.nonce ?? "") && fields["origin"] == (d.origin ?? "") && fields["keyId"] == (d.keyId ?? ""))
        precondition(
            fields["kind"] == (d.kind?.rawValue ?? "") && fields["revision"] == (d.revision.map(String.init) ?? "")
                && fields["orgRevision"] == (d.orgRevision.map(String.init) ?? ""))
        precondition(fields["changedBy"] == (d.changedBy ?? "") && fields["changedAt"] == (d.changedAt ?? ""))
        precondition(fields["changeReason"] == (d.changeReason ?? ""))
    }
    // What the authority writes (Codable), read back the way a supervisor reads it.
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    if let out = try? encoder.encode(d), let back = try? JSONSerialization.jsonObject(with: out) as? [String: Any] {
        precondition(Decision(json: back) == d, "a written decision did not read back")
    }
    return 0
}
