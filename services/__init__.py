"""The shop's gRPC services and the runtime kit they share."""
