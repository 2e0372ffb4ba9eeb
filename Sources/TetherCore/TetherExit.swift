/// `tether`'s exit codes, after sysexits.h: what a script or systemd (`RestartPreventExitStatus=`)
/// reads of why a command or a worker's supervisor ended.
public enum TetherExit {
    /// A command line that does not parse.
    public static let usage: Int32 = 64
    /// The authority could not be reached, or the worker could not be started: fail closed.
    public static let unavailable: Int32 = 69
    /// The surface is denied (revoked, halted, unknown, a bad signature).
    public static let denied: Int32 = 77
    /// A profile, a configuration or a flag that is wrong: nothing was started.
    public static let config: Int32 = 78
}
