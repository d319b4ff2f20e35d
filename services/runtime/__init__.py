"""The one shared kit: server bootstrap, interceptors, errors, settings, telemetry."""
