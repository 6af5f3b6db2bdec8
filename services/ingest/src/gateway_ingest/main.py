"""`gateway-ingest`: wiring only. Configuration comes from the environment (GATEWAY_*)."""

from __future__ import annotations

from gateway_common.service import run_service
from gateway_ingest.ingest import run
from gateway_ingest.settings import IngestSettings

__all__ = ["main"]


def main() -> None:
    run_service("ingest", IngestSettings, run)
