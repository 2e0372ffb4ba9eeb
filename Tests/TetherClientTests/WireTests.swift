import Foundation
import Testing
import TetherCore

/// The wire's types: MachineID's names on the wire (`deviceId`, `request_id`), Swift's in code,
/// and what the server encodes is what the client decodes.
@Suite("Wire types")
struct WireTests {
    static func object(_ v: some Encodable) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: JSONEncoder().encode(v)) as? [String: Any])
    }

    @Test("a report names its surface deviceId and its change request_id; its state is one of the states")
    func report() throws {
        let body = ReportBody(surface: "a1", instance: "h", state: .gateClosed, pids: [7], requestID: "r")
        let o = try Self.object(body)
        #expect(o["deviceId"] as? String == "a1" && o["request_id"] as? String == "r" && o["state"] as? String == "gate_closed")
        #expect(o["surface"] == nil)
        #expect(try JSONDecoder().decode(ReportBody.self, from: JSONEncoder().encode(body)) == body)
        #expect(ReportState.all.count == ReportState.allCases.count && ReportState.stops.isDisjoint(with: ReportState.runs))
    }

    @Test("a change's answer with its acknowledgements, and the org with nulls, round-trip")
    func answers() throws {
        let ack = ReportView(
            surface: "a1", instance: "h", state: "stopped", pids: [1, 2], at: "t", requestID: nil, receivedAt: "t2", detail: nil)
        let changed = SurfaceChanged(
            surface: "a1", state: "revoked", revoked: true, changedAt: "t", reason: nil, watchers: 2, requestID: "r",
            acks: [ack], missing: [MissingAck(instance: "g", surface: "a1")])
        let o = try Self.object(changed)
        #expect(o["deviceId"] as? String == "a1")
        #expect((o["acks"] as? [[String: Any]])?.first?.keys.contains("request_id") == true, "a report's request_id is null, not left out")
        #expect(try JSONDecoder().decode(SurfaceChanged.self, from: JSONEncoder().encode(changed)) == changed)
        let org = try Self.object(OrgView(halted: false, reason: nil, changedBy: nil, changedAt: nil))
        #expect(org.keys.sorted() == ["changedAt", "changedBy", "halted", "reason"], "none on record is an explicit null")
    }
}
