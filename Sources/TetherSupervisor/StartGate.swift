import Logging
import Synchronization
import TetherClient
import TetherCore

/// The question asked while a new worker is held before exec: a fresh, fail-closed validate.
/// Keeps the decision it got, which the watcher then starts from.
final class StartGate: Sendable {
    let surface: String
    let client: AuthorityClient
    let verifier: DecisionVerifier?
    let logger: Logger
    private let decision = Mutex<Decision?>(nil)

    init(surface: String, client: AuthorityClient, verifier: DecisionVerifier?, logger: Logger) {
        var c = client
        c.timeout = .seconds(3)  // a child is waiting, frozen
        self.surface = surface
        self.client = c
        self.verifier = verifier
        self.logger = logger
    }

    /// The decision the worker was let go on.
    var allowedOn: Decision? { decision.withLock { $0 } }

    func ask() async -> Bool {
        switch await DecisionCheck.check(surface, client: client, verifier: verifier) {
        case .allowed(let d):
            decision.withLock { $0 = d }
            return true
        case .denied(_, let code, let detail):
            logger.warning("denied while starting: the worker never ran", metadata: ["code": "\(code.rawValue)", "detail": "\(detail)"])
            return false
        case .unreachable(let m):
            logger.warning("authority unreachable while starting: the worker never ran", metadata: ["error": "\(m)"])
            return false
        }
    }
}
