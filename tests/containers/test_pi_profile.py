"""The `pi` profile as docs/deployment.md tells a user to set it up: `.env` from `.env.example`,
the MQTT password and the broker's CA as files in ./secrets/ owned by uid 10001, mode 0400, and
`docker compose up -d`. The publisher must reach a TLS broker whose certificate the given CA
signed, with the password, and must refuse a broker whose certificate another CA signed.

What stands in for the Pi's surroundings is in compose.pi-test.yml (the modem on TCP instead of
a mapped serial device, the brokers).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from compose_project import HERE, PI_GATEWAY, Project, docker, report

from gateway_common.streams import PUBLISHER_GROUP, StreamKeys
from gateway_devkit.polling import wait_until
from pki import issue, make_ca

pytestmark = pytest.mark.container

PASSWORD = "pi-test-password"  # noqa: S105 - the test broker's own
USER = "gateway"
KEYS = StreamKeys("gw")
TOPIC = "mqtts/pi-project/+/pi-edge/+"

BROKER_CONF = """\
per_listener_settings true
listener 8883
certfile /mosquitto/config/server.crt
keyfile /mosquitto/config/server.key
allow_anonymous false
password_file /mosquitto/config/passwd
listener 1883 127.0.0.1
allow_anonymous true
log_dest stdout
"""


def write_env(directory: Path, host: str) -> None:
    """`.env` from `.env.example`, with the values SCorp-io issues filled in."""
    values = {
        "GATEWAY_MQTT_HOST": host,
        "GATEWAY_MQTT_USERNAME": USER,
        "GATEWAY_PROJECT_ID": "pi-project",
        "GATEWAY_EDGE_NODE_ID": "pi-edge",
    }
    text = (directory / ".env.example").read_text(encoding="utf-8")
    for name, value in values.items():
        text, found = re.subn(rf"^{name}=.*$", f"{name}={value}", text, flags=re.MULTILINE)
        assert found == 1, name
    (directory / ".env").write_text(text, encoding="utf-8")


def make_brokers(directory: Path, image: str) -> Path:
    """The SCorp-io stand-in and the impostor: configs, certificates, password file."""
    pki = directory / "test-pki"
    make_ca(pki, "scorp-ca")
    make_ca(pki, "rogue-ca")
    for name, ca, host in (
        ("scorp-io", "scorp-ca", "mqtt.scorp-io.test"),
        ("impostor", "rogue-ca", "impostor.scorp-io.test"),
    ):
        conf = directory / "test-brokers" / name
        conf.mkdir(parents=True)
        crt, key = issue(pki, ca, name, f"DNS:{host}")
        (conf / "server.crt").write_bytes(crt.read_bytes())
        (conf / "server.key").write_bytes(key.read_bytes())
        (conf / "mosquitto.conf").write_text(BROKER_CONF, encoding="utf-8")
        docker(
            "run",
            "--rm",
            "-v",
            f"{conf}:/x",
            image,
            "mosquitto_passwd",
            "-b",
            "-c",
            "/x/passwd",
            USER,
            PASSWORD,
        )
        for path in conf.iterdir():
            path.chmod(0o644)  # test material, read by the broker's own user
    return pki / "scorp-ca.crt"


def make_secrets(directory: Path, ca: Path) -> None:
    """Exactly as docs/deployment.md, "Secrets", tells the user."""
    secrets = directory / "secrets"
    secrets.mkdir(mode=0o700)
    (secrets / "mqtt_password").write_text(PASSWORD, encoding="utf-8")
    (secrets / "console_password").write_text(PASSWORD, encoding="utf-8")
    (secrets / "mqtt_ca.pem").write_bytes(ca.read_bytes())
    for name in ("mqtt_password", "console_password", "mqtt_ca.pem"):
        os.chown(secrets / name, 10001, 10001)
    (secrets / "mqtt_password").chmod(0o400)
    (secrets / "console_password").chmod(0o400)
    (secrets / "mqtt_ca.pem").chmod(0o444)


@pytest.fixture(scope="module")
def pi(export: Path, image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    directory = tmp_path_factory.mktemp("pi") / "dash7-gateway"
    shutil.copytree(export, directory, symlinks=True)
    ca = make_brokers(directory, "eclipse-mosquitto:2.0.20")
    make_secrets(directory, ca)
    project = Project(directory, profile="pi", overrides=(str(HERE / "compose.pi-test.yml"),))
    try:
        yield project
    finally:
        project.down()


def test_the_publisher_refuses_a_broker_certified_by_another_ca(pi: Project) -> None:
    write_env(pi.directory, "impostor.scorp-io.test")
    pi.compose("up", "-d")
    services = {row["Service"] for row in pi.containers()}
    assert services == {"redis", *PI_GATEWAY, "modem", "broker", "impostor"}
    pi.wait_healthy(("ingest", "decoder"), 90)
    client = pi.redis()
    assert wait_until(lambda: client.xlen(KEYS.records) >= 3, 60, 1), "no records to wait"
    # Nothing reaches the impostor, the records stay in Redis, and the log says why.
    assert pi.subscribe("impostor", TOPIC, count=1, timeout_s=10) == []
    delivered = [
        g for g in client.xinfo_groups(KEYS.records) if g["name"].decode() == PUBLISHER_GROUP
    ]
    assert not delivered or int(delivered[0]["entries-read"] or 0) == 0
    events = [
        json.loads(line.split("|", 1)[-1])
        for line in pi.logs("publisher").splitlines()
        if "{" in line
    ]
    failures = [e for e in events if e.get("event") == "mqtt_connect_failed"]
    assert failures, pi.logs("publisher")[-3000:]
    assert "CERTIFICATE_VERIFY_FAILED" in failures[0]["error"], failures[0]
    assert not [e for e in events if e.get("event") == "mqtt_connected"]


def test_the_publisher_reaches_scorp_io_with_the_secret_files(pi: Project) -> None:
    write_env(pi.directory, "mqtt.scorp-io.test")
    started = time.monotonic()
    pi.compose("up", "-d")  # the changed setting re-creates the publisher
    took = pi.wait_healthy(PI_GATEWAY, 90)
    report(
        f"pi profile: publisher healthy over TLS {took:.0f} s after `up -d` with the corrected host"
    )
    messages = pi.subscribe("broker", TOPIC, count=4, timeout_s=60)
    assert len(messages) == 4, pi.logs("publisher")[-3000:]
    kinds = [topic.split("/")[2] for _, topic, _ in messages]
    assert kinds[0] == "DBIRTH"
    assert "DDATA" in kinds
    report(
        f"pi profile memory (docker stats, {time.monotonic() - started:.0f} s after up): "
        + ", ".join(f"{n} {mb:.1f} MB" for n, mb in sorted(pi.memory_mb().items()))
    )
