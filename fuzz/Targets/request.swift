import Foundation

// Request bodies as the authority reads them: any bytes, as each request type. Never a trap;
// what is accepted holds what the routes rely on (names that are surface names, nonces that
// fit the canonical form, states the API knows, process ids in range, bounded texts).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Data(UnsafeBufferPointer(start: data, count: size))
    if let r = try? JSONBody.decode(RegisterRequest.self, from: bytes) {
        precondition(SurfaceName.isValid(r.surface))
    }
    if let v = try? JSONBody.decode(ValidateRequest.self, from: bytes) {
        precondition(SurfaceName.isValid(v.surface) && (v.nonce.map(Decision.isValidNonce) ?? true))
    }
    // The fast path reads exactly what the full decoder reads, where it reads anything.
    if let fast = ValidateRequest.fastDecode(bytes) {
        let full = try? JSONDecoder().decode(JSONBody.Strict<ValidateRequest>.self, from: bytes).body
        precondition(full?.surface == fast.surface && full?.nonce == fast.nonce, "fast and full decoders differ")
    }
    if let r = try? JSONBody.decode(ReportRequest.self, from: bytes) {
        precondition(SurfaceName.isValid(r.deviceId) && SurfaceName.isValid(r.instance) && ReportState.all.contains(r.state))
        precondition(r.processIDs.allSatisfy { $0 > 0 } && (r.requestID?.utf8.count ?? 0) <= 128)
        precondition(r.at.map { Timestamp.parse($0) != nil } ?? true)
    }
    if let c = try? JSONBody.decode(SurfaceChangeRequest.self, from: bytes) {
        precondition(SurfaceName.isValid(c.surface) && (c.reason?.utf8.count ?? 0) <= 1000)
    }
    if let o = try? JSONBody.decode(OrgChangeRequest.self, from: bytes) {
        precondition((o.reason?.utf8.count ?? 0) <= 1000)
    }
    return 0
}
