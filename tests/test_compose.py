"""Static checks of the deployment files: no Docker engine runs here, so the compose file is
validated against the Compose Specification schema and its invariants are tested directly."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
GATEWAY_SERVICES = ("ingest", "decoder", "publisher")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return data


def test_compose_file_matches_the_compose_specification() -> None:
    tool = Path(sys.executable).parent / "check-jsonschema"
    result = subprocess.run(
        [str(tool), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_obsolete_version_key(compose) -> None:
    assert "version" not in compose


def test_services_present(compose) -> None:
    assert {"redis", *GATEWAY_SERVICES} <= set(compose["services"])


def test_redis_keeps_its_data_and_is_not_exposed(compose) -> None:
    redis = compose["services"]["redis"]
    image = redis["image"]
    major, minor = (int(x) for x in re.match(r"redis:(\d+)\.(\d+)", image).groups())
    assert (major, minor) >= (7, 2)
    assert "--appendonly" in redis["command"]
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert any(v.endswith(":/data") for v in redis["volumes"])
    assert "ports" not in redis
    assert "PONG" in " ".join(redis["healthcheck"]["test"])


def test_only_ingest_has_a_device(compose) -> None:
    for name, service in compose["services"].items():
        assert ("devices" in service) == (name == "ingest"), name


def test_decoder_can_scale(compose) -> None:
    decoder = compose["services"]["decoder"]
    assert "container_name" not in decoder
    assert "ports" not in decoder


def test_gateway_services_wait_for_healthy_redis_and_restart(compose) -> None:
    for name in GATEWAY_SERVICES:
        service = compose["services"][name]
        assert service["depends_on"]["redis"]["condition"] == "service_healthy", name
        assert service["restart"] in {"unless-stopped", "always", "on-failure"}, name
        assert service["logging"]["options"]["max-size"], name
        assert service["read_only"] is True, name


def test_secrets_never_inline(compose) -> None:
    env = compose["services"]["publisher"]["environment"]
    assert "GATEWAY_MQTT_PASSWORD" not in env
    assert env["GATEWAY_MQTT_PASSWORD_FILE"].startswith("/run/secrets/")
    assert env["GATEWAY_MQTT_TLS"].endswith("true}")


def test_every_variable_in_compose_is_in_env_example() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    used = set(re.findall(r"\$\{(GATEWAY_[A-Z_]+)", text)) - {"GATEWAY_IMAGE_TAG"}
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    declared = set(re.findall(r"^(GATEWAY_[A-Z_]+)=", example, re.MULTILINE))
    assert used <= declared, used - declared


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    sources = "\n".join(
        p.read_text(encoding="utf-8") for p in ROOT.glob("*/*/src/gateway_*/settings.py")
    )
    fields = set(re.findall(r"^    ([a-z][a-z0-9_]*): ", sources, re.MULTILINE))
    assert fields, "no settings found"
    names = {"GATEWAY_" + f.upper() for f in fields}
    missing = sorted(n for n in names if n not in readme)
    assert not missing, missing


def test_image_runs_as_non_root_with_the_same_python_minor() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^USER \d+:\d+$", dockerfile, re.MULTILINE)
    assert "python:3.11" in dockerfile
    assert dockerfile.count("FROM ") >= 2
    assert "uv sync --frozen" in dockerfile
