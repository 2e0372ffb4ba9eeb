import CSeccomp
import Foundation
import Glibc
import Synchronization
import TetherCore

/// What keeps a worker out of its supervisor's reach, beyond its seccomp filter: its own PID,
/// mount, IPC and cgroup namespaces (and a user namespace when the supervisor is not root), a
/// mount namespace in which the supervisor's secrets are covered and the cgroup file system is
/// read-only, and an identity that is never the supervisor's privilege: a root supervisor runs
/// a worker with no `user` as a dedicated unprivileged uid.
public struct ContainmentPolicy: Sendable, Equatable {
    /// Files and directories no worker may see (covered in its mount namespace): the state
    /// directory, key files. Paths that do not exist are skipped.
    public var hiddenPaths: [String]
    /// Run the worker anyway — in the supervisor's namespaces, contained by process group,
    /// cgroup and seccomp only — when its namespaces cannot be made. Loudly named on purpose.
    public var acceptWeak: Bool

    public init(hiddenPaths: [String] = [], acceptWeak: Bool = false) {
        self.hiddenPaths = hiddenPaths
        self.acceptWeak = acceptWeak
    }

    /// Mount points made read-only for the worker: the cgroup file systems.
    static func readonlyMounts() -> [String] {
        var out = ["/sys/fs/cgroup"]
        if let m = CgroupRoot.cgroup2Mount(), !m.hasPrefix("/sys/fs/cgroup") { out.append(m) }
        return out.filter { FileManager.default.fileExists(atPath: $0) }
    }
}

/// Who a worker runs as, decided in the parent before the spawn.
struct WorkerIdentity: Sendable {
    /// Drop to these ids (the supervisor must be root to change them).
    var ids: Credentials?
    /// The worker is uid 0 in a user namespace of its own, mapped to `ids` (or the
    /// supervisor's own ids) outside.
    var rootInUserNamespace: Bool
    /// The dynamic uid's lock, held until the worker is reaped.
    var lease: DynamicUser.Lease?

    var description: String {
        let base = ids.map { "\($0.name) (uid \($0.uid))" } ?? "uid \(geteuid())"
        return rootInUserNamespace ? "root in its own user namespace, \(base) outside" : base
    }

    /// `user` as configured, for a supervisor running as `euid`:
    /// - root supervisor, no user: a dedicated dynamic uid (never root, never the supervisor's);
    /// - `root` / `0`: root inside a user namespace of its own, a dynamic uid outside;
    /// - another user: that user;
    /// - unprivileged supervisor: its own uid (it can change to no other), or root in a user
    ///   namespace mapped to it.
    static func resolve(spec: WorkerSpec, workerName: String, euid: uid_t = geteuid()) throws(SpawnError) -> WorkerIdentity {
        let wantsRoot = spec.runsAsRoot
        if euid != 0 {
            if let user = spec.user, !wantsRoot {
                let c = try Credentials.resolve(user: user, group: spec.group)
                if c?.uid != euid {
                    throw SpawnError(
                        stage: .setuid, errno: EPERM,
                        message:
                            "cannot run the worker as \(user): only a supervisor running as root can change users (this one runs as uid \(euid))"
                    )
                }
            }
            return WorkerIdentity(ids: nil, rootInUserNamespace: wantsRoot, lease: nil)
        }
        if let user = spec.user, !wantsRoot {
            return WorkerIdentity(ids: try Credentials.resolve(user: user, group: spec.group), rootInUserNamespace: false, lease: nil)
        }
        let lease = try DynamicUser.acquire(for: workerName)
        var creds = Credentials(uid: lease.uid, gid: lease.uid, name: "tether-\(lease.uid)", home: "/")
        if let group = spec.group { creds.gid = try Credentials.groupID(group) }
        return WorkerIdentity(ids: creds, rootInUserNamespace: wantsRoot, lease: lease)
    }
}

/// Dedicated uids for workers of a root supervisor, as systemd's `DynamicUser=`: from the same
/// range (61184–65519), none with a passwd entry, each held by a lock file under
/// `/run/tether/dynamic-uid` while a worker runs as it. A worker's uid is derived from its
/// name, so a restarted worker gets its files back; a collision takes the next free one.
enum DynamicUser {
    static let range: ClosedRange<uid_t> = 61184...65519
    static let directory = "/run/tether/dynamic-uid"

    final class Lease: Sendable {
        let uid: uid_t
        private let fd: Int32
        init(uid: uid_t, fd: Int32) {
            self.uid = uid
            self.fd = fd
        }
        deinit { close(fd) }
    }

    static func acquire(for name: String) throws(SpawnError) -> Lease {
        for dir in ["/run/tether", directory] {
            if mkdir(dir, 0o700) != 0 && errno != EEXIST {
                throw SpawnError(stage: .setuid, errno: errno, message: "cannot create \(dir) for dynamic worker uids")
            }
        }
        let span = UInt32(range.count)
        var h: UInt32 = 2166136261  // FNV-1a: stable across runs, unlike Hasher
        for b in name.utf8 { h = (h ^ UInt32(b)) &* 16777619 }
        for i in 0..<span {
            let uid = range.lowerBound + uid_t((h &+ i) % span)
            if getpwuid(uid) != nil { continue }
            let fd = open("\(directory)/\(uid)", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
            guard fd >= 0 else { continue }
            if flock(fd, LOCK_EX | LOCK_NB) == 0 { return Lease(uid: uid, fd: fd) }
            close(fd)
        }
        throw SpawnError(stage: .setuid, errno: EAGAIN, message: "no free dynamic uid in \(range.lowerBound)–\(range.upperBound)")
    }
}

/// Descriptors every contained spawn uses, opened once: the program the init is exec'd from
/// (the path may be hidden in the worker's mount namespace, or replaced by an upgrade), and the
/// supervisor's own pidfd (a child that finds it gone stops).
enum ContainmentFDs {
    /// `tether-init` (init/tether-init.c: static, libc only) beside this binary — where
    /// `make build` and bench/run.sh put it — or in `../libexec/tether/`, where `make install`
    /// does; else this binary itself, whose C constructor is the same init, at the cost of a
    /// fresh exec of the whole binary per worker (about 2 MiB of private pages each).
    static let executable: Int32 = {
        let me = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
        let dir = (me as NSString).deletingLastPathComponent
        for candidate in [dir + "/tether-init", dir + "/../libexec/tether/tether-init"] where access(candidate, X_OK) == 0 {
            let fd = open(candidate, O_RDONLY | O_CLOEXEC)
            if fd >= 0 { return fd }
        }
        return selfExecutable
    }()
    /// This binary, opened once: it serves as init and keeper wherever tether-init does not.
    static let selfExecutable: Int32 = open("/proc/self/exe", O_RDONLY | O_CLOEXEC)

    /// The path a descriptor was opened from, for messages.
    static func path(of fd: Int32) -> String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fd)")) ?? "descriptor \(fd)"
    }
    static let supervisor: Int32 = tether_pidfd_open(getpid())
}

/// The worker's wait status as its init reports it: the init exits with it, but as PID 1 it
/// cannot die of the worker's signal, so the exact status comes over a pipe.
final class InitStatusPipe: Sendable {
    let readFD: Int32
    let writeFD: Int32
    private let writeClosed = Atomic<Bool>(false)

    init() throws(SpawnError) {
        var fds: [Int32] = [-1, -1]
        let rc = tether_pipe_nonblock(&fds)
        guard rc == 0 else {
            throw SpawnError(stage: .pipe, errno: -rc, message: "cannot create the init's status pipe")
        }
        readFD = fds[0]
        writeFD = fds[1]
    }

    /// After the spawn: the init holds the only write end.
    func closeWriteEnd() {
        if !writeClosed.exchange(true, ordering: .relaxed) { close(writeFD) }
    }

    /// The worker's status once the init has exited, or nil if it wrote none (it was killed).
    func read() -> ExitStatus? {
        var status: Int32 = 0
        let n = withUnsafeMutableBytes(of: &status) { Glibc.read(readFD, $0.baseAddress, 4) }
        guard n == 4 else { return nil }
        let sig = status & 0x7f
        return sig == 0 ? .exited((status >> 8) & 0xff) : .signaled(sig)
    }

    deinit {
        closeWriteEnd()
        close(readFD)
    }
}

/// A descriptor closed when the last owner lets go (the Landlock ruleset of a spawn).
final class OwnedFD: Sendable {
    let rawValue: Int32
    init(_ fd: Int32) { rawValue = fd }
    deinit { if rawValue >= 0 { close(rawValue) } }
}
