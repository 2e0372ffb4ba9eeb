import Foundation
import Glibc

/// The authority's state directory: database, signing key, the first keys, the address it
/// serves on. Mode 0700; secrets 0600. Its paths and ownership rules, which the CLI, the
/// supervisor and the authority share; making one (`initialize`) is the authority's.
public struct StateDirectory: Sendable {
    public let path: String

    public init(path: String) { self.path = path }

    /// `$STATE_DIRECTORY` (systemd's `StateDirectory=`), else `/var/lib/tether` for root, else
    /// `$XDG_STATE_HOME/tether` or `~/.local/state/tether` — the home directory from the
    /// password database when `HOME` is unset, never a shared directory like /tmp, where
    /// another user could create it first.
    public static func defaultPath(environment env: [String: String] = Foundation.ProcessInfo.processInfo.environment) -> String {
        if let s = env["STATE_DIRECTORY"], !s.isEmpty { return s.split(separator: ":").first.map(String.init) ?? s }
        if getuid() == 0 { return "/var/lib/tether" }
        if let x = env["XDG_STATE_HOME"], !x.isEmpty, x.hasPrefix("/") { return x + "/tether" }
        if let h = env["HOME"], h.hasPrefix("/") { return h + "/.local/state/tether" }
        if let pw = getpwuid(getuid()), let dir = pw.pointee.pw_dir, dir.pointee != 0 {
            return String(cString: dir) + "/.local/state/tether"
        }
        return "/nonexistent/.local/state/tether"
    }

    /// Refuses a directory another user could have made or could change: it must be a
    /// directory owned by this user and writable by nobody else, and every directory above it
    /// owned by this user or root and writable by nobody else (unless sticky, as /tmp: then
    /// nobody can rename what is in it). A link is judged by where it leads (systemd's
    /// `DynamicUser=` makes /var/lib/tether a link to /var/lib/private/tether). A missing
    /// directory passes (it is created 0700), as long as what exists above it passes.
    /// `forWriting: false` (reading a key) lets root use a service user's directory, as
    /// on-call does with the systemd layout; writing into another user's directory — where
    /// that user could plant links — is refused even for root.
    public func checkOwnership(euid: uid_t = geteuid(), forWriting: Bool = true) throws {
        var st = stat()
        var path = self.path
        if let real = realpath(path, nil) {
            path = String(cString: real)
            free(real)
        }
        if stat(path, &st) == 0 {
            guard (st.st_mode & S_IFMT) == S_IFDIR else { throw StateDirectoryError("refusing state directory \(path): not a directory") }
            // Root may read a service user's directory (systemd's DynamicUser= owns the authority's).
            guard st.st_uid == euid || (euid == 0 && !forWriting) else {
                throw StateDirectoryError(
                    "refusing state directory \(path): owned by uid \(st.st_uid), not by this user (uid \(euid)); someone else may have created it"
                )
            }
            guard st.st_mode & 0o022 == 0 else {
                throw StateDirectoryError(
                    "refusing state directory \(path): writable by group or others (mode \(String(st.st_mode & 0o777, radix: 8))); chmod 700 it"
                )
            }
        }
        var dir = (path as NSString).deletingLastPathComponent
        while !dir.isEmpty {
            if stat(dir, &st) == 0 {
                guard st.st_uid == euid || st.st_uid == 0 else {
                    throw StateDirectoryError("refusing state directory \(path): \(dir) is owned by uid \(st.st_uid), who could replace it")
                }
                guard st.st_mode & 0o022 == 0 || st.st_mode & UInt32(S_ISVTX) != 0 else {
                    throw StateDirectoryError(
                        "refusing state directory \(path): \(dir) is writable by others (mode \(String(st.st_mode & 0o7777, radix: 8)))")
                }
            }
            if dir == "/" { break }
            dir = (dir as NSString).deletingLastPathComponent
        }
    }

    public var database: String { path + "/authority.sqlite" }
    /// Where the signing key was kept before keys moved into the database: imported once.
    public var legacySigningKey: String { path + "/signing.key" }
    /// The published signing keys (a key set: what supervisors on this host pin), rewritten
    /// when they change.
    public var publicKey: String { path + "/signing.pub" }
    public var operatorKey: String { keyFile(role: "operator") }
    public var agentKey: String { keyFile(role: "agent") }
    /// The first key of a role, as `authority init` writes it.
    public func keyFile(role: String) -> String { path + "/\(role).key" }
    /// Written by `serve`: the URL it listens on, for the local CLI.
    public var endpointFile: String { path + "/authority.url" }

    public var isInitialized: Bool { FileManager.default.fileExists(atPath: database) }

    public func writeSecret(_ file: String, _ content: String) throws {
        let fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw StateDirectoryError("cannot write \(file): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        fchmod(fd, 0o600)
        let bytes = Array(content.utf8)
        guard write(fd, bytes, bytes.count) == bytes.count, fsync(fd) == 0 else {
            throw StateDirectoryError("cannot write \(file): \(String(cString: strerror(errno)))")
        }
    }
}

/// Who is at the keyboard, for the audit log of local commands (`tether keys …`).
public func localActor() -> String {
    if let pw = getpwuid(getuid()) { return "local:" + String(cString: pw.pointee.pw_name) }
    return "local:uid\(getuid())"
}

/// A state directory refused or not written, with the reason.
public struct StateDirectoryError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
