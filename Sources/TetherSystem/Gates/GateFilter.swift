import CSeccomp
import Glibc
import TetherCore

/// The filter of a worker's gates: default allow, and `SCMP_ACT_NOTIFY` for exactly the calls
/// the gates cover, so that only those reach the supervisor. Every condition is on a register
/// argument (flags, an address family, whether an address pointer is null): the kernel checks
/// it, and a read-only `open` under a `write` gate never leaves the kernel.
///
/// It is stacked on the profile's filter, and the kernel takes the strictest answer of the two
/// (an `ERRNO` or a kill beats a notification): a gate never lets through what the profile
/// denies.
public struct GateFilter: @unchecked Sendable {
    // @unchecked: `sock_filter` is a plain C struct of integers; the array is immutable.
    public let program: [sock_filter]
    public let kinds: Set<GateKind>
    /// Whether `execve` reaches the supervisor (the `exec` gate): the spawn then answers the
    /// worker's own first exec.
    public var notifiesExec: Bool { kinds.contains(.exec) }

    /// The calls of each gate, by name, as the filter sends them: unconditionally, or only when
    /// the condition holds.
    public static func rules(_ kind: GateKind) -> [(name: String, when: [ArgCondition])] {
        switch kind {
        case .exec:
            return [("execve", []), ("execveat", [])]
        case .net:
            // socket(): every family but AF_UNIX (1) and AF_NETLINK (16). libseccomp takes one
            // comparison per argument in a rule, so "neither 1 nor 16" is a rule per range.
            // The comparison is on all 64 bits while the kernel reads an int: a value with high
            // bits set lands in "> 16" and the supervisor decides on its low 32 bits.
            var socket: [(String, [ArgCondition])] = [
                ("socket", [ArgCondition(index: 0, value: 1, op: .lessThan)]),
                ("socket", [ArgCondition(index: 0, value: 16, op: .greaterThan)]),
            ]
            for family in 2...15 { socket.append(("socket", [ArgCondition(index: 0, value: UInt64(family), op: .equal)])) }
            return socket + [
                ("connect", []),
                // sendto with a destination (a non-null pointer: its contents are never read).
                ("sendto", [ArgCondition(index: 4, value: 0, op: .notEqual)]),
                // The destination of sendmsg is behind a pointer: every sendmsg comes, and the
                // supervisor looks at the socket instead.
                ("sendmsg", []),
                ("sendmmsg", []),
            ]
        case .write:
            // O_WRONLY, O_RDWR, O_CREAT, O_TRUNC: any of them makes an open a write.
            let bits: [UInt64] = [UInt64(O_WRONLY), UInt64(O_RDWR), UInt64(O_CREAT), UInt64(O_TRUNC)]
            func flags(_ arg: UInt32, _ name: String) -> [(String, [ArgCondition])] {
                bits.map { (name, [ArgCondition(index: arg, value: $0, valueTwo: $0, op: .maskedEqual)]) }
            }
            let tree = [
                "creat", "unlink", "unlinkat", "rename", "renameat", "renameat2", "mkdir", "mkdirat", "rmdir",
                "symlink", "symlinkat", "link", "linkat", "truncate", "chmod", "fchmod", "fchmodat", "fchmodat2",
                "chown", "fchown", "lchown", "fchownat", "mknod", "mknodat",
            ]
            return flags(1, "open") + flags(2, "openat") + flags(2, "open_by_handle_at") + tree.map { ($0, []) }
        }
    }

    /// Calls a gate refuses outright, in the filter, with their errno: openat2 keeps its flags
    /// behind a pointer, so under a `write` gate it answers ENOSYS and the C library falls back
    /// to openat (what Docker's profile did while openat2 was new). io_uring, under every gate:
    /// its operations (IORING_OP_OPENAT, CONNECT, SOCKET, RENAMEAT, UNLINKAT, …) are submitted
    /// through shared memory and run by the kernel without a system call a filter could see —
    /// a worker whose profile allows io_uring (`none`, Docker's older profiles) would walk
    /// around every gate. EPERM, as the `default` profile refuses it.
    static func refused(_ kind: GateKind) -> [(name: String, errno: Int32)] {
        let ioUring: [(String, Int32)] = ["io_uring_setup", "io_uring_enter", "io_uring_register"].map { ($0, EPERM) }
        return (kind == .write ? [("openat2", ENOSYS)] : []) + ioUring
    }

    public static func compile(_ kinds: Set<GateKind>) throws(ProfileError) -> GateFilter {
        var rules: [(Int32, UInt32, [ArgCondition], String)] = []
        for kind in kinds.sorted() {
            for (name, when) in Self.rules(kind) {
                let nr = seccomp_syscall_resolve_name(name)
                if nr == tether_nr_scmp_error() || nr < 0 { continue }  // fchmodat2 on an older libseccomp
                rules.append((nr, tether_act_notify(), when, "gates.\(kind.rawValue)"))
            }
            for (name, err) in refused(kind) {
                let nr = seccomp_syscall_resolve_name(name)
                if nr == tether_nr_scmp_error() || nr < 0 { continue }
                if rules.contains(where: { $0.0 == nr && $0.2.isEmpty }) { continue }  // io_uring: once, for all gates
                rules.append((nr, tether_act_errno(UInt16(err)), [], "gates.\(kind.rawValue)"))
            }
        }
        let program = try SeccompCompiler.build(defaultAction: tether_act_allow(), rules: rules, source: "gates")
        return GateFilter(program: program, kinds: kinds)
    }

    /// The gate a notified syscall belongs to.
    public static func kind(ofSyscall nr: Int32, in kinds: Set<GateKind>) -> GateKind? {
        for k in kinds where numbers(k).contains(nr) { return k }
        return nil
    }

    static func numbers(_ kind: GateKind) -> Set<Int32> {
        Set(rules(kind).map { seccomp_syscall_resolve_name($0.name) }.filter { $0 >= 0 })
    }

    /// The name of a syscall, for logs.
    public static func name(ofSyscall nr: Int32) -> String {
        guard let p = seccomp_syscall_resolve_num_arch(0, nr) else { return "syscall \(nr)" }
        defer { free(p) }
        return String(cString: p)
    }
}
