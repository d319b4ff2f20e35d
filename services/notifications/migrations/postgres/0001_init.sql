-- The feed, the event ids applied (the inbox), each source's offset and the events set aside.
-- The feed's sort keys compare bytewise (COLLATE "C"), as on SQLite, whatever the locale.
CREATE TABLE notifications (
    notification_id TEXT COLLATE "C" PRIMARY KEY,
    user_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    create_time TEXT COLLATE "C" NOT NULL
);
CREATE INDEX notifications_by_user
    ON notifications (user_id, create_time DESC, notification_id DESC);
CREATE TABLE applied_events (
    event_id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    "offset" BIGINT NOT NULL,
    -- When it was applied: with the producer's commit time, the event's end-to-end lag.
    applied_time DOUBLE PRECISION NOT NULL
);
CREATE TABLE source_offsets (
    source TEXT PRIMARY KEY,
    "offset" BIGINT NOT NULL
);
CREATE TABLE dead_letters (
    source TEXT NOT NULL,
    "offset" BIGINT NOT NULL,
    event_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    payload BYTEA NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (source, "offset")
);
