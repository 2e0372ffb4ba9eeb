import CSeccomp
import Glibc
import Synchronization
import TetherCore

/// A spawn that failed, with the step of the child path that failed and its errno.
public struct SpawnError: Error, Sendable, CustomStringConvertible {
    public enum Stage: Int32, Sendable {
        case none = 0, signals, setpgid, tcsetpgrp, cgroup, rlimit, setgroups, setgid, setuid,
            pdeathsig, noNewPrivs, chdir, stdio, closeFDs, execFD, seccomp, exec, fork, pipe, pidfd,
            namespaces, idMap, mounts, initExec, landlock, gateFilter, gateTake, network
        /// Not a step of the child path: the start gate said no (Swift side only).
        case gate = 100

        public var name: String {
            switch self {
            case .none: return "none"
            case .signals: return "signals"
            case .setpgid: return "setpgid"
            case .tcsetpgrp: return "tcsetpgrp"
            case .cgroup: return "cgroup"
            case .rlimit: return "rlimit"
            case .setgroups: return "setgroups"
            case .setgid: return "setgid"
            case .setuid: return "setuid"
            case .pdeathsig: return "pdeathsig"
            case .noNewPrivs: return "no_new_privs"
            case .chdir: return "chdir"
            case .stdio: return "stdio"
            case .closeFDs: return "close_fds"
            case .execFD: return "exec_fd"
            case .seccomp: return "seccomp"
            case .exec: return "exec"
            case .fork: return "fork"
            case .pipe: return "pipe"
            case .pidfd: return "pidfd"
            case .namespaces: return "namespaces"
            case .idMap: return "id_map"
            case .mounts: return "mounts"
            case .initExec: return "init"
            case .landlock: return "landlock"
            case .gateFilter: return "gate_filter"
            case .gateTake: return "gate_take"
            case .network: return "network"
            case .gate: return "gate"
            }
        }
    }

    public var stage: Stage
    public var errno: Int32
    public var message: String

    public init(stage: Stage, errno: Int32, message: String) {
        self.stage = stage
        self.errno = errno
        self.message = message
    }

    public var description: String {
        "\(message) [stage \(stage.name), errno \(errno) \(String(cString: strerror(errno)))]"
    }
}

/// Everything the child path needs, turned into C memory on the spawn thread and freed there.
/// Where the spawn thread leaves the gates' listener (and the network stack's descriptors) for
/// the spawning task.
final class ListenerHandoff: Sendable {
    let fd = Atomic<Int32>(-1)
    let netPidFD = Atomic<Int32>(-1)
    let netExitFD = Atomic<Int32>(-1)
}

struct ChildRequest: Sendable {
    var path: String
    var argv: [String]
    var envp: [String]
    var cwd: String?
    var stdio: [Int32?]
    var cgroup: Cgroup?
    var tty: Int32?
    var ids: Credentials?
    var limits: [ResourceLimit]
    var filter: CompiledFilter?
    /// The worker's namespaces; nil runs it in the supervisor's (weak containment).
    var contain: Contain?

    /// The namespace path's settings (see `contain.c`).
    struct Contain: Sendable {
        /// Unprivileged supervisor: a user namespace mapping its own ids to themselves.
        var newUserNamespace: Bool
        var outerUID: uid_t
        var outerGID: gid_t
        /// Root in a nested user namespace, mapped to the worker's ids outside.
        var rootInUserNamespace: Bool
        var workerUID: uid_t
        var workerGID: gid_t
        var hideDirectories: [String]
        var hideFiles: [String]
        var readonly: [String]
        var statusFD: Int32
        /// A network namespace of the worker's own, and the stack that links it out (nil:
        /// loopback only).
        var newNetNamespace: Bool = false
        var netHelper: NetHelper? = nil
        /// The worker's own decision-socket directory, bind-mounted read-only inside
        /// `decisionCover` (one of `hideDirectories`).
        var decisionDirectory: String? = nil
        var decisionCover: String? = nil
        /// /etc as a read-only overlay, `etcLayer` over the host's (the agents' pinned
        /// settings), with the mounts below /etc carried over.
        var etcLayer: EtcLayer? = nil
    }

    /// The user-mode network stack's program and leading arguments (`net.c`).
    struct NetHelper: Sendable {
        var path: String
        var arguments: [String]
        var joinUserNamespace: Bool
    }
    /// The exec allow-list of a profile that permits exactly one program (Landlock), or -1.
    var landlockFD: Int32 = -1
    /// The gates' filter; the listener it makes is handed to `listener`.
    var gates: GateFilter?

    /// Forks and execs. With gates, the listener of the gates' filter goes to `listener`.
    func spawn(listener: ListenerHandoff? = nil) -> Result<(pid_t, Int32), SpawnError> {
        // Strings and arrays the child reads: allocated before fork, freed after.
        let cPath = strdup(path)
        let cCwd = cwd.map { strdup($0) } ?? nil
        let cArgv = cArray(argv)
        let cEnvp = cArray(envp)
        // The namespace path's strings, prepared here: the child formats nothing.
        let c = contain
        let maps = [
            "\(c?.outerUID ?? 0) \(c?.outerUID ?? 0) 1\n", "\(c?.outerGID ?? 0) \(c?.outerGID ?? 0) 1\n",
            "0 \(c?.workerUID ?? 0) 1\n", "0 \(c?.workerGID ?? 0) 1\n", "tether-init",
        ]
        let cMaps = cArray(maps)
        let hideDirs = cArray(c?.hideDirectories ?? [])
        let hideFiles = cArray(c?.hideFiles ?? [])
        let readonly = cArray(c?.readonly ?? [])
        let helper = c?.netHelper
        let helperArgv = cArray(helper.map { [$0.path] + $0.arguments } ?? [])
        let helperEnvp = cArray(["PATH=/usr/sbin:/usr/bin:/sbin:/bin"])
        let helperPath = helper.map { strdup($0.path) } ?? nil
        let decisionDir = c?.decisionDirectory.map { strdup($0) } ?? nil
        let decisionCover = c?.decisionCover.map { strdup($0) } ?? nil
        let etcOptions = c?.etcLayer.map { strdup($0.overlayOptions) } ?? nil
        let etcSubmounts = cArray(c?.etcLayer?.submounts ?? [])
        let etcOwned = cArray(c?.etcLayer?.owned.map { "/etc/" + $0 } ?? [])
        let etcOwnedSources = cArray(c?.etcLayer.map { l in l.owned.map { l.directory + "/" + $0 } } ?? [])
        var opened: [Int32] = []
        defer {
            free(cPath)
            free(cCwd)
            freeArray(cArgv, argv.count)
            freeArray(cEnvp, envp.count)
            freeArray(cMaps, maps.count)
            freeArray(hideDirs, c?.hideDirectories.count ?? 0)
            freeArray(hideFiles, c?.hideFiles.count ?? 0)
            freeArray(readonly, c?.readonly.count ?? 0)
            freeArray(helperArgv, helper.map { $0.arguments.count + 1 } ?? 0)
            freeArray(helperEnvp, 1)
            free(helperPath)
            free(decisionDir)
            free(decisionCover)
            free(etcOptions)
            freeArray(etcSubmounts, c?.etcLayer?.submounts.count ?? 0)
            freeArray(etcOwned, c?.etcLayer?.owned.count ?? 0)
            freeArray(etcOwnedSources, c?.etcLayer?.owned.count ?? 0)
            for fd in opened { close(fd) }
        }

        // The child dup2()s these onto 0, 1, 2: copies at >= 3 mean no dup2 overwrites a source.
        var stdioFDs: (Int32, Int32, Int32) = (-1, -1, -1)
        for (i, fd) in stdio.enumerated() {
            guard let fd else { continue }
            let copy = fcntl(fd, F_DUPFD_CLOEXEC, 3)
            if copy < 0 {
                return .failure(SpawnError(stage: .stdio, errno: errno, message: "cannot use descriptor \(fd) for stdio"))
            }
            opened.append(copy)
            switch i {
            case 0: stdioFDs.0 = copy
            case 1: stdioFDs.1 = copy
            default: stdioFDs.2 = copy
            }
        }
        var procsFD: Int32 = -1
        var dirFD: Int32 = -1
        if let cgroup {
            procsFD = cgroup.openProcs()
            if procsFD < 0 {
                return .failure(SpawnError(stage: .cgroup, errno: errno, message: "cannot open \(cgroup.path)/cgroup.procs"))
            }
            opened.append(procsFD)
            // Where the kernel can, the child is born in the cgroup instead (tether_spawn).
            dirFD = open(cgroup.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            if dirFD >= 0 { opened.append(dirFD) }
        }
        var ttyFD: Int32 = -1
        if let tty {
            ttyFD = fcntl(tty, F_DUPFD_CLOEXEC, 3)
            if ttyFD >= 0 { opened.append(ttyFD) }
        }

        var rlimits = limits.map { tether_rlimit(resource: Int32(Self.resource($0.resource)), soft: $0.soft, hard: $0.hard) }
        // Filters: copies of the instructions in malloc'ed memory the child reads.
        let programs = filter?.programs ?? []
        var fprogs: [sock_fprog] = []
        var buffers: [UnsafeMutablePointer<sock_filter>] = []
        defer { buffers.forEach { $0.deallocate() } }
        for p in programs {
            let buf = UnsafeMutablePointer<sock_filter>.allocate(capacity: p.count)
            buf.initialize(from: p, count: p.count)
            buffers.append(buf)
            fprogs.append(sock_fprog(len: UInt16(p.count), filter: buf))
        }

        var gateBuffer: UnsafeMutablePointer<sock_filter>?
        var gateProgram = sock_fprog()
        if let g = gates {
            let buf = UnsafeMutablePointer<sock_filter>.allocate(capacity: g.program.count)
            buf.initialize(from: g.program, count: g.program.count)
            gateBuffer = buf
            gateProgram = sock_fprog(len: UInt16(g.program.count), filter: buf)
        }
        defer { gateBuffer?.deallocate() }

        var pid: pid_t = 0
        var pidfd: Int32 = -1
        var gateListener: Int32 = -1
        var netPidFD: Int32 = -1
        var netExitFD: Int32 = -1
        var netHelper = tether_net_helper()
        netHelper.path = UnsafePointer(helperPath)
        netHelper.argv = UnsafePointer(helperArgv)
        netHelper.envp = UnsafePointer(helperEnvp)
        netHelper.join_userns = helper?.joinUserNamespace == true ? 1 : 0
        netHelper.ready_timeout_ms = 10_000
        var stage: Int32 = 0
        var err: Int32 = 0
        let rc = rlimits.withUnsafeMutableBufferPointer { rl in
            fprogs.withUnsafeMutableBufferPointer { fp in
                var attr = tether_spawn_attr()
                attr.path = UnsafePointer(cPath)
                attr.argv = UnsafePointer(cArgv)
                attr.envp = UnsafePointer(cEnvp)
                attr.cwd = UnsafePointer(cCwd)
                attr.stdio = stdioFDs
                attr.cgroup_procs_fd = procsFD
                attr.cgroup_dir_fd = dirFD
                attr.tty_fd = ttyFD
                attr.set_ids = ids == nil ? 0 : 1
                attr.uid = ids?.uid ?? 0
                attr.gid = ids?.gid ?? 0
                attr.rlimits = UnsafePointer(rl.baseAddress)
                attr.rlimit_count = rl.count
                attr.filters = UnsafePointer(fp.baseAddress)
                attr.filter_count = fp.count
                attr.exec_fd = filter?.execFD ?? -1
                attr.pdeathsig = SIGKILL
                attr.landlock_fd = landlockFD
                if let c {
                    attr.contain.enabled = 1
                    attr.contain.new_user_ns = c.newUserNamespace ? 1 : 0
                    attr.contain.uid_map = UnsafePointer(cMaps[0])
                    attr.contain.gid_map = UnsafePointer(cMaps[1])
                    attr.contain.root_in_userns = c.rootInUserNamespace ? 1 : 0
                    attr.contain.worker_uid_map = UnsafePointer(cMaps[2])
                    attr.contain.worker_gid_map = UnsafePointer(cMaps[3])
                    attr.contain.init_name = UnsafePointer(cMaps[4])
                    attr.contain.hide_dirs = UnsafeRawPointer(hideDirs).assumingMemoryBound(to: UnsafePointer<CChar>?.self)
                    attr.contain.hide_dir_count = c.hideDirectories.count
                    attr.contain.hide_files = UnsafeRawPointer(hideFiles).assumingMemoryBound(to: UnsafePointer<CChar>?.self)
                    attr.contain.hide_file_count = c.hideFiles.count
                    attr.contain.readonly = UnsafeRawPointer(readonly).assumingMemoryBound(to: UnsafePointer<CChar>?.self)
                    attr.contain.readonly_count = c.readonly.count
                    attr.contain.exe_fd = ContainmentFDs.executable
                    attr.contain.status_fd = c.statusFD
                    attr.contain.parent_pidfd = ContainmentFDs.supervisor
                    attr.contain.new_net_ns = c.newNetNamespace ? 1 : 0
                    attr.contain.net_ack_fd = -1
                    attr.contain.decision_dir = UnsafePointer(decisionDir)
                    attr.contain.decision_cover = UnsafePointer(decisionCover)
                    attr.contain.etc_overlay_options = UnsafePointer(etcOptions)
                    attr.contain.etc_submounts = UnsafeRawPointer(etcSubmounts).assumingMemoryBound(to: UnsafePointer<CChar>?.self)
                    attr.contain.etc_submount_count = c.etcLayer?.submounts.count ?? 0
                    attr.contain.etc_owned = UnsafeRawPointer(etcOwned).assumingMemoryBound(to: UnsafePointer<CChar>?.self)
                    attr.contain.etc_owned_sources = UnsafeRawPointer(etcOwnedSources).assumingMemoryBound(to: UnsafePointer<CChar>?.self)
                    attr.contain.etc_owned_count = c.etcLayer?.owned.count ?? 0
                }
                return withUnsafePointer(to: &netHelper) { nh in
                    if helper != nil { attr.contain.net_helper = nh }
                    return withUnsafePointer(to: &gateProgram) { gp in
                        if gates != nil {
                            attr.gate_filter = gp
                            // An unprivileged supervisor copies the listener only out of a dumpable child.
                            attr.gate_make_dumpable = geteuid() == 0 ? 0 : 1
                            attr.gate_serves_exec = gates?.notifiesExec == true ? 1 : 0
                        }
                        return tether_spawn(&attr, &pid, &pidfd, &gateListener, &netPidFD, &netExitFD, &stage, &err)
                    }
                }
            }
        }
        if rc == 0, gateListener >= 0 { listener?.fd.store(gateListener, ordering: .releasing) }
        if rc == 0, netPidFD >= 0 {
            listener?.netPidFD.store(netPidFD, ordering: .releasing)
            listener?.netExitFD.store(netExitFD, ordering: .releasing)
        }
        if rc != 0 {
            let s = SpawnError.Stage(rawValue: stage) ?? .none
            var message = Self.explain(s, path: path, cwd: cwd)
            if s == .gateTake && err == EPERM {
                message +=
                    ": copying the listener out of a worker that runs as another user needs CAP_SYS_PTRACE (add it to the unit's CapabilityBoundingSet)"
            }
            return .failure(SpawnError(stage: s, errno: err, message: message))
        }
        return .success((pid, pidfd))
    }

    static func explain(_ stage: SpawnError.Stage, path: String, cwd: String?) -> String {
        switch stage {
        case .exec: return "cannot execute \(path)"
        case .execFD: return "cannot open \(path) for exec"
        case .chdir: return "cannot change to directory \(cwd ?? "")"
        case .seccomp: return "cannot install the seccomp filter"
        case .setuid, .setgid, .setgroups: return "cannot drop privileges"
        case .cgroup: return "cannot join the worker's cgroup"
        case .pdeathsig: return "cannot set the parent-death signal (or the supervisor already exited)"
        case .namespaces: return "cannot create the worker's namespaces (PID, mount, IPC; a user namespace when not root)"
        case .idMap: return "cannot map the worker's user namespace"
        case .mounts: return "cannot set up the worker's mount namespace (/proc, hidden state, read-only cgroups)"
        case .initExec: return "cannot exec the worker's init (the tether binary)"
        case .landlock: return "cannot restrict the worker to its one program (Landlock)"
        case .gateFilter: return "cannot install the worker's gates (seccomp user notification, Linux 5.0+)"
        case .gateTake: return "cannot take the listener of the worker's gates (pidfd_getfd, Linux 5.6+)"
        case .network:
            return
                "cannot link the worker's network namespace to the outside (its loopback, or slirp4netns: it exited or did not say it was ready)"
        default: return "cannot start \(path)"
        }
    }

    /// RLIMIT_* numbers of asm-generic (x86_64, aarch64); Glibc does not export all of them.
    static func resource(_ r: ResourceLimit.Resource) -> Int32 {
        switch r {
        case .cpu: return 0
        case .fsize: return 1
        case .data: return 2
        case .stack: return 3
        case .core: return 4
        case .nproc: return 6
        case .nofile: return 7
        case .memlock: return 8
        case .as: return 9
        }
    }
}

private func cArray(_ strings: [String]) -> UnsafeMutablePointer<UnsafeMutablePointer<CChar>?> {
    let arr = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: strings.count + 1)
    for (i, s) in strings.enumerated() { arr[i] = strdup(s) }
    arr[strings.count] = nil
    return arr
}

private func freeArray(_ arr: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>, _ count: Int) {
    for i in 0..<count { free(arr[i]) }
    arr.deallocate()
}
