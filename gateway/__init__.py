"""The REST gateway: Envoy config and OpenAPI rendered from the contracts' descriptor set."""
