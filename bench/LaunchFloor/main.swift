// What a small launcher would take: `tether profile try PROFILE -- CMD…` with only TetherCore
// and TetherSystem linked (no argument parser, HTTP client, authority, console or PostgreSQL
// code), for the launch row's reading in docs/BENCHMARKS.md.
// Run: tether-bench-launch-floor PROFILE CMD ARGS…
import Foundation
import Logging
import TetherCore
import TetherRuntime
import TetherSystem

let args = Array(CommandLine.arguments.dropFirst())
guard args.count >= 2 else {
    FileHandle.standardError.write(Data("usage: tether-bench-launch-floor PROFILE CMD ARGS…\n".utf8))
    exit(64)
}
AsyncRuntime.useEventLoops()
var logger = Logger(label: "floor")
logger.logLevel = .warning
switch await ProfileTry.run(profile: args[0], command: Array(args.dropFirst()), logger: logger) {
case .exited(let status): exit(status.shellCode)
case .failed(let f):
    FileHandle.standardError.write(Data("tether-bench-launch-floor: \(f.message)\n".utf8))
    exit(f.kind == .config ? 78 : 69)
}
