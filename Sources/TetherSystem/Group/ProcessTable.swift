import Foundation
import Glibc

/// One process as the kernel reports it in `/proc/PID/stat`.
public struct ProcessInfo: Sendable, Equatable {
    public var pid: pid_t
    /// `R` running, `S`/`D` sleeping, `T` stopped, `t` traced, `Z` zombie, …
    public var state: Character
    public var ppid: pid_t
    public var pgid: pid_t
    public var sid: pid_t

    /// Stopped by a signal (or traced): it runs no code until continued.
    public var isStopped: Bool { state == "T" || state == "t" }
    /// Exited; a zombie runs no code and holds nothing but its pid.
    public var isDead: Bool { state == "Z" || state == "X" }
}

/// Reads the kernel's process table.
public enum ProcessTable {
    /// Every process visible in `/proc`.
    public static func snapshot() -> [ProcessInfo] {
        guard let dir = opendir("/proc") else { return [] }
        defer { closedir(dir) }
        var out: [ProcessInfo] = []
        while let ent = readdir(dir) {
            let name = withUnsafeBytes(of: ent.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard let pid = pid_t(name), let info = stat(pid) else { continue }
            out.append(info)
        }
        return out
    }

    /// `/proc/PID/stat` of one process, or nil if it is gone.
    public static func stat(_ pid: pid_t) -> ProcessInfo? {
        guard let text = readSmallFile("/proc/\(pid)/stat") else { return nil }
        // "pid (comm) S ppid pgrp session …": comm may hold spaces and parentheses, so split
        // after the last ')'.
        guard let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ", omittingEmptySubsequences: true)
        guard fields.count >= 5, let state = fields[0].first,
              let ppid = pid_t(fields[1]), let pgid = pid_t(fields[2]), let sid = pid_t(fields[3])
        else { return nil }
        return ProcessInfo(pid: pid, state: state, ppid: ppid, pgid: pgid, sid: sid)
    }

    /// The cgroup v2 path of a process ("/tether.12.0/w-1"), from its `0::` line.
    public static func cgroupPath(of pid: pid_t) -> String? {
        guard let text = readSmallFile("/proc/\(pid)/cgroup") else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("0::") {
            return String(line.dropFirst(3))
        }
        return nil
    }

    /// A worker's processes: its process group, every descendant of its first process (a
    /// descendant that left the group with setsid is still found through its parent), and
    /// everything in `cgroupPids`.
    public static func members(leader: pid_t, group: pid_t, cgroupPids: Set<pid_t> = []) -> [ProcessInfo] {
        let all = snapshot()
        var children: [pid_t: [pid_t]] = [:]
        for p in all { children[p.ppid, default: []].append(p.pid) }
        var ids = Set(all.filter { $0.pgid == group }.map(\.pid)).union(cgroupPids)
        var stack = [leader] + Array(ids)
        while let p = stack.popLast() {
            for c in children[p] ?? [] where ids.insert(c).inserted { stack.append(c) }
        }
        ids.insert(leader)
        return all.filter { ids.contains($0.pid) }.sorted { $0.pid < $1.pid }
    }
}

/// Reads a small pseudo-file (`/proc`, `/sys/fs/cgroup`) in one go.
func readSmallFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var buf = [UInt8](repeating: 0, count: 4096)
    var out: [UInt8] = []
    while true {
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        out.append(contentsOf: buf[0..<n])
    }
    return String(decoding: out, as: UTF8.self)
}
