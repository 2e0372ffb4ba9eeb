/// A seccomp profile in the OCI runtime / Docker JSON model, so a profile people already use with
/// Docker or Podman works here unchanged.
///
/// One extension: `x-tether-exec-fd` (see `execFD`), used by profiles that forbid exec.
public struct SeccompProfile: Sendable, Equatable {
    public var defaultAction: SeccompAction
    /// The errno of `defaultAction` when it is `SCMP_ACT_ERRNO` (Docker's default is EPERM).
    public var defaultErrnoRet: UInt16?
    /// Architectures the profile names. Tether compiles for the native ABI only: a syscall made
    /// through any other ABI (x32, i386 `int 0x80`) kills the process, whatever is listed here.
    public var architectures: [String]
    public var archMap: [ArchMapEntry]
    public var syscalls: [SyscallRule]
    /// OCI `flags` (`SECCOMP_FILTER_FLAG_LOG`, ...): accepted and reported; Tether installs the
    /// filter with its own flags.
    public var flags: [String]
    /// When set, the filter forbids exec except `execveat(execFD, "", …, AT_EMPTY_PATH)`; the
    /// spawner opens the program at this descriptor number before installing the filter.
    public var execFD: Int32?
    public var comment: String?

    public init(
        defaultAction: SeccompAction,
        defaultErrnoRet: UInt16? = nil,
        architectures: [String] = [],
        archMap: [ArchMapEntry] = [],
        syscalls: [SyscallRule] = [],
        flags: [String] = [],
        execFD: Int32? = nil,
        comment: String? = nil
    ) {
        self.defaultAction = defaultAction
        self.defaultErrnoRet = defaultErrnoRet
        self.architectures = architectures
        self.archMap = archMap
        self.syscalls = syscalls
        self.flags = flags
        self.execFD = execFD
        self.comment = comment
    }
}

public struct ArchMapEntry: Sendable, Equatable {
    public var architecture: String
    public var subArchitectures: [String]

    public init(architecture: String, subArchitectures: [String]) {
        self.architecture = architecture
        self.subArchitectures = subArchitectures
    }
}

public enum SeccompAction: String, Sendable, Equatable, CaseIterable {
    case killProcess = "SCMP_ACT_KILL_PROCESS"
    case killThread = "SCMP_ACT_KILL_THREAD"
    /// Historical name of `killThread`.
    case kill = "SCMP_ACT_KILL"
    case trap = "SCMP_ACT_TRAP"
    case errno = "SCMP_ACT_ERRNO"
    case trace = "SCMP_ACT_TRACE"
    case allow = "SCMP_ACT_ALLOW"
    case log = "SCMP_ACT_LOG"
    case notify = "SCMP_ACT_NOTIFY"
}

public enum ArgOperator: String, Sendable, Equatable, CaseIterable {
    case notEqual = "SCMP_CMP_NE"
    case lessThan = "SCMP_CMP_LT"
    case lessOrEqual = "SCMP_CMP_LE"
    case equal = "SCMP_CMP_EQ"
    case greaterOrEqual = "SCMP_CMP_GE"
    case greaterThan = "SCMP_CMP_GT"
    /// `(arg & value) == valueTwo`
    case maskedEqual = "SCMP_CMP_MASKED_EQ"
}

public struct ArgCondition: Sendable, Equatable {
    public var index: UInt32
    public var value: UInt64
    public var valueTwo: UInt64
    public var op: ArgOperator

    public init(index: UInt32, value: UInt64, valueTwo: UInt64 = 0, op: ArgOperator) {
        self.index = index
        self.value = value
        self.valueTwo = valueTwo
        self.op = op
    }
}

/// `includes` / `excludes` of a rule: the rule applies only on these architectures, with these
/// capabilities, from this kernel on.
public struct RuleFilter: Sendable, Equatable {
    public var arches: [String]
    public var caps: [String]
    public var minKernel: String?

    public init(arches: [String] = [], caps: [String] = [], minKernel: String? = nil) {
        self.arches = arches
        self.caps = caps
        self.minKernel = minKernel
    }

    public var isEmpty: Bool { arches.isEmpty && caps.isEmpty && minKernel == nil }
}

public struct SyscallRule: Sendable, Equatable {
    public var names: [String]
    public var action: SeccompAction
    public var errnoRet: UInt16?
    public var args: [ArgCondition]
    public var includes: RuleFilter
    public var excludes: RuleFilter
    public var comment: String?

    public init(
        names: [String],
        action: SeccompAction,
        errnoRet: UInt16? = nil,
        args: [ArgCondition] = [],
        includes: RuleFilter = RuleFilter(),
        excludes: RuleFilter = RuleFilter(),
        comment: String? = nil
    ) {
        self.names = names
        self.action = action
        self.errnoRet = errnoRet
        self.args = args
        self.includes = includes
        self.excludes = excludes
        self.comment = comment
    }
}
