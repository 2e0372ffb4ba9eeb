// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "tether",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "tether", targets: ["tether"]),
        .library(name: "TetherCore", targets: ["TetherCore"]),
        .library(name: "TetherSystem", targets: ["TetherSystem"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
    ],
    targets: [
        // libseccomp bindings and the fork/exec child path. C, because nothing but
        // async-signal-safe code may run between fork and exec.
        .target(
            name: "CSeccomp",
            path: "CSeccomp",
            linkerSettings: [.linkedLibrary("seccomp")]
        ),
        // Pure values: profiles, specs, policies. No platform code.
        .target(name: "TetherCore"),
        // The state directory's paths and ownership rules, shared by the CLI, the supervisor
        // and the authority (which alone makes one).
        .target(name: "TetherState"),
        // The git commit a build comes from (`tether --version`), written before each build.
        .plugin(name: "BuildInfo", capability: .buildTool()),
        .target(name: "TetherBuildInfo", plugins: ["BuildInfo"]),
        // The async runtime the supervisor runs on: SwiftNIO's event loops as the global
        // executor, sleeps on their timers (no libdispatch: docs/containment.md, "The
        // supervisor's side").
        .target(name: "CTetherRuntime"),
        .target(
            name: "TetherRuntime",
            dependencies: [
                "CTetherRuntime",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        // Linux: seccomp compilation, contained spawn, process groups, cgroup v2.
        .target(
            name: "TetherSystem",
            dependencies: [
                "CSeccomp",
                "TetherCore",
                "TetherRuntime",
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Talking to an authority: operator calls, validate, signature checks.
        .target(
            name: "TetherClient",
            dependencies: [
                "TetherCore",
                "TetherState",
                "TetherRuntime",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The enforcer state machine, `tether run` and `tether supervise`: reports, restarts, metrics.
        .target(
            name: "TetherSupervisor",
            dependencies: [
                "TetherCore", "TetherSystem", "TetherClient", "TetherRuntime",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        // The authority server: routes, roles, storage, signing, audit, watch fan-out.
        .target(
            name: "TetherAuthority",
            dependencies: [
                "TetherCore", "TetherState",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                // TLSUserEvent, HTTPRequestPart: the handshake and body deadlines, in the pipeline.
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ]
        ),
        // Argument parsing only: every command calls into a library.
        .executableTarget(
            name: "tether",
            dependencies: [
                "TetherCore",
                "TetherSystem",
                "TetherClient",
                "TetherAuthority",
                "TetherSupervisor",
                "TetherRuntime",
                "TetherState",
                "TetherBuildInfo",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Benchmarks: run on demand (`swift run -c release tether-bench-spawn`), never in tests.
        .executableTarget(
            name: "tether-bench-spawn",
            dependencies: ["TetherCore", "TetherSystem", .product(name: "Logging", package: "swift-log")],
            path: "bench/SpawnBench"
        ),
        .executableTarget(
            name: "tether-bench-launch-floor",
            dependencies: ["TetherCore", "TetherSystem", "TetherRuntime", .product(name: "Logging", package: "swift-log")],
            path: "bench/LaunchFloor"
        ),
        .executableTarget(
            name: "tether-bench-bare",
            dependencies: [.product(name: "Hummingbird", package: "hummingbird")],
            path: "bench/BareHummingbird"
        ),
        .executableTarget(
            name: "tether-bench-authority",
            dependencies: [
                "TetherCore", "TetherClient", "TetherAuthority", .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            path: "bench/AuthorityBench"
        ),
        // What the tests share: the tether binary, authority processes, reading the kernel.
        .target(
            name: "TetherTestKit",
            dependencies: ["TetherSystem", "TetherClient", "TetherAuthority", "TetherCore"],
            path: "Tests/TetherTestKit"
        ),
        .executableTarget(
            name: "tether-bench-revocation",
            dependencies: ["TetherCore", "TetherClient", "TetherSystem"],
            path: "bench/RevocationBench"
        ),
        .testTarget(name: "TetherCoreTests", dependencies: ["TetherCore"]),
        // The rules without processes or wall clocks: leases, the SSE parser (TetherClient), the
        // enforcer's and the supervisor's decisions (TetherSupervisor), each on a manual clock.
        .testTarget(name: "TetherClientTests", dependencies: ["TetherClient", "TetherCore"]),
        .testTarget(name: "TetherSupervisorTests", dependencies: ["TetherSupervisor", "TetherSystem", "TetherClient", "TetherCore"]),
        // End to end: `tether run` against real authority processes and scripted ones.
        .testTarget(
            name: "EnforcementTests",
            dependencies: [
                "TetherTestKit", "TetherAuthority", "TetherClient", "TetherCore", "TetherSystem", "tether",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ],
            // Agents' hook payloads, read by path.
            exclude: ["Fixtures"]
        ),
        // Adversarial workers (Probes/escape.c, built by the tests) against `tether run`.
        .testTarget(
            name: "ContainmentTests",
            dependencies: ["TetherTestKit", "TetherSystem", "tether"],
            exclude: ["Probes"]
        ),
        .testTarget(
            name: "TetherAuthorityTests",
            dependencies: [
                "TetherAuthority", "TetherClient", "TetherCore", "TetherState", "TetherTestKit", "tether",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        .testTarget(
            name: "TetherSystemTests",
            dependencies: ["TetherSystem", "TetherCore", "TetherRuntime", "TetherTestKit", "tether"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
