/// What a profile means on one machine: which rules apply once `includes`/`excludes` are
/// weighed against the architecture, the worker's capabilities and the kernel, the way Docker
/// and runc weigh them.
public struct TargetPlatform: Sendable, Equatable {
    /// The native architecture, as libseccomp names it (`SCMP_ARCH_X86_64`).
    public var seccompArch: String
    /// The same, as Docker names it in `includes.arches` (`amd64`).
    public var dockerArch: String
    /// Capabilities the worker will hold (`CAP_SYS_ADMIN`, …): none once it runs as a
    /// non-root user.
    public var capabilities: Set<String>
    public var kernel: KernelVersion?

    public init(seccompArch: String, dockerArch: String, capabilities: Set<String>, kernel: KernelVersion?) {
        self.seccompArch = seccompArch
        self.dockerArch = dockerArch
        self.capabilities = capabilities
        self.kernel = kernel
    }
}

/// One syscall name of one rule, with where it came from.
public struct ResolvedRule: Sendable, Equatable {
    public var name: String
    public var action: SeccompAction
    public var errnoRet: UInt16
    public var args: [ArgCondition]
    /// JSON path of the name (`$.syscalls[3].names[1]`), for error messages.
    public var path: String
    /// The rule applies because of the worker's capabilities (`includes.caps` / `excludes.caps`).
    public var forCapabilities: Bool = false
}

public enum ErrnoCode {
    public static let EPERM: UInt16 = 1
    public static let ENOSYS: UInt16 = 38
}

extension SeccompProfile {
    /// The errno the default action returns, when it is `SCMP_ACT_ERRNO`.
    public var effectiveDefaultErrno: UInt16 { defaultErrnoRet ?? ErrnoCode.EPERM }

    /// Rules that apply on `platform`, in profile order, one per syscall name.
    public func resolve(for platform: TargetPlatform) -> [ResolvedRule] {
        var out: [ResolvedRule] = []
        for (i, rule) in syscalls.enumerated() where rule.applies(on: platform) {
            for (j, name) in rule.names.enumerated() {
                out.append(
                    ResolvedRule(
                        name: name, action: rule.action, errnoRet: rule.errnoRet ?? ErrnoCode.EPERM,
                        args: rule.args, path: "$.syscalls[\(i)].names[\(j)]",
                        forCapabilities: !rule.includes.caps.isEmpty || !rule.excludes.caps.isEmpty))
            }
        }
        return out
    }
}

extension SyscallRule {
    public func applies(on platform: TargetPlatform) -> Bool {
        let arch: (String) -> Bool = { $0 == platform.seccompArch || $0 == platform.dockerArch }
        if !includes.arches.isEmpty && !includes.arches.contains(where: arch) { return false }
        if !includes.caps.isEmpty && !includes.caps.allSatisfy(platform.capabilities.contains) { return false }
        if let min = includes.minKernel.flatMap(KernelVersion.init), let k = platform.kernel, k < min { return false }
        if excludes.arches.contains(where: arch) { return false }
        if excludes.caps.contains(where: platform.capabilities.contains) { return false }
        if let min = excludes.minKernel.flatMap(KernelVersion.init), let k = platform.kernel, k >= min { return false }
        return true
    }
}
