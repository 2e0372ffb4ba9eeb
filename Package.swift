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
        // Linux: seccomp compilation, contained spawn, process groups, cgroup v2.
        .target(
            name: "TetherSystem",
            dependencies: [
                "CSeccomp",
                "TetherCore",
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Argument parsing only: every command calls into a library.
        .executableTarget(
            name: "tether",
            dependencies: [
                "TetherCore",
                "TetherSystem",
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
        .testTarget(name: "TetherCoreTests", dependencies: ["TetherCore"]),
        .testTarget(
            name: "TetherSystemTests",
            dependencies: ["TetherSystem", "TetherCore", "tether"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
