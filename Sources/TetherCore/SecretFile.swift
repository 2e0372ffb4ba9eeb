import Foundation
import Glibc

/// Reads a secret — an API key, a signing key — the way a secret must be read: not through a
/// symbolic link (O_NOFOLLOW: a link another user planted cannot redirect it), only a regular
/// file, owned by this user or root (root may read any user's), and neither writable by others
/// nor readable by everyone.
public enum SecretFile {
    public struct Refused: Error, Sendable, CustomStringConvertible {
        public var path: String
        public var reason: String
        public var description: String { "\(path): \(reason)" }
    }

    public static func read(_ path: String, euid: uid_t = geteuid()) throws(Refused) -> String {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY)
        guard fd >= 0 else {
            let e = errno
            throw Refused(
                path: path, reason: e == ELOOP ? "is a symbolic link; secrets are opened only directly" : String(cString: strerror(e)))
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw Refused(path: path, reason: String(cString: strerror(errno))) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw Refused(path: path, reason: "is not a regular file") }
        // Root reads service users' files too: the on-call engineer's `tether revoke` reads the
        // operator key the authority's dynamic user owns.
        guard st.st_uid == euid || st.st_uid == 0 || euid == 0 else {
            throw Refused(path: path, reason: "is owned by uid \(st.st_uid), not by this user (uid \(euid)) or root")
        }
        guard st.st_mode & 0o022 == 0 else {
            throw Refused(path: path, reason: "is writable by group or others (mode \(String(st.st_mode & 0o777, radix: 8))); chmod 600 it")
        }
        guard st.st_mode & 0o004 == 0 else {
            throw Refused(path: path, reason: "is readable by every user (mode \(String(st.st_mode & 0o777, radix: 8))); chmod 600 it")
        }
        var data = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 4096)
        while data.count < 1 << 20 {
            let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw Refused(path: path, reason: String(cString: strerror(errno))) }
            if n == 0 { break }
            data += buf[0..<n]
        }
        return String(decoding: data, as: UTF8.self)
    }
}
