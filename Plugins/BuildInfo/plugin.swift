import Foundation
import PackagePlugin

/// Writes `BuildCommit.swift` before each build: the git commit of the checkout the package is
/// built from (`tether --version` shows it), or nil where there is no checkout (a tarball).
@main
struct BuildInfo: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let out = context.pluginWorkDirectoryURL.appending(path: "BuildCommit.swift")
        let package = context.package.directoryURL.path
        // A shell: git may be missing, or this may not be a checkout; either way a valid file.
        let script = """
            c=$(git -C "$1" rev-parse --short=12 HEAD 2>/dev/null) && \\
              { git -C "$1" diff --quiet HEAD -- 2>/dev/null || c="$c-dirty"; } && v="\\"$c\\"" || v=nil
            printf '/// Written by the BuildInfo plugin: the commit this was built from.\\npublic let tetherBuildCommit: String? = %s\\n' "$v" > "$2.tmp"
            cmp -s "$2.tmp" "$2" && rm -f "$2.tmp" || mv "$2.tmp" "$2"
            """
        return [
            .prebuildCommand(
                displayName: "The build's git commit", executable: URL(fileURLWithPath: "/bin/sh"),
                arguments: ["-c", script, "sh", package, out.path], outputFilesDirectory: context.pluginWorkDirectoryURL)
        ]
    }
}
