import Foundation
import Glibc
import Testing
import TetherCore
@testable import TetherSystem

/// Gates on the real kernel: seccomp user notification, answered by `GateServer`.
@Suite("Gates: exec, net and write answered by the supervisor", .serialized, .timeLimit(.minutes(3)))
struct GateTests {
    static let all: [GateConfig] = [
        .init(kind: .exec, surface: "t.exec"), .init(kind: .net, surface: "t.net"), .init(kind: .write, surface: "t.write"),
    ]

    func scratch() -> String {
        let dir = workerDirectory("gates")
        return dir
    }

    @Test func eachGateClosesOnlyItsCalls() async throws {
        let peer = LoopbackPeer()
        let dir = scratch()
        let c = try await Conversation.start([GateProbe.path], gates: Self.all, open: [.exec, .net, .write])
        let gates = try #require(c.worker.gates)
        func everything() -> [String: String] {
            var r: [String: String] = [:]
            for cmd in [
                "exec", "connect \(peer.tcpPort)", "udp \(peer.udpPort)", "unix", "write \(dir)/f", "read /etc/hostname", "mkdir \(dir)/d",
                "unlink \(dir)/f",
            ] {
                let answer = c.ask(cmd)
                r[String(cmd.split(separator: " ")[0])] = answer
            }
            _ = rmdir("\(dir)/d")
            return r
        }
        let open = everything()
        for (op, answer) in open { #expect(answer == "\(op) OK", "all open: \(answer)") }

        // Each gate closed in turn: only its own calls fail, with EPERM.
        let covered: [GateKind: Set<String>] = [.exec: ["exec"], .net: ["connect", "udp"], .write: ["write", "mkdir", "unlink"]]
        for kind in GateKind.allCases {
            gates.set(kind, open: false)
            for (op, answer) in everything() {
                if covered[kind]!.contains(op) {
                    // unlink finds nothing to remove once write is closed: EPERM all the same.
                    #expect(answer == "\(op) ERR \(EPERM)", "\(kind) closed: \(answer)")
                } else if !(kind == .write && op == "unlink") {
                    #expect(answer == "\(op) OK", "\(kind) closed, \(op) is not its call: \(answer)")
                }
            }
            // The worker runs on: nothing of it is stopped.
            #expect(c.worker.state().live.allSatisfy { $0.state != "T" })
            gates.set(kind, open: true)
            for (op, answer) in everything() { #expect(answer == "\(op) OK", "\(kind) open again: \(answer)") }
        }
        #expect(await c.end() == .exited(0))
    }

    @Test func aClosedNetGateHoldsBackSocketsMadeBeforeIt() async throws {
        let peer = LoopbackPeer()
        let c = try await Conversation.start([GateProbe.path], gates: Self.all, open: [.exec, .net, .write])
        let gates = try #require(c.worker.gates)
        #expect(c.ask("hold \(peer.tcpPort)") == "hold OK")
        #expect(c.ask("send-held") == "send-held OK")
        gates.set(.net, open: false)
        // Sockets the probe made at its start, before the gate closed: connect and sendto
        // through them are looked up by their descriptor, not by the call that made them.
        #expect(c.ask("connect-old \(peer.tcpPort)") == "connect-old ERR \(EPERM)")
        #expect(c.ask("udp-old \(peer.udpPort)") == "udp-old ERR \(EPERM)")
        #expect(c.ask("sendmsg-old \(peer.udpPort)") == "sendmsg-old ERR \(EPERM)")
        // AF_INET with high bits set in the register is still AF_INET to the kernel.
        #expect(c.ask("socket-high") == "socket-high ERR \(EPERM)")
        // The connection made before: shut down by the sweep the supervisor does on a close.
        let pids = c.worker.state().live.map(\.pid)
        #expect(GateServer.shutDownInetSockets(of: pids) >= 1)
        #expect(c.ask("send-held") == "send-held ERR \(EPIPE)")
        #expect(c.ask("unix") == "unix OK")
        #expect(await c.end() == .exited(0))
    }

    @Test func theWriteGateLooksAtFlagsOnly() async throws {
        let dir = scratch()
        FileManager.default.createFile(atPath: "\(dir)/existing", contents: Data("x".utf8))
        chmod("\(dir)/existing", 0o666)
        let c = try await Conversation.start([GateProbe.path], gates: [.init(kind: .write, surface: "t.write")], open: [])
        let gates = try #require(c.worker.gates)
        #expect(c.ask("read /etc/hostname") == "read OK")
        #expect(c.ask("read-high /etc/hostname") == "read-high OK")
        #expect(c.ask("append \(dir)/existing") == "append ERR \(EPERM)")
        #expect(c.ask("write \(dir)/new") == "write ERR \(EPERM)")
        // openat2 keeps its flags behind a pointer: refused with ENOSYS, so libc falls back.
        #expect(c.ask("openat2 \(dir)/new2") == "openat2 ERR \(ENOSYS)")
        // Reads never reach the supervisor: the filter checks their flags itself.
        let before = gates.answeredCount
        for _ in 0..<20 { _ = c.ask("read /etc/hostname") }
        #expect(gates.answeredCount == before)
        #expect(!FileManager.default.fileExists(atPath: "\(dir)/new"))
        #expect(await c.end() == .exited(0))
    }

    @Test func recordModeDeniesNothingAndCounts() async throws {
        let peer = LoopbackPeer()
        let c = try await Conversation.start([GateProbe.path], gates: [.init(kind: .net, surface: "t.net", mode: .record)], open: [])
        let gates = try #require(c.worker.gates)
        #expect(c.ask("connect \(peer.tcpPort)") == "connect OK")
        #expect(c.ask("unix") == "unix OK")
        let denials = gates.drainDenials()
        let calls = Set(denials.map(\.0.call))
        #expect(calls == ["socket", "connect"], "\(denials)")
        #expect(denials.allSatisfy { $0.0.recorded && $0.0.gate == .net && $0.0.executable.hasSuffix("gateprobe") })
        #expect(await c.end() == .exited(0))
    }

    @Test func deniedCallsAreCountedPerGateCallAndProcess() async throws {
        let c = try await Conversation.start([GateProbe.path], gates: [.init(kind: .exec, surface: "t.exec")], open: [])
        let gates = try #require(c.worker.gates)
        for _ in 0..<3 { #expect(c.ask("exec") == "exec ERR \(EPERM)") }
        let denials = gates.drainDenials()
        // Each exec is tried by a fresh child: one line per child, each counted once.
        #expect(denials.count == 3 && denials.allSatisfy { $0.0.call == "execve" && $0.1 == 1 && !$0.0.recorded })
        #expect(gates.drainDenials().isEmpty)
        #expect(await c.end() == .exited(0))
    }

    @Test func withoutTheSupervisorGatedCallsFail() async throws {
        // Nobody holds the listener any more (the supervisor is gone): the kernel answers
        // ENOSYS to every gated call, open gate or not. The rest keeps working.
        let peer = LoopbackPeer()
        let c = try await Conversation.start([GateProbe.path], gates: Self.all, open: [.exec, .net, .write])
        let gates = try #require(c.worker.gates)
        #expect(c.ask("exec") == "exec OK")
        gates.stop()
        #expect(gates.isFinished)
        #expect(c.ask("exec") == "exec ERR \(ENOSYS)")
        #expect(c.ask("connect \(peer.tcpPort)") == "connect ERR \(ENOSYS)")
        #expect(c.ask("write \(scratch())/f") == "write ERR \(ENOSYS)")
        #expect(c.ask("read /etc/hostname") == "read OK")
        #expect(await c.end() == .exited(0))
    }

    @Test func theWorkerHoldsNoListener() async throws {
        // A listener in the worker's hands would let it answer its own gated calls.
        let c = try await Conversation.start([GateProbe.path], gates: Self.all, open: [.exec, .net, .write])
        #expect(c.ask("fds") == "fds seccomp=0")
        // Nor can it make one of its own: one listener per filter chain.
        #expect(c.ask("own-listener") == "own-listener ERR \(EBUSY)")
        #expect(await c.end() == .exited(0))
    }

    @Test func aClosedExecGateStillStartsTheWorkersProgram() async throws {
        // The exec gate governs what the worker runs, not its start (the main surface does).
        let c = try await Conversation.start([GateProbe.path], gates: [.init(kind: .exec, surface: "t.exec")], open: [])
        #expect(c.ask("exec") == "exec ERR \(EPERM)")
        #expect(await c.end() == .exited(0))
    }

    @Test func theGatesFilterCompilesEveryCombination() throws {
        for n in 1..<8 {
            let kinds = Set(GateKind.allCases.enumerated().filter { n & (1 << $0.offset) != 0 }.map(\.element))
            let f = try GateFilter.compile(kinds)
            #expect(!f.program.isEmpty)
            #expect(f.notifiesExec == kinds.contains(.exec))
        }
    }
}
