import CSeccomp
import Glibc

/// Makes this process non-dumpable: its `/proc/PID/environ`, `mem`, `fd` become root's, and
/// processes of the same uid can no longer ptrace it. A supervisor holds an agent key (in
/// memory, maybe in its environment); a worker running as the same user must not read it from
/// /proc. Workers are unaffected: `execve` makes them dumpable again. No core dumps of the
/// supervisor either — they would hold the key.
public func keepMemoryFromSameUser() {
    _ = tether_set_not_dumpable()
}

/// Raises this process's soft limit on open files to its hard limit (at most 1,048,576), as
/// servers that hold many connections do: every watch stream is a descriptor, and the
/// traditional soft limit of 1,024 would cap an authority near a thousand supervisors.
/// Returns the new soft limit. Only for the authority: a supervisor's workers inherit its
/// limits, and programs using select() break past 1,024 descriptors.
@discardableResult
public func raiseOpenFileLimit() -> UInt64 {
    var l = rlimit()
    guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &l) == 0 else { return 0 }
    let target = min(l.rlim_max, 1 << 20)
    if l.rlim_cur < target {
        l.rlim_cur = target
        if setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &l) != 0 { return UInt64(l.rlim_cur) }
    }
    return UInt64(l.rlim_cur)
}
