import ArgumentParser
import Foundation
import TetherCore
import TetherSystem

struct ProfileCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "profile",
        abstract: "Show, check and try seccomp profiles.",
        subcommands: [Show.self, Check.self, Try.self]
    )

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "show",
            abstract: "Print a profile as OCI / Docker JSON (built-in: default, strict, none).")
        @Argument(help: "A built-in profile name or a JSON file.") var profile: String

        func run() throws {
            do {
                print(try ProfileSource.load(profile).profile.jsonText())
            } catch {
                throw fail("\(error)", code: TetherExit.config)
            }
        }
    }

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "check",
            abstract: "Parse and compile a profile; print its rule count, BPF size and architectures.",
            discussion: "Exits 78 when the profile cannot be used, naming the JSON path of the problem.")
        @Argument(help: "A built-in profile name or a JSON file.") var profile: String
        @Option(
            help:
                "Resolve it for a worker run as this user (capability rules): root is root in its own user namespace; anything else, and the default, holds no capabilities."
        ) var user: String?

        func run() throws {
            do {
                print(try ProfileReport.make(profile, platform: .forWorker(user: user)).text)
            } catch {
                throw fail("\(error)", code: TetherExit.config)
            }
        }
    }

    struct Try: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "try",
            abstract: "Run a command under a profile, with no authority, to tune the profile.",
            discussion: "Exits with the command's own code, or 128+N when a signal N ended it.")
        @Argument(help: "A built-in profile name or a JSON file.") var profile: String
        @Flag(help: "Contain the command by process group only, as on a machine without cgroup v2.")
        var noCgroup = false
        @Flag(
            help: ArgumentHelp(
                "Compile the filter as a linear list instead of a binary tree (the seccomp-cost benchmark's control).", visibility: .hidden)
        )
        var linearFilter = false
        @Option(help: "Run under this gate, open (exec, net or write; repeatable): what the gate costs.") var gateOpen: [String] = []
        @Option(help: "Run under this gate, closed (repeatable): what fails when it is revoked.") var gateClosed: [String] = []
        @Option(help: "The command's network, as tether run's --net: private (default), none, host-loopback or host.") var net: String =
            "private"
        @Argument(parsing: .postTerminator, help: "The command and its arguments, after --.")
        var command: [String] = []

        func run() async throws {
            guard !command.isEmpty else {
                throw fail("no command: tether profile try PROFILE -- CMD ARGS…", code: TetherExit.usage)
            }
            SupervisorPriority.choose()
            ResidentPages.choose()
            func kinds(_ names: [String], _ flag: String) throws -> Set<GateKind> {
                try Set(
                    names.map { n in
                        guard let k = GateKind(rawValue: n) else {
                            throw fail("\(flag): \"\(n)\" is not a gate; the gates are exec, net, write", code: TetherExit.usage)
                        }
                        return k
                    })
            }
            let open = try kinds(gateOpen, "--gate-open"), closed = try kinds(gateClosed, "--gate-closed")
            guard open.isDisjoint(with: closed) else { throw fail("a gate cannot be both open and closed", code: TetherExit.usage) }
            guard let network = NetworkMode(rawValue: net) else {
                throw fail("--net: \"\(net)\" is not a network mode; expected one of \(NetworkMode.names)", code: TetherExit.usage)
            }
            let outcome = await ProfileTry.run(
                profile: profile, command: command, useCgroups: !noCgroup, layout: linearFilter ? .linear : .binaryTree,
                openGates: open, closedGates: closed, network: network, logger: makeLogger())
            throw ending(outcome)
        }
    }
}
