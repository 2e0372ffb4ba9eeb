import ArgumentParser
import Foundation
import TetherCore
import TetherSupervisor
import TetherSystem

/// `tether mcp [run options] -- CMD ARGS…`: an MCP server on a tether, behind a gateway.
struct McpCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mcp",
        abstract: "Run a stdio MCP server as a supervised worker behind a gateway that refuses its use while its surface is denied.",
        discussion: """
            Point an MCP client at `tether mcp --surface S -- CMD ARGS` instead of `CMD ARGS`. Messages pass unchanged both \
            ways while S is allowed by a live lease, except tools/call (and the tasks it starts): it also needs S.<tool>, \
            where that surface exists. A refused call gets a tool result with isError true (a task-augmented one a failed \
            task) saying who revoked what, when and why, and the server never sees it. While S is refused nothing reaches \
            the server: every request is answered by the gateway (resources/read, prompts/get and the rest with JSON-RPC \
            error -32010). A line the gateway cannot read strictly (invalid UTF-8, a lone surrogate, a duplicate key, \
            nesting past 64) gets -32700 or -32600 and is not forwarded. The server is a worker like any other (profile, \
            namespaces, cgroup, gates, --on-revoke); requests it leaves unanswered while refused, or when it dies, get an \
            answer. Logs go to stderr. Takes every option of tether run.
            """)
    @OptionGroup var options: RunOptions

    func run() async throws {
        if ["--help", "-h", "help"].contains(options.command.first) { throw CleanExit.helpRequest(Self.self) }
        keepMemoryFromSameUser()
        SupervisorPriority.choose()
        ResidentPages.choose()
        let (worker, resolved, logger, weak) = try await options.resolve()
        let gateway: McpGateway
        do {
            gateway = try McpGateway(surface: worker.surface, logger: logger)
        } catch {
            throw fail("cannot set up the gateway's pipes: \(error)", code: TetherExit.unavailable)
        }
        let outcome = await RunSession.run(
            worker: worker, authority: resolved, logger: logger, acceptWeakContainment: weak,
            notifications: SystemdNotifier.notifications,
            stdio: (gateway.workerStdin, gateway.workerStdout),
            onStarted: { _, live in
                gateway.attach(live)
                gateway.start()
            })
        gateway.serverExited("exit code \(outcome.exitCode)")
        throw ending(outcome)
    }
}
