-- The feed, the event ids applied (the inbox), each source's offset and the events set aside
-- (IF NOT EXISTS: files made before migrations adopt it).
CREATE TABLE IF NOT EXISTS notifications (
    notification_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    create_time TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS notifications_by_user
    ON notifications (user_id, create_time DESC, notification_id DESC);
CREATE TABLE IF NOT EXISTS applied_events (
    event_id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    offset INTEGER NOT NULL,
    -- When it was applied: with the producer's commit time, the event's end-to-end lag.
    applied_time REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS source_offsets (
    source TEXT PRIMARY KEY,
    offset INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    source TEXT NOT NULL,
    offset INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    payload BLOB NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (source, offset)
);
