"""The mesh: Kubernetes and Istio YAML (base/, istio/, scenarios/) and the Python that reads it."""
