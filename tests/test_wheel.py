"""The built wheel installs into a clean virtual environment and works from there.

What is real and what is borrowed, so that the test stays honest and takes seconds, not minutes:

* The wheel is built by pip from a copy of the package's files (pyproject.toml, README.md, LICENSE
  and the package folder) with the build backend pyproject.toml names, in an isolated build
  environment: the same path ``pip install airflow-provider-stableaudio`` takes from an sdist.
* It goes into a new venv made with ``python -m venv`` (no ``--system-site-packages``), installed by
  pip with ``--no-deps``: the provider's files, metadata, entry points and console script there
  come only from the wheel.
* Its dependencies (Airflow and the rest) are not downloaded again: the venv sees a folder of links
  to the running environment's installed packages, minus this project's own editable install (its
  metadata, its import hook and every ``.pth`` file), through one ``.pth`` line. The checks below
  prove that the provider is imported from the new venv, that exactly one distribution of it is
  visible, and that the source tree is not on ``sys.path``.

Then, in that venv, from a folder that is not the project: ``airflow providers list`` and
``airflow providers hooks`` show the provider and its connection type, and the emulator started
with the wheel's ``stableaudio-emulator`` script answers the wheel's hook (the connection test).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import airflow_provider_stableaudio
from tests.conftest import ROOT

PACKAGE = "airflow_provider_stableaudio"
DIST = "airflow-provider-stableaudio"
VERSION = airflow_provider_stableaudio.__version__
SOURCE_FILES = ("pyproject.toml", "README.md", "LICENSE")
KEY = "wheel-test-key"


def run(argv: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{argv} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel freshly built from a copy of the package (a stale ``build/`` folder cannot leak in)."""
    src = tmp_path_factory.mktemp("wheel-src")
    for name in SOURCE_FILES:
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / PACKAGE, src / PACKAGE, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheelhouse")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(out), str(src)], cwd=src)
    (built,) = out.glob("*.whl")
    assert built.name == f"{PACKAGE}-{VERSION}-py3-none-any.whl"
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv holding the wheel, with the running environment's other packages linked in."""
    root = tmp_path_factory.mktemp("clean")
    env_dir = root / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], cwd=root)
    python = env_dir / "bin" / "python"
    assert "include-system-site-packages = false" in (env_dir / "pyvenv.cfg").read_text()
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", str(wheel)], cwd=root)

    deps = root / "deps"
    deps.mkdir()
    ours = (PACKAGE, f"__editable__.{PACKAGE}", f"__editable___{PACKAGE}")
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if entry.name.startswith(ours) or entry.suffix == ".pth":
            continue
        (deps / entry.name).symlink_to(entry)
    site = Path(
        run(
            [str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=root
        ).strip()
    )
    (site / "_wheel_test_deps.pth").write_text(f"{deps}\n")
    return env_dir


@pytest.fixture(scope="module")
def clean_env(venv: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("airflow-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTHON", "VIRTUAL_ENV"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
    )
    return env


def last_line_json(stdout: str) -> Any:
    """The JSON a command printed last (Airflow 3.0 logs to stdout before it)."""
    return json.loads(stdout.strip().splitlines()[-1])


def test_the_wheel_holds_the_package_its_metadata_and_license(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        dist_info = f"{PACKAGE}-{VERSION}.dist-info"
        metadata = archive.read(f"{dist_info}/METADATA").decode()
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()
    sources = {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / PACKAGE).rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert sources <= names, f"missing from the wheel: {sorted(sources - names)}"
    assert f"{PACKAGE}/py.typed" in names
    assert f"{PACKAGE}/emulator/__main__.py" in names
    assert f"{dist_info}/licenses/LICENSE" in names
    assert not [name for name in names if name.startswith(("tests/", "example_dags/", "benchmarks/"))]
    assert f"Name: {DIST}" in metadata
    assert "License-Expression: Apache-2.0" in metadata
    assert "Requires-Dist: apache-airflow>=" in metadata
    assert "[apache_airflow_provider]" in entry_points
    assert "provider_info = airflow_provider_stableaudio.get_provider_info:get_provider_info" in entry_points
    assert "stableaudio-emulator = airflow_provider_stableaudio.emulator.__main__:main" in entry_points


def test_the_provider_is_imported_from_the_clean_venv_only(venv: Path, clean_env: dict[str, str]) -> None:
    code = """
import json, sys
from importlib import metadata
import airflow_provider_stableaudio
dists = [d for d in metadata.distributions() if d.metadata["Name"] == "airflow-provider-stableaudio"]
print(json.dumps({
    "file": airflow_provider_stableaudio.__file__,
    "dists": [str(d.locate_file("")) for d in dists],
    "version": dists[0].version,
    "sys_path": sys.path,
}))
"""
    cwd = Path(clean_env["AIRFLOW_HOME"])
    seen = last_line_json(run([str(venv / "bin" / "python"), "-I", "-c", code], cwd=cwd, env=clean_env))
    assert Path(seen["file"]).is_relative_to(venv)
    assert len(seen["dists"]) == 1
    assert Path(seen["dists"][0]).is_relative_to(venv)
    assert seen["version"] == VERSION
    assert not [p for p in seen["sys_path"] if p and Path(p).resolve() == ROOT]


def test_airflow_in_the_clean_venv_lists_the_provider(venv: Path, clean_env: dict[str, str]) -> None:
    airflow = [str(venv / "bin" / "python"), "-I", "-m", "airflow"]
    cwd = Path(clean_env["AIRFLOW_HOME"])
    providers = last_line_json(run([*airflow, "providers", "list", "-o", "json"], cwd=cwd, env=clean_env))
    assert {"package_name": DIST, "version": VERSION} in [
        {"package_name": p["package_name"], "version": p["version"]} for p in providers
    ]
    hooks = last_line_json(run([*airflow, "providers", "hooks", "-o", "json"], cwd=cwd, env=clean_env))
    (hook,) = [h for h in hooks if h["connection_type"] == "stableaudio"]
    assert hook["class"] == "airflow_provider_stableaudio.hooks.stable_audio.StableAudioHook"
    assert hook["package_name"] == DIST


@pytest.fixture
def installed_emulator(venv: Path, clean_env: dict[str, str]) -> Iterator[str]:
    """The emulator, started with the wheel's ``stableaudio-emulator`` script; its base URL."""
    cwd = Path(clean_env["AIRFLOW_HOME"])
    port_file = cwd / "emulator.port"
    script = venv / "bin" / "stableaudio-emulator"
    assert script.read_text().startswith(f"#!{venv / 'bin' / 'python'}")
    proc = subprocess.Popen(
        [str(script), "--port", "0", "--port-file", str(port_file), "--api-key", KEY],
        cwd=cwd,
        env=clean_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not port_file.exists():
            assert proc.poll() is None, f"the emulator exited: {proc.communicate()[0]}"
            assert time.monotonic() < deadline, "the emulator did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{int(port_file.read_text())}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0


def test_the_installed_emulator_answers_the_installed_hook(
    venv: Path, clean_env: dict[str, str], installed_emulator: str
) -> None:
    code = """
import json, sys
import airflow_provider_stableaudio.emulator.server as server
from airflow_provider_stableaudio.hooks.stable_audio import StableAudioHook
print(json.dumps({"emulator": server.__file__, "test": StableAudioHook().test_connection()}))
"""
    cwd = Path(clean_env["AIRFLOW_HOME"])
    for key, expected in ((KEY, True), ("a-wrong-key", False)):
        conn = {"conn_type": "stableaudio", "host": installed_emulator, "password": key}
        env = {**clean_env, "AIRFLOW_CONN_STABLEAUDIO_DEFAULT": json.dumps(conn)}
        seen = last_line_json(run([str(venv / "bin" / "python"), "-I", "-c", code], cwd=cwd, env=env))
        assert Path(seen["emulator"]).is_relative_to(venv)
        ok, message = seen["test"]
        assert ok is expected, message
        assert (installed_emulator in message) if expected else ("401" in message)
