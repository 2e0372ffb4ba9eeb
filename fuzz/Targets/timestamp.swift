import Foundation

// RFC 3339 times, from request bodies (a report's `at`), queries (audit's since/until) and
// answers: never a trap (ICU's SIGFPE, a pre-1970 time written back trapped), and what is
// read writes back and reads again to the same millisecond.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    guard let d = Timestamp.parse(text) else { return 0 }
    let written = Timestamp.string(d)
    guard let again = Timestamp.parse(written) else { preconditionFailure("\(written) does not read back") }
    precondition(Timestamp.string(again) == written, "\(written) changed on a second read")
    return 0
}
