import Glibc

/// Why a worker never ran, or was stopped for good: what to tell the person who started it,
/// and which kind of failure it is. The command line turns the kind into an exit code
/// (`TetherExit`, 126/127 for a program that cannot be run); libraries only say what happened.
public struct RunFailure: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// A profile, a configuration or an agent pin that is wrong.
        case config
        /// The authority cannot be reached, or the worker cannot be set up: fail closed.
        case unavailable
        /// The surface is denied (at start, or a deny stopped the worker for good).
        case denied
        /// The program could not be executed (`errno`: ENOENT when it does not exist).
        case notExecutable(errno: Int32)
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }

    /// A spawn that failed, judged as `tether run` and `tether profile try` judge it.
    public init(spawn error: SpawnError) {
        switch error.stage {
        case .gate: self.init(.denied, "\(error.message); nothing of it ran")
        case .exec, .execFD: self.init(.notExecutable(errno: error.errno), error.description)
        case let s where Spawner.namespaceStages.contains(s) || s == .landlock:
            self.init(.unavailable, error.message + "\nNothing was started.")
        default: self.init(.unavailable, error.description)
        }
    }
}

/// How a worker's run ended: its own exit, or a failure to start or a stop for good.
public enum RunOutcome: Sendable {
    case exited(ExitStatus)
    case failed(RunFailure)
}
