import Foundation
import Testing
@testable import TetherAuthority
import TetherCore

/// The validate path's fast reader and writer against Foundation's: the same bytes out, the
/// same body (or the same refusal) in. A difference here would be a protocol change.
@Suite("validate fast paths: the same bytes as Foundation's encoder and decoder")
struct FastPathTests {
    static let awkward = [
        "", "plain", "with/slash", "quote\"inside", "back\\slash", "tab\tnew\nline\rcr", "\u{8}\u{c}\u{1}\u{1f}\u{7f}",
        "é ü 中文 🚀", "\u{2028}\u{2029}", "INC-481 agent loops on refunds", String(repeating: "x", count: 300),
    ]

    @Test("DecisionJSON.answer writes what JSONEncoder writes, for every code and every optional field set or not")
    func answerBytes() throws {
        var n = 0
        for code in DecisionCode.allCases {
            for variant in 0..<8 {
                for text in Self.awkward {
                    let full = variant & 1 == 1, reasons = variant & 2 == 2, signed = variant & 4 == 4
                    var d = Decision(
                        deviceId: "agent-\(variant)", allowed: code == .allow, code: code,
                        requestID: text.isEmpty ? "" : "req-\(text.count)",
                        issuedAt: "2026-11-26T10:00:00.000Z", expiresAt: "2026-11-26T10:00:15.000Z",
                        nonce: full ? "n0nce+/=" : nil, kind: full ? .answer : nil, revision: full ? 4711 : nil,
                        orgRevision: full ? 0 : nil, origin: full ? "6F1C-origin" : nil, keyId: full ? "ed25519:abc" : nil,
                        changedBy: reasons ? "alice \(text)" : nil, changedAt: reasons ? "2026-11-26T09:59:00.000Z" : nil,
                        changeReason: reasons ? text : nil)
                    if signed { d.signature = "OVrgAaXZ1lpzadRFR+ZgHNfWMNLoXHgsWK41mJL6yWkO/g==" }
                    let expected = [UInt8](JSONBody.data(DecisionAnswer(decision: d)))
                    let got = DecisionJSON.answer(d)
                    #expect(got == expected, "\(String(decoding: got, as: UTF8.self))\nvs\n\(String(decoding: expected, as: UTF8.self))")
                    n += 1
                }
            }
        }
        #expect(n > 100)
    }

    /// What decoding `body` as a validate request gives: the request, or the refusal's message.
    static func outcome(_ body: String, fast: Bool) -> String {
        let data = Data(body.utf8)
        do {
            let v: ValidateRequest
            if fast {
                v = try JSONBody.decode(ValidateRequest.self, from: data)
            } else {
                var b = try JSONDecoder().decode(JSONBody.Strict<ValidateRequest>.self, from: data).body
                try b.validate()
                v = b
            }
            return "ok \(v.surface) \(v.nonce ?? "-")"
        } catch let e as BodyError {
            return "refused: \(e.message)"
        } catch let e as DecodingError {
            return "refused: \(JSONBody.message(e))"
        } catch {
            return "refused: \(error)"
        }
    }

    @Test("a validate body reads the same through the fast path as through JSONDecoder: accepted alike, refused alike")
    func validateBodies() {
        let bodies = [
            #"{"deviceId":"bench-surface"}"#, #"{"deviceId": "bench-surface"}"#, " \n{ \"deviceId\" :\t\"a\" } \r\n",
            #"{"deviceId":"a","nonce":"abc+/="}"#, #"{"nonce":"abc","deviceId":"a"}"#, #"{}"#, #"{"nonce":"x"}"#,
            #"{"deviceId":"bad name"}"#, #"{"deviceId":""}"#, #"{"deviceId":"a","nonce":"bad nonce!"}"#,
            #"{"deviceId":"a","extra":"x"}"#, #"{"deviceId":"a","deviceId":"b"}"#, #"{"deviceId":"a\u0062"}"#,
            #"{"deviceId":"a\"b"}"#, #"{"deviceId":1}"#, #"{"deviceId":null}"#, #"{"deviceId":"a",}"#, #"{"deviceId":"a"} x"#,
            #"{"deviceId":"a"}}"#, #"[{"deviceId":"a"}]"#, #"{"deviceId":"é"}"#, "{\"deviceId\":\"a\u{1}\"}", #"{"deviceId" "a"}"#,
            #"{"deviceId":"a" "nonce":"b"}"#, #"{"deviceId":"#, "", " ", #"{"deviceId":"\#(String(repeating: "a", count: 200))"}"#,
        ]
        for body in bodies {
            #expect(Self.outcome(body, fast: true) == Self.outcome(body, fast: false), "body: \(body)")
        }
        // The plain shapes do take the fast path.
        #expect(ValidateRequest.fastDecode(Data(#"{"deviceId": "bench-surface"}"#.utf8))?.surface == "bench-surface")
        #expect(ValidateRequest.fastDecode(Data(#"{"deviceId":"a","nonce":"n"}"#.utf8))?.nonce == "n")
        #expect(ValidateRequest.fastDecode(Data(#"{"deviceId":"a\u0062"}"#.utf8)) == nil, "an escape is the full decoder's")
        #expect(ValidateRequest.fastDecode(Data(#"{"deviceId":"a","deviceId":"b"}"#.utf8)) == nil)
    }

    @Test("request IDs: random version-4 UUIDs in Foundation's form, none twice, across threads and pool refills")
    func requestIDs() async {
        let ids = await withTaskGroup(of: [String].self) { group in
            for _ in 0..<4 { group.addTask { (0..<5_000).map { _ in RequestIDs.next() } } }
            return await group.reduce(into: [String]()) { $0 += $1 }
        }
        #expect(Set(ids).count == ids.count, "unique")
        for id in ids.prefix(2_000) {
            let parsed = UUID(uuidString: id)
            #expect(parsed?.uuidString == id, "Foundation reads \(id) and writes it back alike")
            let b = Array(id.utf8)
            #expect(b[14] == UInt8(ascii: "4"), "version 4: \(id)")
            #expect("89AB".utf8.contains(b[19]), "RFC 4122 variant: \(id)")
        }
        // Every hex digit shows up in every random position: the bytes are not a counter.
        for position in [0, 7, 9, 24, 35] {
            #expect(Set(ids.map { Array($0.utf8)[position] }).count == 16, "position \(position)")
        }
    }

}
