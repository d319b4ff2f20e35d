-- Payments; the idempotency key is unique (IF NOT EXISTS: files made before migrations adopt it).
CREATE TABLE IF NOT EXISTS payments (
    payment_id TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    amount_cents INTEGER NOT NULL,
    state TEXT NOT NULL,
    create_time TEXT NOT NULL
);
