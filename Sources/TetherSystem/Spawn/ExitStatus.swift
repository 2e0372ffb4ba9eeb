/// How a worker ended.
public enum ExitStatus: Sendable, Equatable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)
    /// It exited, but its status was collected by other code in this process.
    case lost

    /// The shell convention, and `tether run`'s exit code: the code, or 128+N for signal N.
    public var shellCode: Int32 {
        switch self {
        case .exited(let c): return c
        case .signaled(let s): return 128 + s
        case .lost: return 255
        }
    }

    public var description: String {
        switch self {
        case .exited(let c): return "exited with code \(c)"
        case .signaled(let s): return "killed by signal \(s) (\(Signals.name(s)))"
        case .lost: return "exited (status collected elsewhere)"
        }
    }
}

public enum Signals {
    static let table: [Int32: String] = [
        1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT", 7: "SIGBUS",
        8: "SIGFPE", 9: "SIGKILL", 10: "SIGUSR1", 11: "SIGSEGV", 12: "SIGUSR2", 13: "SIGPIPE",
        14: "SIGALRM", 15: "SIGTERM", 17: "SIGCHLD", 18: "SIGCONT", 19: "SIGSTOP", 20: "SIGTSTP",
        21: "SIGTTIN", 22: "SIGTTOU", 28: "SIGWINCH", 31: "SIGSYS",
    ]

    public static func name(_ sig: Int32) -> String { table[sig] ?? "signal \(sig)" }
}
