import Foundation

/// An execution surface's name: what the authority knows a worker as (MachineID's `deviceId`).
public enum SurfaceName {
    /// `[A-Za-z0-9._:-]{1,128}`: safe in URLs, logs, file names and the canonical signed form.
    public static func isValid(_ s: String) -> Bool {
        isToken(s, extra: "._:-")
    }

    /// 1–128 bytes, each an ASCII letter or digit or one of `extra`: the shape of every name
    /// and nonce that goes into the canonical signed form (none can hold a newline).
    static func isToken(_ s: String, extra: String) -> Bool {
        guard (1...128).contains(s.utf8.count) else { return false }
        let allowed = Set(extra.utf8)
        return s.utf8.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || allowed.contains(b)
        }
    }

    public static let rule = "1 to 128 characters of A-Z a-z 0-9 . _ : -"
}

/// Why a surface may or may not run. The first four come from the authority, the rest are the
/// client's own verdicts; anything but `ALLOW` with a live lease is a deny.
public enum DecisionCode: String, Sendable, Codable, CaseIterable {
    case allow = "ALLOW"
    case deviceRevoked = "DEVICE_REVOKED"
    case deviceNotFound = "DEVICE_NOT_FOUND"
    case orgHalted = "ORG_HALTED"
    case leaseExpired = "LEASE_EXPIRED"
    case authorityUnreachable = "AUTHORITY_UNREACHABLE"
    case badSignature = "BAD_SIGNATURE"
    case badResponse = "BAD_RESPONSE"
}

/// What kind of signed statement a decision is (see `Decision.kind`).
public enum DecisionKind: String, Sendable, Codable, CaseIterable {
    case change
    case lease
    case answer
}

/// The name of the org-wide subject: a `change` for `*` is a halt (`ORG_HALTED`) or a resume
/// (`ALLOW`) of every surface.
public enum OrgSubject {
    public static let name = "*"
}

/// One answer of the authority for one surface, as it travels in JSON.
public struct Decision: Sendable, Equatable, Codable {
    public var deviceId: String
    public var allowed: Bool
    public var code: DecisionCode
    public var requestID: String
    /// RFC 3339 UTC with milliseconds, exactly as signed.
    public var issuedAt: String
    public var expiresAt: String
    /// The client's nonce (validate), echoed and signed. Watch events carry none: they are
    /// signed once, for every stream.
    public var nonce: String?
    /// What the signed statement is: `change` (one operator change, signed once when it was
    /// committed and sent as the same bytes to every stream of every replica), `lease` (a
    /// replica's renewal of a surface's current state) or `answer` (a validate answer).
    public var kind: DecisionKind?
    /// The authority's global revision of the change behind this decision: for a `change`,
    /// the change's own; for a `lease` or `answer`, the surface's last change. Never lower
    /// than one a supervisor holds (replay protection).
    public var revision: UInt64?
    /// For a `lease` or `answer`: the revision of the org's last halt or resume (0: never).
    public var orgRevision: UInt64?
    /// The authority deployment (one database, any number of replicas) that signed it, and
    /// the id of the signing key (`DecisionKeyID`).
    public var origin: String?
    public var keyId: String?
    /// Who made the operator change behind this decision (a key name, `local:USER`), when
    /// (RFC 3339) and why: what an on-call engineer reads next to "frozen". Signed; absent when
    /// no change is on record (a surface never revoked, or removed). The JSON key is
    /// `changeReason` because MachineID's legacy `reason` already holds the code.
    public var changedBy: String?
    public var changedAt: String?
    public var changeReason: String?
    /// Base64 Ed25519 signature over `canonicalBytes` (watch events carry it in the body;
    /// validate answers in the `x-tether-signature` header as well).
    public var signature: String?

    enum CodingKeys: String, CodingKey {
        case origin, keyId, kind, revision, orgRevision
        case deviceId, allowed, code, issuedAt, expiresAt, nonce, changedBy, changedAt, changeReason, signature
        case requestID = "request_id"
    }

    public init(
        deviceId: String, allowed: Bool, code: DecisionCode, requestID: String,
        issuedAt: String, expiresAt: String, nonce: String? = nil,
        kind: DecisionKind? = nil, revision: UInt64? = nil, orgRevision: UInt64? = nil,
        origin: String? = nil, keyId: String? = nil,
        changedBy: String? = nil, changedAt: String? = nil, changeReason: String? = nil,
        signature: String? = nil
    ) {
        self.deviceId = deviceId
        self.allowed = allowed
        self.code = code
        self.requestID = requestID
        self.issuedAt = issuedAt
        self.expiresAt = expiresAt
        self.nonce = nonce
        self.kind = kind
        self.revision = revision
        self.orgRevision = orgRevision
        self.origin = origin
        self.keyId = keyId
        self.changedBy = changedBy
        self.changedAt = changedAt
        self.changeReason = changeReason
        self.signature = signature
    }

    /// The bytes the authority signs: a fixed header line, then one `name=value` line per field
    /// in this order, joined by `\n`, no trailing newline, UTF-8. Absent optional fields are
    /// empty. No value may contain a line break (surface names, nonces: `[A-Za-z0-9._:-+/=]`;
    /// codes from a fixed set; timestamps RFC 3339; `changeReason` passed through `signableText`),
    /// and a verifier refuses a decision where one does (`isCanonical`), so that no two
    /// decisions share the bytes.
    ///
    ///     tether-decision-v3
    ///     origin=6F1C…
    ///     keyId=Qm9pZ3Vz
    ///     kind=change
    ///     revision=4711
    ///     orgRevision=
    ///     deviceId=agent-01
    ///     allowed=false
    ///     code=DEVICE_REVOKED
    ///     request_id=5B0E…
    ///     issuedAt=2026-11-25T10:00:00.000Z
    ///     expiresAt=2026-11-25T10:00:15.000Z
    ///     nonce=
    ///     changedBy=alice
    ///     changedAt=2026-11-25T10:00:00.000Z
    ///     changeReason=INC-481 agent loops on refunds
    public var canonicalBytes: Data {
        // Written straight into one buffer (every validate answer is signed over these).
        var out = [UInt8]()
        out.reserveCapacity(320 + (changeReason?.utf8.count ?? 0))
        func line(_ name: StaticString, _ value: String?) {
            out.append(0x0A)
            name.withUTF8Buffer { out.append(contentsOf: $0) }
            out.append(0x3D)
            if let value { out.append(contentsOf: value.utf8) }
        }
        out.append(contentsOf: "tether-decision-v3".utf8)
        line("origin", origin)
        line("keyId", keyId)
        line("kind", kind?.rawValue)
        line("revision", revision.map(String.init))
        line("orgRevision", orgRevision.map(String.init))
        line("deviceId", deviceId)
        line("allowed", allowed ? "true" : "false")
        line("code", code.rawValue)
        line("request_id", requestID)
        line("issuedAt", issuedAt)
        line("expiresAt", expiresAt)
        line("nonce", nonce)
        line("changedBy", changedBy)
        line("changedAt", changedAt)
        line("changeReason", changeReason)
        return Data(out)
    }

    /// "by alice: INC-481", "by alice", or "" when no operator is named.
    public static func attribution(by: String?, reason: String?) -> String {
        guard let by else { return "" }
        return "by \(by)" + (reason.map { ": \($0)" } ?? "")
    }

    public var attribution: String { Self.attribution(by: changedBy, reason: changeReason) }

    /// True when no field holds a character that could split a line of the canonical form.
    public var isCanonical: Bool {
        [
            origin ?? "", keyId ?? "", deviceId, requestID, issuedAt, expiresAt, nonce ?? "", changedBy ?? "", changedAt ?? "",
            changeReason ?? "",
        ]
        .allSatisfy { !Self.hasLineBreak($0) }
    }

    static func hasLineBreak(_ s: String) -> Bool {
        s.unicodeScalars.contains { $0.properties.generalCategory == .control || $0 == "\u{2028}" || $0 == "\u{2029}" }
    }

    /// An operator's free text made fit to sign and to show on one line: control characters
    /// and line separators become spaces, and it is cut at 200 characters.
    public static func signableText(_ s: String) -> String {
        let scalars = s.unicodeScalars.map { hasLineBreak(String($0)) ? " " : $0 }
        var out = String(String.UnicodeScalarView(scalars))
        if out.count > 200 { out = String(out.prefix(199)) + "…" }
        return out
    }

    /// A nonce a client may send: 1–128 characters of `[A-Za-z0-9._:+/=-]`.
    public static func isValidNonce(_ s: String) -> Bool {
        SurfaceName.isToken(s, extra: "._:-+/=")
    }
}

/// RFC 3339 timestamps with milliseconds, always UTC: `2026-11-25T10:00:00.000Z`.
public enum Timestamp {
    public static func string(_ date: Date) -> String {
        // To the nearest millisecond: a parsed time far from 2001 (Date's epoch) is a hair
        // off in floating point, either way.
        let ms = Int64((date.timeIntervalSince1970 * 1000).rounded())
        // Floored, so a time before 1970 has a non-negative millisecond part (it trapped).
        let secs = ms >= 0 ? ms / 1000 : (ms - 999) / 1000
        let millis = Int(ms - secs * 1000)
        var t = time_t(secs)
        var tm = tm()
        gmtime_r(&t, &tm)
        // Digits by hand into one buffer: String(format:) costs ~8 µs, and every decision
        // needs two of these (validate's hot path: no allocation but the string's own).
        return String(unsafeUninitializedCapacity: 24) { out in
            var i = 0
            func put(_ v: Int, _ width: Int, then sep: UInt8) {
                var x = max(v, 0)  // years before 1 AD do not reach here: parse reads 0000 to 9999
                for j in stride(from: i + width - 1, through: i, by: -1) {
                    out[j] = UInt8(0x30 + x % 10)
                    x /= 10
                }
                out[i + width] = sep
                i += width + 1
            }
            put(Int(tm.tm_year) + 1900, 4, then: 0x2D)
            put(Int(tm.tm_mon) + 1, 2, then: 0x2D)
            put(Int(tm.tm_mday), 2, then: 0x54)
            put(Int(tm.tm_hour), 2, then: 0x3A)
            put(Int(tm.tm_min), 2, then: 0x3A)
            put(Int(tm.tm_sec), 2, then: 0x2E)
            put(millis, 3, then: 0x5A)
            return i
        }
    }

    /// Reads an RFC 3339 time: `2026-11-25T10:00:00.000Z`, `2026-11-25T11:00:00+01:00`,
    /// `2026-11-25t10:00:00.5z`; nil for anything else. By hand, for two reasons: a supervisor
    /// reads two per decision per lease check (an ISO8601DateFormatter costs ~100 µs to make),
    /// and Foundation's formatter hands the text to ICU, which dies of a division by zero
    /// (SIGFPE) on some malformed times with long fractions — found by fuzzing the report
    /// body, whose `at` any agent key sends.
    public static func parse(_ s: String) -> Date? {
        let b = Array(s.utf8)
        // date-time = full-date "T" partial-time time-offset; at most 9 fraction digits.
        guard b.count >= 20, b.count <= 35, b[4] == 0x2D, b[7] == 0x2D, b[10] == 0x54 || b[10] == 0x74,
            b[13] == 0x3A, b[16] == 0x3A
        else { return nil }
        func num(_ from: Int, _ count: Int) -> Int? {
            guard from + count <= b.count else { return nil }
            var v = 0
            for i in from..<(from + count) {
                guard b[i] >= 0x30, b[i] <= 0x39 else { return nil }
                v = v * 10 + Int(b[i] - 0x30)
            }
            return v
        }
        guard let year = num(0, 4), let month = num(5, 2), let day = num(8, 2), let hour = num(11, 2),
            let minute = num(14, 2), let second = num(17, 2),
            (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61
        else { return nil }
        var i = 19
        // Milliseconds, as the authority's own form carries them: the first three digits, in
        // integers (a sum of digit × 0.1ⁿ in floating point can land a millisecond low).
        var ms = 0
        if i < b.count, b[i] == 0x2E {
            i += 1
            var digits = 0
            while i < b.count, b[i] >= 0x30, b[i] <= 0x39 {
                if digits < 3 { ms = ms * 10 + Int(b[i] - 0x30) }
                digits += 1
                i += 1
            }
            guard (1...9).contains(digits) else { return nil }
            for _ in min(digits, 3)..<3 { ms *= 10 }
        }
        var offset = 0
        guard i < b.count else { return nil }
        if b[i] == 0x5A || b[i] == 0x7A {
            i += 1
        } else if b[i] == 0x2B || b[i] == 0x2D {
            guard i + 6 == b.count, b[i + 3] == 0x3A, let oh = num(i + 1, 2), let om = num(i + 4, 2), oh < 24, om < 60 else { return nil }
            offset = (oh * 60 + om) * 60 * (b[i] == 0x2B ? 1 : -1)
            i += 6
        } else {
            return nil
        }
        guard i == b.count else { return nil }
        var tm = tm()
        tm.tm_year = Int32(year - 1900)
        tm.tm_mon = Int32(month - 1)
        tm.tm_mday = Int32(day)
        tm.tm_hour = Int32(hour)
        tm.tm_min = Int32(minute)
        tm.tm_sec = Int32(second)
        let t = timegm(&tm)
        guard t != -1 || year == 1969 else { return nil }
        // timegm normalises 31 February into March: refuse a date that did not survive.
        guard tm.tm_mday == Int32(day), tm.tm_mon == Int32(month - 1) else { return nil }
        return Date(timeIntervalSince1970: Double(t - offset) + Double(ms) / 1000)
    }
}

/// Durations as people write them in flags and configs: `500ms`, `5s`, `2m`, `1h`, `1.5s`.
extension Duration {
    /// In seconds, as Foundation's dates count them.
    public var timeInterval: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

public enum DurationText {
    /// The longest duration any text may say: about 31 years. Anything longer — `1e300s` — is
    /// refused here, before it can overflow (it used to trap converting to Int64).
    public static let longest: Duration = .seconds(1_000_000_000)

    /// `500ms`, `15s`, `10m`, `1h`, `1.5s`: plain decimal digits and at most one point between
    /// digits (no exponent, sign, hex or infinity), then a unit; nil for anything else or longer than
    /// `longest`.
    public static func parse(_ s: String) -> Duration? {
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
        for (suffix, scale) in units where s.hasSuffix(suffix) {
            let number = s.dropLast(suffix.count)
            // "ms" must not be read as "m" with "s" left over, nor "5m" as "5" + "m" of "ms".
            // Digits, optionally a point and more digits: not "5." or ".5" either.
            let parts = number.split(separator: ".", omittingEmptySubsequences: false)
            guard number.count <= 32, (1...2).contains(parts.count),
                parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy { $0.isASCII && $0.isNumber } }),
                let v = Double(number), v.isFinite, v >= 0
            else { continue }
            let ms = v * scale * 1000
            guard ms <= Double(longest.components.seconds) * 1000 else { return nil }
            return .milliseconds(Int64(ms.rounded()))
        }
        return nil
    }

    public static func format(_ d: Duration) -> String {
        let ms = d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
        if ms % 1000 != 0 { return "\(ms)ms" }
        return "\(ms / 1000)s"
    }
}

extension Decision {
    /// Reads a decision from an authority's answer or watch event, strictly — types are JSON's
    /// own: `"allowed": 1` is not a boolean, `"revision": 1.5` or `-1` is not a revision (`1.0`
    /// reads as 1, the same value the signature covers), an unknown code or kind is not a
    /// decision. `issuedAt` and `expiresAt` may be absent
    /// (MachineID sends no lease fields); unknown fields are ignored (MachineID's legacy
    /// `status` and `reason`).
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let codeText = try c.decode(String.self, forKey: .code)
        guard let code = DecisionCode(rawValue: codeText) else {
            throw DecodingError.dataCorruptedError(forKey: .code, in: c, debugDescription: "unknown decision code \(codeText.prefix(40))")
        }
        var kind: DecisionKind?
        if let k = try c.decodeIfPresent(String.self, forKey: .kind) {
            guard let known = DecisionKind(rawValue: k) else {
                throw DecodingError.dataCorruptedError(forKey: .kind, in: c, debugDescription: "unknown decision kind \(k.prefix(40))")
            }
            kind = known
        }
        self.init(
            deviceId: try c.decode(String.self, forKey: .deviceId), allowed: try c.decode(Bool.self, forKey: .allowed), code: code,
            requestID: try c.decode(String.self, forKey: .requestID),
            issuedAt: try c.decodeIfPresent(String.self, forKey: .issuedAt) ?? "",
            expiresAt: try c.decodeIfPresent(String.self, forKey: .expiresAt) ?? "",
            nonce: try c.decodeIfPresent(String.self, forKey: .nonce), kind: kind,
            revision: try c.decodeIfPresent(UInt64.self, forKey: .revision),
            orgRevision: try c.decodeIfPresent(UInt64.self, forKey: .orgRevision),
            origin: try c.decodeIfPresent(String.self, forKey: .origin), keyId: try c.decodeIfPresent(String.self, forKey: .keyId),
            changedBy: try c.decodeIfPresent(String.self, forKey: .changedBy),
            changedAt: try c.decodeIfPresent(String.self, forKey: .changedAt),
            changeReason: try c.decodeIfPresent(String.self, forKey: .changeReason),
            signature: try c.decodeIfPresent(String.self, forKey: .signature))
    }

    /// A decision from the bytes of an answer or an event; nil for anything that is not one.
    public init?(jsonData: Data) {
        guard let d = try? JSONDecoder().decode(Decision.self, from: jsonData) else { return nil }
        self = d
    }

    /// The same from a parsed object (tests, and callers that parsed already).
    public init?(json o: [String: Any]) {
        guard let data = try? JSONSerialization.data(withJSONObject: o) else { return nil }
        self.init(jsonData: data)
    }
}
