"""The daemon's HTTP side: the ingest API, health, Prometheus metrics and a read-only status page."""
