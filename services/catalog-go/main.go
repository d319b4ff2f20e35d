// Command catalog-go is the catalog service reimplemented in Go from the same contracts: the
// same rules, errors and database as services/catalog, with health, reflection and a graceful
// stop. It reads HOST, PORT, DATABASE_PATH and GRACE_SECONDS as the Python services do.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	catalogv1 "example.com/shopmesh/gen/go/shop/catalog/v1"
)

// settings are read once from the environment; a malformed value fails start-up with its name.
type settings struct {
	host, port, databasePath, version string
	grace                             time.Duration
}

func settingsFromEnv() (settings, error) {
	get := func(name, fallback string) string {
		if value := os.Getenv(name); value != "" {
			return value
		}
		return fallback
	}
	s := settings{
		host:         get("HOST", "127.0.0.1"),
		port:         get("PORT", "50052"),
		databasePath: get("DATABASE_PATH", "var/catalog.db"),
		version:      get("SERVICE_VERSION", "v2"),
	}
	if _, err := strconv.Atoi(s.port); err != nil {
		return s, fmt.Errorf("PORT must be an integer, got %q", s.port)
	}
	grace, err := strconv.ParseFloat(get("GRACE_SECONDS", "5"), 64)
	if err != nil {
		return s, fmt.Errorf("GRACE_SECONDS must be a number, got %q", os.Getenv("GRACE_SECONDS"))
	}
	s.grace = time.Duration(grace * float64(time.Second))
	return s, nil
}

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stdout, nil)).With("service", "catalog", "version", "go")
	if err := run(log); err != nil {
		log.Error("catalog-go failed", "error", err.Error())
		os.Exit(1)
	}
}

func run(log *slog.Logger) error {
	s, err := settingsFromEnv()
	if err != nil {
		return err
	}
	store, err := openStore(s.databasePath)
	if err != nil {
		return err
	}
	defer store.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := store.Seed(ctx, demoProducts); err != nil {
		return err
	}
	listener, err := net.Listen("tcp", net.JoinHostPort(s.host, s.port))
	if err != nil {
		return err
	}
	server := grpc.NewServer()
	catalogv1.RegisterCatalogServiceServer(server, &servicer{catalog: &Catalog{store: store}})
	healthServer := health.NewServer()
	healthpb.RegisterHealthServer(server, healthServer)
	reflection.Register(server)
	healthServer.SetServingStatus(catalogv1.CatalogService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	served := make(chan error, 1)
	go func() { served <- server.Serve(listener) }()
	log.Info("serving", "address", listener.Addr().String(), "version", s.version)
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	// Report NOT_SERVING first so that probes and balancers move away, then drain in-flight
	// calls for up to the grace period before cutting the rest off.
	healthServer.Shutdown()
	drained := make(chan struct{})
	go func() { server.GracefulStop(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(s.grace):
		server.Stop()
	}
	log.Info("stopped")
	return nil
}
