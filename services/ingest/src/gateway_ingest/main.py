"""`gateway-ingest`: wiring only. Configuration comes from the environment (GATEWAY_*)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from gateway_common.lifecycle import StopSignal
from gateway_common.logs import configure_logging
from gateway_common.settings import load_settings
from gateway_ingest.ingest import run
from gateway_ingest.settings import IngestSettings

__all__ = ["main"]


def main() -> None:
    settings = load_settings(IngestSettings)
    configure_logging("ingest", settings.log_level, settings.log_format)
    stop = StopSignal().install()
    run(settings, stop, CollectorRegistry())
