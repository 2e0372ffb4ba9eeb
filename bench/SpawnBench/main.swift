// Spawn latency: `/bin/true` started and reaped, plain posix_spawn against Tether's contained
// spawn under the `default` profile, in the same run. Prints median and p99 of each and the
// ratio. Run: swift run -c release tether-bench-spawn [iterations]
import Foundation
import Glibc
import Logging
import TetherCore
import TetherSystem

let iterations = CommandLine.arguments.dropFirst().compactMap { Int($0) }.first ?? 200
let clock = ContinuousClock()

func percentile(_ xs: [Duration], _ p: Double) -> Duration {
    let s = xs.sorted()
    return s[min(s.count - 1, Int((Double(s.count - 1) * p).rounded()))]
}

func micros(_ d: Duration) -> String {
    String(format: "%8.1f µs", Double(d.components.attoseconds) / 1e12 + Double(d.components.seconds) * 1e6)
}

func plainSpawn() -> Duration {
    var pid: pid_t = 0
    let argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/true"), nil]
    defer { free(argv[0]) }
    let start = clock.now
    let rc = posix_spawn(&pid, "/bin/true", nil, nil, argv, environ)
    precondition(rc == 0)
    var status: Int32 = 0
    waitpid(pid, &status, 0)
    return clock.now - start
}

var logger = Logger(label: "bench")
logger.logLevel = .error
let spawner = Spawner(logger: logger, useCgroups: !CommandLine.arguments.contains("--no-cgroup"))
let compileStart = clock.now
let filter = try SeccompCompiler.compile(BuiltinProfiles.default)
let compileTime = clock.now - compileStart

nonisolated(unsafe) var spawnPhase: [Duration] = []
func tetherSpawn(_ filter: CompiledFilter?) async -> Duration {
    let start = clock.now
    let w = try! await spawner.spawn(.init(name: "bench", spec: WorkerSpec(command: ["/bin/true"]), filter: filter))
    spawnPhase.append(clock.now - start)
    _ = await w.wait()
    return clock.now - start
}

// Warm up both paths, then interleave so machine noise hits both alike.
for _ in 0..<10 {
    _ = plainSpawn()
    _ = await tetherSpawn(filter)
}
var plain: [Duration] = [], contained: [Duration] = [], unfiltered: [Duration] = []
for _ in 0..<iterations {
    plain.append(plainSpawn())
    contained.append(await tetherSpawn(filter))
    unfiltered.append(await tetherSpawn(nil))
}
spawner.shutdown()

let base = percentile(plain, 0.5)
func row(_ name: String, _ xs: [Duration]) {
    let med = percentile(xs, 0.5)
    let ratio = Double(med.components.attoseconds) / Double(base.components.attoseconds)
    print(
        "\(name.padding(toLength: 44, withPad: " ", startingAt: 0)) median \(micros(med))  p99 \(micros(percentile(xs, 0.99)))  ×\(String(format: "%.2f", ratio))"
    )
}
print("spawn + reap /bin/true, \(iterations) runs each, interleaved (cgroup: \(spawner.cgroupRoot != nil ? "yes" : "no"))")
row("posix_spawn (baseline)", plain)
row("tether spawn, profile default (\(filter.instructionCount) insns)", contained)
row("tether spawn, no filter", unfiltered)
print("  of which spawn() returning: median \(micros(percentile(spawnPhase, 0.5)))")
print("compile default profile: \(micros(compileTime)) (once per worker config)")
do {
    let s = clock.now
    for _ in 0..<100 { _ = ProcessTable.snapshot() }
    print("process table snapshot: \(micros((clock.now - s) / 100)) (\(ProcessTable.snapshot().count) processes)")
}
