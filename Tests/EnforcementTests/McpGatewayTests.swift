import Foundation
import Glibc
import Testing
import TetherCore
import TetherSystem
import TetherTestKit

/// `tether mcp` between the official MCP Python SDK's client and an MCP server on the same
/// SDK (Fixtures/mcp), against a real authority.
@Suite("The MCP gateway", .serialized, .timeLimit(.minutes(10)))
struct McpGatewayTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/mcp").path

    @Test(
        "tools/list and tools/call pass; a revoked tool surface or server surface refuses the call with isError and the server never sees it; restore works; frozen under stop; a dead server is a clean error"
    )
    func gateway() async throws {
        let deps = try PythonDeps.mcp()
        let a = try await LiveAuthority()
        let dir = workerDirectory("mcp")
        for f in ["notes_server.py", "stepped_client.py"] {
            try FileManager.default.copyItem(atPath: "\(Self.fixtures)/\(f)", toPath: "\(dir)/\(f)")
            chmod("\(dir)/\(f)", 0o644)
        }
        let log = dir + "/calls"
        FileManager.default.createFile(atPath: log, contents: nil)
        chmod(log, 0o666)
        // The tool's own surface exists (a first run registers it).
        #expect(await (try a.run("mg.note", [], ["true"])).exitCode(within: 30) == 0)
        let marker = Workers.marker("mcp")
        let steps = #"[[["note","a"],["echo","a2"]], [["note","b"],["echo","c"]], [["echo","d"]], [["note","e"]], [["echo","f"]]]"#
        let gateway = [
            tetherBinary, "mcp", "--dir", a.dir, "--authority", a.url, "--key-file", a.dir + "/agent.key",
            "--public-key", a.dir + "/signing.pub", "--surface", "mg", "--on-revoke", "stop", "--env", "PYTHONPATH=\(deps)",
            "--", "/usr/bin/python3", dir + "/notes_server.py", log, marker,
        ]
        let client = Process()
        client.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        client.arguments = [dir + "/stepped_client.py", dir, steps] + gateway
        client.environment = ["PYTHONPATH": deps, "PATH": "/usr/bin:/bin", "TETHER_LOG_LEVEL": "notice"]
        let out = Pipe(), err = Pipe()
        client.standardOutput = out
        client.standardError = err
        try client.run()
        let lines = LineCollector(out.fileHandleForReading)
        defer { if client.isRunning { client.terminate() } }
        func step(_ n: Int, count: Int) async -> [[String: Any]] {
            FileManager.default.createFile(atPath: "\(dir)/go-\(n)", contents: nil)
            _ = await eventually(20) { lines.objects.filter { $0["step"] as? Int == n }.count >= count }
            return lines.objects.filter { $0["step"] as? Int == n }
        }
        #expect(
            await eventually(60) { lines.objects.contains { $0["step"] as? Int == 0 } },
            "\(lines.text)\n\(err.fileHandleForReading.availableData)")
        #expect(lines.objects.first?["tools"] as? [String] == ["echo", "note"])

        let s1 = await step(1, count: 2)
        #expect(s1.allSatisfy { $0["isError"] as? Bool == false }, "\(s1)")
        #expect(s1.first?["content"] as? String == "noted: a")

        // The tool's surface revoked: that tool refused, with who and why; the other passes.
        #expect(try a.op(["revoke", "mg.note", "--reason", "INC-77"]).0 == 0)
        try await Task.sleep(for: .seconds(1))
        let s2 = await step(2, count: 2)
        #expect(s2.first?["isError"] as? Bool == true, "\(s2)")
        let text = s2.first?["content"] as? String ?? ""
        #expect(text.contains("mg.note is DEVICE_REVOKED") && text.contains("by operator") && text.contains("INC-77"), "\(text)")
        #expect(s2.last?["isError"] as? Bool == false && s2.last?["content"] as? String == "c")
        try a.op(["restore", "mg.note"])

        // The server's surface revoked: frozen (stop), and every call refused at the gateway.
        #expect(try a.op(["revoke", "mg", "--wait", "5s"]).0 == 0)
        // The server's processes (the marker is in the client's command line too: it starts the gateway).
        func server() -> [TetherSystem.ProcessInfo] {
            liveProcesses(withMarker: marker).filter { p in
                !(((try? String(contentsOfFile: "/proc/\(p.pid)/cmdline", encoding: .utf8)) ?? "").contains("stepped_client"))
            }
        }
        #expect(
            await eventually(5) {
                let s = server()
                return !s.isEmpty && s.allSatisfy(\.isStopped)
            }, "\(server())")
        let s3 = await step(3, count: 1)
        #expect(s3.first?["isError"] as? Bool == true && (s3.first?["content"] as? String ?? "").contains("mg is DEVICE_REVOKED"), "\(s3)")

        try a.op(["restore", "mg", "--wait", "5s"])
        #expect(
            await eventually(5) {
                let s = server()
                return !s.isEmpty && !s.contains(where: \.isStopped)
            })
        let s4 = await step(4, count: 1)
        #expect(s4.first?["isError"] as? Bool == false && s4.first?["content"] as? String == "noted: e", "\(s4)")

        // The server dies: the client gets an error, not a hang.
        for p in server() { kill(p.pid, SIGKILL) }
        let s5 = await step(5, count: 1)
        let ended = s5.first ?? lines.objects.last ?? [:]
        #expect(ended["exception"] != nil || ended["isError"] as? Bool == true, "\(lines.text)")
        #expect(await eventually(20) { !client.isRunning }, "the client ends")

        // What reached the server: only the calls let through.
        let calls = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
        #expect(calls == ["note a", "echo a2", "echo c", "note e"], "\(calls)")
    }
}

/// JSON lines from a pipe, collected as they come.
final class LineCollector: @unchecked Sendable {
    private let lock = NSLock()
    private var buffer = Data()

    init(_ handle: FileHandle) {
        handle.readabilityHandler = { [weak self] h in
            let d = h.availableData
            guard let self, !d.isEmpty else {
                h.readabilityHandler = nil
                return
            }
            self.lock.lock()
            self.buffer.append(d)
            self.lock.unlock()
        }
    }

    var text: String {
        lock.lock()
        defer { lock.unlock() }
        return String(decoding: buffer, as: UTF8.self)
    }

    var objects: [[String: Any]] {
        text.split(separator: "\n").compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] }
    }
}
