"""The programs this project runs as child processes, written once: Envoy (for the REST gateway
and every local sidecar) and the pieces of its configuration both of them share."""
