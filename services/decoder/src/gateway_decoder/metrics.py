"""The decoder's Prometheus metrics (prometheus-client), on a registry of each instance's own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from gateway_common.redis_refusals import RefusalGauge

__all__ = ["DecoderMetrics"]


class DecoderMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.frames = Counter(
            "gateway_frames_decoded",
            "Frames handled by the decoder, by result (record, dead, error, answer: a command "
            "answer applied to its command)",
            ["result"],
            registry=self.registry,
        )
        self.decode_seconds = Histogram(
            "gateway_decode_seconds",
            "Time to decode one frame",
            buckets=(2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 5e-3, 0.02, 0.1),
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "gateway_dead_letters",
            "Frames the decoder sent to the dead letters, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.claimed = Counter(
            "gateway_decoder_claimed",
            "Frames claimed from replicas that stayed idle longer than claim_idle_ms",
            registry=self.registry,
        )
        self.redis_errors = Counter(
            "gateway_decoder_redis_errors",
            "Times Redis was unreachable or answered with an error and the decoder backed off",
            registry=self.registry,
        )
        self.redis_refusals = RefusalGauge(self.registry)

        self.command_answers = Counter(
            "gateway_command_answers",
            "Answers of the modem to downlink commands: applied to the command's state, late "
            "(the command had ended), unknown_tag (dead-lettered)",
            ["result"],
            registry=self.registry,
        )
        self.command_reports = Counter(
            "gateway_command_reports",
            "EnergyConfigFiles that changed a downlink command's state, by the state it took",
            ["result"],
            registry=self.registry,
        )
        for result in ("applied", "late", "unknown_tag"):
            self.command_answers.labels(result=result)

    def record(self) -> None:
        self.frames.labels("record").inc()

    def dead(self, reason: str) -> None:
        self.frames.labels("dead").inc()
        self.dead_letters.labels(reason).inc()

    def answer(self) -> None:
        self.frames.labels("answer").inc()

    def error(self) -> None:
        self.frames.labels("error").inc()
