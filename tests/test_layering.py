"""Which workspace member may import which: the services build on the packages, never on
each other, and no package builds on a service.

packages/dash7 (the wire codec) imports the standard library only (its own tests look closer);
packages/common (the services' contract) builds on it, packages/ctl on both. A service imports
packages only, in its code and in its tests; a package imports no service, tests included. Each
member's code imports only the members its pyproject.toml declares.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _members() -> dict[str, Path]:
    """Import name -> member folder, for every workspace member."""
    members = {}
    for pyproject in sorted(ROOT.glob("*/*/pyproject.toml")):
        if pyproject.parent.parent.name not in ("packages", "services"):
            continue
        (package,) = (pyproject.parent / "src").iterdir()
        members[package.name] = pyproject.parent
    return members


MEMBERS = _members()
SERVICES = {name for name, folder in MEMBERS.items() if folder.parent.name == "services"}
PACKAGES = set(MEMBERS) - SERVICES


def _imported_members(folder: Path) -> dict[str, set[str]]:
    """Member import name -> the files under `folder` that import it."""
    found: dict[str, set[str]] = {}
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in MEMBERS:
                    found.setdefault(top, set()).add(path.relative_to(ROOT).as_posix())
    return found


def _declared(folder: Path) -> set[str]:
    """The import names of the dependencies `folder`'s pyproject.toml declares."""
    project = tomllib.loads((folder / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    names = (re.match(r"[A-Za-z0-9_.-]+", dep) for dep in project.get("dependencies", []))
    return {name[0].replace("-", "_") for name in names if name}


def test_the_members_are_found() -> None:
    assert {"gateway_dash7", "gateway_common", "gateway_ctl"} <= PACKAGES
    assert {
        "gateway_ingest",
        "gateway_decoder",
        "gateway_publisher",
        "gateway_simulator",
        "gateway_console",
    } == SERVICES


@pytest.mark.parametrize("name", sorted(MEMBERS))
def test_no_member_imports_a_service_but_itself(name: str) -> None:
    imported = _imported_members(MEMBERS[name])
    others = {service: files for service, files in imported.items() if service in SERVICES - {name}}
    assert not others, others


@pytest.mark.parametrize("name", sorted(MEMBERS))
def test_code_imports_only_the_members_it_declares(name: str) -> None:
    imported = set(_imported_members(MEMBERS[name] / "src")) - {name}
    declared = _declared(MEMBERS[name]) & set(MEMBERS)
    assert imported <= declared, sorted(imported - declared)


def test_the_codec_builds_on_no_member() -> None:
    assert set(_imported_members(MEMBERS["gateway_dash7"])) == {"gateway_dash7"}
    assert _declared(MEMBERS["gateway_dash7"]) == set()


def test_the_contract_builds_on_the_codec_only() -> None:
    imported = set(_imported_members(MEMBERS["gateway_common"] / "src"))
    assert imported == {"gateway_common", "gateway_dash7"}
