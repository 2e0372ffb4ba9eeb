import Foundation
import Glibc

/// The invoking user's session, as paths: what a worker must not reach through the file system
/// (its network namespace already takes the abstract sockets: X11's, D-Bus's, ssh-agent's on
/// some systems). Each is covered by an empty read-only directory in the worker's mount
/// namespace.
///
/// - `/run/user`: every user's runtime directory — the user's D-Bus and systemd (through
///   which `systemd-run --user` would start a process outside every namespace, cgroup and
///   filter of the worker), gpg-agent, pipewire, Wayland, podman.
/// - the supervisor's `$XDG_RUNTIME_DIR` where it lies elsewhere;
/// - `/tmp/.X11-unix`, `/tmp/.ICE-unix`: the display's path sockets;
/// - `/tmp/tmux-UID`, and `/tmp/ssh-*` directories (ssh-agent's sockets) of the supervisor's
///   and the worker's uids.
public enum SessionPaths {
    public static func covered(uids: Set<uid_t>, environment: [String: String] = ProcessInfoEnvironment.current) -> [String] {
        var out = ["/run/user", "/tmp/.X11-unix", "/tmp/.ICE-unix"]
        if let x = environment["XDG_RUNTIME_DIR"], x.hasPrefix("/"), !x.hasPrefix("/run/user/") { out.append(x) }
        for uid in uids.sorted() { out.append("/tmp/tmux-\(uid)") }
        // ssh-agent makes /tmp/ssh-XXXXXXXXXX/agent.PID, owned by the user.
        if let names = try? FileManager.default.contentsOfDirectory(atPath: "/tmp") {
            for name in names where name.hasPrefix("ssh-") {
                var st = stat()
                if lstat("/tmp/" + name, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR, uids.contains(st.st_uid) {
                    out.append("/tmp/" + name)
                }
            }
        }
        return out
    }
}
