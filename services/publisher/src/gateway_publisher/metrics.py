"""The publisher's Prometheus metrics, registered in the registry it is given."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram

from gateway_common.redis_refusals import RefusalGauge

if TYPE_CHECKING:
    from collections.abc import Mapping

    from prometheus_client import CollectorRegistry

__all__ = ["PublisherMetrics"]

_LATENCY_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 600.0, 3600.0)
_PUBACK_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class PublisherMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.published = Counter(
            "gateway_records_published_total",
            "Records published as DDATA and acknowledged by the broker",
            registry=registry,
        )
        self.connected = Gauge(
            "gateway_mqtt_connected", "1 while the MQTT session is up", registry=registry
        )
        self.latency = Histogram(
            "gateway_publish_latency_seconds",
            "From the frame's receive time at ingest to the broker's PUBACK",
            buckets=_LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.puback = Histogram(
            "gateway_mqtt_puback_seconds",
            "From a QoS 1 publish (DDATA or DBIRTH) to the broker's answer (its round trip)",
            buckets=_PUBACK_BUCKETS_S,
            registry=registry,
        )
        self.backlog = Gauge(
            "gateway_backlog_records",
            "Records not yet acknowledged by the publisher group (pending + lag)",
            registry=registry,
        )
        self.device_stale = Gauge(
            "gateway_device_stale",
            "1 while a device has been silent for more than 3 times its reporting interval",
            ["device_id"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "gateway_dead_letters_total",
            "Records moved to the dead letters by the publisher",
            ["reason"],
            registry=registry,
        )
        self.redis_errors = Counter(
            "gateway_publisher_redis_errors",
            "Times Redis was unreachable or answered with an error and the publisher backed off",
            registry=registry,
        )
        self.redis_refusals = RefusalGauge(registry)

        self.dcmd_messages = Counter(
            "gateway_dcmd_messages_total",
            "DCMD messages stored as downlink commands: accepted (queued) or rejected",
            ["result"],
            registry=registry,
        )
        for result in ("accepted", "rejected"):
            self.dcmd_messages.labels(result=result)

    def set_stale(self, flags: Mapping[str, bool]) -> None:
        """One `gateway_device_stale` sample per known device."""
        for device_id, stale in flags.items():
            self.device_stale.labels(device_id=device_id).set(1 if stale else 0)
