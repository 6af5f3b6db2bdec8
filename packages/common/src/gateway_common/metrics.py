"""Prometheus metrics endpoint (prometheus-client), served only when GATEWAY_METRICS_PORT is set."""

from __future__ import annotations

from prometheus_client import start_http_server

__all__ = ["serve_metrics"]


def serve_metrics(port: int | None) -> None:
    """Serve `/metrics` on `port` in a daemon thread; nothing when `port` is None."""
    if port is not None:
        start_http_server(port)
