import Foundation
import Testing
@testable import TetherCore

@Suite("Shared values")
struct ValuesTests {
    @Test func timestampsAreRFC3339UTCWithMilliseconds() {
        let d = Date(timeIntervalSince1970: 1_795_600_000.123)
        #expect(Timestamp.string(d) == "2026-11-25T09:46:40.123Z")
        #expect(Timestamp.parse("2026-11-25T09:46:40.123Z").map { abs($0.timeIntervalSince(d)) < 0.001 } == true)
        #expect(Timestamp.string(Date(timeIntervalSince1970: 0)) == "1970-01-01T00:00:00.000Z")
    }

    @Test func jsonWriterMatchesJSONSerialization() throws {
        let obj: [String: Any] = [
            "b": true, "f": false, "i": 42, "neg": -7, "s": "quote \" slash / back \\ nl \n tab \t ctl \u{01} é",
            "arr": [1, "two", NSNull(), ["x": 1]], "obj": ["z": 1, "a": [Int32(5)]], "u": UInt64.max, "null": NSNull(),
        ]
        let ours = Data(JSONWriter.data(obj))
        let text = String(decoding: ours, as: UTF8.self)
        #expect(text.hasPrefix("{\"arr\":"), "keys sorted")
        #expect(text.contains("\"b\":true"))
        #expect(text.contains("/ back"), "slashes not escaped")
        let back = try #require(try JSONSerialization.jsonObject(with: ours) as? [String: Any])
        #expect(back["s"] as? String == obj["s"] as? String)
        #expect(back["i"] as? Int == 42)
        #expect((back["u"] as? NSNumber)?.uint64Value == UInt64.max)
        #expect(back["b"] as? Bool == true)
    }

    @Test func durationsParse() {
        #expect(DurationText.parse("500ms") == .milliseconds(500))
        #expect(DurationText.parse("5s") == .seconds(5))
        #expect(DurationText.parse("1.5s") == .milliseconds(1500))
        #expect(DurationText.parse("2m") == .seconds(120))
        #expect(DurationText.parse("1h") == .seconds(3600))
        #expect(DurationText.parse("5") == nil)
        #expect(DurationText.parse("-1s") == nil)
        // Refused, never a trap (`?wait=1e300s` crashed the authority): exponents, infinities,
        // hex, signs, more than ~31 years.
        for bad in ["1e300s", "1e3s", "infs", "nans", "0x10s", "+5s", "1.2.3s", ".s", "s", "99999999999999h", "1000000001s"] {
            #expect(DurationText.parse(bad) == nil, "\(bad)")
        }
        #expect(DurationText.parse("1000000000s") == .seconds(1_000_000_000))
        #expect(DurationText.format(.milliseconds(1500)) == "1500ms")
        #expect(DurationText.format(.seconds(5)) == "5s")
    }

    @Test func surfaceNamesAndNonces() {
        #expect(SurfaceName.isValid("agent-01.prod:eu_1"))
        #expect(!SurfaceName.isValid(""))
        #expect(!SurfaceName.isValid("a b"))
        #expect(!SurfaceName.isValid("a\nb"))
        #expect(!SurfaceName.isValid(String(repeating: "a", count: 129)))
        #expect(!SurfaceName.isValid("agent/01"))
        #expect(Decision.isValidNonce("abc+/=="))
        #expect(!Decision.isValidNonce("a\nb"))
    }

    @Test("timestamps: RFC 3339 read by hand, agreeing with Foundation on good input, refusing what made ICU crash")
    func timestamps() throws {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        // Every millisecond of a second reads back as written.
        for s in ["2026-11-25T10:00:00.000Z", "2026-11-25T23:59:59.999Z", "2024-02-29T12:34:56.789Z", "1970-01-01T00:00:00.001Z"]
            + (0..<1000).map({ String(format: "2026-11-25T10:00:07.%03dZ", $0) })
        {
            let d = try #require(Timestamp.parse(s), "\(s)")
            #expect(abs(d.timeIntervalSince(f.date(from: s)!)) < 0.0005, "\(s)")
            #expect(Timestamp.string(d) == s)
        }
        // RFC 3339, read by hand: no 31 February, no hour 24, fractions of 1 to 9 digits.
        #expect(Timestamp.parse("2026-02-31T10:00:00.000Z") == nil, "no 31 February")
        #expect(Timestamp.parse("2026-11-25T24:00:00.000Z") == nil)
        #expect(Timestamp.parse("2026-11-25T10:00:00.Z") == nil)
        #expect(Timestamp.parse("2026-11-25T10:00:00.0000000001Z") == nil, "ten fraction digits")
        #expect(Timestamp.parse("2026-11-25T10:00:00.5Z") == Timestamp.parse("2026-11-25T10:00:00.500Z"))
        #expect(Timestamp.parse("2026-11-25T10:00:00.123456789Z") == Timestamp.parse("2026-11-25T10:00:00.123Z"), "past milliseconds: cut")
        #expect(Timestamp.parse("2026-11-25t10:00:00z") == Timestamp.parse("2026-11-25T10:00:00.000Z"), "lower-case t and z")
        #expect(Timestamp.parse("2026-11-25T10:00:00.000+1:00") == nil)
        #expect(Timestamp.parse("2026-11-25T10:00:00") == nil, "no offset")
        #expect(Timestamp.parse("2026-11-25 10:00:00Z") == nil)
        // Foundation's formatter (ICU) died of SIGFPE on this: a report's `at` from any agent key.
        #expect(Timestamp.parse("20621-9-26T03:00:00.000" + String(repeating: "3", count: 60) + "Z") == nil)
        // Found by schemathesis (`GET audit?until=0315-08-22T…`): a time before 1970 trapped
        // when written back; every time parse reads, string writes.
        for s in ["0315-08-22T15:47:20.776Z", "1969-12-31T23:59:59.999Z", "0000-01-01T00:00:00.000Z", "9999-12-31T23:59:59.999Z"] {
            #expect(Timestamp.string(try #require(Timestamp.parse(s))) == s)
        }
        #expect(Timestamp.parse("") == nil)
        #expect(Timestamp.parse("yesterday") == nil)
        #expect(Timestamp.parse("2026-11-25T10:00:00Z") == Timestamp.parse("2026-11-25T10:00:00.000Z"), "no fraction")
        #expect(Timestamp.parse("2026-11-25T09:30:00-00:30") == Timestamp.parse("2026-11-25T10:00:00.000Z"), "a negative offset")
        #expect(Timestamp.parse("2026-11-25T11:00:00.000+01:00") == Timestamp.parse("2026-11-25T10:00:00.000Z"), "an offset")
    }

    @Test func canonicalFormIsExact() {
        let d = Decision(
            deviceId: "a1", allowed: true, code: .allow, requestID: "R", issuedAt: "I", expiresAt: "E", nonce: nil,
            kind: .lease, revision: 7, orgRevision: 2, origin: "O", keyId: "K")
        #expect(
            String(decoding: d.canonicalBytes, as: UTF8.self)
                == "tether-decision-v3\norigin=O\nkeyId=K\nkind=lease\nrevision=7\norgRevision=2\ndeviceId=a1\nallowed=true\ncode=ALLOW\nrequest_id=R\nissuedAt=I\nexpiresAt=E\nnonce=\nchangedBy=\nchangedAt=\nchangeReason="
        )
        let r = Decision(
            deviceId: "a1", allowed: false, code: .deviceRevoked, requestID: "R", issuedAt: "I", expiresAt: "E",
            changedBy: "alice", changedAt: "T", changeReason: "INC-481: refunds")
        #expect(
            String(decoding: r.canonicalBytes, as: UTF8.self).hasSuffix(
                "\nnonce=\nchangedBy=alice\nchangedAt=T\nchangeReason=INC-481: refunds"))
        #expect(r.isCanonical)
    }

    @Test("a field that could split a canonical line makes the decision unverifiable; operator text is made signable")
    func lineBreaks() {
        for bad in ["a\nb", "a\rb", "a\u{2028}b", "a\u{0}b", "a\u{85}b"] {
            var d = Decision(deviceId: "a1", allowed: false, code: .deviceRevoked, requestID: "R", issuedAt: "I", expiresAt: "E")
            d.changeReason = bad
            #expect(!d.isCanonical, "\(bad.debugDescription)")
            let clean = Decision.signableText(bad)
            d.changeReason = clean
            #expect(d.isCanonical && clean == "a b", "\(clean.debugDescription)")
        }
        #expect(Decision.signableText(String(repeating: "x", count: 500)).count == 200)
        #expect(Decision.attribution(by: "alice", reason: "INC-481") == "by alice: INC-481")
        #expect(Decision.attribution(by: "alice", reason: nil) == "by alice")
        #expect(Decision.attribution(by: nil, reason: "x") == "")
    }

    @Test("a decision's JSON is read with JSON's own types: 1 is not true, 1.5 and -1 are not revisions")
    func decisionsAreReadStrictly() throws {
        func read(_ text: String) throws -> Decision? {
            Decision(json: try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]))
        }
        let base = #""deviceId":"a","code":"ALLOW","request_id":"r","issuedAt":"t","expiresAt":"u""#
        #expect(try read("{\(base),\"allowed\":true,\"revision\":3}")?.revision == 3)
        #expect(try read("{\(base),\"allowed\":1}") == nil, "1 is not a boolean (it was read as true)")
        #expect(try read("{\(base),\"allowed\":true,\"revision\":1.5}") == nil)
        #expect(try read("{\(base),\"allowed\":true,\"orgRevision\":-1}") == nil)
        #expect(try read("{\(base),\"allowed\":true,\"kind\":\"renewal\"}") == nil, "an unknown kind")
        #expect(try read("{\(base),\"allowed\":true,\"kind\":\"lease\"}")?.kind == .lease)
        #expect(try read("{\(base),\"allowed\":true,\"nonce\":7}") == nil, "a nonce that is not a string")
        #expect(try read("{\(base),\"allowed\":true,\"nonce\":null}")?.nonce == nil)
    }
}
