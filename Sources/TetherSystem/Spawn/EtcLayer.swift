import CSeccomp
import Foundation
import Glibc

/// /etc as a worker sees it when Tether pins files into it (the coding agents' system
/// settings, docs/agents.md): a read-only overlay with `directory` on top of the host's /etc.
/// Its top-level directories replace the host's of the same name whole; everything else of the
/// host's /etc shows through, and the mounts below /etc (`submounts`: a container's /etc/resolv.conf and
/// /etc/hosts) are carried over onto the overlay (contain.c `overlay_etc`).
struct EtcLayer: Sendable, Equatable {
    var directory: String
    var submounts: [String]
    /// The layer's top-level directories: each replaces the host's directory of that name
    /// whole (bound over it), so nothing of the host's sits beside what Tether wrote there.
    var owned: [String]

    /// The overlay's mount options. `:`, `,` and `\` in a layer's path are escaped, as the
    /// overlay file system reads them.
    var overlayOptions: String {
        var escaped = ""
        for ch in directory {
            if ch == ":" || ch == "," || ch == "\\" { escaped.append("\\") }
            escaped.append(ch)
        }
        return "lowerdir=\(escaped):/etc"
    }

    /// The layer for `directory`, with the mounts below /etc as this mount namespace has them.
    static func make(
        directory: String, mountinfo: String? = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)
    ) throws(SpawnError) -> EtcLayer {
        guard let mountinfo else {
            throw SpawnError(
                stage: .mounts, errno: EIO, message: "cannot read /proc/self/mountinfo to carry the mounts below /etc over the pinned /etc")
        }
        let below = submounts(of: "/etc", in: mountinfo)
        guard below.count <= Int(TETHER_ETC_SUBMOUNTS_MAX) else {
            throw SpawnError(
                stage: .mounts, errno: E2BIG,
                message: "\(below.count) mounts below /etc; the pinned /etc carries at most \(TETHER_ETC_SUBMOUNTS_MAX) over")
        }
        let owned = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { name in
            var st = stat()
            return lstat(directory + "/" + name, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
        }.sorted()
        return EtcLayer(directory: directory, submounts: below, owned: owned)
    }

    /// The outermost mount points strictly below `top` (one clone each carries the rest).
    static func submounts(of top: String, in mountinfo: String) -> [String] {
        var points: [String] = []
        for line in mountinfo.split(separator: "\n") {
            // "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS …"
            let fields = line.split(separator: " ", omittingEmptySubsequences: false)
            guard fields.count > 4 else { continue }
            let point = unescape(String(fields[4]))
            if point.hasPrefix(top + "/") { points.append(point) }
        }
        let unique = Set(points)
        return unique.filter { p in !unique.contains { p.hasPrefix($0 + "/") } }.sorted()
    }

    /// mountinfo's octal escapes (`\040` for a space).
    static func unescape(_ s: String) -> String {
        guard s.contains("\\") else { return s }
        var out: [UInt8] = []
        let b = Array(s.utf8)
        var i = 0
        while i < b.count {
            if b[i] == UInt8(ascii: "\\"), i + 3 < b.count,
                let v = UInt8(String(decoding: b[(i + 1)...(i + 3)], as: UTF8.self), radix: 8)
            {
                out.append(v)
                i += 4
            } else {
                out.append(b[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
