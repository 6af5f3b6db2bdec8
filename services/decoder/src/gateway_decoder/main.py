"""`gateway-decoder`: wiring only (settings, logging, metrics endpoint, signals, the loop)."""

from __future__ import annotations

from gateway_common.lifecycle import StopSignal
from gateway_common.logs import configure_logging
from gateway_common.metrics import serve_metrics
from gateway_common.settings import load_settings
from gateway_decoder.decoder import run
from gateway_decoder.metrics import process_registry
from gateway_decoder.settings import DecoderSettings

__all__ = ["main"]


def main() -> None:
    settings = load_settings(DecoderSettings)
    configure_logging("decoder", settings.log_level, settings.log_format)
    stop = StopSignal().install()
    registry = process_registry()
    serve_metrics(settings.metrics_port)
    run(settings, stop, registry)
