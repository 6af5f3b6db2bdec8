"""`gateway-decoder`: wiring only. Configuration comes from the environment (GATEWAY_*)."""

from __future__ import annotations

from gateway_common.service import run_service
from gateway_decoder.decoder import run
from gateway_decoder.settings import DecoderSettings

__all__ = ["main"]


def main() -> None:
    run_service("decoder", DecoderSettings, run)
