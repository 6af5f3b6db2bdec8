"""How every gateway service process starts and stops: the one place `main()` functions call.

Settings (or one clear error and exit 2), structured logging, SIGTERM/SIGINT, a metrics registry
with the process collectors, the health file and watchdog, the HTTP endpoint, then the service's
own loop. A loop stopped by the watchdog because a problem lasted too long exits 75.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from gateway_common.health import (
    EXIT_UNHEALTHY,
    UNHEALTHY_STOP_REASON,
    Health,
    Watchdog,
)
from gateway_common.http_endpoint import serve_http
from gateway_common.lifecycle import StopSignal
from gateway_common.logs import configure_logging, get_logger
from gateway_common.settings import CommonSettings, load_settings
from gateway_common.summary import SummarySettings, start_log_summary

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["process_registry", "run_service"]

S = TypeVar("S", bound=CommonSettings)


log = get_logger(__name__)


def process_registry() -> CollectorRegistry:
    """A registry with the process, platform and GC collectors (memory, CPU, file handles)."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def run_service(
    service: str,
    settings_cls: type[S],
    loop: Callable[[S, StopSignal, CollectorRegistry, Health], None],
) -> None:
    """Run one service process until SIGTERM/SIGINT (or the watchdog) stops it."""
    settings = load_settings(settings_cls)
    configure_logging(service, settings.log_level, settings.log_format)
    stop = StopSignal().install()
    registry = process_registry()
    health = Health(service, file=settings.health_file)
    stop_http = serve_http(
        settings.metrics_port, registry, health, max_age_s=settings.health_max_age_s
    )
    Watchdog(
        health,
        stop,
        watchdog_s=settings.watchdog_s,
        unhealthy_exit_s=settings.unhealthy_exit_s,
    ).start()
    start_log_summary(registry, stop, load_settings(SummarySettings).log_summary_interval_s)
    try:
        loop(settings, stop, registry, health)
    finally:
        stop_http()
    if stop.reason == UNHEALTHY_STOP_REASON:
        log.error("service_exit_unhealthy", service=service)
        raise SystemExit(EXIT_UNHEALTHY)
