"""The local mesh: runs every workload on this machine (plain processes, or with Envoy sidecars)."""
