-- Products with their stock, reservations with their lines. Ids sort bytewise (COLLATE "C"),
-- as on SQLite, whatever the database's locale: pages follow product_id.
CREATE TABLE products (
    product_id TEXT COLLATE "C" PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    price_cents BIGINT NOT NULL,
    stock BIGINT NOT NULL CHECK (stock >= 0)
);
CREATE TABLE reservations (
    reservation_id TEXT PRIMARY KEY,
    state TEXT NOT NULL
);
CREATE TABLE reservation_lines (
    reservation_id TEXT NOT NULL REFERENCES reservations (reservation_id),
    line_no INTEGER NOT NULL,
    product_id TEXT COLLATE "C" NOT NULL REFERENCES products (product_id),
    quantity BIGINT NOT NULL,
    unit_price_cents BIGINT NOT NULL,
    PRIMARY KEY (reservation_id, line_no)
);
