/// A worker's network: what it shares with the host.
///
/// Every worker has a network namespace of its own unless `host` is asked for: its own
/// loopback, none of the host's abstract Unix sockets, no address of the host's loopback
/// services. What links it to the outside is a user-mode stack (slirp4netns) the supervisor
/// starts for it and can cut (a closed `net` gate stops it). `docs/containment.md`.
public enum NetworkMode: String, Sendable, CaseIterable, Equatable {
    /// Own namespace; egress to the outside through the user-mode stack; the host's loopback
    /// is not reachable. The default.
    case `private`
    /// Own namespace with its loopback only: no route anywhere.
    case none
    /// As `private`, and the stack's gateway (10.0.2.2) leads to the host's 127.0.0.1: every
    /// service listening on the host's loopback (an authority, a database) becomes reachable.
    case hostLoopback = "host-loopback"
    /// The host's network namespace, as before namespaces: the host's loopback, its abstract
    /// Unix sockets, binding its ports. A closed `net` gate then shuts sockets down one by one.
    case host

    /// The names, for messages.
    public static var names: String { allCases.map(\.rawValue).joined(separator: ", ") }

    /// Whether the worker gets a network namespace of its own.
    public var ownNamespace: Bool { self != .host }
    /// Whether its namespace is linked to the outside by the user-mode stack.
    public var usesStack: Bool { self == .private || self == .hostLoopback }
    /// Whether this mode loosens the default, and so is logged when chosen.
    public var isOptOut: Bool { self == .host || self == .hostLoopback }
}
