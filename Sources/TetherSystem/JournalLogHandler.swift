import Foundation
import Glibc
import Logging

/// Log lines for the systemd journal when stderr is connected to it (`$JOURNAL_STREAM` names
/// stderr's device and inode): a `<N>` syslog priority prefix per line and no timestamp (the
/// journal keeps its own), metadata as `key=value`.
public struct JournalLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    let label: String

    public init(label: String) { self.label = label }

    /// True when stderr is the journal stream systemd set up for this process.
    public static var stderrIsJournal: Bool {
        guard let v = Foundation.ProcessInfo.processInfo.environment["JOURNAL_STREAM"] else { return false }
        let parts = v.split(separator: ":")
        guard parts.count == 2, let dev = UInt64(parts[0]), let ino = UInt64(parts[1]) else { return false }
        var st = stat()
        guard fstat(2, &st) == 0 else { return false }
        return UInt64(st.st_dev) == dev && UInt64(st.st_ino) == ino
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }

    public func log(event: LogEvent) {
        var all = metadata
        if let extra = event.metadata { all.merge(extra) { $1 } }
        let fields = all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        // One record per line: a message with newlines becomes several, each with the priority.
        let text = "\(event.message)\(fields.isEmpty ? "" : " " + fields)"
        let p = Self.priority(event.level)
        let out = text.split(separator: "\n", omittingEmptySubsequences: false).map { "<\(p)>\($0)\n" }.joined()
        FileHandle.standardError.write(Data(out.utf8))
    }
}
