"""Settings of gatewayctl: the same GATEWAY_* variables as the services it inspects."""

from __future__ import annotations

from gateway_common.settings import CommonSettings

__all__ = ["CtlSettings"]


class CtlSettings(CommonSettings):
    """GATEWAY_REDIS_URL and GATEWAY_STREAM_PREFIX name the gateway to inspect."""
