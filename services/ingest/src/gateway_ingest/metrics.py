"""Prometheus metrics of one ingest instance, in a registry of its own (prometheus-client).

A registry per instance lets tests run several ingest loops in one process.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gateway_common.redis_refusals import RefusalGauge

__all__ = ["HANDOFF_BUCKETS_S", "IngestMetrics"]

#: Fine around the 1 ms a frame should take to reach Redis, coarse up to a long Redis outage.
HANDOFF_BUCKETS_S = (
    0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.005, 0.01, 0.05, 0.25, 1.0, 10.0, 60.0,
    600.0,
)  # fmt: skip


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.frames_received = Counter(
            "gateway_frames_received_total",
            "ALP_DATA frames received complete and CRC-checked (each is queued for the stream)",
            registry=registry,
        )
        self.frames_written = Counter(
            "gateway_ingest_frames_written_total",
            "Frames accepted by Redis (XADD succeeded)",
            registry=registry,
        )
        self.handoff_seconds = Histogram(
            "gateway_ingest_handoff_seconds",
            "Per frame, from its receive time (its last byte) to Redis accepting it (the reply "
            "to the batch's XADDs): how long frames wait before the decoders can have them",
            buckets=HANDOFF_BUCKETS_S,
            registry=registry,
        )
        self.serial_errors = Counter(
            "gateway_serial_errors_total",
            "Serial link errors by kind: crc, sync, truncated, counter_gap",
            ["kind"],
            registry=registry,
        )
        self.discarded_bytes = Counter(
            "gateway_serial_discarded_bytes_total",
            "Bytes that were not part of a valid frame",
            registry=registry,
        )
        self.missed_frames = Counter(
            "gateway_modem_missed_frames_total",
            "Frames the modem sent that never arrived, from counter gaps",
            registry=registry,
        )
        self.serial_connected = Gauge(
            "gateway_serial_connected", "1 while the serial port is open", registry=registry
        )
        self.clock_behind_seconds = Gauge(
            "gateway_ingest_clock_behind_seconds",
            "How far the clock was behind the last frame saved by the previous ingest, until "
            "it catches up (0: fine); frames are dated wrong meanwhile",
            registry=registry,
        )
        self.buffered_frames = Gauge(
            "gateway_ingest_buffered_frames",
            "Frames read but not yet accepted by Redis",
            registry=registry,
        )
        self.dropped_frames = Counter(
            "gateway_ingest_dropped_frames_total",
            "Frames dropped because the buffer was full (oldest first) or unflushed at exit",
            ["reason"],
            registry=registry,
        )
        self.modem_reboots = Counter(
            "gateway_modem_reboots_total",
            "REBOOTED frames received, by reason",
            ["reason"],
            registry=registry,
        )
        self.other_messages = Counter(
            "gateway_modem_messages_total",
            "Frames other than ALP_DATA (not written to the stream), by message type",
            ["type"],
            registry=registry,
        )
        self.port_reopens = Counter(
            "gateway_serial_opens_total", "Successful opens of the serial port", registry=registry
        )
        self.commands_written = Counter(
            "gateway_commands_written_total",
            "Downlink requests written to the modem",
            registry=registry,
        )
        self.commands_resent = Counter(
            "gateway_commands_resent_total",
            "Downlink requests written again: after an ingest restart, a modem reboot, or a "
            "write that failed",
            ["reason"],
            registry=registry,
        )
        self.command_write_errors = Counter(
            "gateway_command_write_errors_total",
            "Writes to the modem that failed: timeout (write timeout) or port (closed, lost)",
            ["kind"],
            registry=registry,
        )
        self.redis_refusals = RefusalGauge(registry)
        for kind in ("crc", "sync", "truncated", "counter_gap"):
            self.serial_errors.labels(kind=kind)
        for reason in ("ingest_restarted", "modem_rebooted", "write_failed"):
            self.commands_resent.labels(reason=reason)
        for kind in ("timeout", "port"):
            self.command_write_errors.labels(kind=kind)
