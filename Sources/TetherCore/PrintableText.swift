/// Text a worker chose (an executable's name, a path), made safe to show: one line, printable.
///
/// A worker names its own programs, and a name may hold a newline, an escape sequence for the
/// operator's terminal, or a right-to-left override. What Tether reports and logs of it is
/// escaped — `\n`, `\t`, `\u{1B}` — so a log line cannot be forged and the authority (which
/// refuses control characters) never drops a report for it.
public enum PrintableText {
    /// `text` with every control, format (bidi overrides, zero-width) and separator character
    /// but the space escaped, and backslashes doubled; at most `limit` characters of the result.
    public static func escape(_ text: String, limit: Int = 400) -> String {
        var out = ""
        for s in text.unicodeScalars {
            switch s {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where needsEscape(s): out += "\\u{\(String(s.value, radix: 16, uppercase: true))}"
            default: out.unicodeScalars.append(s)
            }
            if out.unicodeScalars.count >= limit { return String(String.UnicodeScalarView(out.unicodeScalars.prefix(limit - 1))) + "…" }
        }
        return out
    }

    /// Whether `text` is already one printable line: nothing in it `escape` would escape but
    /// backslashes (so text escaped once is not escaped again).
    public static func isPrintable(_ text: String) -> Bool { !text.unicodeScalars.contains(where: needsEscape) }

    /// A character that is not shown as itself on one line: controls (newline and tab
    /// included), format characters, separators other than the space, and what has no glyph.
    static func needsEscape(_ s: Unicode.Scalar) -> Bool {
        guard s != " " else { return false }
        switch s.properties.generalCategory {
        case .control, .format, .lineSeparator, .paragraphSeparator, .spaceSeparator, .surrogate, .privateUse, .unassigned: return true
        default: return false
        }
    }
}
