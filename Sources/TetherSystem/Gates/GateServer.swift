import CSeccomp
import Foundation
import Glibc
import Synchronization
import TetherCore

/// A denied (or, in `record` mode, would-be denied) gated call, counted.
public struct GateDenial: Sendable, Hashable {
    public var gate: GateKind
    /// The syscall's name: `connect`, `execve`, `openat`, …
    public var call: String
    public var pid: Int32
    /// The process's executable when it was first denied (`/proc/PID/exe`), or "?".
    public var executable: String
    /// Record mode: logged and reported, let through.
    public var recorded: Bool
}

/// Answers a worker's gated syscalls from the gates' current state, on a thread of its own.
///
/// The decision reads the syscall number and register arguments and, for a closed `net` gate,
/// the kind of socket a descriptor names (a kernel object, copied with pidfd_getfd) — never
/// memory behind a pointer, which another thread of the worker can rewrite between the check
/// and the kernel's own read. An open gate lets every call continue at once.
///
/// Only this object holds the listener. When it goes (`stop`, or the supervisor dies), the
/// kernel fails every gated call of the worker (`ENOSYS`): no answer is a no.
public final class GateServer: Sendable {
    public let kinds: Set<GateKind>
    private let modes: [GateKind: GateMode]
    private let byNumber: [Int32: GateKind]
    private let names: [Int32: String]
    // Per gate: open (true) or closed. Read on every gated call, written by the enforcement.
    private let execOpen = Atomic<Bool>(false)
    private let netOpen = Atomic<Bool>(false)
    private let writeOpen = Atomic<Bool>(false)
    private let listener: Int32
    private let thread = PollThread(name: "tether-gates")
    private let denials = Mutex<(counts: [GateDenial: Int], exes: [Int32: String])>(([:], [:]))
    private let answered = Atomic<Int>(0)

    static let socketNR = seccomp_syscall_resolve_name("socket")
    static let afUnix = Int32(AF_UNIX), afNetlink = Int32(AF_NETLINK)

    /// Starts answering on `listener` (taken over: closed when the server ends). Every gate
    /// starts as `open` says, closed when not named.
    init(listener: Int32, gates: [GateConfig], open: Set<GateKind>) {
        self.listener = listener
        kinds = Set(gates.map(\.kind))
        modes = Dictionary(gates.map { ($0.kind, $0.mode) }, uniquingKeysWith: { a, _ in a })
        var byNumber: [Int32: GateKind] = [:], names: [Int32: String] = [:]
        for k in kinds {
            for nr in GateFilter.numbers(k) {
                byNumber[nr] = k
                names[nr] = GateFilter.name(ofSyscall: nr)
            }
        }
        self.byNumber = byNumber
        self.names = names
        for k in kinds { set(k, open: open.contains(k)) }
        thread.start({ [self] in answerOne() }, end: { [listener] in close(listener) })
    }

    deinit { stop() }

    public func set(_ kind: GateKind, open: Bool) {
        switch kind {
        case .exec: execOpen.store(open, ordering: .releasing)
        case .net: netOpen.store(open, ordering: .releasing)
        case .write: writeOpen.store(open, ordering: .releasing)
        }
    }

    public func isOpen(_ kind: GateKind) -> Bool {
        switch kind {
        case .exec: return execOpen.load(ordering: .acquiring)
        case .net: return netOpen.load(ordering: .acquiring)
        case .write: return writeOpen.load(ordering: .acquiring)
        }
    }

    public func mode(_ kind: GateKind) -> GateMode { modes[kind] ?? .enforce }

    /// Gated calls answered so far (allowed or not).
    public var answeredCount: Int { answered.load(ordering: .relaxed) }

    /// The denials since the last call, and forgets them.
    public func drainDenials() -> [(GateDenial, Int)] {
        denials.withLock { d in
            let out = d.counts.sorted { ($0.key.gate, $0.key.call, $0.key.pid) < ($1.key.gate, $1.key.call, $1.key.pid) }.map {
                ($0.key, $0.value)
            }
            d.counts = [:]
            d.exes = [:]  // a pid may be another process by the next flush
            return out
        }
    }

    /// Stops answering and closes the listener: from then on the worker's gated calls fail.
    /// Returns once the listener is closed.
    public func stop() {
        guard !thread.isFinished else { return }
        thread.poke()
        thread.join()
    }

    /// Whether the listener is closed (the worker is gone, or `stop`).
    public var isFinished: Bool { thread.isFinished }

    // MARK: - the thread

    /// One gated call answered; false once stopped, or no process uses the filter any more.
    private func answerOne() -> Bool {
        guard tether_notif_wait(listener, thread.wake) == 1 else { return false }
        var req = tether_notif()
        let rc = tether_notif_recv(listener, &req)
        if rc == -ENOENT || rc == -EINTR { return true }  // the caller was interrupted; it asks again
        if rc < 0 { return false }
        let err = decide(req)
        answered.add(1, ordering: .relaxed)  // before the answer wakes the caller
        _ = tether_notif_respond(listener, req.id, err)  // -ENOENT: interrupted meanwhile
        return true
    }

    /// 0 lets the call continue; otherwise its errno.
    private func decide(_ req: tether_notif) -> Int32 {
        guard let kind = byNumber[req.nr] else { return 0 }  // not a gated call: cannot happen (the filter)
        if isOpen(kind) { return 0 }
        if kind == .net && !isInet(req) { return 0 }
        let recorded = mode(kind) == .record
        note(GateDenial(gate: kind, call: names[req.nr] ?? "syscall \(req.nr)", pid: req.pid, executable: "", recorded: recorded))
        return recorded ? 0 : EPERM
    }

    /// Whether a `net` call is about the network: `socket` of a family other than Unix or
    /// netlink; the other calls on a socket that is not a Unix or netlink one. A descriptor
    /// that cannot be looked at counts as network (fail closed).
    private func isInet(_ req: tether_notif) -> Bool {
        let fdOrFamily = Int32(truncatingIfNeeded: req.args.0)  // the kernel reads an int
        if req.nr == Self.socketNR { return fdOrFamily != Self.afUnix && fdOrFamily != Self.afNetlink }
        let domain = tether_socket_domain_of(req.pid, listener, req.id, fdOrFamily)
        return !(domain == Self.afUnix || domain == Self.afNetlink)
    }

    private func note(_ d: GateDenial) {
        denials.withLock { s in
            var d = d
            if let exe = s.exes[d.pid] {
                d.executable = exe
            } else {
                let exe = Self.executable(d.pid)
                s.exes[d.pid] = exe
                d.executable = exe
            }
            s.counts[d, default: 0] += 1
        }
    }

    static func executable(_ pid: Int32) -> String {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/\(pid)/exe", &buf, buf.count - 1)
        // The worker named it: one printable line from here on (reports, logs, status).
        return n > 0 ? PrintableText.escape(String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self), limit: 200) : "?"
    }

    // MARK: - connections already open

    /// Shuts down every IPv4/IPv6 socket the processes `pids` hold: what a closed `net` gate
    /// does to connections made before it closed. Returns how many it shut down.
    public static func shutDownInetSockets(of pids: [Int32]) -> Int {
        var shut = 0
        for pid in pids {
            let pidfd = tether_pidfd_open(pid)
            guard pidfd >= 0 else { continue }
            defer { close(pidfd) }
            guard let dir = opendir("/proc/\(pid)/fd") else { continue }
            defer { closedir(dir) }
            while let e = readdir(dir) {
                let name = withUnsafeBytes(of: e.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
                guard let fd = Int32(name) else { continue }
                var buf = [CChar](repeating: 0, count: 64)
                let n = readlinkat(dirfd(dir), name, &buf, buf.count - 1)
                guard n > 7, String(cString: buf).hasPrefix("socket:") else { continue }
                if tether_shutdown_inet_socket(pidfd, fd) == 1 { shut += 1 }
            }
        }
        return shut
    }
}
