import CSeccomp
import Foundation
import Glibc
import Logging
import Synchronization
import TetherCore
import TetherRuntime

/// Launches workers contained: own process group, own cgroup v2 directory where one can be
/// made, no-new-privs, PDEATHSIG from a thread that never exits, a seccomp filter built in the
/// parent, a scrubbed environment, optional uid/gid drop and rlimits. It also makes the
/// supervisor a child subreaper and starts the keeper that kills every worker if the
/// supervisor dies.
public final class Spawner: Sendable {
    public let cgroupRoot: CgroupRoot?
    /// Why workers get no cgroup, when they do not.
    public let cgroupUnavailable: String?
    public let containment: ContainmentPolicy
    private let keeper: Keeper?
    private let logger: Logger
    private let counter = Atomic<Int>(0)
    /// Set once the worker's namespaces could not be made and `acceptWeak` allowed running
    /// without them: every later spawn goes the weak way at once, and says so.
    private let weak = Atomic<Bool>(false)
    private static let instances = Atomic<Int>(0)

    /// The keeper kills every worker when the supervisor's heartbeat (every 2 s, while its
    /// async runtime runs tasks: `Keeper`) is missing this long: a supervisor that is stopped
    /// or hung enforces nothing. Two beats and a second of slack for a loaded machine; far
    /// shorter than the leases the authority gives (15 s by default).
    public static let heartbeatTimeout: Duration = .seconds(5)

    public init(
        logger: Logger, useCgroups: Bool = true, containment: ContainmentPolicy = ContainmentPolicy(),
        heartbeatTimeout: Duration = Spawner.heartbeatTimeout
    ) {
        self.logger = logger
        self.containment = containment
        // A child of ours that dies must never take the supervisor with it through SIGPIPE, and
        // orphans of workers are reparented here (and reaped by the exit monitor), not to init.
        signal(SIGPIPE, SIG_IGN)
        SupervisorPriority.raise(logger: logger)
        if tether_set_child_subreaper() != 0 {
            logger.warning("could not become a child subreaper; orphans of workers go to init")
        }
        let tag = Spawner.instances.add(1, ordering: .relaxed).oldValue
        var root: CgroupRoot?
        var reason: String?
        if useCgroups {
            switch CgroupRoot.create(tag: tag, logger: logger) {
            case .success(let r): root = r
            case .failure(let e): reason = e.reason
            }
        } else {
            reason = "cgroups disabled by configuration"
        }
        if let reason {
            // Said once per supervisor, not per worker.
            logger.notice(
                "workers get no cgroup: each is stopped and killed through its PID namespace, process by process (no atomic freeze, no resource accounting)",
                metadata: ["reason": "\(reason)"])
        }
        cgroupRoot = root
        cgroupUnavailable = reason
        if let root { ExitMonitor.shared.own(cgroupPrefix: root.relativePath) }
        let killRoot = root
        do {
            keeper = try Keeper.start(openKillFile: { killRoot?.openKillFile() ?? -1 }, heartbeatTimeout: heartbeatTimeout, logger: logger)
        } catch {
            logger.error("could not start the keeper: workers may outlive a SIGKILLed supervisor", metadata: ["error": "\(error)"])
            keeper = nil
        }
    }

    /// At a clean exit, after every worker has been waited for: removes the cgroup directory.
    /// (The keeper exits by itself when the supervisor does.)
    public func shutdown() {
        cgroupRoot?.remove()
    }

    /// The pid of the keeper process, for tests and diagnostics.
    public var keeperPID: pid_t? { keeper?.pid }

    /// Everything needed to start one worker.
    public struct Launch: Sendable {
        public var name: String
        public var spec: WorkerSpec
        /// The compiled profile; nil runs the worker unfiltered (profile `none` still compiles
        /// to a filter: the ABI check).
        public var filter: CompiledFilter?
        /// Descriptors for the worker's stdin, stdout, stderr; nil inherits the supervisor's.
        public var stdin: Int32?
        public var stdout: Int32?
        public var stderr: Int32?
        /// Make the worker the foreground process group of this terminal (an open descriptor).
        public var foregroundTerminal: Int32?
        /// The supervisor's environment, from which the worker's is derived.
        public var supervisorEnvironment: [String: String]
        /// Asked once the worker exists but before it runs any code of its own; false cancels
        /// the start. With a cgroup the child is held frozen (it joins a frozen cgroup before
        /// exec) until the answer, so a revoke that lands while the worker is starting means it
        /// never runs its program; without one the worker is killed at once after the answer.
        public var startGate: (@Sendable () async -> Bool)?
        /// The worker's gates (`docs/gates.md`) and which of them start open; the rest start
        /// closed. The caller opens and closes them on `Worker.gates` from then on.
        public var gates: [GateConfig] = []
        public var openGates: Set<GateKind> = []
        /// The worker's own decision-socket directory: the one directory of decision sockets
        /// its mount namespace shows (read-only); its parent is covered.
        public var decisionDirectory: String?
        /// A directory layered read-only over the worker's /etc (the agents' pinned settings,
        /// `EtcLayer`). Without a mount namespace of the worker's own it cannot be, and the
        /// worker is refused — unless `etcLayerOptional`, which starts it without.
        public var etcLayer: String?
        public var etcLayerOptional = false

        public init(
            name: String, spec: WorkerSpec, filter: CompiledFilter?,
            stdin: Int32? = nil, stdout: Int32? = nil, stderr: Int32? = nil,
            foregroundTerminal: Int32? = nil,
            supervisorEnvironment: [String: String] = ProcessInfoEnvironment.current,
            startGate: (@Sendable () async -> Bool)? = nil
        ) {
            self.startGate = startGate
            self.name = name
            self.spec = spec
            self.filter = filter
            self.stdin = stdin
            self.stdout = stdout
            self.stderr = stderr
            self.foregroundTerminal = foregroundTerminal
            self.supervisorEnvironment = supervisorEnvironment
        }
    }

    /// Whether workers run without namespaces of their own (only after a failure that
    /// `ContainmentPolicy.acceptWeak` let through).
    public var isWeak: Bool { weak.load(ordering: .relaxed) }

    /// Finds out, before any worker starts, whether workers will be weakly contained: when
    /// weak containment is accepted, spawns `true` in namespaces once. (Without `acceptWeak` a
    /// failure refuses each worker instead, so there is nothing to find out.)
    public func probeContainment() async {
        guard containment.acceptWeak, !isWeak, let probe = try? Self.resolve("true", path: "/usr/bin:/bin") else { return }
        let devnull = open("/dev/null", O_RDWR | O_CLOEXEC)
        defer { close(devnull) }
        if let w = try? await spawn(
            Launch(
                name: "tether-probe", spec: WorkerSpec(command: [probe]), filter: nil,
                stdin: devnull, stdout: devnull, stderr: devnull))
        {
            _ = await w.wait()
        }
    }

    /// `logger`, with `containment=WEAK` on every line when workers run without namespaces.
    public func labelled(_ logger: Logger) -> Logger {
        var l = logger
        if isWeak { l[metadataKey: "containment"] = "WEAK" }
        return l
    }

    /// The name a supervisor gives itself at the authority: with weak containment it says so
    /// there too, so `tether status` and every acknowledgement show it.
    public func instanceName(_ base: String) -> String {
        isWeak ? String((base + ":WEAK-CONTAINMENT").suffix(128)) : base
    }

    public func spawn(_ launch: Launch) async throws(SpawnError) -> Worker {
        var plan = try prepare(launch)
        var result = await start(plan, gate: launch.startGate)
        // A clone that failed for want of memory or processes (a fork bomb elsewhere, a
        // restart storm) says nothing about namespaces: tried again, never taken for a refusal.
        var retries = 0
        while case .failure(let e) = result.0, plan.request.contain != nil, e.stage == .namespaces,
            Self.transientErrors.contains(e.errno), retries < 5
        {
            retries += 1
            logger.warning(
                "the worker's namespaces could not be made for now; trying again", metadata: ["error": "\(e)", "attempt": "\(retries + 1)"])
            plan.release()
            try? await Sleep.for(.milliseconds(20 << retries))
            plan = try prepare(launch)
            result = await start(plan, gate: launch.startGate)
        }
        if case .failure(let e) = result.0, plan.request.contain != nil, Self.namespaceStages.contains(e.stage) {
            // Only the kernel's refusal of namespaces themselves is what weak containment is
            // for; anything else (still transient, a mount that failed) refuses the worker.
            guard containment.acceptWeak, Self.isRefusal(e) else {
                plan.release()
                throw SpawnError(stage: e.stage, errno: e.errno, message: Self.refusal(e))
            }
            weak.store(true, ordering: .relaxed)
            if launch.gates.contains(where: { $0.kind == .net && $0.mode == .enforce }) {
                logger.critical(
                    "WEAK CONTAINMENT: no network namespace either; the net gate falls back to shutting down the sockets it can see, and a connection the worker hides (a descriptor in flight, a thread's own table) outlives it",
                    metadata: ["worker": "\(launch.name)"])
            }
            logger.critical(
                "WEAK CONTAINMENT: the worker's namespaces cannot be made; running it in the supervisor's, as --accept-weak-containment allows: it may signal the supervisor and read what its uid can",
                metadata: ["error": "\(e)"])
            plan.release()
            plan = try prepare(launch)
            result = await start(plan, gate: launch.startGate)
        }
        let worker = try await finish(plan, result, launch)
        if worker.networkMode.isOptOut {
            // Asked for, and loosening the default: said every time.
            logger.warning(
                worker.networkMode == .host
                    ? "the worker shares the host's network namespace (--net host): the host's loopback services, abstract Unix sockets and ports are within its reach"
                    : "the worker reaches the host's loopback services through 10.0.2.2 (--net host-loopback)",
                metadata: ["worker": "\(launch.name)", "net": "\(worker.networkMode.rawValue)"])
        }
        ResidentPages.workerStarted(logger: logger)
        return worker
    }

    /// Everything a spawn decides before the child exists. Its descriptors close with it.
    private struct Plan {
        var name: String
        var request: ChildRequest
        var cgroup: Cgroup?
        var identity: WorkerIdentity
        var status: InitStatusPipe?
        var landlock: OwnedFD?
        var gates: [GateConfig] = []
        var openGates: Set<GateKind> = []

        /// A spawn that will not go ahead: its cgroup goes.
        func release() { cgroup?.removeTree() }
    }

    public static let namespaceStages: Set<SpawnError.Stage> = [.namespaces, .idMap, .mounts, .initExec]
    /// Errors of the contained clone that pass: tried again.
    static let transientErrors: Set<Int32> = [EAGAIN, ENOMEM, EINTR]

    /// Whether `e` is the kernel refusing the worker's namespaces (no user namespaces for
    /// this user, a filter or a container forbidding them, a kernel without them): the one
    /// case weak containment exists for.
    static func isRefusal(_ e: SpawnError) -> Bool {
        switch e.stage {
        case .namespaces: return [EPERM, EINVAL, ENOSYS, EACCES, ENOSPC].contains(e.errno)
        case .idMap: return [EPERM, EACCES].contains(e.errno)
        default: return false
        }
    }

    static func refusal(_ e: SpawnError) -> String {
        if e.stage == .namespaces, transientErrors.contains(e.errno) {
            return
                "\(e.message): \(String(cString: strerror(e.errno))), after 6 tries: the kernel had no room for the worker's processes or namespaces (a fork bomb, a pids limit, memory). Not a refusal of namespaces: the worker is not started at all, never weakly contained for it."
        }
        return """
            \(e.message): \(String(cString: strerror(e.errno))). Tether will not run a worker that could reach its supervisor. \
            As root this needs PID and mount namespaces (CONFIG_PID_NS, CONFIG_NAMESPACES); as another user also unprivileged \
            user namespaces (sysctl user.max_user_namespaces > 0, kernel.unprivileged_userns_clone=1, no AppArmor restriction). \
            Run the supervisor as root, enable user namespaces, or accept weaker containment with --accept-weak-containment \
            (accept_weak_containment = true in [supervisor]).
            """
    }

    /// Identity, environment, program, cgroup and namespaces: what the child path will do.
    private func prepare(_ launch: Launch) throws(SpawnError) -> Plan {
        guard let program = launch.spec.command.first else {
            throw SpawnError(stage: .exec, errno: EINVAL, message: "no command given")
        }
        let contained = !weak.load(ordering: .relaxed)
        let identity: WorkerIdentity
        if contained {
            identity = try WorkerIdentity.resolve(spec: launch.spec, workerName: launch.name)
        } else {
            // Weak: the worker keeps the supervisor's namespaces, so it cannot be root in one
            // of its own; a root supervisor still gives it a dedicated uid.
            var spec = launch.spec
            if spec.runsAsRoot { spec.user = nil }
            identity = try WorkerIdentity.resolve(spec: spec, workerName: launch.name)
        }
        var env = EnvironmentPolicy.workerEnvironment(supervisor: launch.supervisorEnvironment, spec: launch.spec)
        if let ids = identity.ids, launch.spec.environment["HOME"] == nil {
            env["HOME"] = identity.rootInUserNamespace ? "/root" : ids.home
            env["USER"] = identity.rootInUserNamespace ? "root" : ids.name
            env["LOGNAME"] = env["USER"]
        }
        if !contained, launch.etcLayer != nil {
            guard launch.etcLayerOptional else {
                throw SpawnError(
                    stage: .mounts, errno: EPERM,
                    message:
                        "the agent's hook is pinned in the worker's own /etc, and under weak containment the worker has no mount namespace of its own: not started. --accept-unpinned-hooks starts it with hooks the agent can remove"
                )
            }
            logger.critical(
                "UNPINNED HOOKS: weak containment gives the worker no /etc of its own; the agent's hook is not pinned and the agent can remove or skip it (--accept-unpinned-hooks)",
                metadata: ["worker": "\(launch.name)"])
        }
        let path = try Self.resolve(program, path: env["PATH"] ?? "/usr/local/bin:/usr/bin:/bin")
        let landlock = launch.filter?.execFD != nil ? OwnedFD(try Self.execAllowList(path)) : nil
        var status: InitStatusPipe?
        var contain: ChildRequest.Contain?
        if contained {
            let s = try InitStatusPipe()
            status = s
            contain = try namespaces(
                identity: identity, statusFD: s.writeFD, network: launch.spec.network,
                decisionDirectory: launch.decisionDirectory)
            if let layer = launch.etcLayer { contain?.etcLayer = try EtcLayer.make(directory: layer) }
        }
        // Last, as nothing after it can fail: a cgroup is only made for a spawn that goes ahead.
        let seq = counter.add(1, ordering: .relaxed).oldValue
        var cgroup: Cgroup?
        if let root = cgroupRoot {
            do { cgroup = try root.makeWorkerCgroup(name: "\(Self.sanitize(launch.name)).\(seq)") } catch {
                logger.warning("could not create the worker's cgroup; process group only", metadata: ["error": "\(error)"])
            }
        }
        var gateFilter: GateFilter?
        if !launch.gates.isEmpty {
            do { gateFilter = try GateFilter.compile(Set(launch.gates.map(\.kind))) } catch {
                cgroup?.removeTree()
                throw SpawnError(stage: .gateFilter, errno: EINVAL, message: "the gates' filter does not compile: \(error)")
            }
        }
        // A pinned /etc holds only while the worker stays in its mount namespace (NamespaceLock).
        var filter = launch.filter
        if contain?.etcLayer != nil {
            do { filter = try NamespaceLock.adding(to: filter) } catch {
                cgroup?.removeTree()
                throw SpawnError(stage: .seccomp, errno: EINVAL, message: "the namespace lock of a pinned /etc does not compile: \(error)")
            }
        }
        var request = ChildRequest(
            path: path, argv: launch.spec.command,
            envp: env.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" },
            cwd: launch.spec.workingDirectory,
            stdio: [launch.stdin, launch.stdout, launch.stderr],
            cgroup: cgroup, tty: launch.foregroundTerminal,
            ids: identity.rootInUserNamespace && geteuid() != 0 ? nil : identity.ids,
            limits: launch.spec.limits, filter: filter, contain: contain, landlockFD: landlock?.rawValue ?? -1
        )
        request.gates = gateFilter
        return Plan(
            name: launch.name, request: request, cgroup: cgroup, identity: identity, status: status, landlock: landlock,
            gates: launch.gates, openGates: launch.openGates)
    }

    /// The hidden paths as the mount namespace covers them: directories (a tmpfs) and files
    /// (/dev/null), by their real paths; and the cgroup mounts to make read-only.
    static func covers(_ hidden: [String]) -> (directories: [String], files: [String], readonly: [String]) {
        var dirs: Set<String> = [], files: Set<String> = []
        for p in hidden {
            // The real path: /var/lib/tether is a link to /var/lib/private/tether under
            // systemd's DynamicUser=, and covering a link would cover nothing.
            guard let resolved = realpath(p, nil) else { continue }
            let real = String(cString: resolved)
            free(resolved)
            var st = stat()
            guard stat(real, &st) == 0 else { continue }
            if (st.st_mode & S_IFMT) == S_IFDIR { dirs.insert(real) } else if (st.st_mode & S_IFMT) == S_IFREG { files.insert(real) }
        }
        return (dirs.sorted(), files.sorted(), ContainmentPolicy.readonlyMounts())
    }

    /// The namespace settings for one worker: what to cover and make read-only (looked at for
    /// each spawn: a state directory made since is covered too), the user namespace maps, the
    /// network namespace and its stack.
    private func namespaces(
        identity: WorkerIdentity, statusFD: Int32, network: NetworkMode,
        decisionDirectory: String?
    ) throws(SpawnError) -> ChildRequest.Contain {
        let euid = geteuid(), egid = getegid()
        let workerUID = identity.ids?.uid ?? euid
        // The decision sockets' directory: covered, but for this worker's own (below).
        let decisionRoot = decisionDirectory.map { ($0 as NSString).deletingLastPathComponent }
        var hidden = containment.hiddenPaths + SessionPaths.covered(uids: Set([euid, workerUID]))
        if let decisionRoot { hidden.append(decisionRoot) }
        let covers = Self.covers(hidden)
        var c = ChildRequest.Contain(
            newUserNamespace: euid != 0, outerUID: euid, outerGID: egid,
            rootInUserNamespace: identity.rootInUserNamespace,
            workerUID: workerUID, workerGID: identity.ids?.gid ?? egid,
            hideDirectories: covers.directories, hideFiles: covers.files, readonly: covers.readonly,
            statusFD: statusFD)
        c.newNetNamespace = network.ownNamespace
        c.netHelper = try WorkerNetwork.helper(for: network, unprivileged: euid != 0)
        if let dir = decisionDirectory, let real = realpath(dir, nil) {
            let path = String(cString: real)
            free(real)
            // The outermost cover above it holds its mount point.
            if let cover = covers.directories.filter({ path.hasPrefix($0 + "/") }).min(by: { $0.count < $1.count }) {
                c.decisionDirectory = path
                c.decisionCover = cover
            }
        }
        return c
    }

    /// Landlock for a profile that allows exactly one exec (`strict`): the program and its ELF
    /// interpreter may be executed, nothing else. Without Landlock the promise cannot be kept,
    /// so the worker does not start.
    static func execAllowList(_ program: String) throws(SpawnError) -> Int32 {
        let paths = [program] + (ELFInterpreter.of(program).map { [$0] } ?? [])
        let cPaths = paths.map { strdup($0) }
        defer { cPaths.forEach { free($0) } }
        let fd = cPaths.withUnsafeBufferPointer { buf in
            buf.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: buf.count) {
                tether_landlock_exec_ruleset($0, buf.count)
            }
        }
        guard fd >= 0 else {
            throw SpawnError(
                stage: .landlock, errno: -fd,
                message:
                    "this profile allows exactly one program, which needs Landlock (Linux 5.13+, landlock in the lsm= list) to enforce; it is not available"
            )
        }
        return fd
    }

    /// Runs the child path on the spawn thread, behind the start gate when there is a cgroup
    /// to hold the child in. Returns the result and the gate's answer (nil: not asked yet).
    private func start(
        _ plan: Plan, gate: (@Sendable () async -> Bool)?
    ) async -> (Result<(PidFD, ExitFuture), SpawnError>, Bool?, GateServer?, WorkerNetwork?) {
        // The gate, when the child can be held: the cgroup is frozen before the child joins it,
        // so the child stops on its way back from that write, before exec. The spawn thread
        // waits in clone() (vfork) meanwhile; the answer comes from another task.
        var held: Task<Bool, Never>?
        let spawned = Atomic<Bool>(false)
        if let gate, let cg = plan.cgroup, cg.freeze() {
            held = Task {
                let ok = await gate()
                if ok {
                    cg.thaw()
                } else {
                    // The answer can come before the child has joined the cgroup: a kill then
                    // finds it empty, the child joins a frozen cgroup afterwards and stays
                    // there, and the spawn thread waits in clone() for ever. So kill until
                    // the spawn has returned (the child died, or never got this far).
                    while !spawned.load(ordering: .acquiring) {
                        cg.kill()
                        try? await Sleep.for(.milliseconds(2))
                    }
                }
                return ok
            }
        }
        let request = plan.request
        let status = plan.status
        let handoff = ListenerHandoff()
        let result = await SpawnThread.shared.run { ExitMonitor.shared.spawning(status: status) { request.spawn(listener: handoff) } }
        spawned.store(true, ordering: .releasing)
        status?.closeWriteEnd()
        // The listener goes straight to its server: until it answers, the worker's gated calls wait.
        let listener = handoff.fd.load(ordering: .acquiring)
        let server = listener >= 0 ? GateServer(listener: listener, gates: plan.gates, open: plan.openGates) : nil
        let netPidFD = handoff.netPidFD.load(ordering: .acquiring)
        let network = netPidFD >= 0 ? WorkerNetwork(pidfd: netPidFD, exitFD: handoff.netExitFD.load(ordering: .acquiring)) : nil
        return (result, await held?.value, server, network)
    }

    private func finish(
        _ plan: Plan, _ started: (Result<(PidFD, ExitFuture), SpawnError>, Bool?, GateServer?, WorkerNetwork?), _ launch: Launch
    ) async throws(SpawnError) -> Worker {
        let (result, heldAnswer, gates, network) = started
        let workerCgroup = plan.cgroup
        switch result {
        case .failure(let e):
            workerCgroup?.removeTree()
            network?.close()
            throw e
        case .success(let (pidfd, future)):
            let pid = pidfd.pid
            keeper?.watch(group: pid)
            // The stack too: a cut (stopped) stack would not see its exit descriptor close.
            if let n = network, n.pid > 0 { keeper?.watch(group: n.pid) }
            let keeper = self.keeper
            let identity = plan.identity
            let mode: NetworkMode = plan.request.contain?.newNetNamespace == true ? launch.spec.network : .host
            let worker = Worker(
                name: launch.name, pidfd: pidfd, cgroup: workerCgroup, exit: future,
                contained: plan.request.contain != nil, identity: identity.description, gates: gates,
                network: network, networkMode: mode
            ) {
                // The first process is gone. Like systemd's KillMode=control-group, what is left
                // of the worker goes with it, then its cgroup.
                if let cg = workerCgroup {
                    if cg.events()?.populated == true { cg.kill() }
                    // rmdir fails with EBUSY until the kernel has emptied the cgroup.
                    var tries = 0
                    while !cg.removeTree(), tries < 200 {
                        usleep(1000)
                        tries += 1
                    }
                }
                keeper?.forget(group: pid)
                if let n = network {
                    n.close()
                    keeper?.forget(group: n.pid)
                }
                _ = identity  // the dynamic uid stays held until the worker is reaped
            }
            var allowed = heldAnswer ?? true
            if heldAnswer == nil, let gate = launch.startGate {
                allowed = await gate()
                if !allowed {
                    logger.warning(
                        "start cancelled after exec: without a cgroup the worker could not be held before its first instruction",
                        metadata: ["worker": "\(launch.name)", "pid": "\(pid)"])
                }
            }
            guard allowed else {
                worker.kill()
                _ = await worker.wait()
                throw SpawnError(
                    stage: .gate, errno: ECANCELED,
                    message: "start of \(launch.name) cancelled: the surface was denied while the worker was starting")
            }
            logger.debug(
                "worker started",
                metadata: [
                    "worker": "\(launch.name)", "pid": "\(pid)", "cgroup": "\(workerCgroup?.path ?? "none")",
                    "identity": "\(identity.description)",
                ])
            return worker
        }
    }

    /// Looks a program up in PATH, as execvp would, but in the parent.
    static func resolve(_ program: String, path: String) throws(SpawnError) -> String {
        if program.contains("/") { return program }
        for dir in path.split(separator: ":") where !dir.isEmpty {
            let candidate = "\(dir)/\(program)"
            if access(candidate, X_OK) == 0 && !isDirectory(candidate) { return candidate }
        }
        throw SpawnError(stage: .exec, errno: ENOENT, message: "\(program): command not found in PATH (\(path))")
    }

    static func sanitize(_ name: String) -> String {
        let s = String(name.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" ? $0 : "_" }.prefix(64))
        return s.isEmpty ? "worker" : s
    }
}

/// The supervisor's environment as a dictionary.
public enum ProcessInfoEnvironment {
    public static var current: [String: String] { Foundation.ProcessInfo.processInfo.environment }
}

/// The uid/gid a worker drops to.
struct Credentials: Sendable {
    var uid: uid_t
    var gid: gid_t
    var name: String
    var home: String

    static func resolve(user: String?, group: String?) throws(SpawnError) -> Credentials? {
        guard let user else {
            if group != nil { throw SpawnError(stage: .setgid, errno: EINVAL, message: "a group needs a user") }
            return nil
        }
        var pwd = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buf = [CChar](repeating: 0, count: 16384)
        var creds: Credentials
        if getpwnam_r(user, &pwd, &buf, buf.count, &result) == 0, result != nil {
            creds = Credentials(uid: pwd.pw_uid, gid: pwd.pw_gid, name: String(cString: pwd.pw_name), home: String(cString: pwd.pw_dir))
        } else if let uid = uid_t(user) {
            creds = Credentials(uid: uid, gid: gid_t(uid), name: user, home: "/")
        } else {
            throw SpawnError(stage: .setuid, errno: ENOENT, message: "no such user: \(user)")
        }
        if let group { creds.gid = try groupID(group) }
        return creds
    }

    /// A group name or numeric gid.
    static func groupID(_ group: String) throws(SpawnError) -> gid_t {
        var grp = Glibc.group()
        var result: UnsafeMutablePointer<Glibc.group>?
        var buf = [CChar](repeating: 0, count: 16384)
        if getgrnam_r(group, &grp, &buf, buf.count, &result) == 0, result != nil { return grp.gr_gid }
        if let gid = gid_t(group) { return gid }
        throw SpawnError(stage: .setgid, errno: ENOENT, message: "no such group: \(group)")
    }
}
