"""`gateway-console`: wiring only. Settings, logging, Redis, heartbeat and watchdog, the metrics
endpoint, then the web server (uvicorn) until SIGTERM/SIGINT."""

from __future__ import annotations

import contextlib
import signal
from typing import TYPE_CHECKING, Final

import uvicorn

from gateway_common.health import EXIT_UNHEALTHY, UNHEALTHY_STOP_REASON, Health, Watchdog
from gateway_common.http_endpoint import serve_http
from gateway_common.lifecycle import StopSignal
from gateway_common.logs import configure_logging, get_logger
from gateway_common.redis_conn import connect
from gateway_common.service import process_registry
from gateway_common.settings import load_settings
from gateway_common.streams import StreamKeys
from gateway_console.app import create_app
from gateway_console.refresher import Refresher
from gateway_console.settings import ConsoleSettings

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["main"]

log = get_logger(__name__)

#: Open requests get this long to finish when the console stops.
GRACEFUL_STOP_S: Final = 3


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """SIGTERM and SIGINT stop the server gracefully (a second one at once). Unlike uvicorn's
        own, the signal is not raised again afterwards: a stopped console exits 0."""
        previous = {
            sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def main() -> None:
    settings = load_settings(ConsoleSettings)
    configure_logging("console", settings.log_level, settings.log_format)
    # Stopped by uvicorn's own SIGTERM/SIGINT handling, or by the watchdog through this signal.
    stop = StopSignal()
    health = Health("console", file=settings.health_file)
    client = connect(settings.redis_url)
    server: _Server | None = None

    def stop_server() -> None:
        if server is not None:
            server.should_exit = True

    refresher = Refresher(
        client,
        StreamKeys(settings.stream_prefix),
        health_urls=settings.health_urls,
        interval_s=settings.console_refresh_s,
        default_interval_s=settings.device_interval_s,
        health=health,
        stop=stop,
        on_stop=stop_server,
    )
    app = create_app(
        refresher,
        user=settings.console_user,
        password=settings.password,
        max_window_s=settings.frames_retention_s,
    )
    config = uvicorn.Config(
        app,
        host=settings.console_host,
        port=settings.console_port,
        # Plain HTTP/1.1 on asyncio, no websockets: nothing else is loaded (memory budget).
        http="h11",
        ws="none",
        loop="asyncio",
        interface="asgi3",
        lifespan="on",
        log_config=None,
        log_level="warning",
        access_log=False,
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=GRACEFUL_STOP_S,
    )
    server = _Server(config)
    stop_http = serve_http(
        settings.metrics_port, process_registry(), health, max_age_s=settings.health_max_age_s
    )
    Watchdog(
        health, stop, watchdog_s=settings.watchdog_s, unhealthy_exit_s=settings.unhealthy_exit_s
    ).start()
    log.info(
        "console_listening",
        url=settings.public_url,
        prefix=settings.stream_prefix,
        auth=settings.console_auth,
        user=settings.console_user if settings.password else None,
    )
    try:
        server.run()
    finally:
        stop_http()
        client.close()
    if not server.started:
        log.error("console_not_started", host=settings.console_host, port=settings.console_port)
        raise SystemExit(1)
    if stop.reason == UNHEALTHY_STOP_REASON:
        log.error("service_exit_unhealthy", service="console")
        raise SystemExit(EXIT_UNHEALTHY)
