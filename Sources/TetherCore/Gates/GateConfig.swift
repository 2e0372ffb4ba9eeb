/// A gate: one kind of action of a worker (running programs, opening connections, changing
/// files) held to a surface of its own. Revoking that surface makes those calls fail with
/// `EPERM` in every process of the worker while everything else keeps running.
public enum GateKind: String, Sendable, CaseIterable, Comparable {
    /// `execve`, `execveat`.
    case exec
    /// New outbound connections and datagrams: `socket` of any family but Unix and netlink,
    /// `connect`, `sendto` with an address, `sendmsg`, `sendmmsg` — on IPv4/IPv6 sockets.
    case net
    /// Opening with write, create or truncate flags, and the calls that change the tree.
    case write

    public static func < (a: GateKind, b: GateKind) -> Bool { a.rawValue < b.rawValue }
}

/// What a closed gate does.
public enum GateMode: String, Sendable, CaseIterable {
    /// The calls fail with `EPERM`.
    case enforce
    /// Nothing fails: what would have been denied is logged and reported, so a team can see
    /// what a gate would do before it trusts it.
    case record
}

public struct GateConfig: Sendable, Equatable, Comparable {
    public var kind: GateKind
    public var surface: String
    public var mode: GateMode

    public init(kind: GateKind, surface: String, mode: GateMode = .enforce) {
        self.kind = kind
        self.surface = surface
        self.mode = mode
    }

    public static func < (a: GateConfig, b: GateConfig) -> Bool { a.kind < b.kind }

    /// `KIND=SURFACE`, as `--gate` takes it.
    public static func parse(_ s: String) -> Result<GateConfig, GateSyntaxError> {
        guard let eq = s.firstIndex(of: "=") else {
            return .failure(GateSyntaxError("\"\(s)\": expected KIND=SURFACE, e.g. net=agent-01.net (kinds: \(kinds))"))
        }
        let k = String(s[..<eq]), surface = String(s[s.index(after: eq)...])
        guard let kind = GateKind(rawValue: k) else { return .failure(GateSyntaxError("\"\(k)\" is not a gate; the gates are \(kinds)")) }
        guard SurfaceName.isValid(surface) else {
            return .failure(GateSyntaxError("\(kind.rawValue): \"\(surface)\" is not a valid surface name: \(SurfaceName.rule)"))
        }
        return .success(GateConfig(kind: kind, surface: surface))
    }

    /// `KIND=MODE`, as `--gate-mode` takes it.
    public static func parseMode(_ s: String) -> Result<(GateKind, GateMode), GateSyntaxError> {
        let parts = s.split(separator: "=", maxSplits: 1).map(String.init)
        guard parts.count == 2, let kind = GateKind(rawValue: parts[0]) else {
            return .failure(GateSyntaxError("\"\(s)\": expected KIND=MODE, e.g. net=record (kinds: \(kinds))"))
        }
        guard let mode = GateMode(rawValue: parts[1]) else {
            return .failure(GateSyntaxError("\(kind.rawValue): \"\(parts[1])\" is not a mode; expected enforce or record"))
        }
        return .success((kind, mode))
    }

    static var kinds: String { GateKind.allCases.map(\.rawValue).joined(separator: ", ") }

    /// A worker's gates are checked together: one per kind, none on the worker's own surface
    /// (revoking that one stops the whole worker; a gate on it would be a second meaning).
    ///
    /// A gate is refused where a side door would stay open beside it: an enforcing `net` gate
    /// needs the worker's own network namespace (`network` not `host`), since only cutting the
    /// namespace's link stops a connection the worker made before the gate closed and then hid
    /// (its descriptor in flight in a Unix socket, or in a thread with a table of its own).
    public static func check(_ gates: [GateConfig], mainSurface: String, network: NetworkMode = .private) -> GateSyntaxError? {
        var seen: Set<GateKind> = []
        for g in gates {
            if g.kind == .net && g.mode == .enforce && network == .host {
                return GateSyntaxError(
                    "the net gate needs the worker's own network namespace: under --net host (net = \"host\") a connection made before the gate closes can outlive it, hidden where no sweep finds it (a descriptor in flight, a thread with its own table). Use --net private (the default) or host-loopback, or the gate in record mode"
                )
            }
            if !seen.insert(g.kind).inserted { return GateSyntaxError("the \(g.kind.rawValue) gate is given twice") }
            if g.surface == mainSurface {
                return GateSyntaxError(
                    "the \(g.kind.rawValue) gate's surface \"\(g.surface)\" is the worker's own surface; give each gate a surface of its own, e.g. \(mainSurface).\(g.kind.rawValue)"
                )
            }
        }
        return nil
    }
}

public struct GateSyntaxError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
