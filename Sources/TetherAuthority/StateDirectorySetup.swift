import Foundation
import Glibc
import TetherCore
import TetherState

/// Making a state directory: its database, signing key and first keys.
extension StateDirectory {
    public struct Created: Sendable {
        public var operatorKey: String
        public var agentKey: String
        public var publicKey: String
    }

    /// Creates the directory (0700), database, signing key and a first operator and agent key
    /// (0600 files). Refuses to touch a directory that is already initialised. With `store`
    /// (a shared database), the database is that one; the directory holds the key files.
    public func initialize(actor: String, store shared: (any AuthorityStore)? = nil) async throws -> Created {
        if shared == nil && isInitialized { throw StoreError("\(path) is already initialised; its keys are in operator.key and agent.key") }
        try checkOwnership()
        // Nothing in the state directory is for other users: the database, its WAL and the keys.
        // The umask is the process's: put it back, or a `tether run` that initialised its
        // embedded authority would hand 077 to its worker.
        let previous = umask(0o077)
        defer { umask(previous) }
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw StoreError(
                "cannot create the state directory \(path): \((error as NSError).localizedFailureReason ?? (error as NSError).localizedDescription); give --dir, or set HOME or XDG_STATE_HOME"
            )
        }
        chmod(path, 0o700)
        let store = try shared ?? SQLiteStore(path: database)
        let now = Timestamp.string(Date())
        let change = Change(actor: actor, reason: "authority init", requestID: UUID().uuidString, at: now)
        if let existing = try await store.signingKeys().first {
            throw StoreError("the database is already initialised (signing key \(existing.id)); keys are made with: tether keys create")
        }
        let signer = DecisionSigner.generate()
        try await store.putSigningKey(
            SigningKeyRecord(
                id: signer.keyId, privateKey: signer.privateBase64, publicKey: signer.publicBase64,
                state: .active, createdAt: now, activatedAt: now), change: change)
        try (signer.publicBase64 + "\n").write(toFile: publicKey, atomically: true, encoding: .utf8)
        let op = APIKeys.generate(), ag = APIKeys.generate()
        try await store.addKey(KeyRecord(name: "operator", role: .operator, hash: APIKeys.hash(op), createdAt: now), change: change)
        try await store.addKey(KeyRecord(name: "agent", role: .agent, hash: APIKeys.hash(ag), createdAt: now), change: change)
        try writeSecret(operatorKey, op + "\n")
        try writeSecret(agentKey, ag + "\n")
        return Created(operatorKey: op, agentKey: ag, publicKey: signer.publicBase64)
    }

    /// A directory made before signing keys moved into the database: its key, imported as the
    /// active one (the file is left; it signs nothing more than the same key in the database).
    public func importLegacySigningKey(into store: any AuthorityStore) async throws {
        guard try await store.signingKeys().isEmpty, FileManager.default.fileExists(atPath: legacySigningKey) else { return }
        try checkOwnership(forWriting: false)
        let signer = try DecisionSigner(rawBase64: SecretFile.read(legacySigningKey))
        let now = Timestamp.string(Date())
        try await store.putSigningKey(
            SigningKeyRecord(
                id: signer.keyId, privateKey: signer.privateBase64, publicKey: signer.publicBase64,
                state: .active, createdAt: now, activatedAt: now),
            change: Change(actor: localActor(), reason: "imported from signing.key", requestID: UUID().uuidString, at: now))
    }

}
