import Foundation
import Glibc
import Logging
import ArgumentParser
import TetherState
import TetherClient
import TetherCore
import TetherSupervisor

/// Where a supervisor's authority is: the configured one, or the embedded default.
enum AuthorityResolution {
    /// The configured authority, or the embedded default.
    static func resolve(
        _ settings: AuthoritySettings, stateDirectory dir: String?, instanceWithPID: Bool = true, logger: Logger
    ) async throws -> ResolvedAuthority {
        let directory = StateDirectory(path: dir ?? StateDirectory.defaultPath())
        var urls = settings.urls
        var publicKey = settings.publicKey
        if urls.isEmpty {
            do {
                let local = try await LocalAuthority.ensure(
                    directory: directory, executable: Self.executablePath(), http: AuthorityClient.defaultHTTPClient, logger: logger)
                urls = [local.url]
                // Our own authority: demand its signature.
                publicKey = publicKey ?? directory.publicKey
            } catch {
                throw fail(
                    "the local authority is not available: \(error)\nNothing was started (fail closed).", code: TetherExit.unavailable)
            }
        }
        let endpoints = try AuthorityEndpoint.resolveAll(
            urls: urls, keyFile: settings.keyFile, role: "agent", stateDirectory: directory.path, environment: [:])
        // Every replica is held to the same rule: one that any network attacker could answer
        // for would do as well as a rogue authority.
        for endpoint in endpoints {
            if let refusal = TrustPolicy.refusal(url: endpoint.url, publicKey: publicKey) {
                guard settings.insecureUnpinned else {
                    throw fail("\(refusal)\nNothing was started.", code: TetherExit.config)
                }
                logger.critical("INSECURE: \(refusal); running anyway (--insecure-unpinned-authority)")
            }
        }
        var verifier: DecisionVerifier?
        if let pk = publicKey {
            let text = FileManager.default.fileExists(atPath: pk) ? try String(contentsOfFile: pk, encoding: .utf8) : pk
            verifier = try DecisionVerifier(publicKeyBase64: text)
        }
        let instance = settings.instance ?? Self.defaultInstance(withPID: instanceWithPID)
        // Hidden from workers: this state directory, the system's and this user's default one
        // (an operator key may sit there even when the authority is remote), the agent key.
        var secrets = [directory.path, StateDirectory.defaultPath(), "/var/lib/tether", "/etc/tether"]
        if let k = endpoints[0].keyFile { secrets.append(k) }
        return ResolvedAuthority(
            client: AuthorityClient(endpoints: endpoints), verifier: verifier, settings: settings, instance: instance,
            secrets: Array(Set(secrets)).sorted())
    }

    static func executablePath() -> String {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        return n > 0 ? String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : CommandLine.arguments[0]
    }

    /// host:pid for `tether run` — unique per supervisor, so the authority counts each one's
    /// acknowledgement; the host name alone for the one `tether supervise` of a host.
    static func defaultInstance(withPID: Bool) -> String {
        var buf = [CChar](repeating: 0, count: 256)
        gethostname(&buf, buf.count - 1)
        let host = String(cString: buf).map { $0.isLetter || $0.isNumber || "._-".contains($0) ? $0 : "-" }
        return String(String(host).prefix(100)) + (withPID ? ":\(getpid())" : "")
    }
}
