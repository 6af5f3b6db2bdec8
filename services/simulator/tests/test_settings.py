from __future__ import annotations

import pytest

from gateway_simulator.main import parse_overrides
from gateway_simulator.settings import load


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LISTEN", "SENSORS", "INTERVAL_S", "FRAMES"):
        monkeypatch.delenv(f"GATEWAY_SIM_{name}", raising=False)
    settings = load({})
    assert settings.sim_listen == "pty"
    assert settings.tcp_address() is None
    assert settings.sim_interval_s == 600
    assert settings.sim_frames == 0


def test_flags_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_SIM_SENSORS", "7")
    monkeypatch.setenv("GATEWAY_SIM_INTERVAL_S", "5")
    monkeypatch.setenv("GATEWAY_SIM_LISTEN", "tcp://192.0.2.1:7000")
    settings = load(parse_overrides(["--sensors", "2", "--wait-for-client"]))
    assert settings.sim_sensors == 2
    assert settings.sim_interval_s == 5
    assert settings.sim_wait_for_client is True
    assert settings.tcp_address() == ("192.0.2.1", 7000)


def test_ipv6_listen_address() -> None:
    assert load({"sim_listen": "tcp://[::1]:7000"}).tcp_address() == ("::1", 7000)


@pytest.mark.parametrize(
    ("env", "value", "flags", "named"),
    [
        ("GATEWAY_SIM_SENSORS", "0", [], "GATEWAY_SIM_SENSORS"),
        ("GATEWAY_SIM_LISTEN", "serial", [], "GATEWAY_SIM_LISTEN"),
        ("GATEWAY_SIM_LISTEN", "tcp://h:70000", [], "GATEWAY_SIM_LISTEN"),
        ("GATEWAY_SIM_BUTTON_PROBABILITY", "1.5", [], "GATEWAY_SIM_BUTTON_PROBABILITY"),
        ("GATEWAY_SIM_INTERVAL_S", "3", ["--interval-s", "-1"], "--interval-s"),
    ],
)
def test_bad_value_exits_2_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: str,
    value: str,
    flags: list[str],
    named: str,
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(SystemExit) as exc_info:
        load(parse_overrides(flags))
    assert exc_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("configuration error: " + named)
    assert err.count("\n") == 1
