import CSeccomp
import Glibc
import Synchronization

/// The supervisor's dead man's switch (see `keeper.c`): when the supervisor dies, by SIGKILL
/// or otherwise, the keeper kills every worker cgroup and every worker process group it knows.
final class Keeper: Sendable {
    let pid: pid_t
    private let fd: Mutex<Int32>

    /// Starts the keeper. `killFile` is the open `cgroup.kill` of the supervisor's cgroup
    /// directory, or -1; the keeper keeps its own copy.
    static func start(killFile: Int32) throws(SystemError) -> Keeper {
        var pid: pid_t = 0
        var fd: Int32 = -1
        let rc = tether_keeper_start(killFile, &pid, &fd)
        if rc != 0 { throw SystemError("fork (keeper)", .init(rawValue: -rc)) }
        return Keeper(pid: pid, fd: fd)
    }

    private init(pid: pid_t, fd: Int32) {
        self.pid = pid
        self.fd = Mutex(fd)
    }

    func watch(group: pid_t) { send(group) }
    func forget(group: pid_t) { send(-group) }

    private func send(_ value: Int32) {
        fd.withLock { fd in
            var v = value
            // 4 bytes on a pipe are written atomically. EPIPE (the keeper is gone) is not fatal:
            // SIGPIPE is ignored by the supervisor; the worker is still watched by PDEATHSIG.
            _ = withUnsafeBytes(of: &v) { write(fd, $0.baseAddress, 4) }
        }
    }
}
