-- The outbox and its consumers' progress. Offsets come from an identity sequence, which hands
-- them out in INSERT order, not commit order: Outbox.append serialises the writers.
CREATE TABLE outbox (
    "offset" BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    subject TEXT NOT NULL,
    key TEXT NOT NULL,
    payload BYTEA NOT NULL,
    headers TEXT NOT NULL,
    create_time DOUBLE PRECISION NOT NULL
);
CREATE TABLE outbox_consumers (
    consumer TEXT PRIMARY KEY,
    acked_offset BIGINT NOT NULL,
    ack_time DOUBLE PRECISION NOT NULL
);
