import Foundation
import Glibc
import Logging
import TetherCore

/// What `tether profile check` reports about a compiled profile.
public struct ProfileReport: Sendable {
    public var source: String
    public var profile: SeccompProfile
    public var filter: CompiledFilter

    public static func make(
        _ nameOrPath: String, platform: TargetPlatform = .forWorker(user: nil), layout: SeccompCompiler.Layout = .binaryTree
    ) throws(ProfileError) -> ProfileReport {
        let (profile, source) = try ProfileSource.load(nameOrPath)
        let filter = try SeccompCompiler.compile(profile, for: platform, source: source, layout: layout)
        return ProfileReport(source: source, profile: profile, filter: filter)
    }

    public var text: String {
        var lines = ["\(source): OK"]
        lines.append(
            "  default action:    \(profile.defaultAction.rawValue)\(profile.defaultAction == .errno ? " (errno \(profile.effectiveDefaultErrno))" : "")"
        )
        lines.append("  syscall rules:     \(filter.ruleCount)")
        let sizes = filter.programs.map { String($0.count) }.joined(separator: " + ")
        lines.append(
            "  BPF instructions:  \(filter.instructionCount)\(filter.programs.count > 1 ? " (\(filter.programs.count) stacked filters: \(sizes))" : "")"
        )
        lines.append("  architecture:      \(filter.architecture); any other ABI (x32, int 0x80) kills the process")
        if !profile.architectures.isEmpty {
            lines.append("  profile lists:     \(profile.architectures.joined(separator: ", "))")
        }
        if let fd = filter.execFD { lines.append("  exec:              only the worker's own program, through descriptor \(fd)") }
        if profile.defaultAction == .allow && filter.ruleCount == 0 {
            lines.append("  WARNING: this profile filters nothing; workers run with every syscall allowed")
        }
        for w in filter.warnings { lines.append("  note: \(w)") }
        return lines.joined(separator: "\n")
    }
}

/// `tether profile try`: run one command under a profile, with no authority, to tune a profile.
public enum ProfileTry {
    /// Runs `command`; returns how it ended (the command line exits with its code, 128+N on
    /// signal N), or why it could not run.
    /// `open` and `closed`: gates to run under, open or closed for the whole run (no surface
    /// holds them): what a gate costs, and what a closed gate breaks. Denials are logged at exit.
    public static func run(
        profile nameOrPath: String, command: [String], useCgroups: Bool = true,
        layout: SeccompCompiler.Layout = .binaryTree, openGates: Set<GateKind> = [], closedGates: Set<GateKind> = [],
        network: NetworkMode = .private, logger: Logger
    ) async -> RunOutcome {
        let report: ProfileReport
        do {
            report = try ProfileReport.make(nameOrPath, platform: .forWorker(user: nil), layout: layout)
        } catch {
            return .failed(RunFailure(.config, "\(error)"))
        }
        if report.profile.defaultAction == .allow && report.filter.ruleCount == 0 {
            logger.warning("profile \(nameOrPath) filters no syscalls: the command runs unconfined but for the ABI check")
        }
        for w in report.filter.warnings { logger.notice("\(w)") }

        let spawner = Spawner(logger: logger, useCgroups: useCgroups)
        let foreground = ForegroundTerminal.claimable()
        let worker: Worker
        do {
            var spec = WorkerSpec(command: command)
            spec.network = network
            var launch = Spawner.Launch(name: "try", spec: spec, filter: report.filter, foregroundTerminal: foreground)
            launch.gates = openGates.union(closedGates).sorted().map { GateConfig(kind: $0, surface: "try.\($0.rawValue)") }
            launch.openGates = openGates
            worker = try await spawner.spawn(launch)
        } catch {
            spawner.shutdown()
            let notExecutable = error.stage == .exec || error.stage == .execFD
            return .failed(RunFailure(notExecutable ? .notExecutable(errno: error.errno) : .unavailable, error.description))
        }
        let forwarding = SignalForwarder(worker: worker)
        let status = await worker.wait()
        forwarding.stop()
        for (d, n) in worker.gates?.drainDenials() ?? [] {
            logger.notice(
                "gate denied",
                metadata: [
                    "gate": "\(d.gate.rawValue)", "call": "\(d.call)", "pid": "\(d.pid)", "executable": "\(d.executable)", "count": "\(n)",
                ])
        }
        spawner.shutdown()
        if foreground != nil { ForegroundTerminal.reclaim() }
        if case .signaled(let s) = status, s == SIGSYS {
            logger.error("\(command[0]) was killed by SIGSYS: a syscall through a foreign ABI, or a profile action that kills")
        }
        return .exited(status)
    }
}
