// The authority benchmark's baseline: a bare Hummingbird application, one route answering a
// constant JSON body — what the framework serves on this machine with nothing of Tether in it.
// Run: tether-bench-bare [port]
import Hummingbird

let port = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 8080 : 8080
let body = #"{"allowed":true,"code":"ALLOW","deviceId":"bench-surface"}"#

let router = Router()
router.get("/bare") { _, _ -> Response in
    Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: body)))
}
router.post("/bare") { _, _ -> Response in
    Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: body)))
}
let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)))
try await app.runService()
