import CSeccomp
import Foundation
import Glibc
import Synchronization
import TetherCore

/// The user-mode stack (slirp4netns) that links one worker's network namespace to the outside
/// (`net.c`). The supervisor alone holds it: the worker cannot name its pid (another PID
/// namespace), signal it (another uid or namespace) or reach its cgroup.
///
/// `cut` stops it (SIGSTOP): from that moment no byte passes between the worker's namespace
/// and the outside, over any connection, however the worker holds or hides its descriptors —
/// a socket parked in flight in a Unix socketpair, a thread with a descriptor table of its
/// own. `restore` lets it run again; TCP connections then carry on (what the worker wrote
/// meanwhile is retransmitted, as after a link that was down).
public final class WorkerNetwork: Sendable {
    public let pid: pid_t
    private let pidfd: Int32
    private let exitFD: Int32
    private let state = Mutex<(cut: Bool, closed: Bool)>((false, false))

    init(pidfd: Int32, exitFD: Int32) {
        self.pidfd = pidfd
        self.exitFD = exitFD
        pid = Self.pid(ofPidFD: pidfd)
    }

    deinit { close() }

    /// Whether the link is cut now.
    public var isCut: Bool { state.withLock { $0.cut } }

    /// Stops every byte between the namespace and the outside. Verified from the kernel: the
    /// stack's state is `T` when this returns true.
    @discardableResult
    public func cut() -> Bool {
        state.withLock { s in
            guard !s.closed else { return false }
            s.cut = true
            _ = tether_pidfd_send_signal(pidfd, SIGSTOP)
            for _ in 0..<500 where ProcessTable.stat(pid)?.state != "T" { usleep(200) }
            return ProcessTable.stat(pid)?.state == "T"
        }
    }

    /// Lets the stack run again.
    public func restore() {
        state.withLock { s in
            guard !s.closed else { return }
            s.cut = false
            _ = tether_pidfd_send_signal(pidfd, SIGCONT)
        }
    }

    /// Ends the stack (the worker is gone): its exit descriptor closed, then SIGKILL (a stopped
    /// stack would not see the exit descriptor), reaped.
    public func close() {
        let first = state.withLock { s -> Bool in
            defer { s.closed = true }
            return !s.closed
        }
        guard first else { return }
        tether_net_stop(pidfd, exitFD)
    }

    static func pid(ofPidFD fd: Int32) -> pid_t {
        guard let text = try? String(contentsOfFile: "/proc/self/fdinfo/\(fd)", encoding: .utf8) else { return -1 }
        for line in text.split(separator: "\n") where line.hasPrefix("Pid:") {
            return pid_t(line.dropFirst(4).trimmingCharacters(in: .whitespaces)) ?? -1
        }
        return -1
    }

    // MARK: - the stack's program

    /// Where slirp4netns is looked for: `TETHER_SLIRP4NETNS` (an absolute path), else fixed
    /// system paths — never the caller's PATH, which a less trusted user may set.
    static func helperPath(environment: [String: String] = ProcessInfoEnvironment.current) -> String? {
        if let p = environment["TETHER_SLIRP4NETNS"], p.hasPrefix("/") { return access(p, X_OK) == 0 ? p : nil }
        return ["/usr/bin/slirp4netns", "/usr/local/bin/slirp4netns", "/bin/slirp4netns"].first { access($0, X_OK) == 0 }
    }

    /// The stack for a worker of `mode`, or nil (`none`, `host`). Throws when the mode needs
    /// one and none is installed: a worker never runs with less isolation than it asked for.
    static func helper(for mode: NetworkMode, unprivileged: Bool) throws(SpawnError) -> ChildRequest.NetHelper? {
        guard mode.usesStack else { return nil }
        guard let path = helperPath() else {
            throw SpawnError(
                stage: .network, errno: ENOENT,
                message: """
                    the worker's network (--net \(mode.rawValue)) needs slirp4netns, which is not installed \
                    (apt-get install slirp4netns; or TETHER_SLIRP4NETNS=/path). For a worker that needs no network, \
                    --net none (net = "none"); to share the host's network namespace, --net host
                    """)
        }
        // MTU: slirp's maximum, for throughput. The sandbox, as root: every capability
        // dropped but binding low ports once the tap device exists, a mount namespace with
        // only /etc and /run. (Not for an unprivileged supervisor, whose stack has no privilege
        // to drop: its sandbox would become uid 0 of the worker's user namespace, which maps
        // only the user's own uid.) Its seccomp filter, always: what a network stack needs.
        var args = ["--configure", "--mtu=65520", "--enable-seccomp"]
        if mode != .hostLoopback { args.append("--disable-host-loopback") }
        guard !unprivileged else { return ChildRequest.NetHelper(path: path, arguments: args, joinUserNamespace: true) }
        // slirp4netns 1.2's sandbox unmounts what it does not keep without first making its
        // mount namespace private: on a host whose / is shared (systemd's default), that
        // unmount propagates back and takes the host's mounts under /run with it (seen:
        // `ip netns` bind mounts vanished). So it starts in a private mount namespace of its
        // own, made by util-linux's unshare, whose unmounts stay there.
        guard let unshare = ["/usr/bin/unshare", "/bin/unshare"].first(where: { (p: String) in access(p, X_OK) == 0 }) else {
            throw SpawnError(
                stage: .network, errno: ENOENT,
                message: "the worker's network stack is started through unshare(1) (util-linux), which is not installed")
        }
        return ChildRequest.NetHelper(
            path: unshare, arguments: ["--mount", "--propagation", "private", "--", path, "--enable-sandbox"] + args,
            joinUserNamespace: false)
    }
}
