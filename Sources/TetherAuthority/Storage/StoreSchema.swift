import Foundation

/// Schema text both stores share where their SQL agrees.
enum StoreSchema {
    /// A deployment's origin: random, made once with the schema.
    static func newOrigin() -> String { UUID().uuidString.lowercased() }

    static let revisionsSQLite = """
        ALTER TABLE surfaces ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE surfaces ADD COLUMN request_id TEXT;
        ALTER TABLE org ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE org ADD COLUMN request_id TEXT;
        ALTER TABLE tombstones ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
        CREATE TABLE revision_head (id INTEGER PRIMARY KEY CHECK (id = 1), revision INTEGER NOT NULL);
        INSERT INTO revision_head (id, revision) VALUES (1, 0);
        CREATE TABLE events (
            revision INTEGER PRIMARY KEY,
            subject TEXT NOT NULL,
            request_id TEXT NOT NULL,
            at TEXT NOT NULL,
            event TEXT NOT NULL
        );
        CREATE INDEX events_at ON events(at);
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        """

    /// Signing keys, shared by the replicas (the same text for both stores).
    static let signingKeys = """
        CREATE TABLE signing_keys (
            id TEXT PRIMARY KEY,
            private_key TEXT NOT NULL,
            public_key TEXT NOT NULL,
            state TEXT NOT NULL,
            created_at TEXT NOT NULL,
            activated_at TEXT,
            retire_after TEXT,
            endorsement TEXT,
            endorsed_by TEXT
        )
        """

    /// Console sign-in links and sessions (the same text for both stores).
    static let consoleTokens = """
        CREATE TABLE console_tokens (
            digest TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            key_name TEXT NOT NULL,
            csrf TEXT,
            client TEXT,
            created_at DOUBLE PRECISION NOT NULL,
            last_seen DOUBLE PRECISION NOT NULL,
            expires_at DOUBLE PRECISION NOT NULL,
            used INTEGER NOT NULL DEFAULT 0
        )
        """
}
