import ArgumentParser
import Foundation
import TetherState
import TetherClient
import TetherCore

/// `tether check SURFACE`: a tool boundary for scripts and hooks.
struct CheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Ask the authority whether a surface may run now (for scripts and hooks).",
        discussion:
            "Exit 0 allowed, 1 denied (the code on stderr), 2 authority unreachable. Fails closed: a bad signature, an expired lease or a malformed answer is a deny."
    )
    @Argument(help: "The surface.") var surface: String
    @Option(help: "Authority URL (default: $TETHER_AUTHORITY, the local authority's address, http://127.0.0.1:8470).") var authority:
        String?
    @Option(help: "File holding an agent key (default: $TETHER_KEY_FILE, then agent.key in the state directory).") var keyFile: String?
    @Option(help: "The authority's public key (base64, or a file holding it): answers must be signed by it.") var publicKey: String?
    @Option(name: .customLong("dir"), help: "Local state directory to take defaults from.") var dir: String?
    @Flag(help: "Print the decision as JSON.") var json = false

    func run() async throws {
        let endpoint: AuthorityEndpoint
        var verifier: DecisionVerifier?
        do {
            endpoint = try AuthorityEndpoint.resolve(
                url: authority, keyFile: keyFile, role: "agent", stateDirectory: dir ?? StateDirectory.defaultPath())
            if let pk = publicKey {
                let text = FileManager.default.fileExists(atPath: pk) ? try String(contentsOfFile: pk, encoding: .utf8) : pk
                verifier = try DecisionVerifier(publicKeyBase64: text)
            }
        } catch {
            FileHandle.standardError.write(Data("tether: \(error)\n".utf8))
            throw ExitCode(2)
        }
        let outcome = await DecisionCheck.check(surface, client: AuthorityClient(endpoint: endpoint), verifier: verifier)
        switch outcome {
        case .allowed(let d):
            if json {
                print(Self.json(surface, allowed: true, code: d.code.rawValue, requestID: d.requestID, expiresAt: d.expiresAt, detail: nil))
            }
        case .denied(let d, let code, let detail):
            if json {
                print(
                    Self.json(
                        surface, allowed: false, code: code.rawValue, requestID: d?.requestID, expiresAt: d?.expiresAt, detail: detail))
            }
            FileHandle.standardError.write(Data("tether: \(surface) denied: \(code.rawValue) (\(detail))\n".utf8))
            throw ExitCode(1)
        case .unreachable(let m):
            if json {
                print(
                    Self.json(
                        surface, allowed: false, code: DecisionCode.authorityUnreachable.rawValue, requestID: nil, expiresAt: nil, detail: m
                    ))
            }
            FileHandle.standardError.write(Data("tether: \(surface): authority unreachable: \(m)\n".utf8))
            throw ExitCode(2)
        }
    }

    static func json(_ surface: String, allowed: Bool, code: String, requestID: String?, expiresAt: String?, detail: String?) -> String {
        String(
            decoding: JSONWriter.data([
                "surface": surface, "allowed": allowed, "code": code, "request_id": requestID ?? NSNull(),
                "expiresAt": expiresAt ?? NSNull(), "detail": detail ?? NSNull(),
            ]), as: UTF8.self)
    }
}
