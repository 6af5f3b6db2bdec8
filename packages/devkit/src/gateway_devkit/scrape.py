"""A service's HTTP endpoint on loopback (GATEWAY_METRICS_PORT): /healthz and /metrics."""

from __future__ import annotations

import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from gateway_devkit.servers import LOOPBACK

__all__ = ["Samples", "ScrapeError", "http_get", "sample", "scrape"]

#: (sample name, sorted labels) -> value
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class ScrapeError(RuntimeError):
    """/metrics did not answer 200."""


def http_get(port: int, path: str, timeout_s: float = 2.0) -> tuple[int, str]:
    """(status, body) of a GET on loopback; status 0 (and the error) when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{port}{path}", timeout=timeout_s) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, str(exc)


def scrape(port: int, timeout_s: float = 2.0) -> Samples:
    """Every sample of /metrics."""
    status, text = http_get(port, "/metrics", timeout_s)
    if status != 200:
        raise ScrapeError(f"/metrics on port {port}: {status} {text}")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(port: int, name: str, **labels: str) -> float | None:
    """One sample's value; None when absent or while the endpoint does not answer."""
    try:
        return scrape(port).get((name, tuple(sorted(labels.items()))))
    except ScrapeError:
        return None
