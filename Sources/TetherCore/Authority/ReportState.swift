/// What a supervisor reports its worker did, and which reports answer which change.
public enum ReportState {
    public static let all: Set<String> = ["stopped", "killed", "resumed", "exited", "started", "running", "gate_closed", "gate_open", "denied"]
    /// What acknowledges a revoke or a halt: the worker no longer runs (or, for a gate's
    /// surface, the gate's calls now fail).
    public static let stopped: Set<String> = ["stopped", "killed", "exited", "gate_closed"]
    /// What acknowledges a restore or a resume.
    public static let running: Set<String> = ["resumed", "started", "running", "gate_open"]
}
