"""Test certificates made with the openssl command: a CA, and server certificates it signs.

Used by the publisher's TLS tests and the container tests' TLS broker. EC P-256 keys, valid for
two days, unencrypted: test material, never a deployment's.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

__all__ = ["issue", "make_ca"]

OPENSSL = "/usr/bin/openssl"
EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


def _openssl(directory: Path, *args: str) -> None:
    subprocess.run([OPENSSL, *args], cwd=directory, check=True, capture_output=True, timeout=30)


def make_ca(directory: Path, name: str) -> Path:
    """A self-signed CA: `name.crt` and `name.key` in `directory`; returns the certificate."""
    directory.mkdir(parents=True, exist_ok=True)
    _openssl(
        directory,
        "req",
        "-x509",
        *EC_KEY,
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.crt",
        "-days",
        "2",
        "-subj",
        f"/CN={name}",
    )
    return directory / f"{name}.crt"


def issue(directory: Path, ca: str, name: str, san: str) -> tuple[Path, Path]:
    """A certificate `name.crt` (key `name.key`) for `san` (`DNS:host,IP:addr`), signed by `ca`."""
    (directory / f"{name}.ext").write_text(f"subjectAltName={san}\n", encoding="utf-8")
    _openssl(
        directory,
        "req",
        *EC_KEY,
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.csr",
        "-subj",
        f"/CN={name}",
    )
    _openssl(
        directory,
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        f"{ca}.crt",
        "-CAkey",
        f"{ca}.key",
        "-CAcreateserial",
        "-out",
        f"{name}.crt",
        "-days",
        "2",
        "-extfile",
        f"{name}.ext",
    )
    return directory / f"{name}.crt", directory / f"{name}.key"
