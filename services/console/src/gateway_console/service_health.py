"""Each service's own word on its health, from its HTTP endpoint (GATEWAY_METRICS_PORT).

For every `name=url` of GATEWAY_CONSOLE_HEALTH_URLS the console asks the `/healthz` URL (200 while
the service makes progress, 503 with the reason when not) and reads two gauges from `/metrics` at
the same address: `gateway_serial_connected` (ingest: the serial port is open) and
`gateway_mqtt_connected` (publisher: the MQTT session is up). The standard library's HTTP client
suffices: plain HTTP inside the compose network, a few hundred bytes each.
"""

from __future__ import annotations

import http.client
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit, urlunsplit

__all__ = ["GAUGES", "ServiceHealth", "gauge", "metrics_url", "probe"]

TIMEOUT_S: Final = 2.0
_MAX_BYTES: Final = 1 << 20
#: The gauges the overview shows, by the name it gives them.
GAUGES: Final = {"serial": "gateway_serial_connected", "mqtt": "gateway_mqtt_connected"}


@dataclass(frozen=True, slots=True)
class ServiceHealth:
    name: str
    url: str
    healthy: bool | None
    """True: 200; False: 503 (or another answer); None: no answer at all."""
    detail: str
    """"ok", the service's reason, or why it could not be asked."""
    gauges: dict[str, float]
    """The GAUGES this service exposes, by their short name."""


def metrics_url(health_url: str) -> str:
    """The `/metrics` URL on the same host and port as a `/healthz` URL."""
    parts = urlsplit(health_url)
    return urlunsplit(parts._replace(path="/metrics", query="", fragment=""))


def _get(url: str) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"User-Agent": "gateway-console"})  # noqa: S310  (http(s) only: checked in the settings)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as answer:  # noqa: S310
            return int(answer.status), answer.read(_MAX_BYTES).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(_MAX_BYTES).decode("utf-8", "replace")


def _gauges(text: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for short, metric in GAUGES.items():
        match = re.search(rf"^{metric} (\S+)$", text, re.MULTILINE)
        if match:
            try:
                found[short] = float(match[1])
            except ValueError:
                continue
    return found


def probe(name: str, url: str) -> ServiceHealth:
    """Ask one service; never raises for a network problem (it is what gets shown)."""
    try:
        status, body = _get(url)
    except (OSError, ValueError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", None) or exc
        return ServiceHealth(name, url, None, f"no answer: {reason}", {})
    healthy = status == 200
    detail = body.strip()[:300] or f"HTTP {status}"
    try:
        metrics_status, metrics = _get(metrics_url(url))
    except (OSError, ValueError, http.client.HTTPException):
        metrics_status, metrics = 0, ""
    gauges = _gauges(metrics) if metrics_status == 200 else {}
    return ServiceHealth(name, url, healthy, detail, gauges)


def gauge(services: tuple[ServiceHealth, ...], short: str) -> float | None:
    """A gauge (`serial`, `mqtt`) as the first service exposing it reports it, else None."""
    return next((s.gauges[short] for s in services if short in s.gauges), None)
