import Foundation
import Testing
import TetherCore

/// `tether authority serve --config`: read strictly, errors at file:line.
struct ServeSettingsTests {
    static func parse(_ text: String) throws(ConfigError) -> ServeSettings {
        try ServeSettings.parse(
            text, path: "a.toml",
            readSecret: { path in
                struct Refused: Error, CustomStringConvertible { var description: String }
                guard path == "/ok" else { throw Refused(description: "\(path): is readable by every user (mode 644); chmod 600 it") }
                return "0123456789abcdef0123\n"
            })
    }

    static func error(_ text: String) -> ConfigError? {
        do {
            _ = try parse(text)
            return nil
        } catch { return error }
    }

    @Test func aFullFile() throws {
        let s = try Self.parse(
            """
            [console]
            idle_timeout = "10m"
            session_lifetime = "8h"
            link_lifetime = "2m"
            public_url = "https://tether.example.com/"
            secure_cookies = true

            [notify]
            ack_timeout = "20s"

            [[notify.webhook]]
            name = "oncall"
            url = "https://hooks.example.com/tether"
            secret_file = "/ok"
            events = ["revoke", "halt", "acks_missing"]
            retries = 3
            timeout = "2s"

            [[notify.webhook]]
            url = "https://hooks.slack.com/services/T/B/X"
            format = "slack"
            """)
        #expect(
            s.console.enabled && s.console.idleTimeout == .seconds(600) && s.console.sessionLifetime == .seconds(8 * 3600)
                && s.console.linkLifetime == .seconds(120))
        #expect(s.console.publicURL == "https://tether.example.com" && s.console.secureCookies == true)
        #expect(try Self.parse("[console]\n").console.secureCookies == nil)
        #expect(s.notify.ackTimeout == .seconds(20))
        #expect(s.notify.webhooks.count == 2)
        let h = s.notify.webhooks[0]
        #expect(
            h.name == "oncall" && h.secret == "0123456789abcdef0123" && h.events == [.revoke, .halt, .acksMissing] && h.retries == 3
                && h.timeout == .seconds(2))
        #expect(
            s.notify.webhooks[1].format == .slack && s.notify.webhooks[1].name == "webhook-2"
                && s.notify.webhooks[1].events == Set(NotifyEvent.allCases))
        #expect(try Self.parse("").notify.webhooks.isEmpty)
    }

    @Test(arguments: [
        ("[consol]\n", 1, "unknown setting consol; the tables are [console] and [notify]"),
        ("[console]\nidle = \"5m\"\n", 2, "unknown setting console.idle"),
        ("[console]\nidle_timeout = \"2h\"\nsession_lifetime = \"1h\"\n", 2, "is longer than session_lifetime"),
        ("[console]\nlink_lifetime = \"2h\"\n", 2, "must be at most 3600s"),
        ("[notify]\nack_timeout = 30\n", 2, "expected a duration string"),
        ("[console]\npublic_url = \"https://x.example/tether\"\n", 2, "no path: the console lives at /console"),
        ("[[notify.webhook]]\nurl = \"ftp://x\"\nformat = \"slack\"\n", 2, "is not an http:// or https:// URL"),
        ("[[notify.webhook]]\nurl = \"https://u:p@x/\"\nformat = \"slack\"\n", 2, "no user:password@"),
        ("[[notify.webhook]]\nurl = \"https://x/\"\n", 1, "a json webhook needs secret_file"),
        ("[[notify.webhook]]\nurl = \"https://x/\"\nsecret_file = \"/world-readable\"\n", 3, "chmod 600"),
        ("[[notify.webhook]]\nurl = \"https://x/\"\nformat = \"xml\"\n", 3, "is not a format"),
        ("[[notify.webhook]]\nurl = \"https://x/\"\nformat = \"slack\"\nevents = [\"revoked\"]\n", 4, "\"revoked\" is not an event"),
        ("[[notify.webhook]]\nurl = \"https://x/\"\nformat = \"slack\"\nretries = 99\n", 4, "must be from 0 to 20"),
        (
            "[[notify.webhook]]\nname = \"a\"\nurl = \"https://x/\"\nformat = \"slack\"\n[[notify.webhook]]\nname = \"a\"\nurl = \"https://y/\"\nformat = \"slack\"\n",
            6, "names two webhooks"
        ),
        ("[[notify.webhook]]\nformat = \"slack\"\n", 1, "needs a url"),
    ])
    func refusedWithItsLine(text: String, line: Int, message: String) {
        let e = Self.error(text)
        #expect(e?.line == line, "\(String(describing: e))")
        #expect(e?.message.contains(message) == true, "\(String(describing: e))")
        #expect(e?.file == "a.toml")
    }
}
