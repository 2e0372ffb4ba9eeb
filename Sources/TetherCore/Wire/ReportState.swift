/// What a supervisor reports its worker (or a gate's surface) did: the one list of states the
/// supervisor sends, the authority checks and stores, and the acknowledgements read.
public enum ReportState: String, Sendable, Codable, CaseIterable {
    case started, running, stopped, killed, resumed, exited
    /// A gate's surface: its calls now fail (acknowledges a revoke of it) / go through again.
    case gateClosed = "gate_closed", gateOpen = "gate_open"
    /// A gate's surface: calls it denied (or, in record mode, would have), in `detail`.
    case denied

    /// Every state's wire name.
    public static let all: Set<String> = Set(allCases.map(\.rawValue))
    /// What acknowledges a revoke or a halt: the worker no longer runs (or, for a gate's
    /// surface, the gate's calls now fail).
    public static let stops: Set<ReportState> = [.stopped, .killed, .exited, .gateClosed]
    /// What acknowledges a restore or a resume.
    public static let runs: Set<ReportState> = [.resumed, .started, .running, .gateOpen]
}
