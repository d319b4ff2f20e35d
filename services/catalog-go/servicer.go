package main

import (
	"context"

	catalogv1 "example.com/shopmesh/gen/go/shop/catalog/v1"
)

// servicer translates requests to the domain and results back, and nothing else.
type servicer struct {
	catalogv1.UnimplementedCatalogServiceServer
	catalog *Catalog
}

var states = map[string]catalogv1.ReservationState{
	Held:     catalogv1.ReservationState_RESERVATION_STATE_HELD,
	Released: catalogv1.ReservationState_RESERVATION_STATE_RELEASED,
}

func encodeProduct(p Product) *catalogv1.Product {
	return &catalogv1.Product{
		ProductId: p.ID, Name: p.Name, Description: p.Description, PriceCents: p.PriceCents, Stock: p.Stock,
	}
}

func encodeReservation(r *Reservation) *catalogv1.Reservation {
	out := &catalogv1.Reservation{ReservationId: r.ID, State: states[r.State]}
	for _, line := range r.Lines {
		out.Lines = append(out.Lines, &catalogv1.ReservationLine{
			ProductId: line.ProductID, Quantity: line.Quantity, UnitPriceCents: line.UnitPriceCents,
		})
	}
	return out
}

func (s *servicer) ListProducts(ctx context.Context, req *catalogv1.ListProductsRequest) (*catalogv1.ListProductsResponse, error) {
	products, next, err := s.catalog.List(ctx, req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	resp := &catalogv1.ListProductsResponse{NextPageToken: next}
	for _, p := range products {
		resp.Products = append(resp.Products, encodeProduct(p))
	}
	return resp, nil
}

func (s *servicer) GetProduct(ctx context.Context, req *catalogv1.GetProductRequest) (*catalogv1.GetProductResponse, error) {
	product, err := s.catalog.Get(ctx, req.GetProductId())
	if err != nil {
		return nil, err
	}
	return &catalogv1.GetProductResponse{Product: encodeProduct(*product)}, nil
}

func (s *servicer) ReserveStock(ctx context.Context, req *catalogv1.ReserveStockRequest) (*catalogv1.ReserveStockResponse, error) {
	lines := make([]Line, len(req.GetLines()))
	for i, line := range req.GetLines() {
		lines[i] = Line{ProductID: line.GetProductId(), Quantity: line.GetQuantity()}
	}
	reservation, err := s.catalog.Reserve(ctx, req.GetReservationId(), lines)
	if err != nil {
		return nil, err
	}
	return &catalogv1.ReserveStockResponse{Reservation: encodeReservation(reservation)}, nil
}

func (s *servicer) ReleaseStock(ctx context.Context, req *catalogv1.ReleaseStockRequest) (*catalogv1.ReleaseStockResponse, error) {
	reservation, err := s.catalog.Release(ctx, req.GetReservationId())
	if err != nil {
		return nil, err
	}
	return &catalogv1.ReleaseStockResponse{Reservation: encodeReservation(reservation)}, nil
}
