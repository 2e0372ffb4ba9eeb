/// Every refusal: `{"status": "error", "code": …, "error": …, "request_id": …}`.
public struct ErrorBody: Codable, Sendable, Equatable {
    public var status = "error"
    public var code: String
    /// What is wrong and what to do, for a person.
    public var error: String
    public var requestID: String
    /// A request refused because of some of the surfaces it names (403 outside a key's scope,
    /// 404 a watch naming too many that do not exist): which. Left out otherwise.
    public var refused: [String]?
    enum CodingKeys: String, CodingKey { case status, code, error, requestID = "request_id", refused }

    public init(code: String, error: String, requestID: String, refused: [String]? = nil) {
        (self.code, self.error, self.requestID, self.refused) = (code, error, requestID, refused)
    }
}

/// `POST console/link`: a one-time sign-in link to the console.
public struct ConsoleLink: Codable, Sendable, Equatable {
    public var status = "ok"
    /// Appended to the authority's URL: the link to open.
    public var path: String
    /// The whole link, where the authority knows its public address (`[console] public_url`).
    public var url: String?
    public var expiresAt: String
    public var requestID: String
    enum CodingKeys: String, CodingKey { case status, path, url, expiresAt, requestID = "request_id" }

    public init(path: String, url: String?, expiresAt: String, requestID: String) {
        (self.path, self.url, self.expiresAt, self.requestID) = (path, url, expiresAt, requestID)
    }
}
