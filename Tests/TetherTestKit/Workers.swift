import Foundation
import TetherSystem

/// Shell workers, each process carrying `marker` in its command line so the tests can find it
/// in /proc. Every one appends to `file` every 10 ms while it runs.
public enum Workers {
    /// One process appending to `file`.
    public static func loop(_ marker: String, file: String) -> [String] {
        ["sh", "-c", "while :; do echo x >> '\(file)'; sleep 0.01; done", marker]
    }

    /// A tree: a child, a double-forked daemon (its parent exits; it is reparented), an
    /// attempt to leave through setsid (refused under `default`, a new session under `none`),
    /// and the first process appending to `file`.
    public static func tree(_ marker: String, file: String) -> [String] {
        let spin = "while :; do sleep 0.05; done"
        let script = """
            M="$0"
            sh -c '\(spin)' "$M-child" &
            sh -c 'sh -c "\(spin)" "$1-daemon" & exit 0' "$M-fork" "$M" &
            setsid sh -c '\(spin)' "$M-setsid" 2>/dev/null &
            while :; do echo x >> '\(file)'; sleep 0.01; done
            """
        return ["sh", "-c", script, marker]
    }

    /// Every marked process is stopped (`T`) — or, a shell in vfork, waits (`D`) on a child
    /// that is (see `GroupState.allHeld`).
    public static func allStopped(_ marker: String, atLeast n: Int = 1) -> Bool {
        let live = liveProcesses(withMarker: marker)
        let all = ProcessTable.snapshot()
        return live.count >= n
            && live.allSatisfy { p in
                p.isStopped || (p.state == "D" && all.contains { $0.ppid == p.pid && $0.isStopped })
            }
    }

    public static func noneStopped(_ marker: String, atLeast n: Int = 1) -> Bool {
        let live = liveProcesses(withMarker: marker)
        return live.count >= n && !live.contains(where: \.isStopped)
    }

    public static func gone(_ marker: String) -> Bool { liveProcesses(withMarker: marker).isEmpty }

    /// The file stops growing: two readings `over` apart agree.
    public static func stoppedGrowing(_ file: String, over: Duration = .milliseconds(300)) async -> Bool {
        let a = fileSize(file)
        try? await Task.sleep(for: over)
        return fileSize(file) == a
    }

    public static func growing(_ file: String, over: Duration = .milliseconds(300)) async -> Bool {
        let a = fileSize(file)
        try? await Task.sleep(for: over)
        return fileSize(file) > a
    }

    public static func marker(_ name: String) -> String { "tether-e2e-\(name)-\(UUID().uuidString.prefix(6))" }
}
