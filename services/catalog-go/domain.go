package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
)

// Product is an item for sale with the units left to reserve.
type Product struct {
	ID          string
	Name        string
	Description string
	PriceCents  int64
	Stock       int32
}

// Line is a quantity of one product; UnitPriceCents is set once reserved.
type Line struct {
	ProductID      string
	Quantity       int32
	UnitPriceCents int64
}

// Reservation states, spelled as the Python catalog stores them (the canary shares its database).
const (
	Held     = "HELD"
	Released = "RELEASED"
)

// Reservation is stock held (or given back) under a caller's id.
type Reservation struct {
	ID    string
	Lines []Line
	State string
}

// Store is what the catalog needs from storage; Tx runs fn atomically.
type Store interface {
	Tx(ctx context.Context, fn func(Tx) error) error
	List(ctx context.Context, offset, limit int) ([]Product, error)
	Get(ctx context.Context, productID string) (*Product, error)
}

// Tx is one write transaction.
type Tx interface {
	Get(productID string) (*Product, error)
	AdjustStock(productID string, delta int32) error
	Reservation(id string) (*Reservation, error)
	AddReservation(r Reservation) error
	SetState(id, state string) error
}

// Catalog holds the business rules, the same as services/catalog/domain.py.
type Catalog struct{ store Store }

// List returns one page of products ordered by id, and the next page's token.
func (c *Catalog) List(ctx context.Context, pageSize int32, pageToken string) ([]Product, string, error) {
	var v violations
	page := pageRequest(pageSize, pageToken, &v)
	if err := v.err(); err != nil {
		return nil, "", err
	}
	found, err := c.store.List(ctx, page.offset, page.size+1)
	if err != nil {
		return nil, "", err
	}
	if len(found) <= page.size {
		return found, "", nil
	}
	return found[:page.size], encodeToken(page.offset + page.size), nil
}

// Get returns one product.
func (c *Catalog) Get(ctx context.Context, productID string) (*Product, error) {
	var v violations
	v.check(productID != "", "product_id", "must not be empty")
	if err := v.err(); err != nil {
		return nil, err
	}
	product, err := c.store.Get(ctx, productID)
	if err != nil {
		return nil, err
	}
	if product == nil {
		return nil, notFound("product", productID)
	}
	return product, nil
}

// Reserve takes stock for every line or for none; the same reservation id is served once.
func (c *Catalog) Reserve(ctx context.Context, reservationID string, lines []Line) (*Reservation, error) {
	var v violations
	v.check(reservationID != "", "reservation_id", "must not be empty")
	v.check(len(lines) > 0, "lines", "must have at least one line")
	firstLine := map[string]int{}
	var order []string
	for i, line := range lines {
		v.check(line.ProductID != "", fmt.Sprintf("lines[%d].product_id", i), "must not be empty")
		v.check(line.Quantity >= 1, fmt.Sprintf("lines[%d].quantity", i), "must be at least 1")
		if first, seen := firstLine[line.ProductID]; seen {
			v.add(fmt.Sprintf("lines[%d].product_id", i),
				fmt.Sprintf("repeats lines[%d]; use one line per product", first))
		} else if line.ProductID != "" {
			firstLine[line.ProductID] = i
			order = append(order, line.ProductID)
		}
	}
	var result *Reservation
	err := c.store.Tx(ctx, func(tx Tx) error {
		// Products are never deleted, so an unknown one is bad input, reported with the rest.
		products := map[string]*Product{}
		for _, id := range order {
			product, err := tx.Get(id)
			if err != nil {
				return err
			}
			if product == nil {
				v.add(fmt.Sprintf("lines[%d].product_id", firstLine[id]), fmt.Sprintf("unknown product '%s'", id))
			} else {
				products[id] = product
			}
		}
		if err := v.err(); err != nil {
			return err
		}
		existing, err := tx.Reservation(reservationID)
		if err != nil {
			return err
		}
		if existing != nil {
			result = existing
			return replay(existing, lines)
		}
		var short []string
		for _, line := range lines {
			if stock := products[line.ProductID].Stock; stock < line.Quantity {
				short = append(short, fmt.Sprintf("%s (%d left, %d wanted)", line.ProductID, stock, line.Quantity))
			}
		}
		if len(short) > 0 {
			return failedPrecondition("OUT_OF_STOCK", "not enough stock for "+strings.Join(short, ", "))
		}
		reservation := Reservation{ID: reservationID, State: Held}
		for _, line := range lines {
			reservation.Lines = append(reservation.Lines,
				Line{line.ProductID, line.Quantity, products[line.ProductID].PriceCents})
			if err := tx.AdjustStock(line.ProductID, -line.Quantity); err != nil {
				return err
			}
		}
		result = &reservation
		return tx.AddReservation(reservation)
	})
	if err != nil {
		return nil, err
	}
	return result, nil
}

// Release gives a reservation's stock back exactly once; repeating it is harmless.
func (c *Catalog) Release(ctx context.Context, reservationID string) (*Reservation, error) {
	var v violations
	v.check(reservationID != "", "reservation_id", "must not be empty")
	if err := v.err(); err != nil {
		return nil, err
	}
	var result *Reservation
	err := c.store.Tx(ctx, func(tx Tx) error {
		existing, err := tx.Reservation(reservationID)
		if err != nil {
			return err
		}
		if existing == nil {
			// A saga compensates even when its reserve never landed, so this must succeed;
			// remembering the id as released stops a late reserve from taking stock for good.
			result = &Reservation{ID: reservationID, State: Released}
			return tx.AddReservation(*result)
		}
		result = existing
		if existing.State == Released {
			return nil
		}
		for _, line := range existing.Lines {
			if err := tx.AdjustStock(line.ProductID, line.Quantity); err != nil {
				return err
			}
		}
		existing.State = Released
		return tx.SetState(reservationID, Released)
	})
	if err != nil {
		return nil, err
	}
	return result, nil
}

// replay answers a repeated reserve: the first result if it asked for the same lines.
func replay(existing *Reservation, lines []Line) error {
	if len(existing.Lines) == 0 {
		return failedPrecondition("RESERVATION_RELEASED", fmt.Sprintf(
			"reservation '%s' was released before it was made; use a new reservation id", existing.ID))
	}
	if signature(existing.Lines) != signature(lines) {
		return failedPrecondition("RESERVATION_MISMATCH", fmt.Sprintf(
			"reservation '%s' already exists with different lines", existing.ID))
	}
	return nil
}

func signature(lines []Line) string {
	parts := make([]string, len(lines))
	for i, line := range lines {
		parts[i] = fmt.Sprintf("%s\x00%d", line.ProductID, line.Quantity)
	}
	sort.Strings(parts)
	return strings.Join(parts, "\x01")
}
