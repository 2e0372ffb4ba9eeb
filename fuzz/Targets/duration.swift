// Durations from flags, files and `?wait=`: never a trap, never negative, never over the bound.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    if let d = DurationText.parse(text) {
        precondition(d >= .zero && d <= DurationText.longest, "out of bounds: \(text) → \(d)")
        _ = DurationText.format(d)
    }
    return 0
}
