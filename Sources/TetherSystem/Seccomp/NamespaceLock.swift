import CSeccomp
import Glibc
import TetherCore

/// Under `--agent`, whatever the profile (`none` included): no new namespaces and no mounts. The
/// agent's pinned settings live in the worker's mount namespace, and a worker that could make a
/// user and mount namespace of its own could mount its own /etc/codex there and start a second
/// agent under it (the pinned mounts are locked against unmounting, not against being covered).
/// A filter stacked on the profile's: the kernel takes the strictest answer of all.
enum NamespaceLock {
    static let denied = [
        "unshare", "setns", "mount", "umount2", "move_mount", "open_tree", "fsopen", "fsconfig",
        "fsmount", "fspick", "mount_setattr", "pivot_root", "chroot",
    ]

    static func program() throws(ProfileError) -> [sock_filter] {
        let eperm = tether_act_errno(UInt16(EPERM))
        var rules: [(Int32, UInt32, [ArgCondition], String)] = denied.compactMap { name in
            let nr = seccomp_syscall_resolve_name(name)
            return nr < 0 ? nil : (nr, eperm, [], "tether --agent: \(name)")
        }
        let clone = seccomp_syscall_resolve_name("clone")
        for flag in BuiltinProfiles.namespaceFlagList {
            rules.append(
                (
                    clone, eperm, [ArgCondition(index: 0, value: flag.value, valueTwo: flag.value, op: .maskedEqual)],
                    "tether --agent: clone(\(flag.name))"
                ))
        }
        // clone3's flags are in memory a filter cannot read: ENOSYS, and libc falls back to clone.
        let clone3 = seccomp_syscall_resolve_name("clone3")
        if clone3 >= 0 { rules.append((clone3, tether_act_errno(UInt16(ENOSYS)), [], "tether --agent: clone3")) }
        return try SeccompCompiler.build(defaultAction: tether_act_allow(), rules: rules, source: "tether --agent")
    }

    /// `filter` with the lock stacked on it.
    static func adding(to filter: CompiledFilter?) throws(ProfileError) -> CompiledFilter {
        let lock = try program()
        guard let filter else {
            return CompiledFilter(programs: [lock], ruleCount: denied.count, architecture: "native", warnings: [], execFD: nil)
        }
        return CompiledFilter(
            programs: [lock] + filter.programs, ruleCount: filter.ruleCount + denied.count,
            architecture: filter.architecture, warnings: filter.warnings, execFD: filter.execFD)
    }
}
