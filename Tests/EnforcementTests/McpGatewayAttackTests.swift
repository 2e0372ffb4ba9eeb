import Foundation
import Glibc
import Testing
import TetherCore
import TetherSystem
import TetherTestKit

/// `tether mcp` fed raw lines, against a real authority: lines other parsers read differently,
/// batches, tasks across a revoke, a frozen server. The servers are Fixtures/mcp: raw_server.py
/// logs every line it receives (so a test sees exactly what got through), tasks_server.py is
/// the official SDK's low-level server with its tasks.
@Suite("The MCP gateway under attack", .serialized, .timeLimit(.minutes(10)))
struct McpGatewayAttackTests {
    static let fixtures = McpGatewayTests.fixtures

    @Test(
        "lines it cannot read strictly (lone surrogate, nesting past Foundation's limit, duplicate keys, invalid UTF-8, not JSON) are answered -32700/-32600 and never reach the server; a batch is split; a frozen server's requests are answered within a bound; resources/read and prompts/get follow the server's surface"
    )
    func rawLines() async throws {
        let a = try await LiveAuthority()
        let dir = workerDirectory("mcpraw")
        try FileManager.default.copyItem(atPath: "\(Self.fixtures)/raw_server.py", toPath: "\(dir)/raw_server.py")
        chmod("\(dir)/raw_server.py", 0o644)
        let log = dir + "/received"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        chmod(log, 0o666)
        #expect(await (try a.run("mr.note", [], ["true"])).exitCode(within: 30) == 0)
        let marker = Workers.marker("mcpraw")
        let s = try RawMcp(a, surface: "mr", ["/usr/bin/python3", dir + "/raw_server.py", log, marker])
        defer { s.end() }
        s.send(
            #"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#
        )
        #expect(await s.reply(1)?["result"] != nil, "\(s.text)")
        s.send(#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)

        #expect(try a.op(["revoke", "mr.note", "--reason", "INC-9"]).0 == 0)
        try await Task.sleep(for: .seconds(1))
        // Each of these is a call of note (revoked) to some reader: never forwarded.
        let deep = String(repeating: "[", count: 600) + String(repeating: "]", count: 600)
        let unreadable: [([UInt8], Int)] = [
            (
                Array(#"{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"note","arguments":{"text":"\ud800"}}}"#.utf8),
                -32700
            ),
            (
                Array(#"{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"note","arguments":{"text":\#(deep)}}}"#.utf8),
                -32700
            ),
            (Array(#"{"jsonrpc":"2.0","id":12,"method":"tools/call","params":{"name":"note","name":"echo","arguments":{}}}"#.utf8), -32600),
            (Array(#"{"jsonrpc":"2.0","id":13,"method":"tools/call","params":{"name":"echo","name":"note","arguments":{}}}"#.utf8), -32600),
            (Array(#"{"jsonrpc":"2.0","id":14,"method":"ping","method":"tools/call","params":{"name":"note"}}"#.utf8), -32600),
            (Array(#"{"jsonrpc":"2.0","id":15,"method":"tools/call","method":"ping","params":{"name":"note"}}"#.utf8), -32600),
            (Array(#"{"jsonrpc":"2.0","id":16,"id":17,"method":"tools/call","params":{"name":"note"}}"#.utf8), -32600),
            (
                Array(#"{"jsonrpc":"2.0","id":18,"method":"tools/call","params":{"name":"note","arguments":{"text":""#.utf8) + [0xFF]
                    + Array(#""}}}"#.utf8), -32700
            ),
            (Array("note please".utf8), -32700),
        ]
        for (line, _) in unreadable { s.send(line) }
        #expect(await eventually(10) { s.errors(id: nil).count >= unreadable.count }, "\(s.text)")
        #expect(s.errors(id: nil).map(\.code) == unreadable.map(\.1), "\(s.errors(id: nil))")

        // A batch: the refused call answered here, the allowed one forwarded alone.
        s.send(
            #"[{"jsonrpc":"2.0","id":20,"method":"tools/call","params":{"name":"echo","arguments":{}}},{"jsonrpc":"2.0","id":21,"method":"tools/call","params":{"name":"note","arguments":{}}}]"#
        )
        let r21 = await s.reply(21)?["result"] as? [String: Any]
        #expect(r21?["isError"] as? Bool == true && s.text(of: r21).contains("mr.note is DEVICE_REVOKED"), "\(s.text)")
        #expect(s.text(of: await s.reply(20)?["result"] as? [String: Any]) == "ran echo", "\(s.text)")
        // Well-formed, for comparison: refused and allowed.
        s.send(#"{"jsonrpc":"2.0","id":22,"method":"tools/call","params":{"name":"note","arguments":{}}}"#)
        #expect((await s.reply(22)?["result"] as? [String: Any])?["isError"] as? Bool == true)
        try a.op(["restore", "mr.note"])

        // A call the server never answers, then the server's surface revoked: frozen (stop).
        s.send(#"{"jsonrpc":"2.0","id":30,"method":"tools/call","params":{"name":"hang","arguments":{}}}"#)
        try await Task.sleep(for: .milliseconds(300))
        #expect(try a.op(["revoke", "mr", "--wait", "5s", "--reason", "INC-10"]).0 == 0)
        let frozenAt = ContinuousClock.now
        let r30 = await s.reply(30, within: 10)?["result"] as? [String: Any]
        #expect(r30?["isError"] as? Bool == true && s.text(of: r30).contains("mr is DEVICE_REVOKED"), "\(s.text)")
        #expect(ContinuousClock.now - frozenAt < .seconds(5), "answered within the bound")
        // Everything else is answered here at once, in its method's shape.
        s.send(#"{"jsonrpc":"2.0","id":31,"method":"resources/read","params":{"uri":"file:///secret"}}"#)
        s.send(#"{"jsonrpc":"2.0","id":32,"method":"prompts/get","params":{"name":"p"}}"#)
        s.send(#"{"jsonrpc":"2.0","id":33,"method":"tools/list"}"#)
        s.send(#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":30}}"#)
        for id in 31...33 {
            let e = await s.reply(id, within: 3)?["error"] as? [String: Any]
            #expect(e?["code"] as? Int == -32010 && (e?["message"] as? String ?? "").contains("INC-10"), "\(id): \(s.text)")
        }
        try a.op(["restore", "mr", "--wait", "5s"])
        s.send(#"{"jsonrpc":"2.0","id":40,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#)
        #expect(s.text(of: await s.reply(40)?["result"] as? [String: Any]) == "ran echo", "\(s.text)")

        // What reached the server: initialize, the batch without 21, the hang, the echo.
        // (Read as is: a line of invalid UTF-8 that got through must show, not void the file.)
        let received = String(decoding: FileManager.default.contents(atPath: log) ?? Data(), as: UTF8.self).split(separator: "\n").map(
            String.init)
        #expect(!received.contains { $0.contains("note") }, "\(received)")
        #expect(
            received.filter { $0.hasPrefix("[") } == [
                #"[{"jsonrpc":"2.0","id":20,"method":"tools/call","params":{"name":"echo","arguments":{}}}]"#
            ], "\(received)")
        for absent in ["resources/read", "prompts/get", "tools/list", "notifications/cancelled"] {
            #expect(!received.contains { $0.contains(absent) }, "\(absent): \(received)")
        }
        #expect(received.count == 5, "\(received)")
    }

    @Test(
        "tasks (MCP 2025-11-25): tasks/result across a revoke is refused; tasks/get says failed; a task-augmented call while revoked gets a failed task that never reaches the server; a refused task stays refused after the restore; tasks/list agrees"
    )
    func tasks() async throws {
        let deps = try PythonDeps.mcp()
        let a = try await LiveAuthority()
        let dir = workerDirectory("mcptasks")
        try FileManager.default.copyItem(atPath: "\(Self.fixtures)/tasks_server.py", toPath: "\(dir)/tasks_server.py")
        chmod("\(dir)/tasks_server.py", 0o644)
        let log = dir + "/notes"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        chmod(log, 0o666)
        #expect(await (try a.run("mt.note", [], ["true"])).exitCode(within: 30) == 0)
        let s = try RawMcp(
            a, surface: "mt", ["/usr/bin/python3", dir + "/tasks_server.py", log, dir, Workers.marker("mcptasks")],
            env: "PYTHONPATH=\(deps)")
        defer { s.end() }
        func release(_ text: String) { _ = FileManager.default.createFile(atPath: "\(dir)/release-\(text)", contents: nil) }
        func call(_ id: Int, _ text: String) -> String {
            #"{"jsonrpc":"2.0","id":\#(id),"method":"tools/call","params":{"name":"note","arguments":{"text":"\#(text)"},"task":{"ttl":60000}}}"#
        }
        func ask(_ id: Int, _ method: String, _ task: String) -> String {
            #"{"jsonrpc":"2.0","id":\#(id),"method":"\#(method)","params":{"taskId":"\#(task)"}}"#
        }
        s.send(
            #"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#
        )
        #expect(await s.reply(1, within: 30)?["result"] != nil, "\(s.text)")
        s.send(#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)

        // Two tasks started while allowed; a tasks/result waits on the second.
        s.send(call(2, "a"))
        let t1 = ((await s.reply(2)?["result"] as? [String: Any])?["task"] as? [String: Any])?["taskId"] as? String ?? ""
        s.send(call(3, "c"))
        let t3 = ((await s.reply(3)?["result"] as? [String: Any])?["task"] as? [String: Any])?["taskId"] as? String ?? ""
        #expect(!t1.isEmpty && !t3.isEmpty, "\(s.text)")
        s.send(ask(4, "tasks/result", t3))
        try await Task.sleep(for: .milliseconds(300))

        // The tool revoked; both tasks finish at the server afterwards.
        #expect(try a.op(["revoke", "mt.note", "--reason", "INC-11"]).0 == 0)
        try await Task.sleep(for: .seconds(1))
        release("a")
        release("c")
        #expect(await eventually(10) { ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n").count == 2 })
        let r4 = await s.reply(4)?["result"] as? [String: Any]
        #expect(r4?["isError"] as? Bool == true && s.text(of: r4).contains("INC-11"), "\(s.text)")
        #expect(((r4?["_meta"] as? [String: Any])?["io.modelcontextprotocol/related-task"] as? [String: Any])?["taskId"] as? String == t3)
        s.send(ask(5, "tasks/get", t1))
        let r5 = await s.reply(5)?["result"] as? [String: Any]
        #expect(
            r5?["status"] as? String == "failed" && (r5?["statusMessage"] as? String ?? "").contains("mt.note is DEVICE_REVOKED"),
            "\(s.text)")
        s.send(ask(6, "tasks/result", t1))
        #expect((await s.reply(6)?["result"] as? [String: Any])?["isError"] as? Bool == true, "\(s.text)")

        // A task-augmented call while revoked: a failed task, answered here from then on.
        s.send(call(7, "b"))
        let created = (await s.reply(7)?["result"] as? [String: Any])?["task"] as? [String: Any]
        let t7 = created?["taskId"] as? String ?? ""
        #expect(created?["status"] as? String == "failed" && created?["createdAt"] != nil && created?["ttl"] as? Int == 60000, "\(s.text)")
        s.send(ask(8, "tasks/get", t7))
        #expect((await s.reply(8)?["result"] as? [String: Any])?["status"] as? String == "failed", "\(s.text)")
        s.send(ask(9, "tasks/result", t7))
        #expect((await s.reply(9)?["result"] as? [String: Any])?["isError"] as? Bool == true, "\(s.text)")
        s.send(ask(10, "tasks/cancel", t1))
        #expect((await s.reply(10)?["error"] as? [String: Any])?["code"] as? Int == -32602, "\(s.text)")

        // Restored: a refused task stays refused; a new one runs and delivers.
        try a.op(["restore", "mt.note"])
        try await Task.sleep(for: .seconds(1))
        s.send(ask(11, "tasks/result", t1))
        let r11 = await s.reply(11)?["result"] as? [String: Any]
        #expect(r11?["isError"] as? Bool == true && !s.text(of: r11).contains("noted"), "\(s.text)")
        s.send(call(12, "d"))
        let t12 = ((await s.reply(12)?["result"] as? [String: Any])?["task"] as? [String: Any])?["taskId"] as? String ?? ""
        release("d")
        s.send(ask(13, "tasks/result", t12))
        #expect(s.text(of: await s.reply(13)?["result"] as? [String: Any]) == "noted: d", "\(s.text)")
        s.send(#"{"jsonrpc":"2.0","id":14,"method":"tasks/list","params":{}}"#)
        let listed = ((await s.reply(14)?["result"] as? [String: Any])?["tasks"] as? [[String: Any]]) ?? []
        let status = Dictionary(listed.map { ($0["taskId"] as? String ?? "", $0["status"] as? String ?? "") }) { x, _ in x }
        #expect(status[t1] == "failed" && status[t3] == "failed" && status[t12] == "completed", "\(listed)")

        // A task id the gateway never saw created is nobody's to ask the server about.
        s.send(ask(15, "tasks/result", "made-up"))
        let e15 = await s.reply(15)?["error"] as? [String: Any]
        #expect(e15?["code"] as? Int == -32602 && (e15?["message"] as? String ?? "").contains("does not know"), "\(s.text)")

        // No result of a refused task reached the client; the call made while revoked never ran.
        #expect(!s.text.contains("noted: a") && !s.text.contains("noted: c"), "\(s.text)")
        let notes = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
        #expect(notes == ["note a", "note c", "note d"] || notes == ["note c", "note a", "note d"], "\(notes)")
    }
}

/// `tether mcp` on a server, spoken to in raw lines; everything it writes is kept.
final class RawMcp: @unchecked Sendable {
    let process = Process()
    let input = Pipe()
    let lines: LineCollector
    let err = Pipe()

    init(_ a: LiveAuthority, surface: String, _ server: [String], env: String? = nil) throws {
        process.executableURL = URL(fileURLWithPath: tetherBinary)
        process.arguments =
            [
                "mcp", "--dir", a.dir, "--authority", a.url, "--key-file", a.dir + "/agent.key",
                "--public-key", a.dir + "/signing.pub", "--surface", surface, "--on-revoke", "stop",
            ]
            + (env.map { ["--env", $0] } ?? []) + ["--"] + server
        process.environment = ["PATH": "/usr/bin:/bin", "TETHER_LOG_LEVEL": "notice"]
        let out = Pipe()
        process.standardInput = input
        process.standardOutput = out
        process.standardError = err
        lines = LineCollector(out.fileHandleForReading)
        try process.run()
    }

    func send(_ line: String) { send(Array(line.utf8)) }
    func send(_ bytes: [UInt8]) { input.fileHandleForWriting.write(Data(bytes + [10])) }

    var text: String { lines.text }

    /// Every message written, batches taken apart.
    var messages: [[String: Any]] {
        text.split(separator: "\n").flatMap { line -> [[String: Any]] in
            let v = try? JSONSerialization.jsonObject(with: Data(line.utf8))
            return (v as? [[String: Any]]) ?? ((v as? [String: Any]).map { [$0] } ?? [])
        }
    }

    /// The answer to request `id`, waited for at most `within` seconds.
    func reply(_ id: Int, within: Double = 15) async -> [String: Any]? {
        _ = await eventually(within) { messages.contains { $0["id"] as? Int == id } }
        return messages.first { $0["id"] as? Int == id }
    }

    /// Errors answered to `id` (nil: to no id), in order.
    func errors(id: Int?) -> [(code: Int, message: String)] {
        messages.filter { id == nil ? $0["id"] is NSNull : $0["id"] as? Int == id }.compactMap {
            guard let e = $0["error"] as? [String: Any] else { return nil }
            return (e["code"] as? Int ?? 0, e["message"] as? String ?? "")
        }
    }

    /// A tool result's first text.
    func text(of result: [String: Any]?) -> String {
        ((result?["content"] as? [[String: Any]])?.first?["text"] as? String) ?? ""
    }

    func end() {
        try? input.fileHandleForWriting.close()
        if process.isRunning { process.terminate() }
    }
}
