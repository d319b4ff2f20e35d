package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	_ "modernc.org/sqlite" // the pure-Go SQLite driver: no cgo in the build
)

// The Python catalog's schema: both versions of the catalog share one database file.
const schema = `
CREATE TABLE IF NOT EXISTS products (
    product_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    price_cents INTEGER NOT NULL,
    stock INTEGER NOT NULL CHECK (stock >= 0)
);
CREATE TABLE IF NOT EXISTS reservations (
    reservation_id TEXT PRIMARY KEY,
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS reservation_lines (
    reservation_id TEXT NOT NULL REFERENCES reservations (reservation_id),
    line_no INTEGER NOT NULL,
    product_id TEXT NOT NULL REFERENCES products (product_id),
    quantity INTEGER NOT NULL,
    unit_price_cents INTEGER NOT NULL,
    PRIMARY KEY (reservation_id, line_no)
);
`

// sqliteStore keeps the catalog in SQLite, locking as services/runtime/sqlite.py does.
type sqliteStore struct{ db *sql.DB }

func openStore(path string) (*sqliteStore, error) {
	if path != ":memory:" {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, err
		}
	}
	// Another process (the Python catalog) may hold the write lock: wait for it, do not fail.
	dsn := fmt.Sprintf("file:%s?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)"+
		"&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(ON)&_txlock=immediate", path)
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	// One connection: the transactions are short, and :memory: is per connection.
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(schema); err != nil {
		_ = db.Close()
		return nil, err
	}
	return &sqliteStore{db}, nil
}

func (s *sqliteStore) Close() error { return s.db.Close() }

// Seed inserts the products when there are none yet.
func (s *sqliteStore) Seed(ctx context.Context, products []Product) error {
	return s.Tx(ctx, func(t Tx) error {
		tx := t.(*sqliteTx)
		var one int
		err := tx.tx.QueryRow("SELECT 1 FROM products LIMIT 1").Scan(&one)
		if err == nil {
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		for _, p := range products {
			if _, err := tx.tx.Exec("INSERT INTO products (product_id, name, description, price_cents, stock)"+
				" VALUES (?, ?, ?, ?, ?)", p.ID, p.Name, p.Description, p.PriceCents, p.Stock); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *sqliteStore) Tx(ctx context.Context, fn func(Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil) // BEGIN IMMEDIATE (_txlock): check-then-update is atomic
	if err != nil {
		return err
	}
	if err := fn(&sqliteTx{tx}); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

type scanner interface{ Scan(dest ...any) error }

func scanProduct(row scanner) (*Product, error) {
	var p Product
	err := row.Scan(&p.ID, &p.Name, &p.Description, &p.PriceCents, &p.Stock)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &p, nil
}

const productColumns = "SELECT product_id, name, description, price_cents, stock FROM products"

func (s *sqliteStore) List(ctx context.Context, offset, limit int) ([]Product, error) {
	rows, err := s.db.QueryContext(ctx, productColumns+" ORDER BY product_id LIMIT ? OFFSET ?", limit, offset)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var products []Product
	for rows.Next() {
		p, err := scanProduct(rows)
		if err != nil {
			return nil, err
		}
		products = append(products, *p)
	}
	return products, rows.Err()
}

func (s *sqliteStore) Get(ctx context.Context, productID string) (*Product, error) {
	return scanProduct(s.db.QueryRowContext(ctx, productColumns+" WHERE product_id = ?", productID))
}

type sqliteTx struct{ tx *sql.Tx }

func (t *sqliteTx) Get(productID string) (*Product, error) {
	return scanProduct(t.tx.QueryRow(productColumns+" WHERE product_id = ?", productID))
}

func (t *sqliteTx) AdjustStock(productID string, delta int32) error {
	_, err := t.tx.Exec("UPDATE products SET stock = stock + ? WHERE product_id = ?", delta, productID)
	return err
}

func (t *sqliteTx) Reservation(id string) (*Reservation, error) {
	r := Reservation{ID: id}
	err := t.tx.QueryRow("SELECT state FROM reservations WHERE reservation_id = ?", id).Scan(&r.State)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	rows, err := t.tx.Query("SELECT product_id, quantity, unit_price_cents FROM reservation_lines"+
		" WHERE reservation_id = ? ORDER BY line_no", id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var line Line
		if err := rows.Scan(&line.ProductID, &line.Quantity, &line.UnitPriceCents); err != nil {
			return nil, err
		}
		r.Lines = append(r.Lines, line)
	}
	return &r, rows.Err()
}

func (t *sqliteTx) AddReservation(r Reservation) error {
	if _, err := t.tx.Exec("INSERT INTO reservations (reservation_id, state) VALUES (?, ?)", r.ID, r.State); err != nil {
		return err
	}
	for n, line := range r.Lines {
		if _, err := t.tx.Exec("INSERT INTO reservation_lines"+
			" (reservation_id, line_no, product_id, quantity, unit_price_cents) VALUES (?, ?, ?, ?, ?)",
			r.ID, n, line.ProductID, line.Quantity, line.UnitPriceCents); err != nil {
			return err
		}
	}
	return nil
}

func (t *sqliteTx) SetState(id, state string) error {
	_, err := t.tx.Exec("UPDATE reservations SET state = ? WHERE reservation_id = ?", state, id)
	return err
}
