from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from gateway_common.settings import load_settings
from gateway_publisher.settings import PublisherSettings

SAMPLE_VALUE = "s3cret"  # a test value, not a credential
OTHER_VALUE = "hunter2"  # a test value, not a credential

REQUIRED = {
    "GATEWAY_MQTT_HOST": "broker.example",
    "GATEWAY_PROJECT_ID": "P1",
    "GATEWAY_EDGE_NODE_ID": "edge1",
}


@pytest.fixture(scope="module")
def pem_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and its key: a CA file, or a client certificate and key."""
    directory = tmp_path_factory.mktemp("pem")
    openssl = shutil.which("openssl") or "/usr/bin/openssl"
    key_type = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    files = ("-keyout", "key.pem", "-out", "cert.pem", "-days", "2", "-subj", "/CN=t")
    subprocess.run(
        [openssl, "req", "-x509", *key_type, *files],
        cwd=directory,
        check=True,
        capture_output=True,
        timeout=30,
    )
    return directory / "cert.pem", directory / "key.pem"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("GATEWAY_"):
            monkeypatch.delenv(name)


def set_env(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for name, value in {**REQUIRED, **values}.items():
        monkeypatch.setenv(name, value)


def config_error(capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as stop:
        load_settings(PublisherSettings)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("configuration error: ")
    assert err.count("\n") == 1
    return err


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch)
    settings = load_settings(PublisherSettings)
    assert settings.mqtt_port == 8883
    assert settings.mqtt_tls is True
    assert settings.mqtt_ca_file is None
    assert settings.topic_root == "mqtts"
    assert settings.client_id == "gateway-edge1"
    assert settings.password is None
    assert settings.consumer_name  # the host name
    assert settings.window_messages == 64


@pytest.mark.parametrize("variable", sorted(REQUIRED))
def test_a_missing_required_variable_is_named(monkeypatch, capsys, variable: str) -> None:
    set_env(monkeypatch)
    monkeypatch.delenv(variable)
    err = config_error(capsys)
    assert variable in err
    assert "required" in err.lower()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("GATEWAY_PROJECT_ID", "a/b"),
        ("GATEWAY_EDGE_NODE_ID", "e+"),
        ("GATEWAY_TOPIC_ROOT", "#"),
        ("GATEWAY_MQTT_PORT", "0"),
        ("GATEWAY_MQTT_TLS", "maybe"),
        ("GATEWAY_WINDOW_MESSAGES", "0"),
        ("GATEWAY_BLOCK_MS", "20000"),
        ("GATEWAY_WATCHDOG_S", "1"),  # below the shutdown grace: a clean stop would be cut
        ("GATEWAY_MQTT_CA_FILE", "/nonexistent/ca.pem"),
        ("GATEWAY_MQTT_CERT_FILE", "/nonexistent/cert.pem"),
        ("GATEWAY_MQTT_PASSWORD_FILE", "/nonexistent/password"),
    ],
)
def test_a_bad_value_is_named(monkeypatch, capsys, variable: str, value: str) -> None:
    set_env(monkeypatch, **{variable: value})
    assert variable in config_error(capsys)


def test_password_and_password_file_together_are_refused(monkeypatch, capsys, tmp_path) -> None:
    secret = tmp_path / "pw"
    secret.write_text(SAMPLE_VALUE + "\n")
    both = {"GATEWAY_MQTT_PASSWORD": "x", "GATEWAY_MQTT_PASSWORD_FILE": str(secret)}
    set_env(monkeypatch, **both)
    err = config_error(capsys)
    assert "GATEWAY_MQTT_PASSWORD_FILE" in err
    assert SAMPLE_VALUE not in err


def test_password_file_is_read_without_its_newline(monkeypatch, tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text(SAMPLE_VALUE + "\n")
    set_env(monkeypatch, GATEWAY_MQTT_PASSWORD_FILE=str(secret), GATEWAY_MQTT_USERNAME="u")
    settings = load_settings(PublisherSettings)
    assert settings.password == SAMPLE_VALUE
    assert SAMPLE_VALUE not in repr(settings)


def test_password_from_the_environment_is_not_shown(monkeypatch) -> None:
    env = {"GATEWAY_MQTT_PASSWORD": OTHER_VALUE, "GATEWAY_MQTT_USERNAME": "u"}
    set_env(monkeypatch, **env)
    settings = load_settings(PublisherSettings)
    assert settings.password == OTHER_VALUE
    assert OTHER_VALUE not in repr(settings)


@pytest.mark.parametrize("variable", ["GATEWAY_MQTT_PASSWORD", "GATEWAY_MQTT_PASSWORD_FILE"])
def test_a_password_without_a_username_is_refused(
    monkeypatch, capsys, tmp_path: Path, variable: str
) -> None:
    secret = tmp_path / "pw"
    secret.write_text(SAMPLE_VALUE)
    value = str(secret) if variable.endswith("_FILE") else SAMPLE_VALUE
    set_env(monkeypatch, **{variable: value})
    err = config_error(capsys)
    assert "GATEWAY_MQTT_USERNAME" in err
    assert SAMPLE_VALUE not in err


def test_a_file_that_is_not_a_ca_certificate_is_refused(monkeypatch, capsys, tmp_path) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("not a certificate\n")
    set_env(monkeypatch, GATEWAY_MQTT_CA_FILE=str(not_pem))
    err = config_error(capsys)
    assert "GATEWAY_MQTT_CA_FILE" in err
    assert "not a PEM CA certificate" in err


def test_a_client_certificate_and_key_that_do_not_load_are_refused(
    monkeypatch, capsys, pem_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    cert, _key = pem_pair
    wrong_key = tmp_path / "other.pem"
    wrong_key.write_text("not a key\n")
    set_env(monkeypatch, GATEWAY_MQTT_CERT_FILE=str(cert), GATEWAY_MQTT_KEY_FILE=str(wrong_key))
    err = config_error(capsys)
    assert "GATEWAY_MQTT_CERT_FILE / GATEWAY_MQTT_KEY_FILE" in err


def test_an_encrypted_key_is_refused_without_asking_for_its_passphrase(
    monkeypatch, capsys, tmp_path: Path
) -> None:
    openssl = shutil.which("openssl") or "/usr/bin/openssl"
    key_type = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1")
    files = ("-keyout", "key.pem", "-out", "cert.pem", "-days", "2", "-subj", "/CN=t")
    subprocess.run(
        [openssl, "req", "-x509", *key_type, "-passout", "pass:secret", *files],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=30,
    )
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    set_env(monkeypatch, GATEWAY_MQTT_CERT_FILE=str(cert), GATEWAY_MQTT_KEY_FILE=str(key))
    assert "unencrypted private key" in config_error(capsys)


def test_key_without_certificate_is_refused(monkeypatch, capsys, tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_text("x")
    set_env(monkeypatch, GATEWAY_MQTT_KEY_FILE=str(key))
    assert "GATEWAY_MQTT_KEY_FILE" in config_error(capsys)


def test_existing_files_and_explicit_values_are_kept(
    monkeypatch, pem_pair: tuple[Path, Path]
) -> None:
    ca, key = pem_pair
    set_env(
        monkeypatch,
        GATEWAY_MQTT_CA_FILE=str(ca),
        GATEWAY_MQTT_CERT_FILE=str(ca),
        GATEWAY_MQTT_KEY_FILE=str(key),
        GATEWAY_MQTT_CLIENT_ID="cid",
        GATEWAY_CONSUMER_NAME="pub-1",
        GATEWAY_MQTT_TLS="false",
    )
    settings = load_settings(PublisherSettings)
    assert settings.mqtt_ca_file == ca
    assert settings.mqtt_key_file == key
    assert settings.client_id == "cid"
    assert settings.consumer_name == "pub-1"
    assert settings.mqtt_tls is False
