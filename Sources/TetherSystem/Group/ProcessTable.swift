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
            let pid = withUnsafeBytes(of: ent.pointee.d_name) { parsePID($0) }
            guard pid > 0, let info = stat(pid) else { continue }
            out.append(info)
        }
        return out
    }

    /// The direct children of this process, from `/proc/self/task/*/children` where the kernel
    /// has it (CONFIG_PROC_CHILDREN), else from a scan of every process.
    public static func children(of parent: pid_t = getpid()) -> [ProcessInfo] {
        guard parent == getpid(), let tasks = opendir("/proc/self/task") else {
            return snapshot().filter { $0.ppid == parent }
        }
        defer { closedir(tasks) }
        var pids: [pid_t] = []
        while let ent = readdir(tasks) {
            let tid = withUnsafeBytes(of: ent.pointee.d_name) { parsePID($0) }
            guard tid > 0 else { continue }
            guard let text = readSmallFile("/proc/self/task/\(tid)/children") else {
                return snapshot().filter { $0.ppid == parent }
            }
            pids += text.split(separator: " ").compactMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
        return pids.compactMap { stat($0) }
    }

    /// `/proc/PID/stat` of one process, or nil if it is gone.
    public static func stat(_ pid: pid_t) -> ProcessInfo? {
        withFileBytes("/proc/\(pid)/stat") { bytes -> ProcessInfo? in
            // "pid (comm) S ppid pgrp session …": comm may hold spaces and parentheses, so
            // read the fields after the last ')'.
            guard let close = bytes.lastIndex(of: UInt8(ascii: ")")) else { return nil }
            var fields: [Int64] = []
            var state: UInt8 = 0
            var i = close + 1
            var field = 0
            while i < bytes.count, field < 5 {
                while i < bytes.count, bytes[i] == UInt8(ascii: " ") { i += 1 }
                if field == 0 {
                    state = i < bytes.count ? bytes[i] : 0
                    i += 1
                } else {
                    var v: Int64 = 0
                    var neg = false
                    if i < bytes.count, bytes[i] == UInt8(ascii: "-") {
                        neg = true
                        i += 1
                    }
                    while i < bytes.count, bytes[i] >= 48, bytes[i] <= 57 {
                        v = v * 10 + Int64(bytes[i] - 48)
                        i += 1
                    }
                    fields.append(neg ? -v : v)
                }
                while i < bytes.count, bytes[i] != UInt8(ascii: " ") { i += 1 }
                field += 1
            }
            guard fields.count == 4, state != 0 else { return nil }
            return ProcessInfo(
                pid: pid, state: Character(UnicodeScalar(state)), ppid: pid_t(fields[0]),
                pgid: pid_t(fields[1]), sid: pid_t(fields[2]))
        } ?? nil
    }

    static func parsePID(_ name: UnsafeRawBufferPointer) -> pid_t {
        var v: pid_t = 0
        for b in name {
            if b == 0 { break }
            guard b >= 48, b <= 57 else { return 0 }
            v = v &* 10 &+ pid_t(b - 48)
        }
        return v
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

/// Reads a small pseudo-file (`/proc`, `/sys/fs/cgroup`) and hands its bytes to `body`.
/// One 8 KiB stack buffer covers nearly all of them; larger ones are read to the end.
func withFileBytes<T>(_ path: String, _ body: (UnsafeBufferPointer<UInt8>) -> T) -> T? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 8192) { buf -> T? in
        var total = 0
        while total < buf.count {
            let n = read(fd, buf.baseAddress! + total, buf.count - total)
            if n < 0 && errno == EINTR { continue }
            if n < 0 { return nil }
            if n == 0 { return body(UnsafeBufferPointer(rebasing: buf[0..<total])) }
            total += n
        }
        var more = Array(buf)
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            more.append(contentsOf: chunk[0..<n])
        }
        return more.withUnsafeBufferPointer(body)
    }
}

func readSmallFile(_ path: String) -> String? {
    withFileBytes(path) { String(decoding: $0, as: UTF8.self) }
}
