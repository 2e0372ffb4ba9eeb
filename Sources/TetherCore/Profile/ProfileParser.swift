import Foundation

/// A profile that cannot be used, with the JSON path of what is wrong.
public struct ProfileError: Error, Sendable, Equatable, CustomStringConvertible {
    /// `$` for the document, `$.syscalls[3].args[0].op` for a field.
    public var path: String
    public var message: String
    /// The file or built-in name the profile came from, when known.
    public var source: String?

    public init(path: String, message: String, source: String? = nil) {
        self.path = path
        self.message = message
        self.source = source
    }

    public var description: String {
        "\(source.map { "\($0): " } ?? "")\(path): \(message)"
    }
}

/// Reads OCI / Docker seccomp JSON into a `SeccompProfile`, refusing anything it does not
/// understand rather than guessing: a misspelt key could silently turn a deny into an allow.
public enum ProfileParser {
    /// Architecture names libseccomp knows (`SCMP_ARCH_*`).
    public static let knownArchitectures: Set<String> = [
        "SCMP_ARCH_NATIVE", "SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM",
        "SCMP_ARCH_AARCH64", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32",
        "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC",
        "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X",
        "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64", "SCMP_ARCH_LOONGARCH64",
        "SCMP_ARCH_M68K", "SCMP_ARCH_SH", "SCMP_ARCH_SHEB",
    ]

    /// The architecture names Docker uses in `includes.arches` / `excludes.arches` (Go's names;
    /// `x86` for 32-bit x86 as containers-common's seccomp.json writes it).
    public static let dockerArchNames: Set<String> = [
        "amd64", "x32", "386", "x86", "arm64", "arm", "s390x", "s390", "ppc64le", "ppc64", "ppc",
        "mips64", "mips64n32", "mipsle64", "mips64le", "mips64len32", "mipsel64", "mipsel64n32",
        "mips", "mipsle", "mipsel", "riscv64", "loong64",
    ]

    public static let knownFlags: Set<String> = [
        "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
    ]

    public static func parse(_ data: Data, source: String? = nil) throws(ProfileError) -> SeccompProfile {
        do {
            return try profile(JSONValue.parse(data))
        } catch var error {
            error.source = source
            throw error
        }
    }

    public static func parse(_ text: String, source: String? = nil) throws(ProfileError) -> SeccompProfile {
        try parse(Data(text.utf8), source: source)
    }

    // MARK: - the document

    static func profile(_ doc: JSONValue) throws(ProfileError) -> SeccompProfile {
        let o = try Fields(
            doc, path: "$",
            allowed: [
                "defaultAction", "defaultErrnoRet", "defaultErrno", "architectures", "archMap", "syscalls", "flags",
                "listenerPath", "listenerMetadata", "comment", "x-tether-exec-fd",
            ])
        let defaultAction = try action(o.required("defaultAction"), path: "$.defaultAction")
        if defaultAction == .notify {
            throw ProfileError(path: "$.defaultAction", message: "SCMP_ACT_NOTIFY cannot be the default action")
        }
        var p = SeccompProfile(defaultAction: defaultAction)
        p.defaultErrnoRet = try errno(number: o["defaultErrnoRet"], name: o["defaultErrno"], path: "$", key: "defaultErrno")
        if let v = o["architectures"] {
            p.architectures = try archList(v, path: "$.architectures")
        }
        if let v = o["archMap"] {
            p.archMap = try array(v, path: "$.archMap").enumerated().map { (i, entry) throws(ProfileError) in
                let path = "$.archMap[\(i)]"
                let e = try Fields(entry, path: path, allowed: ["architecture", "subArchitectures"])
                let arch = try string(e.required("architecture"), path: "\(path).architecture")
                try checkArch(arch, path: "\(path).architecture")
                let subs =
                    try e["subArchitectures"].map { v throws(ProfileError) in
                        try archList(v, path: "\(path).subArchitectures")
                    } ?? []
                return ArchMapEntry(architecture: arch, subArchitectures: subs)
            }
        }
        if let v = o["flags"] {
            p.flags = try stringList(v, path: "$.flags")
            for (i, f) in p.flags.enumerated() where !knownFlags.contains(f) {
                throw ProfileError(
                    path: "$.flags[\(i)]", message: "unknown flag \"\(f)\"; expected one of \(knownFlags.sorted().joined(separator: ", "))")
            }
        }
        if let v = o["listenerPath"], try string(v, path: "$.listenerPath") != "" {
            throw ProfileError(
                path: "$.listenerPath",
                message: "seccomp user notification listeners are not supported; remove listenerPath and SCMP_ACT_NOTIFY rules")
        }
        if let v = o["comment"] { p.comment = try string(v, path: "$.comment") }
        if let v = o["x-tether-exec-fd"] {
            let n = try integer(v, path: "$.x-tether-exec-fd")
            guard n >= 3, n < 1024 else {
                throw ProfileError(path: "$.x-tether-exec-fd", message: "must be a descriptor number from 3 to 1023, found \(n)")
            }
            p.execFD = Int32(n)
        }
        if let v = o["syscalls"] {
            p.syscalls = try array(v, path: "$.syscalls").enumerated().map { (i, rule) throws(ProfileError) in
                try syscallRule(rule, path: "$.syscalls[\(i)]")
            }
        }
        return p
    }

    static func syscallRule(_ v: JSONValue, path: String) throws(ProfileError) -> SyscallRule {
        let o = try Fields(
            v, path: path, allowed: ["names", "name", "action", "errnoRet", "errno", "args", "includes", "excludes", "comment"])
        var names: [String] = []
        if let n = o["names"] { names = try stringList(n, path: "\(path).names") }
        if let n = o["name"] { names.append(try string(n, path: "\(path).name")) }  // pre-OCI Docker form
        if names.isEmpty {
            throw ProfileError(path: "\(path).names", message: "a rule needs at least one syscall name")
        }
        for (i, n) in names.enumerated() where n.isEmpty {
            throw ProfileError(path: "\(path).names[\(i)]", message: "empty syscall name")
        }
        let act = try action(o.required("action"), path: "\(path).action")
        if act == .notify {
            throw ProfileError(path: "\(path).action", message: "SCMP_ACT_NOTIFY is not supported (no user-notification listener)")
        }
        var rule = SyscallRule(names: names, action: act)
        rule.errnoRet = try errno(number: o["errnoRet"], name: o["errno"], path: path, key: "errno")
        if let c = o["comment"] { rule.comment = try string(c, path: "\(path).comment") }
        if let a = o["args"], a != .null {
            rule.args = try array(a, path: "\(path).args").enumerated().map { (i, arg) throws(ProfileError) in
                try argCondition(arg, path: "\(path).args[\(i)]")
            }
        }
        if let f = o["includes"] { rule.includes = try filter(f, path: "\(path).includes") }
        if let f = o["excludes"] { rule.excludes = try filter(f, path: "\(path).excludes") }
        return rule
    }

    static func argCondition(_ v: JSONValue, path: String) throws(ProfileError) -> ArgCondition {
        let o = try Fields(v, path: path, allowed: ["index", "value", "valueTwo", "op"])
        let index = try integer(o.required("index"), path: "\(path).index")
        guard index <= 5 else {
            throw ProfileError(path: "\(path).index", message: "syscalls have arguments 0 to 5, found \(index)")
        }
        let value = try integer(o.required("value"), path: "\(path).value")
        let valueTwo = try o["valueTwo"].map { v throws(ProfileError) in try integer(v, path: "\(path).valueTwo") } ?? 0
        let opName = try string(o.required("op"), path: "\(path).op")
        guard let op = ArgOperator(rawValue: opName) else {
            throw ProfileError(
                path: "\(path).op",
                message: "unknown operator \"\(opName)\"; expected one of \(ArgOperator.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return ArgCondition(index: UInt32(index), value: value, valueTwo: valueTwo, op: op)
    }

    static func filter(_ v: JSONValue, path: String) throws(ProfileError) -> RuleFilter {
        let o = try Fields(v, path: path, allowed: ["arches", "caps", "minKernel"])
        var f = RuleFilter()
        if let a = o["arches"] {
            f.arches = try stringList(a, path: "\(path).arches")
            for (i, arch) in f.arches.enumerated() where !knownArchitectures.contains(arch) && !dockerArchNames.contains(arch) {
                throw ProfileError(
                    path: "\(path).arches[\(i)]",
                    message: "unknown architecture \"\(arch)\"; expected a Docker name (amd64, arm64, x32, 386, …) or SCMP_ARCH_…")
            }
        }
        if let c = o["caps"] {
            f.caps = try stringList(c, path: "\(path).caps")
            for (i, cap) in f.caps.enumerated() where !cap.hasPrefix("CAP_") {
                throw ProfileError(path: "\(path).caps[\(i)]", message: "capabilities are named CAP_…, found \"\(cap)\"")
            }
        }
        if let k = o["minKernel"] {
            let s = try string(k, path: "\(path).minKernel")
            guard KernelVersion(s) != nil else {
                throw ProfileError(path: "\(path).minKernel", message: "expected a kernel version like \"5.8\", found \"\(s)\"")
            }
            f.minKernel = s
        }
        return f
    }

    // MARK: - typed accessors that name the path

    struct Fields {
        let values: [String: JSONValue]
        let path: String

        init(_ v: JSONValue, path: String, allowed: Set<String>) throws(ProfileError) {
            guard case .object(let pairs) = v else {
                throw ProfileError(path: path, message: "expected an object, found \(v.kindName)")
            }
            for (k, _) in pairs where !allowed.contains(k) {
                throw ProfileError(
                    path: "\(path).\(k)", message: "unknown field; expected one of \(allowed.sorted().joined(separator: ", "))")
            }
            self.values = Dictionary(pairs, uniquingKeysWith: { a, _ in a })
            self.path = path
        }

        subscript(key: String) -> JSONValue? { values[key] }

        func required(_ key: String) throws(ProfileError) -> JSONValue {
            guard let v = values[key] else {
                throw ProfileError(path: "\(path).\(key)", message: "required field is missing")
            }
            return v
        }
    }

    static func action(_ v: JSONValue, path: String) throws(ProfileError) -> SeccompAction {
        let name = try string(v, path: path)
        guard let a = SeccompAction(rawValue: name) else {
            throw ProfileError(
                path: path,
                message: "unknown action \"\(name)\"; expected one of \(SeccompAction.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return a
    }

    /// An errno given as a number (`errnoRet`, OCI and Docker) or a name (`errno`, the form
    /// containers-common's seccomp.json adds for Podman), or both if they agree.
    static func errno(number: JSONValue?, name: JSONValue?, path: String, key: String) throws(ProfileError) -> UInt16? {
        let n = try number.map { v throws(ProfileError) in try errno(v, path: "\(path).\(key)Ret") }
        guard let name else { return n }
        let text = try string(name, path: "\(path).\(key)")
        guard let byName = ErrnoName.value(text) else {
            throw ProfileError(
                path: "\(path).\(key)",
                message:
                    "unknown errno name \"\(text)\"; expected one of \(ErrnoName.table.keys.sorted().joined(separator: ", ")) or a number in \(key)Ret"
            )
        }
        if let n, n != byName {
            throw ProfileError(path: "\(path).\(key)", message: "\(text) is \(byName) but \(key)Ret says \(n)")
        }
        return byName
    }

    static func errno(_ v: JSONValue, path: String) throws(ProfileError) -> UInt16 {
        let n = try integer(v, path: path)
        guard n <= 4095 else {
            throw ProfileError(path: path, message: "errno values run from 0 to 4095, found \(n)")
        }
        return UInt16(n)
    }

    static func string(_ v: JSONValue, path: String) throws(ProfileError) -> String {
        guard case .string(let s) = v else {
            throw ProfileError(path: path, message: "expected a string, found \(v.kindName)")
        }
        return s
    }

    static func integer(_ v: JSONValue, path: String) throws(ProfileError) -> UInt64 {
        guard case .number(_, let exact, let negative) = v else {
            throw ProfileError(path: path, message: "expected a non-negative integer, found \(v.kindName)")
        }
        guard !negative, let n = exact else {
            throw ProfileError(path: path, message: "expected a non-negative integer")
        }
        return n
    }

    static func array(_ v: JSONValue, path: String) throws(ProfileError) -> [JSONValue] {
        if case .null = v { return [] }
        guard case .array(let a) = v else {
            throw ProfileError(path: path, message: "expected an array, found \(v.kindName)")
        }
        return a
    }

    static func stringList(_ v: JSONValue, path: String) throws(ProfileError) -> [String] {
        try array(v, path: path).enumerated().map { (i, s) throws(ProfileError) in try string(s, path: "\(path)[\(i)]") }
    }

    static func archList(_ v: JSONValue, path: String) throws(ProfileError) -> [String] {
        let list = try stringList(v, path: path)
        for (i, a) in list.enumerated() { try checkArch(a, path: "\(path)[\(i)]") }
        return list
    }

    static func checkArch(_ a: String, path: String) throws(ProfileError) {
        guard knownArchitectures.contains(a) else {
            throw ProfileError(path: path, message: "unknown architecture \"\(a)\"; expected SCMP_ARCH_X86_64, SCMP_ARCH_AARCH64, …")
        }
    }
}

/// A kernel version as `minKernel` and `uname -r` give it ("5.8", "6.1.0-18-amd64").
public struct KernelVersion: Sendable, Comparable {
    public var major: Int
    public var minor: Int

    public init?(_ text: String) {
        let parts = text.split(separator: ".", maxSplits: 2)
        guard parts.count >= 2, let major = Int(parts[0]) else { return nil }
        let minorDigits = parts[1].prefix { $0.isNumber }
        guard let minor = Int(minorDigits) else { return nil }
        self.major = major
        self.minor = minor
    }

    public static func < (a: KernelVersion, b: KernelVersion) -> Bool {
        (a.major, a.minor) < (b.major, b.minor)
    }
}

/// Errno names as seccomp profiles write them (Linux numbers, the same on x86_64 and aarch64).
enum ErrnoName {
    static let table: [String: UInt16] = [
        "EPERM": 1, "ENOENT": 2, "ESRCH": 3, "EINTR": 4, "EIO": 5, "ENXIO": 6, "E2BIG": 7,
        "ENOEXEC": 8, "EBADF": 9, "ECHILD": 10, "EAGAIN": 11, "ENOMEM": 12, "EACCES": 13,
        "EFAULT": 14, "EBUSY": 16, "EEXIST": 17, "EXDEV": 18, "ENODEV": 19, "ENOTDIR": 20,
        "EISDIR": 21, "EINVAL": 22, "ENFILE": 23, "EMFILE": 24, "ENOTTY": 25, "EFBIG": 27,
        "ENOSPC": 28, "ESPIPE": 29, "EROFS": 30, "EMLINK": 31, "EPIPE": 32, "ERANGE": 34,
        "ENOSYS": 38, "EOPNOTSUPP": 95, "ENOTSUP": 95, "EAFNOSUPPORT": 97, "EPROTONOSUPPORT": 93,
    ]

    static func value(_ name: String) -> UInt16? { table[name.uppercased()] }
}
