// The SSE parser (the watch stream, from a possibly hostile authority): bounded, never a trap.
// The input is fed in two pieces split at its first byte's value, to exercise chunk edges.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    var p = SSEParser(maxLine: 4096, maxEvent: 8192)
    let cut = bytes.isEmpty ? 0 : Int(bytes[0]) % (bytes.count + 1)
    do {
        for e in try p.feed(bytes[..<cut]) + p.feed(bytes[cut...]) {
            precondition(e.data.utf8.count <= 8192 + 4096, "an event over the bound")
        }
    } catch {}
    return 0
}
