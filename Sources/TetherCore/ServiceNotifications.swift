/// What a long-running command tells its service manager (systemd's sd_notify, wired in the
/// executable): ready, a status line, stopping, reloading, and watchdog pings from the loop that
/// does the work — so a wedged loop stops the pings and systemd restarts the service.
public struct ServiceNotifications: Sendable {
    public var ready: @Sendable (_ status: String) -> Void
    public var status: @Sendable (String) -> Void
    public var stopping: @Sendable (_ status: String) -> Void
    public var reloading: @Sendable () -> Void
    /// How often to ping, and the ping; nil when no watchdog is armed.
    public var watchdogInterval: Duration?
    public var watchdog: @Sendable () -> Void

    public init(
        ready: @escaping @Sendable (String) -> Void = { _ in },
        status: @escaping @Sendable (String) -> Void = { _ in },
        stopping: @escaping @Sendable (String) -> Void = { _ in },
        reloading: @escaping @Sendable () -> Void = {},
        watchdogInterval: Duration? = nil,
        watchdog: @escaping @Sendable () -> Void = {}
    ) {
        self.ready = ready
        self.status = status
        self.stopping = stopping
        self.reloading = reloading
        self.watchdogInterval = watchdogInterval
        self.watchdog = watchdog
    }

    public static let none = ServiceNotifications()
}
