import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import TetherAuthority
import TetherCore
import Testing
@_exported import TetherTestKit
@_exported import TetherState

/// A fresh authority in a temporary state directory, with its first keys.
struct TestAuthority {
    let directory: StateDirectory
    let authority: Authority
    let operatorKey: String
    let agentKey: String
    let publicKey: String

    static func make(
        lease: Duration = .seconds(15), configure: (inout AuthorityConfiguration) -> Void = { _ in }
    ) async throws -> TestAuthority {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("tether-auth-\(UUID().uuidString.prefix(8))").path
        let dir = StateDirectory(path: path)
        let created = try await dir.initialize(actor: "test")
        var config = AuthorityConfiguration()
        config.leaseLength = lease
        config.keyRefresh = .milliseconds(50)
        configure(&config)
        let authority = try await AuthorityServer.open(directory: dir, configuration: config, logger: testLogger)
        return TestAuthority(
            directory: dir, authority: authority, operatorKey: created.operatorKey,
            agentKey: created.agentKey, publicKey: created.publicKey)
    }

    func application(port: Int = 0, limits: (inout ConnectionLimits) -> Void = { _ in }) throws -> some ApplicationProtocol {
        var listen = ListenOptions()
        listen.port = port
        limits(&listen.limits)
        return try buildApplication(authority: authority, listen: listen, logger: testLogger)
    }
}

let testLogger: Logger = {
    var l = Logger(label: "tether-authority-test")
    l.logLevel = .critical
    return l
}()

extension HTTPField.Name {
    static let orgKey = HTTPField.Name("x-org-key")!
    static let signature = HTTPField.Name("x-tether-signature")!
}

func headers(_ key: String?) -> HTTPFields {
    var h = HTTPFields()
    if let key { h[.orgKey] = key }
    h[.contentType] = "application/json"
    return h
}

func body(_ object: [String: Any]) -> ByteBuffer {
    ByteBuffer(bytes: try! JSONSerialization.data(withJSONObject: object))
}

func json(_ response: TestResponse) -> [String: Any] {
    (try? JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any]) ?? [:]
}

extension TestClientProtocol {
    /// POST a JSON body with a key; returns status and parsed JSON.
    @discardableResult
    func post(_ uri: String, key: String?, _ object: [String: Any]) async throws -> (HTTPResponse.Status, [String: Any]) {
        try await execute(uri: uri, method: .post, headers: headers(key), body: body(object)) { ($0.status, json($0)) }
    }

    func get(_ uri: String, key: String?) async throws -> (HTTPResponse.Status, [String: Any]) {
        try await execute(uri: uri, method: .get, headers: headers(key)) { ($0.status, json($0)) }
    }
}

/// A self-signed certificate for localhost: `tls.crt` and `tls.key` in `dir`.
func makeCertificate(in dir: String) throws {
    let openssl = Process()
    openssl.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
    openssl.arguments = [
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", dir + "/tls.key", "-out", dir + "/tls.crt", "-days", "1", "-subj", "/CN=localhost",
    ]
    openssl.standardOutput = FileHandle.nullDevice
    openssl.standardError = FileHandle.nullDevice
    try openssl.run()
    openssl.waitUntilExit()
    try #require(openssl.terminationStatus == 0, "openssl made a certificate")
}

/// An authority served on a random loopback port directly, not through HummingbirdTesting
/// (its `.live` drops the application's connection cap: `ApplicationConfiguration.with(address:)`
/// leaves out `availableConnectionsDelegate`). Ready once made; `stop()` ends it.
final class DirectServer: Sendable {
    let port: Int
    private let task: Task<Void, any Error>

    init(_ t: TestAuthority, _ configure: (inout ListenOptions) -> Void = { _ in }) async throws {
        var listen = ListenOptions()
        listen.port = freePort()
        configure(&listen)
        let app = try buildApplication(authority: t.authority, listen: listen, logger: testLogger)
        port = listen.port
        task = Task { try await app.run() }
        _ = try await connect(port)
    }

    func stop() { task.cancel() }
}

/// A connection to a server that is starting: retried until it listens.
func connect(_ port: Int) async throws -> RawSocket {
    for _ in 0..<250 {
        if let s = try? RawSocket(port: port) { return s }
        try await Task.sleep(for: .milliseconds(20))
    }
    return try RawSocket(port: port)
}
