import Foundation
import Testing
@testable import TetherSystem

/// The pinned /etc's plan (`tether run --agent`): which mounts below /etc are carried over onto
/// the overlay, read from a mountinfo text, and the overlay's options.
@Suite("The pinned /etc layer: mounts below /etc, overlay options")
struct EtcLayerTests {
    /// A container's /proc/self/mountinfo (Docker's bind mounts of resolv.conf, hostname and
    /// hosts), with mounts nested below /etc, look-alikes outside it and escaped mount points.
    static let sample = """
        612 545 0:160 / / rw,relatime master:300 - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/ABC:/var/lib/docker/overlay2/l/DEF,upperdir=/var/lib/docker/overlay2/x/diff,workdir=/var/lib/docker/overlay2/x/work
        613 612 0:163 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
        614 612 0:164 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755
        620 612 0:30 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs ro
        630 612 8:1 /var/lib/docker/containers/0123/resolv.conf /etc/resolv.conf rw,relatime - ext4 /dev/sda1 rw
        631 612 8:1 /var/lib/docker/containers/0123/hostname /etc/hostname rw,relatime - ext4 /dev/sda1 rw
        632 612 8:1 /var/lib/docker/containers/0123/hosts /etc/hosts rw,relatime - ext4 /dev/sda1 rw
        633 612 8:1 /srv/x /etc/x rw,relatime - ext4 /dev/sda1 rw
        634 633 8:1 /srv/y /etc/x/y rw,relatime - ext4 /dev/sda1 rw
        635 634 0:170 / /etc/x/y/z rw,relatime - tmpfs tmpfs rw
        636 612 8:1 /srv/etcetera /etcetera rw,relatime - ext4 /dev/sda1 rw
        637 612 8:1 /srv/etc /srv/etc/passwd rw,relatime - ext4 /dev/sda1 rw
        638 612 8:1 /srv/space /etc/with\\040space rw,relatime - ext4 /dev/sda1 rw
        639 638 8:1 /srv/space2 /etc/with\\040space/inner rw,relatime - ext4 /dev/sda1 rw
        640 612 8:1 /srv/etc-x /etc-x rw,relatime - ext4 /dev/sda1 rw
        641 612 8:1 /srv/hosts /etc/hosts rw,relatime - ext4 /dev/sda1 rw
        642 612 0:171 / /etc rw,relatime - tmpfs tmpfs rw
        643 612 8:1 /srv/tab /etc/tab\\011here rw,relatime - ext4 /dev/sda1 rw
        short line
        """

    @Test("the outermost mounts strictly below /etc, unescaped, once each, sorted; /etc itself, /etcetera, /etc-x and nested ones left out")
    func submounts() {
        let points = EtcLayer.submounts(of: "/etc", in: Self.sample)
        #expect(points == ["/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/etc/tab\there", "/etc/with space", "/etc/x"])
    }

    @Test("nothing below /etc: none; a mountinfo of only / and /proc")
    func noSubmounts() {
        #expect(EtcLayer.submounts(of: "/etc", in: "").isEmpty)
        #expect(
            EtcLayer.submounts(
                of: "/etc",
                in: "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n2 1 0:5 / /proc rw - proc proc rw\n3 1 8:1 /e /etc rw - ext4 /dev/sda1 rw\n"
            ).isEmpty)
    }

    @Test("mountinfo's octal escapes: \\040 a space, \\011 a tab, \\134 a backslash, \\012 a newline; a lone backslash kept")
    func unescape() {
        #expect(EtcLayer.unescape("/etc/a\\040b") == "/etc/a b")
        #expect(EtcLayer.unescape("/etc/a\\011b\\012c") == "/etc/a\tb\nc")
        #expect(EtcLayer.unescape("/etc/back\\134slash") == "/etc/back\\slash")
        #expect(EtcLayer.unescape("/plain") == "/plain")
        #expect(EtcLayer.unescape("/etc/trail\\040") == "/etc/trail ")
        #expect(EtcLayer.unescape("/etc/end\\04") == "/etc/end\\04")
        #expect(EtcLayer.unescape("/etc/x\\9zz") == "/etc/x\\9zz")
    }

    @Test("the overlay's options: the layer over the host's /etc, its path's : , \\ escaped")
    func overlayOptions() {
        #expect(EtcLayer(directory: "/run/tether/w1/etc", submounts: [], owned: []).overlayOptions == "lowerdir=/run/tether/w1/etc:/etc")
        #expect(
            EtcLayer(directory: "/run/a:b,c\\d e/etc", submounts: [], owned: []).overlayOptions == "lowerdir=/run/a\\:b\\,c\\\\d e/etc:/etc"
        )
    }

    @Test("make: the layer's top-level directories are owned (files and symlinks are not), sorted; submounts from the mountinfo given")
    func make() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("etc-layer-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fm = FileManager.default
        try fm.createDirectory(atPath: dir + "/gemini-cli", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: dir + "/claude-code", withIntermediateDirectories: true)
        #expect(fm.createFile(atPath: dir + "/loose.conf", contents: Data()))
        try fm.createSymbolicLink(atPath: dir + "/link", withDestinationPath: dir + "/claude-code")
        let layer = try EtcLayer.make(directory: dir, mountinfo: Self.sample)
        #expect(layer.directory == dir)
        #expect(layer.owned == ["claude-code", "gemini-cli"])
        #expect(layer.submounts == EtcLayer.submounts(of: "/etc", in: Self.sample))
        #expect(throws: SpawnError.self) { try EtcLayer.make(directory: dir, mountinfo: nil) }
    }
}
