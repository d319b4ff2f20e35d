-- The outbox and its consumers' progress (IF NOT EXISTS: files made before migrations adopt it).
CREATE TABLE IF NOT EXISTS outbox (
    offset INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    subject TEXT NOT NULL,
    key TEXT NOT NULL,
    payload BLOB NOT NULL,
    headers TEXT NOT NULL,
    create_time REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox_consumers (
    consumer TEXT PRIMARY KEY,
    acked_offset INTEGER NOT NULL,
    ack_time REAL NOT NULL
);
