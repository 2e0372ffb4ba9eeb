import Foundation
import Glibc
import Testing
import TetherAuthority
import TetherCore

/// Secrets are read only from files and directories nobody else could have put there.
@Suite("secrets: state directories and key files another user could have planted")
struct SecretsTests {
    func file(_ dir: String, _ name: String, _ text: String, mode: mode_t) -> String {
        let path = dir + "/" + name
        _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        chmod(path, mode)
        return path
    }

    @Test("a key file: read when 0600 (or 0640); refused when a symbolic link, readable by everyone, or another user's")
    func keyFiles() throws {
        let dir = temporaryDirectory("tether-secret")
        chmod(dir, 0o700)
        let good = file(dir, "agent.key", "k-123\n", mode: 0o600)
        #expect(try SecretFile.read(good) == "k-123\n")
        #expect(try SecretFile.read(file(dir, "group.key", "g\n", mode: 0o640)) == "g\n")

        let link = dir + "/link.key"
        symlink(good, link)
        #expect(throws: SecretFile.Refused.self) { try SecretFile.read(link) }
        do { _ = try SecretFile.read(link) } catch { #expect(error.reason.contains("symbolic link")) }

        let open = file(dir, "open.key", "x\n", mode: 0o644)
        do {
            _ = try SecretFile.read(open)
            Issue.record("a world-readable key was read")
        } catch {
            #expect(error.reason.contains("readable by every user"))
        }
        let writable = file(dir, "writable.key", "x\n", mode: 0o622)
        #expect(throws: SecretFile.Refused.self) { try SecretFile.read(writable) }

        // Another user's key, read by an ordinary user (uid 1000; root may read service users' keys).
        let theirs = file(dir, "theirs.key", "x\n", mode: 0o600)
        chown(theirs, 65534, 65534)
        do {
            _ = try SecretFile.read(theirs, euid: 1000)
            Issue.record("another user's key was read")
        } catch {
            #expect(error.reason.contains("owned by uid 65534"))
        }
        #expect(try SecretFile.read(theirs, euid: 0) == "x\n", "root reads the authority's dynamic user's operator key")
    }

    @Test("a state directory another user created first, or anyone may write, is refused — and nothing is written into it")
    func plantedStateDirectory() async throws {
        // The attack on HOME-less defaults: another local user makes the directory first.
        let base = workerDirectory("tether-planted")  // sticky and world-writable, like /tmp
        let planted = base + "/.local/state/tether"
        try FileManager.default.createDirectory(atPath: planted, withIntermediateDirectories: true)
        for d in [base + "/.local", base + "/.local/state", planted] { chown(d, 65534, 65534) }
        let dir = StateDirectory(path: planted)
        await #expect(throws: (any Error).self) { _ = try await dir.initialize(actor: "test") }
        #expect(!FileManager.default.fileExists(atPath: planted + "/operator.key"), "no key written into it")
        do {
            try dir.checkOwnership()
            Issue.record("root would write into another user's directory")
        } catch {
            #expect("\(error)".contains("owned by uid 65534"))
        }
        // Not even to read: the directories above it are nobody's too, who could swap them.
        #expect(throws: (any Error).self) { try dir.checkOwnership(forWriting: false) }
        // The systemd layout: a service user's directory under root's. Root may read its keys
        // (on-call reads the authority's dynamic user's operator key); another user may not.
        let service = temporaryDirectory("tether-service") + "/tether"
        try FileManager.default.createDirectory(atPath: service, withIntermediateDirectories: true)
        chown(service, 65534, 65534)
        chmod(service, 0o700)
        try StateDirectory(path: service).checkOwnership(forWriting: false)
        #expect(throws: (any Error).self) { try StateDirectory(path: service).checkOwnership(forWriting: true) }
        #expect(throws: (any Error).self) { try StateDirectory(path: service).checkOwnership(euid: 1000, forWriting: false) }

        let open = temporaryDirectory("tether-open-state")
        chmod(open, 0o777)
        #expect(throws: (any Error).self) { try StateDirectory(path: open).checkOwnership() }

        // Its own directory under /tmp (sticky): fine.
        let mine = temporaryDirectory("tether-own-state")
        chmod(mine, 0o700)
        try StateDirectory(path: mine).checkOwnership()
    }

    @Test("with HOME unset, an ordinary user's state directory is their home's from the password database, never /tmp's")
    func noHome() throws {
        // nobody's home is /nonexistent: the init fails there, and touches nothing under /tmp.
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        p.arguments = ["--reuid=nobody", "--regid=nogroup", "--clear-groups", "/usr/bin/env", "-i", tetherBinary, "authority", "init"]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus != 0)
        #expect(text.contains("/nonexistent/.local/state/tether"), "\(text)")
        #expect(!text.contains("/tmp/"), "\(text)")
    }
}
