import CSeccomp
import Glibc

/// What the kernel says about the other end of a Unix socket: never what the peer claims.
public enum PeerCredentials {
    /// The peer's pid (as seen from this process's PID namespace), recorded at connect.
    public static func pid(of socket: Int32) -> pid_t? {
        let p = tether_peer_pid(socket)
        return p > 0 ? p : nil
    }

    /// Accepts a connection, close-on-exec; nil on error.
    public static func accept(_ listener: Int32) -> Int32? {
        let c = tether_accept_cloexec(listener)
        return c >= 0 ? c : nil
    }
}
