import CSeccomp

/// Makes this process non-dumpable: its `/proc/PID/environ`, `mem`, `fd` become root's, and
/// processes of the same uid can no longer ptrace it. A supervisor holds an agent key (in
/// memory, maybe in its environment); a worker running as the same user must not read it from
/// /proc. Workers are unaffected: `execve` makes them dumpable again. No core dumps of the
/// supervisor either — they would hold the key.
public func keepMemoryFromSameUser() {
    _ = tether_set_not_dumpable()
}
