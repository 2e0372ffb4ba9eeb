import Foundation
import Glibc
import Logging

/// cgroup v2 directories for workers.
///
/// A process group can be left with setsid(); a cgroup cannot be left without write access to
/// another cgroup. Each supervisor makes `tether.<pid>.<n>` under its own cgroup and one
/// directory per worker below it. Freezing and killing act on the cgroup, so they reach every
/// descendant, wherever its process group went.
public struct CgroupRoot: Sendable {
    /// Absolute path of the supervisor's directory (`/sys/fs/cgroup/…/tether.812.0`).
    public let path: String
    /// The same path as `/proc/PID/cgroup` shows it (relative to the cgroup2 mount).
    public let relativePath: String

    /// Finds the cgroup2 mount and makes this supervisor's directory under its own cgroup.
    /// Nil, with the reason, when it cannot: then workers are contained by process group only.
    public static func create(tag: Int, logger: Logger) -> Result<CgroupRoot, CgroupUnavailable> {
        guard let mount = cgroup2Mount() else {
            return .failure(CgroupUnavailable(reason: "no cgroup2 file system is mounted"))
        }
        guard let own = ProcessTable.cgroupPath(of: getpid()) else {
            return .failure(CgroupUnavailable(reason: "/proc/self/cgroup has no cgroup v2 entry"))
        }
        let parent = mount + (own == "/" ? "" : own)
        removeStale(in: parent, logger: logger)
        let name = "tether.\(getpid()).\(tag)"
        let path = parent + "/" + name
        if mkdir(path, 0o755) != 0 && errno != EEXIST {
            return .failure(CgroupUnavailable(reason: "cannot create \(path): \(String(cString: strerror(errno)))"))
        }
        guard access(path + "/cgroup.freeze", W_OK) == 0, access(path + "/cgroup.procs", W_OK) == 0 else {
            rmdir(path)
            return .failure(CgroupUnavailable(reason: "\(path) has no writable cgroup.freeze (kernel older than 5.2?)"))
        }
        return .success(CgroupRoot(path: path, relativePath: (own == "/" ? "" : own) + "/" + name))
    }

    /// A new, empty cgroup for one worker.
    public func makeWorkerCgroup(name: String) throws(SystemError) -> Cgroup {
        let path = self.path + "/" + name
        try syscallRetrying("mkdir", path) { mkdir(path, 0o755) }
        return Cgroup(path: path, relativePath: relativePath + "/" + name)
    }

    /// Removes the supervisor's directory once its workers are gone (at a clean exit).
    @discardableResult public func remove() -> Bool {
        Cgroup(path: path, relativePath: relativePath).removeTree()
    }

    /// `cgroup.kill` of the supervisor's directory, which kills every worker under it at once;
    /// the keeper holds it open.
    public func openKillFile() -> Int32 {
        open(path + "/cgroup.kill", O_WRONLY | O_CLOEXEC)
    }

    /// Directories left by supervisors that died (`tether.<pid>.<n>` whose pid is gone): kill
    /// what is left in them and remove them.
    static func removeStale(in parent: String, logger: Logger) {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: parent) else { return }
        for e in entries where e.hasPrefix("tether.") {
            let parts = e.split(separator: ".")
            guard parts.count == 3, let pid = pid_t(parts[1]), pid != getpid() else { continue }
            if kill(pid, 0) == 0 || errno == EPERM { continue }
            let dir = Cgroup(path: parent + "/" + e, relativePath: "")
            if dir.pids().isEmpty {
                logger.debug("removing the empty cgroup of a supervisor that is gone", metadata: ["cgroup": "\(dir.path)"])
            } else {
                logger.warning("killing what is left in the cgroup of a supervisor that is gone", metadata: ["cgroup": "\(dir.path)"])
                _ = dir.kill()
                var tries = 0
                while !dir.pids().isEmpty, tries < 100 {
                    usleep(1000)
                    tries += 1
                }
            }
            dir.removeTree()
        }
    }

    static func cgroup2Mount() -> String? {
        guard let text = readSmallFile("/proc/self/mountinfo") else { return nil }
        // "36 25 0:31 / /sys/fs/cgroup/unified rw,… - cgroup2 cgroup2 rw,…"
        for line in text.split(separator: "\n") {
            let halves = line.components(separatedBy: " - ")
            guard halves.count == 2, halves[1].hasPrefix("cgroup2 ") else { continue }
            let fields = halves[0].split(separator: " ")
            if fields.count >= 5 { return String(fields[4]) }
        }
        return nil
    }
}

public struct CgroupUnavailable: Error, Sendable, CustomStringConvertible {
    public var reason: String
    public var description: String { reason }
}

/// One worker's cgroup.
public struct Cgroup: Sendable {
    public let path: String
    public let relativePath: String

    /// `cgroup.events`: whether any process is left, and whether the freeze has completed.
    public struct Events: Sendable, Equatable {
        public var populated: Bool
        public var frozen: Bool
    }

    public func events() -> Events? {
        guard let text = readSmallFile(path + "/cgroup.events") else { return nil }
        var e = Events(populated: false, frozen: false)
        for line in text.split(separator: "\n") {
            let kv = line.split(separator: " ")
            guard kv.count == 2 else { continue }
            if kv[0] == "populated" { e.populated = kv[1] == "1" }
            if kv[0] == "frozen" { e.frozen = kv[1] == "1" }
        }
        return e
    }

    /// Every pid in this cgroup and the cgroups below it (a root worker could make some).
    public func pids() -> Set<pid_t> {
        var out = Set<pid_t>()
        var dirs = [path]
        while let d = dirs.popLast() {
            for line in (readSmallFile(d + "/cgroup.procs") ?? "").split(separator: "\n") {
                if let p = pid_t(line) { out.insert(p) }
            }
            // Sub-cgroups, from readdir's d_type (cgroupfs fills it): no stat per file.
            guard let dir = opendir(d) else { continue }
            while let ent = readdir(dir) {
                guard ent.pointee.d_type == UInt8(DT_DIR) else { continue }
                let name = withUnsafeBytes(of: ent.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                if name != "." && name != ".." { dirs.append(d + "/" + name) }
            }
            closedir(dir)
        }
        return out
    }

    @discardableResult public func freeze() -> Bool { write("cgroup.freeze", "1") }
    @discardableResult public func thaw() -> Bool { write("cgroup.freeze", "0") }

    /// `cgroup.kill` (5.14+): SIGKILL to every process below, atomically with respect to forks.
    /// Older kernels: freeze, SIGKILL every pid, thaw so the kills are delivered.
    @discardableResult public func kill() -> Bool {
        if write("cgroup.kill", "1") { return true }
        freeze()
        for p in pids() { _ = Glibc.kill(p, SIGKILL) }
        return thaw()
    }

    /// Opens `cgroup.procs` for the child path to write itself into.
    func openProcs() -> Int32 { open(path + "/cgroup.procs", O_WRONLY | O_CLOEXEC) }

    /// Removes the directory and any below it; a cgroup with processes cannot be removed.
    @discardableResult public func removeTree() -> Bool {
        if let subs = try? FileManager.default.contentsOfDirectory(atPath: path) {
            for s in subs where isDirectory(path + "/" + s) {
                Cgroup(path: path + "/" + s, relativePath: relativePath + "/" + s).removeTree()
            }
        }
        return rmdir(path) == 0 || errno == ENOENT
    }

    private func write(_ file: String, _ value: String) -> Bool {
        let fd = open(path + "/" + file, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return value.withCString { Glibc.write(fd, $0, strlen($0)) } == value.utf8.count
    }
}

func isDirectory(_ path: String) -> Bool {
    var st = stat()
    return lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
}
