from __future__ import annotations

import pytest

from gateway_common.settings import CommonSettings, HealthSettings, load_settings


def test_defaults(monkeypatch) -> None:
    for var in ("GATEWAY_REDIS_URL", "GATEWAY_STREAM_PREFIX", "GATEWAY_METRICS_PORT"):
        monkeypatch.delenv(var, raising=False)
    settings = load_settings(CommonSettings)
    assert settings.redis_url == "redis://localhost:6379/0"
    assert settings.stream_prefix == "gw"
    assert settings.metrics_port is None


def test_empty_value_means_default(monkeypatch) -> None:
    monkeypatch.setenv("GATEWAY_METRICS_PORT", "")
    assert load_settings(CommonSettings).metrics_port is None


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("GATEWAY_METRICS_PORT", "seventy"),
        ("GATEWAY_METRICS_PORT", "70000"),
        ("GATEWAY_REDIS_URL", "http://localhost"),
        ("GATEWAY_REDIS_URL", "redis://127.0.0.1:abc/0"),
        ("GATEWAY_STREAM_PREFIX", "has space"),
        ("GATEWAY_LOG_LEVEL", "loud"),
    ],
)
def test_bad_value_stops_with_one_message_naming_the_variable(
    monkeypatch, capsys, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as stop:
        load_settings(CommonSettings)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("configuration error: ")
    assert variable in err


def test_the_healthcheck_settings_do_not_load_redis(monkeypatch) -> None:
    """gateway-healthcheck runs every few seconds on a Pi: it reads the health file only."""
    monkeypatch.setenv("GATEWAY_REDIS_URL", "redis://127.0.0.1:abc/0")  # not its business
    assert load_settings(HealthSettings).health_max_age_s == 30.0
