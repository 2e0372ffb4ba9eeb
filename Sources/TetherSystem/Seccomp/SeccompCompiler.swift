import CSeccomp
import Glibc
import SystemPackage
import TetherCore

/// A profile compiled, in the parent, to the BPF programs the child installs before exec.
public struct CompiledFilter: @unchecked Sendable {
    // @unchecked: `sock_filter` is a plain C struct of integers; the arrays are immutable.

    /// Installed in order, the main filter last. Usually one; two when the profile has conditional rules stricter than
    /// an unconditional rule for the same syscall (see `SeccompCompiler`).
    public let programs: [[sock_filter]]
    /// Syscall rules libseccomp received (one per name and per OR'ed condition).
    public let ruleCount: Int
    /// The architecture compiled for; every other ABI kills the process.
    public let architecture: String
    /// Rules skipped because they cannot change the outcome, and names skipped because this
    /// libseccomp does not know them: said once, not fatal.
    public let warnings: [String]
    /// The worker's program is exec'd through this descriptor (`x-tether-exec-fd`).
    public let execFD: Int32?

    public var instructionCount: Int { programs.reduce(0) { $0 + $1.count } }
}

/// Turns a `SeccompProfile` into BPF with libseccomp.
///
/// Semantics follow Docker/runc, with two deliberate differences:
/// - Only the native ABI is compiled in. A syscall through x32 or i386 `int 0x80` kills the
///   process (`SCMP_FLTATR_ACT_BADARCH`, and libseccomp's x32 check on x86_64), even when the
///   profile lists sub-architectures: those ABIs are how filters get bypassed.
/// - libseccomp silently drops a conditional rule when the same syscall also has an
///   unconditional one (`ioctl` allowed, `ioctl(TIOCSTI)` denied: the deny vanishes). Such
///   conditional rules go into a second filter, default-allow, stacked on the first; the kernel
///   applies the stricter answer of the two, which is what the profile says.
public enum SeccompCompiler {
    /// Syscalls of recent kernels that libseccomp 2.5.4 may not know. A profile naming one is
    /// valid (Docker's own does); the name is skipped with a warning. Any other unknown name is
    /// an error: it is almost always a typo that would leave a hole.
    public static let newerSyscalls: Set<String> = [
        "cachestat", "fchmodat2", "map_shadow_stack", "futex_wake", "futex_wait", "futex_requeue",
        "statmount", "listmount", "lsm_get_self_attr", "lsm_set_self_attr", "lsm_list_modules",
        "mseal", "setxattrat", "getxattrat", "listxattrat", "removexattrat", "open_tree_attr",
        "uretprobe", "file_getattr", "file_setattr", "set_mempolicy_home_node", "memfd_secret",
        "process_mrelease", "quotactl_fd", "landlock_add_rule", "landlock_create_ruleset",
        "landlock_restrict_self", "epoll_pwait2", "mount_setattr", "process_madvise",
        "futex_waitv",
    ]

    /// How libseccomp lays out the syscall lookup.
    public enum Layout: String, Sendable {
        /// O(log n) comparisons per syscall; what every worker gets.
        case binaryTree
        /// libseccomp's default list, O(n): kept for the seccomp-cost benchmark.
        case linear
    }

    public static func compile(
        _ profile: SeccompProfile, for platform: TargetPlatform = .forWorker(user: nil), source: String? = nil,
        layout: Layout = .binaryTree
    ) throws(ProfileError) -> CompiledFilter {
        var warnings: [String] = []
        let defaultAction = try scmpAction(
            profile.defaultAction, errno: profile.effectiveDefaultErrno, path: "$.defaultAction", source: source)

        // Resolve names to numbers; group the rules of each syscall.
        struct Entry {
            var number: Int32
            var rules: [ResolvedRule]
        }
        var order: [Int32] = []
        var bySyscall: [Int32: Entry] = [:]
        for rule in profile.resolve(for: platform) {
            let nr = seccomp_syscall_resolve_name(rule.name)
            if nr == tether_nr_scmp_error() {
                // As runc does: a name this libseccomp does not know (a newer kernel's, another
                // architecture's: Docker's current profile names riscv_hwprobe) is skipped with a
                // note, so every profile Docker and Podman load loads here. A name a letter or
                // two from a known one is a typo: said so — and refused where skipping it would
                // leave a hole (a rule stricter than the profile's default).
                if newerSyscalls.contains(rule.name) {
                    warnings.append("\(rule.path): \"\(rule.name)\" is unknown to this libseccomp; rule skipped")
                    continue
                }
                let action = try scmpAction(rule.action, errno: rule.errnoRet, path: rule.path, source: source)
                if let near = SyscallNames.nearest(rule.name) {
                    if action != tether_act_allow() && defaultAction == tether_act_allow() {
                        throw ProfileError(
                            path: rule.path,
                            message:
                                "unknown syscall \"\(rule.name)\" (did you mean \"\(near)\"?): skipping this rule would leave the call allowed",
                            source: source)
                    }
                    warnings.append("\(rule.path): unknown syscall \"\(rule.name)\" — did you mean \"\(near)\"? Rule skipped")
                } else {
                    warnings.append(
                        "\(rule.path): \"\(rule.name)\" is not a syscall this machine knows (another architecture's, or a newer kernel's); rule skipped"
                    )
                }
                continue
            }
            if nr < 0 { continue }  // a syscall of another architecture: nothing to do here
            if bySyscall[nr] == nil { order.append(nr) }
            bySyscall[nr, default: Entry(number: nr, rules: [])].rules.append(rule)
        }

        // Split rules between the base filter and the overlay.
        var base: [(Int32, UInt32, [ArgCondition], String)] = []
        var overlay: [(Int32, UInt32, [ArgCondition], String)] = []
        for nr in order {
            let rules = bySyscall[nr]!.rules
            let unconditional = rules.filter { $0.args.isEmpty }
            var chosen: UInt32?
            var chosenRule: ResolvedRule?
            for r in unconditional {
                let a = try scmpAction(r.action, errno: r.errnoRet, path: r.path, source: source)
                if let c = chosen, let first = chosenRule, c != a {
                    // A rule that applies because of the worker's capabilities is the specific
                    // one (containers-common allows setns for everyone, then refuses it without
                    // CAP_SYS_ADMIN): it decides. Two plain rules that disagree are an error.
                    if r.forCapabilities != first.forCapabilities {
                        let winner = r.forCapabilities ? r : first, loser = r.forCapabilities ? first : r
                        warnings.append(
                            "\(winner.path): \"\(r.name)\": the rule for the worker's capabilities overrides the unconditional one (\(loser.path))"
                        )
                        if r.forCapabilities {
                            chosen = a
                            chosenRule = r
                        }
                        continue
                    }
                    throw ProfileError(
                        path: r.path, message: "\"\(r.name)\" already has an unconditional rule with another action (\(first.path))",
                        source: source)
                }
                if chosen == nil {
                    chosen = a
                    chosenRule = r
                }
            }
            if let a = chosen, a != defaultAction { base.append((nr, a, [], chosenRule!.path)) }
            for r in rules where !r.args.isEmpty {
                let a = try scmpAction(r.action, errno: r.errnoRet, path: r.path, source: source)
                if let u = chosen {
                    if a == u { continue }
                    if a == tether_act_allow() {
                        warnings.append(
                            "\(r.path): conditional allow of \"\(r.name)\" is shadowed by its unconditional rule (\(unconditional[0].path))"
                        )
                        continue
                    }
                    overlay.append((nr, a, r.args, r.path))
                } else if a != defaultAction {
                    base.append((nr, a, r.args, r.path))
                }
            }
        }

        // Typing into the terminal the worker shares with the operator: refused under every
        // profile, Docker's and `none` included (Docker leaves it to the kernel's
        // dev.tty.legacy_tiocsti, which many kernels still have on). Here, not in the profile,
        // so no profile can allow it.
        for r in Self.terminalInjection where !overlay.contains(where: { $0.0 == r.0 && $0.2 == r.2 }) {
            overlay.append(r)
        }
        // The overlay goes in first: it allows prctl(PR_SET_SECCOMP), which the base may deny.
        // The kernel runs every installed filter and takes the strictest answer, in any order.
        var programs: [[sock_filter]] = []
        if !overlay.isEmpty {
            programs.append(try build(defaultAction: tether_act_allow(), rules: overlay, source: source, layout: layout))
        }
        programs.append(try build(defaultAction: defaultAction, rules: base, source: source, layout: layout))
        return CompiledFilter(
            programs: programs,
            ruleCount: base.count + overlay.count,
            architecture: platform.seccompArch,
            warnings: warnings,
            execFD: profile.execFD
        )
    }

    /// `ioctl(TIOCSTI)` and `ioctl(TIOCLINUX)`: EPERM, compared on the low 32 bits (the kernel
    /// truncates `cmd` to an unsigned int, so a value with high bits set cannot slip past).
    static let terminalInjection: [(Int32, UInt32, [ArgCondition], String)] = {
        let ioctl = seccomp_syscall_resolve_name("ioctl")
        return [(0x5412, "TIOCSTI"), (0x541C, "TIOCLINUX")].map { (request: UInt64, name: String) in
            (
                ioctl, tether_act_errno(UInt16(EPERM)), [ArgCondition(index: 1, value: 0xffff_ffff, valueTwo: request, op: .maskedEqual)],
                "tether: ioctl(\(name)), refused under every profile"
            )
        }
    }()

    /// One libseccomp filter for the native ABI, with the binary-tree optimisation.
    static func build(
        defaultAction: UInt32, rules: [(Int32, UInt32, [ArgCondition], String)], source: String?,
        layout: Layout = .binaryTree
    ) throws(ProfileError) -> [sock_filter] {
        guard let ctx = seccomp_init(defaultAction) else {
            throw ProfileError(path: "$", message: "libseccomp could not create a filter", source: source)
        }
        defer { seccomp_release(ctx) }
        _ = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, tether_act_kill_process())
        // Binary tree: a few more instructions than the linear list, but a syscall is found in
        // O(log n) comparisons instead of O(n), which is what every syscall of the worker pays.
        guard layout == .linear || seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2) == 0 else {
            throw ProfileError(path: "$", message: "this libseccomp has no binary-tree optimisation (needs 2.5 or later)", source: source)
        }
        for (nr, action, args, path) in rules {
            // runc's rule: several conditions on one argument are alternatives, each its own rule
            // (libseccomp refuses two comparisons of one argument in a rule).
            let indices = args.map(\.index)
            let groups: [[ArgCondition]] = Set(indices).count == indices.count ? [args] : args.map { [$0] }
            for group in groups {
                var cmps = group.map {
                    scmp_arg_cmp(arg: $0.index, op: compare($0.op), datum_a: $0.value, datum_b: $0.valueTwo)
                }
                let rc = cmps.withUnsafeMutableBufferPointer {
                    seccomp_rule_add_array(ctx, action, nr, UInt32($0.count), $0.baseAddress)
                }
                if rc < 0 {
                    throw ProfileError(
                        path: path, message: "libseccomp refused the rule: \(SystemError("seccomp_rule_add", .init(rawValue: -rc)).errno)",
                        source: source)
                }
            }
        }
        var out: UnsafeMutablePointer<sock_filter>?
        var count = 0
        let rc = tether_filter_export(ctx, &out, &count)
        guard rc == 0, let out else {
            throw ProfileError(path: "$", message: "exporting the filter failed: \(Errno(rawValue: -rc))", source: source)
        }
        defer { free(out) }
        return Array(UnsafeBufferPointer(start: out, count: count))
    }

    static func compare(_ op: ArgOperator) -> scmp_compare {
        switch op {
        case .notEqual: return SCMP_CMP_NE
        case .lessThan: return SCMP_CMP_LT
        case .lessOrEqual: return SCMP_CMP_LE
        case .equal: return SCMP_CMP_EQ
        case .greaterOrEqual: return SCMP_CMP_GE
        case .greaterThan: return SCMP_CMP_GT
        case .maskedEqual: return SCMP_CMP_MASKED_EQ
        }
    }

    static func scmpAction(_ a: SeccompAction, errno: UInt16, path: String, source: String?) throws(ProfileError) -> UInt32 {
        switch a {
        case .killProcess: return tether_act_kill_process()
        case .killThread, .kill: return tether_act_kill_thread()
        case .trap: return tether_act_trap()
        case .errno: return tether_act_errno(errno)
        case .trace: return tether_act_trace(errno)
        case .allow: return tether_act_allow()
        case .log: return tether_act_log()
        case .notify:
            throw ProfileError(path: path, message: "SCMP_ACT_NOTIFY is not supported", source: source)
        }
    }
}

/// The native syscall names libseccomp knows, for "did you mean" on an unknown one.
enum SyscallNames {
    static let native: [String] = (0..<1024).compactMap { nr -> String? in
        guard let p = seccomp_syscall_resolve_num_arch(0, Int32(nr)) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }

    /// A known name within two edits of `name` (the closest), or nil.
    static func nearest(_ name: String) -> String? {
        let a = Array(name.utf8)
        var best: (String, Int)?
        for candidate in native where abs(candidate.utf8.count - a.count) <= 2 {
            let d = distance(a, Array(candidate.utf8))
            if d <= 2, d < (best?.1 ?? 3) { best = (candidate, d) }
        }
        return best?.0
    }

    static func distance(_ a: [UInt8], _ b: [UInt8]) -> Int {
        var prev = Array(0...b.count)
        for (i, x) in a.enumerated() {
            var cur = [i + 1] + Array(repeating: 0, count: b.count)
            for (j, y) in b.enumerated() {
                cur[j + 1] = min(prev[j + 1] + 1, cur[j] + 1, prev[j] + (x == y ? 0 : 1))
            }
            prev = cur
        }
        return prev[b.count]
    }
}
