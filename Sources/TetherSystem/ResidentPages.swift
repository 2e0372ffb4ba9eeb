import CSeccomp
import Glibc
import Logging
import Synchronization
import TetherRuntime

/// A supervisor lets go of the pages it ran only to start.
///
/// An idle supervisor's resident set is mostly its executable and its libraries, mapped from
/// the page cache: code and read-only data it touched once — parsing its command line and
/// configuration, the first handshake with the authority, the spawn path — and keeps mapped for
/// the rest of its life. Each fault maps a neighbourhood of pages around the one touched (the
/// kernel's fault-around, and large folios of the page cache), so touching scattered code of a
/// large binary maps many times what runs: 39 MiB resident for `tether run`, 14 of them needed. Once the supervisor has settled, `pages.c` unmaps every
/// read-only, purely file-backed mapping: nothing is lost (each page reads back from the file
/// as it was) and what the supervisor still runs — renewals, the heartbeat, the stop path —
/// comes back as minor faults from the page cache, a microsecond or so each. The pages stay
/// in the page cache, shared with every other process that maps them.
///
/// When: `settleAfter` after the last worker started, so the work around a start (reports,
/// the watch stream, the first renewal) has run; every start re-arms it, so a supervisor that
/// restarts a worker lets go of the restart's pages too. One timer, firing once per quiet
/// spell: no wakeup while nothing starts.
///
/// A supervisor process (`tether run`, `supervise`, `mcp`, `profile try`) opts in; a library
/// user — a test runner spawning workers in process — keeps its pages.
///
/// `TETHER_RELEASE_PAGES`: `on` (the default) or `off`.
public enum ResidentPages {
    public static let settleAfter: Duration = .seconds(5)

    private static let chosen = Atomic<Bool>(false)
    private static let pending = Mutex<Task<Void, Never>?>(nil)

    public static func choose() {
        let setting = getenv("TETHER_RELEASE_PAGES").map { String(cString: $0) } ?? "on"
        chosen.store(setting != "off", ordering: .relaxed)
    }

    public struct Released: Sendable, Equatable {
        /// Resident KiB the mappings held when they were let go.
        public var kib: Int
        public var mappings: Int
    }

    /// Unmaps now. Nil when /proc/self/smaps cannot be read (nothing was unmapped then).
    public static func release() -> Released? {
        var mappings = 0
        let kib = tether_release_file_pages(&mappings)
        return kib < 0 ? nil : Released(kib: kib, mappings: mappings)
    }

    /// A worker started: release once the supervisor has been quiet for `settleAfter`.
    static func workerStarted(logger: Logger) {
        guard chosen.load(ordering: .relaxed) else { return }
        let task = Task {
            do { try await Sleep.for(settleAfter) } catch { return }
            if let r = release() {
                logger.debug("released start-up pages", metadata: ["kib": "\(r.kib)", "mappings": "\(r.mappings)"])
            }
        }
        pending.withLock { p in
            p?.cancel()
            p = task
        }
    }
}
