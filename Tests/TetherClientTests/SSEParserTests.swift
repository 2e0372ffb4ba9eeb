import Testing
import TetherClient

@Suite("SSE parser: events, and bounds on what a hostile stream can make it hold")
struct SSEParserTests {
    @Test("events across chunks, CRLF, comments, ids, multi-line data")
    func parses() throws {
        var p = SSEParser()
        var events = try p.feed(Array(": hello\r\nevent: decision\r\nid: 7\r\ndata: {\"a\":".utf8))
        #expect(events.isEmpty)
        events = try p.feed(Array("1}\r\ndata: two\r\n\r\ndata: x\n\n".utf8))
        #expect(events.map(\.event) == ["decision", "message"])
        #expect(events.map(\.id) == ["7", "7"])
        #expect(events.map(\.data) == ["{\"a\":1}\ntwo", "x"])
    }

    @Test("a line longer than maxLine, or an event of many short lines past maxEvent, is refused")
    func bounded() {
        var p = SSEParser(maxLine: 64, maxEvent: 1024)
        #expect(throws: SSEParser.TooLong.self) { try p.feed([UInt8](repeating: 0x61, count: 65)) }
        // Short lines, one endless event: bounded too (before, only a line was).
        var q = SSEParser(maxLine: 64, maxEvent: 1024)
        let chunk = Array("data: 0123456789\n".utf8)
        #expect(throws: SSEParser.TooLong.self) {
            for _ in 0..<200 { _ = try q.feed(chunk) }
        }
        // An event just under the bound is fine, and the count starts again after it.
        var r = SSEParser(maxLine: 64, maxEvent: 1024)
        for _ in 0..<3 {
            for _ in 0..<50 { _ = try? r.feed(chunk) }
            #expect((try? r.feed(Array("\n".utf8)))?.count == 1)
        }
    }
}
