/// Who may answer for the authority. An allow is what lets a worker run, so an answer anyone on
/// the network path could forge is no answer: an authority off this host must be `https` and
/// its decisions signed by a pinned key (`--public-key`), unless `insecure_unpinned` says
/// otherwise — loudly. The loopback is this host: plain HTTP there is what the local authority
/// and the systemd units use.
public enum TrustPolicy {
    /// Why `url` with `publicKey` may not be trusted, or nil when it may.
    public static func refusal(url: String, publicKey: String?) -> String? {
        let lower = url.lowercased()
        guard let schemeEnd = lower.range(of: "://") else { return "\(url) is not an http(s) URL" }
        let scheme = String(lower[..<schemeEnd.lowerBound])
        guard scheme == "http" || scheme == "https" else { return "\(url) is not an http(s) URL" }
        if isLoopback(host(of: String(lower[schemeEnd.upperBound...]))) { return nil }
        var missing: [String] = []
        if scheme != "https" { missing.append("it is plain http (use https)") }
        if publicKey == nil {
            missing.append(
                "no public key is pinned (--public-key, or public_key in [authority]; the authority prints it: tether authority public-key)"
            )
        }
        guard !missing.isEmpty else { return nil }
        return
            "the authority \(url) is not on this host and \(missing.joined(separator: ", and ")): anyone on the network path could answer for it and let every worker run. Pin it, or accept the risk with --insecure-unpinned-authority (insecure_unpinned = true in [authority])"
    }

    /// The host of `rest` (what follows "scheme://"): without user info, port and path.
    static func host(of rest: String) -> String {
        var hostPort = String(rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" })
        if let at = hostPort.lastIndex(of: "@") { hostPort = String(hostPort[hostPort.index(after: at)...]) }
        if hostPort.hasPrefix("[") { return String(hostPort.dropFirst().prefix { $0 != "]" }) }
        return String(hostPort.prefix { $0 != ":" })
    }

    static func isLoopback(_ host: String) -> Bool {
        if host == "localhost" || host == "::1" { return true }
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts[0] == "127" && parts.allSatisfy { UInt8($0) != nil }
    }
}
