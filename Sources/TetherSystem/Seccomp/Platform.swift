import Foundation
import TetherCore

extension TargetPlatform {
    /// This machine: native architecture, the capabilities this process holds (a worker that
    /// keeps the supervisor's credentials holds the same), and the running kernel.
    public static var current: TargetPlatform {
        TargetPlatform(
            seccompArch: nativeSeccompArch,
            dockerArch: nativeDockerArch,
            capabilities: Capabilities.effective(),
            kernel: KernelVersion(kernelRelease)
        )
    }

    /// The same machine for a worker that drops to a non-root user: no capabilities.
    public func withoutCapabilities() -> TargetPlatform {
        var p = self
        p.capabilities = []
        return p
    }

    /// This machine as the worker will see it, not as the supervisor does: a profile's
    /// `includes.caps` / `excludes.caps` are weighed against the capabilities the worker will
    /// hold. Every worker runs as a non-root uid (a root supervisor's default is a dedicated
    /// one) and so holds none — except one run as `root`, which is root in a user namespace
    /// of its own: its capabilities reach nothing outside it, and its profile is resolved as a
    /// container's root is (Docker's default set, no CAP_SYS_ADMIN).
    public static func forWorker(user: String?) -> TargetPlatform {
        var p = TargetPlatform.current
        p.capabilities = WorkerSpec(command: [], user: user).runsAsRoot ? Capabilities.containerDefault : []
        return p
    }

    static var nativeSeccompArch: String {
        #if arch(x86_64)
            return "SCMP_ARCH_X86_64"
        #elseif arch(arm64)
            return "SCMP_ARCH_AARCH64"
        #else
            return "SCMP_ARCH_NATIVE"
        #endif
    }

    static var nativeDockerArch: String {
        #if arch(x86_64)
            return "amd64"
        #elseif arch(arm64)
            return "arm64"
        #else
            return "unknown"
        #endif
    }

    static var kernelRelease: String {
        var u = utsname()
        uname(&u)
        return withUnsafeBytes(of: &u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }
}

/// Linux capabilities by bit number (capability.h), for profiles' `includes.caps`.
public enum Capabilities {
    public static let names = [
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
        "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
        "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
        "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
        "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
        "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
        "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
        "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
        "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
    ]

    /// What Docker grants a container's root by default (moby's `DefaultCapabilities`).
    public static let containerDefault: Set<String> = [
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
        "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
    ]

    /// The effective set of this process, from `/proc/self/status`.
    public static func effective() -> Set<String> {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("CapEff:") }),
            let mask = UInt64(line.dropFirst("CapEff:".count).trimmingCharacters(in: .whitespaces), radix: 16)
        else { return [] }
        return Set(names.indices.filter { mask & (1 << UInt64($0)) != 0 }.map { names[$0] })
    }
}
