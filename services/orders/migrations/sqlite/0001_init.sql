-- Orders with their saga step and lease (IF NOT EXISTS: files made before migrations adopt it).
CREATE TABLE IF NOT EXISTS orders (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id TEXT NOT NULL UNIQUE,
    request_id TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    items TEXT NOT NULL,
    payment_token TEXT NOT NULL,
    shipping_address TEXT,
    status TEXT NOT NULL,
    step TEXT NOT NULL,
    total_cents INTEGER NOT NULL,
    status_reason TEXT NOT NULL,
    payment_id TEXT NOT NULL,
    create_time TEXT NOT NULL,
    update_time TEXT NOT NULL,
    lease_owner TEXT,
    lease_until REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS orders_by_user ON orders (user_id, seq);
CREATE INDEX IF NOT EXISTS orders_unsettled ON orders (step)
    WHERE step NOT IN ('CONFIRMED', 'CANCELLED');
