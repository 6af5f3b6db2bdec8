"""gateway-sim: a DASH7 gateway modem with simulated energy sensors, on a pty or a TCP port."""

from __future__ import annotations

import argparse
import random
import sys
from typing import TYPE_CHECKING, Any

from gateway_common.lifecycle import StopSignal
from gateway_common.logs import configure_logging
from gateway_simulator.modem import Modem
from gateway_simulator.sensors import Behaviour, make_sensors
from gateway_simulator.sessions import Sessions
from gateway_simulator.settings import SimulatorSettings, flag_name, load
from gateway_simulator.simulation import run
from gateway_simulator.timeline import Timeline
from gateway_simulator.transport import PtyTransport, TcpTransport

if TYPE_CHECKING:
    from collections.abc import Sequence

    from gateway_simulator.transport import Transport

__all__ = ["main", "parse_overrides"]


def parse_overrides(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Flags given on the command line, as settings field names (validated by the settings)."""
    parser = argparse.ArgumentParser(
        prog="gateway-sim",
        description="Play a DASH7 gateway modem with simulated energy sensors. Every flag "
        "overrides the GATEWAY_SIM_* variable of the same name.",
        argument_default=argparse.SUPPRESS,
    )
    for name, field in SimulatorSettings.model_fields.items():
        if not name.startswith("sim_"):
            continue
        env = "GATEWAY_" + name.upper()
        help_text = f"{field.description or ''} [env {env}, default {field.default}]".strip()
        if field.annotation is bool:
            parser.add_argument(flag_name(name), dest=name, action="store_true", help=help_text)
        else:
            parser.add_argument(flag_name(name), dest=name, metavar="VALUE", help=help_text)
    parser.add_argument("--log-level", dest="log_level", help="[env GATEWAY_LOG_LEVEL]")
    return dict(vars(parser.parse_args(argv)))


def open_transport(settings: SimulatorSettings) -> Transport:
    address = settings.tcp_address()
    if address is None:
        return PtyTransport()
    return TcpTransport(*address)


def announce(transport: Transport) -> None:
    """Tell people (and scripts) where to connect: one line on stdout."""
    label = "pty" if isinstance(transport, PtyTransport) else "listening"
    print(f"{label}: {transport.url}", flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    settings = load(parse_overrides(argv))
    configure_logging("simulator", settings.log_level, settings.log_format)
    stop = StopSignal().install()
    try:
        transport = open_transport(settings)
    except OSError as exc:
        sys.stderr.write(f"gateway-sim: cannot listen on {settings.sim_listen}: {exc.strerror}\n")
        raise SystemExit(1) from None
    try:
        announce(transport)
        if (
            settings.sim_wait_for_client
            and isinstance(transport, TcpTransport)
            and not transport.wait_for_client(stop)
        ):
            return
        behaviour = Behaviour(
            interval_s=settings.sim_interval_s,
            invalid_probability=settings.sim_invalid_probability,
            button_probability=settings.sim_button_probability,
        )
        sensors = make_sensors(settings.sim_sensors, settings.sim_seed, behaviour)
        timeline = Timeline(sensors, settings.sim_interval_s, random.Random(settings.sim_seed))
        sessions = Sessions(
            sensors,
            refuse=settings.device_ids(settings.sim_refuse),
            silent=settings.device_ids(settings.sim_silent),
        )
        run(Modem(), timeline, transport, stop, settings.sim_frames, sessions=sessions)
    finally:
        transport.close()
