extension SeccompProfile {
    /// The profile as OCI / Docker JSON, fields in the order Docker writes them, so
    /// `tether profile show default > p.json` gives a file Docker, Podman and Tether all load.
    public var jsonValue: JSONValue {
        var o: [(String, JSONValue)] = [("defaultAction", .string(defaultAction.rawValue))]
        if let e = defaultErrnoRet { o.append(("defaultErrnoRet", .int(UInt64(e)))) }
        if let c = comment { o.append(("comment", .string(c))) }
        if !architectures.isEmpty { o.append(("architectures", .array(architectures.map(JSONValue.string)))) }
        if !archMap.isEmpty {
            o.append(
                (
                    "archMap",
                    .array(
                        archMap.map {
                            .object([
                                ("architecture", .string($0.architecture)),
                                ("subArchitectures", .array($0.subArchitectures.map(JSONValue.string))),
                            ])
                        })
                ))
        }
        if !flags.isEmpty { o.append(("flags", .array(flags.map(JSONValue.string)))) }
        if let fd = execFD { o.append(("x-tether-exec-fd", .int(UInt64(fd)))) }
        o.append(("syscalls", .array(syscalls.map(\.jsonValue))))
        return .object(o)
    }

    public func jsonText() -> String { jsonValue.pretty() }
}

extension SyscallRule {
    var jsonValue: JSONValue {
        var o: [(String, JSONValue)] = [("names", .array(names.map(JSONValue.string))), ("action", .string(action.rawValue))]
        if let e = errnoRet { o.append(("errnoRet", .int(UInt64(e)))) }
        if !args.isEmpty {
            o.append(
                (
                    "args",
                    .array(
                        args.map {
                            .object([
                                ("index", .int(UInt64($0.index))), ("value", .int($0.value)),
                                ("valueTwo", .int($0.valueTwo)), ("op", .string($0.op.rawValue)),
                            ])
                        })
                ))
        }
        if !includes.isEmpty { o.append(("includes", includes.jsonValue)) }
        if !excludes.isEmpty { o.append(("excludes", excludes.jsonValue)) }
        if let c = comment { o.append(("comment", .string(c))) }
        return .object(o)
    }
}

extension RuleFilter {
    var jsonValue: JSONValue {
        var o: [(String, JSONValue)] = []
        if !arches.isEmpty { o.append(("arches", .array(arches.map(JSONValue.string)))) }
        if !caps.isEmpty { o.append(("caps", .array(caps.map(JSONValue.string)))) }
        if let k = minKernel { o.append(("minKernel", .string(k))) }
        return .object(o)
    }
}

extension JSONValue {
    public static func int(_ v: UInt64) -> JSONValue { .number(Double(v), exact: v, negative: false) }

    /// Two-space indented JSON; short arrays of scalars stay on one line.
    public func pretty(indent: String = "") -> String {
        let inner = indent + "  "
        switch self {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .number(let d, let exact, _):
            if let e = exact { return String(e) }
            if d == d.rounded(), abs(d) < 1e15 { return String(Int64(d)) }
            return String(d)
        case .string(let s): return JSONValue.quote(s)
        case .array(let a):
            if a.isEmpty { return "[]" }
            if a.allSatisfy({ if case .object = $0 { false } else if case .array = $0 { false } else { true } }) {
                let one = "[" + a.map { $0.pretty() }.joined(separator: ", ") + "]"
                if one.count + indent.count <= 100 { return one }
                return "[\n" + a.map { inner + $0.pretty(indent: inner) }.joined(separator: ",\n") + "\n\(indent)]"
            }
            return "[\n" + a.map { inner + $0.pretty(indent: inner) }.joined(separator: ",\n") + "\n\(indent)]"
        case .object(let o):
            if o.isEmpty { return "{}" }
            return "{\n" + o.map { inner + JSONValue.quote($0.0) + ": " + $0.1.pretty(indent: inner) }.joined(separator: ",\n")
                + "\n\(indent)}"
        }
    }

    public static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where u.value < 0x20:
                out += "\\u" + String(repeating: "0", count: 4 - String(u.value, radix: 16).count) + String(u.value, radix: 16)
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }
}
