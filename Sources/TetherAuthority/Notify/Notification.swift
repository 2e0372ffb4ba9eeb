import Crypto
import Foundation
import TetherCore

/// What a webhook is told: a change made through this replica, or a change whose
/// acknowledgements are still missing `ack_timeout` after it.
public struct Notification: Sendable {
    public var event: NotifyEvent
    public var tracked: TrackedChange
    /// The deployment (`Decision.origin`), so that one receiver can tell authorities apart.
    public var origin: String
    /// Stays the same across retries: receivers drop duplicates by it.
    public var deliveryID = UUID().uuidString.lowercased()

    var surfaceText: String { tracked.subject == OrgSubject.name ? "the org" : tracked.subject }

    /// The generic payload.
    func json() -> Data {
        struct Ack: Encodable {
            var instance, deviceId, state, at: String
            var pids: [Int32]
        }
        struct Missing: Encodable { var instance, deviceId: String }
        struct Payload: Encodable {
            var event, id, origin, subject, actor, at, requestId: String
            var reason: String?
            var acks: [Ack]
            var missing: [Missing]
        }
        let t = tracked
        let p = Payload(
            event: event.rawValue, id: deliveryID, origin: origin, subject: t.subject, actor: t.change.actor, at: t.change.at,
            requestId: t.change.requestID, reason: t.change.reason,
            acks: t.acked.map { Ack(instance: $0.instance, deviceId: $0.deviceId, state: $0.state, at: $0.at, pids: $0.pids) },
            missing: t.missing.map { Missing(instance: $0.instance, deviceId: $0.deviceId) })
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(p)) ?? Data("{}".utf8)
    }

    /// One line for a human: the Slack-compatible payload's text.
    var sentence: String {
        let t = tracked
        let why = t.change.reason.map { ": \($0)" } ?? ""
        switch event {
        case .revoke:
            return
                ":octagonal_sign: *\(t.subject)* revoked by \(t.change.actor)\(why) — \(t.expected.count) supervisor\(t.expected.count == 1 ? "" : "s") watching"
        case .restore: return ":white_check_mark: *\(t.subject)* restored by \(t.change.actor)\(why)"
        case .halt: return ":rotating_light: *ORG HALTED* by \(t.change.actor)\(why) — every surface stops"
        case .resume: return ":white_check_mark: org resumed by \(t.change.actor)\(why)"
        case .acksMissing:
            let missing = t.missing.map { "\($0.instance) (\($0.deviceId))" }
            return
                ":warning: \(t.action.rawValue) of *\(surfaceText)* at \(t.change.at): no acknowledgement from \(missing.count) of \(t.expected.count): \(missing.prefix(10).joined(separator: ", "))\(missing.count > 10 ? ", …" : "")"
        }
    }

    func slack() -> Data {
        (try? JSONSerialization.data(withJSONObject: ["text": sentence], options: [.sortedKeys, .withoutEscapingSlashes]))
            ?? Data("{}".utf8)
    }

    /// `X-Tether-Webhook-Signature`: `v1=` and the hex HMAC-SHA256, keyed with the webhook's
    /// secret, of `TIMESTAMP.BODY` (the timestamp is `X-Tether-Webhook-Timestamp`), so that
    /// an old delivery replayed later does not verify as a new one.
    static func signature(secret: String, timestamp: String, body: Data) -> String {
        var text = Data(timestamp.utf8)
        text.append(UInt8(ascii: "."))
        text.append(body)
        let mac = HMAC<SHA256>.authenticationCode(for: text, using: SymmetricKey(data: Data(secret.utf8)))
        return "v1=" + mac.map { String(format: "%02x", $0) }.joined()
    }
}
