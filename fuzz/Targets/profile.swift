import Foundation

// The profile JSON reader (Docker/OCI seccomp profiles): a profile or an error with a path.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    _ = try? ProfileParser.parse(Data(bytes: data, count: size), source: "fuzz")
    return 0
}
