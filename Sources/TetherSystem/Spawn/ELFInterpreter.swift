import Glibc

/// The program interpreter (`PT_INTERP`) an ELF executable names, e.g.
/// `/lib64/ld-linux-x86-64.so.2`: the kernel execs it too, so an exec allow-list needs it.
enum ELFInterpreter {
    static func of(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        func read(_ count: Int, at offset: UInt64) -> [UInt8]? {
            var buf = [UInt8](repeating: 0, count: count)
            let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
            return n == count ? buf : nil
        }
        // 64-bit little-endian only (x86_64, aarch64): anything else has no interpreter we know.
        guard let h = read(64, at: 0), h[0] == 0x7f, h[1] == 0x45, h[2] == 0x4c, h[3] == 0x46, h[4] == 2, h[5] == 1 else { return nil }
        func u(_ b: [UInt8], _ at: Int, _ size: Int) -> UInt64 {
            (0..<size).reduce(UInt64(0)) { $0 | UInt64(b[at + $1]) << (8 * UInt64($1)) }
        }
        let phoff = u(h, 32, 8), phentsize = Int(u(h, 54, 2)), phnum = Int(u(h, 56, 2))
        guard phentsize >= 56, phnum < 512 else { return nil }
        for i in 0..<phnum {
            guard let ph = read(phentsize, at: phoff + UInt64(i * phentsize)) else { return nil }
            guard u(ph, 0, 4) == 3 else { continue }  // PT_INTERP
            let size = Int(u(ph, 32, 8))
            guard size > 1, size < 4096, let bytes = read(size, at: u(ph, 8, 8)) else { return nil }
            return String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
        }
        return nil
    }
}
