"""`gateway-healthcheck`: exit 0 when this container's service is making progress, else 1.

Reads the health file the service writes (GATEWAY_HEALTH_FILE) and requires a heartbeat newer
than GATEWAY_HEALTH_MAX_AGE_S and no current problem. Made for a container healthcheck.
"""

from __future__ import annotations

import sys

from gateway_common.health import read_health_file
from gateway_common.settings import HealthSettings, load_settings

__all__ = ["main"]


def main() -> None:
    settings = load_settings(HealthSettings)
    if settings.health_file is None:
        sys.stderr.write("gateway-healthcheck: GATEWAY_HEALTH_FILE is not set\n")
        raise SystemExit(1)
    healthy, explanation = read_health_file(settings.health_file, settings.health_max_age_s)
    (sys.stdout if healthy else sys.stderr).write(explanation + "\n")
    raise SystemExit(0 if healthy else 1)
