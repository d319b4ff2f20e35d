-- Orders with their saga step and lease; every orders process (v1, v2, replicas) shares them.
CREATE TABLE orders (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id TEXT NOT NULL UNIQUE,
    request_id TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    items TEXT NOT NULL,
    payment_token TEXT NOT NULL,
    shipping_address TEXT,
    status TEXT NOT NULL,
    step TEXT NOT NULL,
    total_cents BIGINT NOT NULL,
    status_reason TEXT NOT NULL,
    payment_id TEXT NOT NULL,
    create_time TEXT NOT NULL,
    update_time TEXT NOT NULL,
    lease_owner TEXT,
    lease_until DOUBLE PRECISION NOT NULL DEFAULT 0
);
CREATE INDEX orders_by_user ON orders (user_id, seq);
CREATE INDEX orders_unsettled ON orders (step) WHERE step NOT IN ('CONFIRMED', 'CANCELLED');
