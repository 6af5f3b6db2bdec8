"""The package itself: its public names, and nothing outside the standard library behind them."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import gateway_dash7

PACKAGE_DIR = Path(gateway_dash7.__file__).parent
MODULES = ("alp", "counter", "crc", "d7asp", "downlink", "files", "serial")


def test_the_public_names_are_the_modules_public_names() -> None:
    exported: set[str] = set()
    for name in MODULES:
        module = importlib.import_module(f"gateway_dash7.{name}")
        assert not set(module.__all__) & exported, name
        exported |= set(module.__all__)
        for attr in module.__all__:
            assert getattr(gateway_dash7, attr) is getattr(module, attr), attr
    assert set(gateway_dash7.__all__) == exported
    assert sorted(path.stem for path in PACKAGE_DIR.glob("*.py")) == sorted(("__init__", *MODULES))


def test_the_distribution_declares_no_dependency() -> None:
    assert not importlib.metadata.requires("gateway-dash7")
    assert (PACKAGE_DIR / "py.typed").is_file()


def _imported_top_level_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: relative import"
            assert node.module is not None
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__":
            raise AssertionError(f"{path.name}: dynamic import")
    return names


def test_every_module_imports_the_standard_library_only() -> None:
    allowed = set(sys.stdlib_module_names) | {"gateway_dash7", "__future__"}
    for path in sorted(PACKAGE_DIR.glob("*.py")):
        imported = _imported_top_level_names(path)
        assert "importlib" not in imported, f"{path.name}: dynamic import"
        outside = imported - allowed
        assert not outside, f"{path.name} imports {sorted(outside)}"


def test_importing_the_package_loads_nothing_outside_the_standard_library() -> None:
    """The same, at run time: what `import gateway_dash7` adds to sys.modules, in a fresh
    interpreter (-I: no site customisation, no user site, no PYTHONPATH)."""
    code = (
        "import json, sys; before = set(sys.modules); import gateway_dash7; "
        "print(json.dumps(sorted(set(sys.modules) - before)))"
    )
    site = str(PACKAGE_DIR.parent)
    probe = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {site!r}); {code}"],
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = json.loads(probe.stdout)
    assert "gateway_dash7" in loaded
    outside = {
        name
        for name in loaded
        if name.split(".")[0] not in sys.stdlib_module_names
        and name.split(".")[0] != "gateway_dash7"
    }
    assert not outside, sorted(outside)
