import Foundation

/// Where a profile comes from: a built-in name or a JSON file.
public enum ProfileSource {
    /// `default`, `strict`, `none`, or a path to an OCI / Docker JSON profile.
    public static func load(_ nameOrPath: String) throws(ProfileError) -> (profile: SeccompProfile, source: String) {
        if let p = BuiltinProfiles.named(nameOrPath) { return (p, "built-in profile \"\(nameOrPath)\"") }
        guard nameOrPath.contains("/") || nameOrPath.hasSuffix(".json") else {
            throw ProfileError(
                path: "$",
                message:
                    "no built-in profile \"\(nameOrPath)\" (built-ins: \(BuiltinProfiles.names.joined(separator: ", "))); give a path to use a JSON file",
                source: nameOrPath)
        }
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: nameOrPath))
        } catch {
            throw ProfileError(path: "$", message: "cannot read the file: \((error as NSError).localizedDescription)", source: nameOrPath)
        }
        return (try ProfileParser.parse(data, source: nameOrPath), nameOrPath)
    }
}
