"""The HTTP endpoint of a service: Prometheus text on `/metrics`, health on `/healthz`.

Served (only when GATEWAY_METRICS_PORT is set) by the standard library's WSGI server in a daemon
thread, with prometheus-client's WSGI app for the metrics.
"""

from __future__ import annotations

import threading
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from prometheus_client import CollectorRegistry

    from gateway_common.health import Health

__all__ = ["serve_http"]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Requests are not logged: a scraper every few seconds would flood the logs."""


def health_app(health: Health, max_age_s: float) -> Callable[..., Iterable[bytes]]:
    def app(_environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        state = health.state()
        if not state.fresh(max_age_s):
            status, body = "503 Service Unavailable", f"stalled for {state.beat_age_s:.0f} s"
        elif not state.ok:
            status, body = "503 Service Unavailable", state.reason
        else:
            status, body = "200 OK", "ok"
        start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
        return [body.encode() + b"\n"]

    return app


def serve_http(
    port: int | None,
    registry: CollectorRegistry,
    health: Health,
    *,
    max_age_s: float,
    host: str = "",
) -> Callable[[], None]:
    """Serve `/metrics` and `/healthz` on `port`; return a function that stops the server."""
    if port is None:
        return lambda: None
    metrics = make_wsgi_app(registry)
    healthz = health_app(health, max_age_s)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            return healthz(environ, start_response)
        result: Iterable[bytes] = metrics(environ, start_response)
        return result

    server = make_server(host, port, app, server_class=_Server, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()

    def shutdown() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5.0)

    return shutdown
