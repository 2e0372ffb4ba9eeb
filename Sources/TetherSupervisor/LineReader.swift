import Glibc

/// Lines from a descriptor, without their newline; nil at EOF (a last line without one counts).
struct LineReader {
    let fd: Int32
    var buffer: [UInt8] = []
    var eof = false

    init(fd: Int32) { self.fd = fd }

    mutating func next() -> [UInt8]? {
        while true {
            if let nl = buffer.firstIndex(of: 10) {
                var line = Array(buffer[..<nl])
                buffer.removeSubrange(...nl)
                if line.last == 13 { line.removeLast() }
                if line.isEmpty { continue }
                return line
            }
            if eof {
                guard !buffer.isEmpty else { return nil }
                defer { buffer = [] }
                return buffer
            }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 {
                eof = true
                continue
            }
            buffer.append(contentsOf: chunk[0..<n])
        }
    }
}
