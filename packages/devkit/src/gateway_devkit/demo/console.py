"""The field console of the demo: gateway-console without a password, on loopback only."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway_devkit.polling import wait_until
from gateway_devkit.processes import SupervisorError
from gateway_devkit.servers import LOOPBACK, free_port, port_answers

if TYPE_CHECKING:
    from gateway_devkit.processes import Supervisor

__all__ = ["CONSOLE_PORT", "start_console"]

CONSOLE_PORT = 8080


def start_console(supervisor: Supervisor, metrics_ports: dict[str, int]) -> str:
    """Start gateway-console on 8080 (a free port when 8080 is taken); its address. It reads each
    service's health from the metrics port the demo gave it."""
    port = free_port() if port_answers(LOOPBACK, CONSOLE_PORT) else CONSOLE_PORT
    health_urls = ",".join(
        f"{name.removeprefix('gateway-')}=http://{LOOPBACK}:{metrics}/healthz"
        for name, metrics in metrics_ports.items()
    )
    child = supervisor.start_service(
        "gateway-console",
        GATEWAY_CONSOLE_AUTH="off",
        GATEWAY_CONSOLE_HOST=LOOPBACK,
        GATEWAY_CONSOLE_PORT=str(port),
        GATEWAY_CONSOLE_REFRESH_S="2",
        GATEWAY_CONSOLE_HEALTH_URLS=health_urls,
    )
    if not wait_until(lambda: port_answers(LOOPBACK, port) or child.process.poll() is not None, 20):
        raise SupervisorError(f"gateway-console does not answer on {LOOPBACK}:{port}")
    if child.process.poll() is not None:
        raise SupervisorError(f"gateway-console exited: see {child.log_path}")
    return f"http://{LOOPBACK}:{port}/"
