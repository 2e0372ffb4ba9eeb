/// What a supervisor reports its worker did, and which reports answer which change.
public enum ReportState {
    public static let all: Set<String> = ["stopped", "killed", "resumed", "exited", "started", "running"]
    /// What acknowledges a revoke or a halt: the worker no longer runs.
    public static let stopped: Set<String> = ["stopped", "killed", "exited"]
    /// What acknowledges a restore or a resume.
    public static let running: Set<String> = ["resumed", "started", "running"]
}
