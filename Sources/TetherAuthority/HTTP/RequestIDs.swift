import Foundation
import Synchronization

/// Request IDs: random (version 4) UUIDs, upper-case as Foundation's `uuidString` writes them,
/// drawn from a pool of random bytes that one `getrandom(2)` (glibc's `arc4random_buf`) refills
/// every 256 IDs. `UUID()`
/// made a system call for every request, and every request needs an ID (validate's hot path).
enum RequestIDs {
    private struct Pool: ~Copyable {
        var bytes = [UInt8](repeating: 0, count: 4096)
        var next = 4096
    }
    private static let pool = Mutex(Pool())

    static func next() -> String {
        var raw = (UInt64(0), UInt64(0))
        withUnsafeMutableBytes(of: &raw) { out in
            pool.withLock { p in
                if p.next + 16 > p.bytes.count {
                    p.bytes.withUnsafeMutableBytes { fill($0) }
                    p.next = 0
                }
                p.bytes.withUnsafeBytes { out.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[p.next..<p.next + 16])) }
                p.next += 16
            }
        }
        return withUnsafeBytes(of: raw) { format($0) }
    }

    /// 8-4-4-4-12 upper-case hex, with the version (4) and variant (10xx) bits set.
    static func format(_ b: UnsafeRawBufferPointer) -> String {
        let hex: StaticString = "0123456789ABCDEF"
        return String(unsafeUninitializedCapacity: 36) { out in
            hex.withUTF8Buffer { digits in
                var o = 0
                for i in 0..<16 {
                    if i == 4 || i == 6 || i == 8 || i == 10 {
                        out[o] = 0x2D
                        o += 1
                    }
                    var v = b[i]
                    if i == 6 { v = v & 0x0F | 0x40 }
                    if i == 8 { v = v & 0x3F | 0x80 }
                    out[o] = digits[Int(v >> 4)]
                    out[o + 1] = digits[Int(v & 0x0F)]
                    o += 2
                }
            }
            return 36
        }
    }

    /// glibc's arc4random_buf: getrandom(2), looping over short reads and EINTR.
    private static func fill(_ buf: UnsafeMutableRawBufferPointer) {
        arc4random_buf(buf.baseAddress!, buf.count)
    }
}
