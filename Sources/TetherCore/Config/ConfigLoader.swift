import Foundation

/// Reads a configuration file strictly: an unknown key, a wrong type or a bad value is an
/// error naming `file:line`, and nothing starts on a file that did not load.
public enum ConfigLoader {
    public static func load(path: String) throws(ConfigError) -> ConfigFile {
        try parse(try read(path), path: path)
    }

    /// A configuration file's text; an unreadable one is an error naming it.
    static func read(_ path: String) throws(ConfigError) -> String {
        do {
            return try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigError(file: path, line: nil, message: "cannot read the file: \((error as NSError).localizedDescription)")
        }
    }

    /// The TOML document of a configuration file; a syntax error names `file:line`.
    static func document(_ text: String, path: String) throws(ConfigError) -> TOMLTable {
        do {
            return try TOML.parse(text)
        } catch {
            throw ConfigError(file: path, line: error.line, message: error.message)
        }
    }

    public static func parse(_ text: String, path: String) throws(ConfigError) -> ConfigFile {
        let root = try document(text, path: path)
        var config = ConfigFile(path: path)
        var top = Fields(root, name: nil, file: path)
        if let t = try top.table("authority") {
            var f = Fields(t, name: "authority", file: path)
            config.authority.urls = try f.stringOrArray("url") ?? []
            config.authority.keyFile = try f.string("key_file")
            config.authority.publicKey = try f.string("public_key")
            if let d = try f.duration("fail_closed_after", atLeast: .milliseconds(100)) { config.authority.failClosedAfter = d }
            if let d = try f.duration("poll_interval", atLeast: .milliseconds(50)) { config.authority.pollInterval = d }
            if let b = try f.bool("watch") { config.authority.watch = b }
            if let b = try f.bool("register") { config.authority.register = b }
            config.authority.instance = try f.token("instance")
            if let b = try f.bool("insecure_unpinned") { config.authority.insecureUnpinned = b }
            try f.finish()
        }
        if let t = try top.table("supervisor") {
            var f = Fields(t, name: "supervisor", file: path)
            config.supervisor.metrics = try f.string("metrics")
            if let m = config.supervisor.metrics, !HostPort.isValid(m) {
                throw f.error("metrics", "expected HOST:PORT, e.g. \"127.0.0.1:9471\"; got \"\(m)\"")
            }
            if let d = try f.duration("shutdown_timeout", atLeast: .zero) { config.supervisor.shutdownTimeout = d }
            if let b = try f.bool("accept_weak_containment") { config.supervisor.acceptWeakContainment = b }
            try f.finish()
        }
        for w in try top.tables("worker") {
            config.workers.append(try worker(w, file: path))
        }
        try top.finish()
        var seen: [String: Int] = [:]
        for w in config.workers {
            if let first = seen[w.name] {
                throw ConfigError(file: path, line: w.line, message: "worker name \"\(w.name)\" is used twice (first on line \(first))")
            }
            seen[w.name] = w.line ?? 0
        }
        return config
    }

    static func worker(_ t: TOMLTable, file: String) throws(ConfigError) -> WorkerConfig {
        var f = Fields(t, name: "worker", file: file)
        guard let name = try f.token("name") else { throw ConfigError(file: file, line: t.line, message: "a [[worker]] needs a name") }
        let surface = try f.token("surface") ?? name
        guard let command = try f.stringArray("command"), !command.isEmpty, !command[0].isEmpty else {
            throw ConfigError(
                file: file, line: f.line("command") ?? t.line,
                message: "worker \(name): command is a non-empty array of strings, e.g. [\"python3\", \"agent.py\"]")
        }
        var spec = WorkerSpec(command: command)
        spec.user = try f.string("user")
        spec.group = try f.string("group")
        spec.workingDirectory = try f.string("working_directory")
        spec.environment = try f.stringTable("env") ?? [:]
        spec.inherit = try f.stringArray("inherit_env")
        if let n = try f.string("net") {
            guard let mode = NetworkMode(rawValue: n) else { throw f.error("net", "expected one of \(NetworkMode.names); got \"\(n)\"") }
            spec.network = mode
        }
        if let a = try f.string("agent") {
            guard let kind = CodingAgent(rawValue: a) else { throw f.error("agent", "expected one of \(CodingAgent.names); got \"\(a)\"") }
            var pin = AgentPin(agent: kind)
            for m in try f.stringArray("agent_map") ?? [] {
                switch ToolRule.parse(m) {
                case .success(let r): pin.rules.append(r)
                case .failure(let e): throw f.error("agent_map", e.description)
                }
            }
            pin.acceptUnpinned = try f.bool("accept_unpinned_hooks") ?? false
            spec.agent = pin
        } else {
            if try f.stringArray("agent_map") != nil {
                throw f.error("agent_map", "holds an agent's tools to surfaces; give the agent with agent = \"…\"")
            }
            if try f.bool("accept_unpinned_hooks") != nil {
                throw f.error("accept_unpinned_hooks", "is about an agent's pinned hook; give the agent with agent = \"…\"")
            }
        }
        if let limits = try f.stringTable("limits") {
            for (k, v) in limits.sorted(by: { $0.key < $1.key }) {
                guard let l = ResourceLimit(parsing: "\(k)=\(v)") else {
                    throw f.error(
                        "limits",
                        "\(k) = \"\(v)\": expected one of \(ResourceLimit.Resource.allCases.map(\.rawValue).joined(separator: ", ")) with SOFT or SOFT:HARD (a number or \"infinity\")"
                    )
                }
                spec.limits.append(l)
            }
        }
        var w = WorkerConfig(name: name, surface: surface, spec: spec, line: t.line)
        w.profile = try f.string("profile") ?? "default"
        if let s = try f.string("on_revoke") {
            guard let o = OnRevoke(rawValue: s) else { throw f.error("on_revoke", "expected stop, kill or term; got \"\(s)\"") }
            w.stop.onRevoke = o
        }
        w.stop.killAfter = try f.duration("kill_after", atLeast: .zero)
        if let g = try f.duration("grace", atLeast: .zero) { w.stop.grace = g }
        if let r = try f.string("restart") {
            guard let m = RestartPolicy.Mode(rawValue: r) else {
                throw f.error("restart", "expected no, on-failure or always; got \"\(r)\"")
            }
            w.restart.mode = m
        }
        if let d = try f.duration("restart_delay", atLeast: .milliseconds(10)) { w.restart.delay = d }
        if let d = try f.duration("restart_max_delay", atLeast: .milliseconds(10)) { w.restart.maxDelay = d }
        if w.restart.maxDelay < w.restart.delay { throw f.error("restart_max_delay", "is shorter than restart_delay") }
        w.gates = try gates(&f, worker: name, surface: surface, network: spec.network)
        try f.finish()
        return w
    }
}

extension ConfigLoader {
    /// `gates = { exec = "agent-01.exec", net = { surface = "agent-01.net", mode = "record" } }`
    static func gates(
        _ f: inout Fields, worker: String, surface: String, network: NetworkMode = .private
    ) throws(ConfigError) -> [GateConfig] {
        guard let t = try f.table("gates") else { return [] }
        var out: [GateConfig] = []
        for key in t.keys.sorted() {
            let v = t[key]!
            let at = ConfigError(file: f.file, line: v.line, message: "")
            func fail(_ m: String) -> ConfigError { ConfigError(file: at.file, line: at.line, message: "\(worker).gates.\(key): \(m)") }
            guard let kind = GateKind(rawValue: key) else {
                throw fail("not a gate; the gates are \(GateKind.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            var gate: GateConfig
            switch v.kind {
            case .string(let s):
                gate = GateConfig(kind: kind, surface: s)
            case .table(let inner):
                var g = Fields(inner, name: "\(worker).gates.\(key)", file: f.file)
                guard let s = try g.string("surface") else { throw fail("needs a surface, e.g. { surface = \"\(surface).\(key)\" }") }
                gate = GateConfig(kind: kind, surface: s)
                if let m = try g.string("mode") {
                    guard let mode = GateMode(rawValue: m) else { throw g.error("mode", "expected enforce or record; got \"\(m)\"") }
                    gate.mode = mode
                }
                try g.finish()
            default:
                throw fail("expected a surface name or { surface = \"…\", mode = \"enforce\" | \"record\" }, found \(v.typeName)")
            }
            guard SurfaceName.isValid(gate.surface) else {
                throw fail("\"\(gate.surface)\" is not a valid surface name: \(SurfaceName.rule)")
            }
            out.append(gate)
        }
        if let e = GateConfig.check(out, mainSurface: surface, network: network) {
            throw ConfigError(file: f.file, line: f.line("gates"), message: "\(worker).gates: \(e.message)")
        }
        return out
    }
}

/// The keys of one table, read once each; `finish` refuses the ones nobody read.
struct Fields {
    let table: TOMLTable
    let name: String?
    let file: String
    var used: Set<String> = []
    /// What an unknown top-level key is told the file holds.
    let topTables: String

    init(_ table: TOMLTable, name: String?, file: String, topTables: String = "[authority], [supervisor] and [[worker]]") {
        self.table = table
        self.name = name
        self.file = file
        self.topTables = topTables
    }

    func line(_ key: String) -> Int? { table[key]?.line }

    func qualified(_ key: String) -> String { name.map { "\($0).\(key)" } ?? key }

    func error(_ key: String, _ message: String) -> ConfigError {
        ConfigError(file: file, line: table[key]?.line ?? table.line, message: "\(qualified(key)): \(message)")
    }

    mutating func take(_ key: String) -> TOMLValue? {
        used.insert(key)
        return table[key]
    }

    mutating func string(_ key: String) throws(ConfigError) -> String? {
        guard let v = take(key) else { return nil }
        guard case .string(let s) = v.kind else { throw error(key, "expected a string, found \(v.typeName)") }
        return s
    }

    /// A name for the authority: surfaces, instances, worker names.
    mutating func token(_ key: String) throws(ConfigError) -> String? {
        guard let s = try string(key) else { return nil }
        guard SurfaceName.isValid(s) else { throw error(key, "\"\(s)\" is not a valid name: \(SurfaceName.rule)") }
        return s
    }

    mutating func integer(_ key: String, in range: ClosedRange<Int>) throws(ConfigError) -> Int? {
        guard let v = take(key) else { return nil }
        guard case .integer(let n) = v.kind else { throw error(key, "expected an integer, found \(v.typeName)") }
        guard n >= range.lowerBound && n <= range.upperBound else {
            throw error(key, "must be from \(range.lowerBound) to \(range.upperBound); got \(n)")
        }
        return Int(n)
    }

    mutating func bool(_ key: String) throws(ConfigError) -> Bool? {
        guard let v = take(key) else { return nil }
        guard case .bool(let b) = v.kind else { throw error(key, "expected true or false, found \(v.typeName)") }
        return b
    }

    mutating func duration(_ key: String, atLeast minimum: Duration) throws(ConfigError) -> Duration? {
        guard let v = take(key) else { return nil }
        guard case .string(let s) = v.kind else { throw error(key, "expected a duration string such as \"10s\", found \(v.typeName)") }
        guard let d = DurationText.parse(s) else { throw error(key, "\"\(s)\" is not a duration; use ms, s, m or h, e.g. \"10s\"") }
        guard d >= minimum else { throw error(key, "must be at least \(DurationText.format(minimum))") }
        return d
    }

    /// `"x"` or `["x", "y"]`.
    mutating func stringOrArray(_ key: String) throws(ConfigError) -> [String]? {
        if case .string(let s)? = table[key]?.kind {
            used.insert(key)
            return [s]
        }
        if let v = table[key], case .array = v.kind {
            let a = try stringArray(key)
            if a?.isEmpty == true { throw error(key, "an empty list; leave it out for the local authority") }
            return a
        }
        guard let v = take(key) else { return nil }
        throw error(key, "expected a string or an array of strings, found \(v.typeName)")
    }

    mutating func stringArray(_ key: String) throws(ConfigError) -> [String]? {
        guard let v = take(key) else { return nil }
        guard case .array(let items) = v.kind else { throw error(key, "expected an array of strings, found \(v.typeName)") }
        var out: [String] = []
        for item in items {
            guard case .string(let s) = item.kind else { throw error(key, "expected an array of strings; an element is \(item.typeName)") }
            out.append(s)
        }
        return out
    }

    mutating func stringTable(_ key: String) throws(ConfigError) -> [String: String]? {
        guard let v = take(key) else { return nil }
        guard case .table(let t) = v.kind else {
            throw error(key, "expected a table of strings, e.g. { NAME = \"value\" }, found \(v.typeName)")
        }
        var out: [String: String] = [:]
        for k in t.keys {
            switch t[k]!.kind {
            case .string(let s): out[k] = s
            case .integer(let n): out[k] = String(n)
            default: throw error(key, "\(k): expected a string, found \(t[k]!.typeName)")
            }
        }
        return out
    }

    mutating func table(_ key: String) throws(ConfigError) -> TOMLTable? {
        guard let v = take(key) else { return nil }
        guard case .table(let t) = v.kind else { throw error(key, "expected a table [\(qualified(key))], found \(v.typeName)") }
        return t
    }

    /// `[[key]]` tables; a single `[key]` table counts as one.
    mutating func tables(_ key: String) throws(ConfigError) -> [TOMLTable] {
        guard let v = take(key) else { return [] }
        switch v.kind {
        case .table(let t): return [t]
        case .array(let items):
            var out: [TOMLTable] = []
            for item in items {
                guard case .table(let t) = item.kind else { throw error(key, "expected [[\(key)]] tables, found \(item.typeName)") }
                out.append(t)
            }
            return out
        default:
            throw error(key, "expected [[\(key)]] tables, found \(v.typeName)")
        }
    }

    func finish() throws(ConfigError) {
        for k in table.keys where !used.contains(k) {
            throw ConfigError(
                file: file, line: table[k]!.line,
                message: "unknown setting \(qualified(k))\(name == nil ? "; the tables are \(topTables)" : "")")
        }
    }
}

/// `HOST:PORT`, for listen addresses in configuration.
public enum HostPort {
    public static func split(_ s: String) -> (host: String, port: Int)? {
        guard let colon = s.lastIndex(of: ":") else { return nil }
        var host = String(s[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty, let port = Int(s[s.index(after: colon)...]), (0...65535).contains(port) else { return nil }
        return (host, port)
    }

    public static func isValid(_ s: String) -> Bool { split(s) != nil }
}
