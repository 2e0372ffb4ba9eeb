import SystemPackage

#if canImport(Glibc)
    import Glibc
#endif

/// A failed system call: which call, on what, and the errno.
public struct SystemError: Error, Sendable, CustomStringConvertible {
    public var call: String
    public var errno: Errno
    public var detail: String?

    public init(_ call: String, _ errno: Errno, _ detail: String? = nil) {
        self.call = call
        self.errno = errno
        self.detail = detail
    }

    public var description: String {
        "\(call)\(detail.map { " (\($0))" } ?? ""): \(errno)"
    }
}

/// Runs a system call, retrying EINTR, and turns -1/errno into a typed error.
@discardableResult
func syscallRetrying<T: FixedWidthInteger>(
    _ name: String, _ detail: @autoclosure () -> String? = nil, _ body: () -> T
) throws(SystemError) -> T {
    while true {
        let r = body()
        if r != -1 { return r }
        let e = Errno(rawValue: Glibc.errno)
        if e == .interrupted { continue }
        throw SystemError(name, e, detail())
    }
}
