"""The lowest Python the package declares is the one every tool and page assumes.

Whether the dependencies really install on that Python needs the package index: that is
``make check-floor`` (``scripts/check_python_floor.py``), which ``make test`` runs after the suite.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import tomllib
from types import ModuleType

from tests.conftest import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
FLOOR = re.fullmatch(r">=(\d+)\.(\d+)", PYPROJECT["project"]["requires-python"])


def load_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "check_python_floor", ROOT / "scripts" / "check_python_floor.py"
    )
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_requires_python_is_a_plain_floor_the_tests_run_at_or_above() -> None:
    assert FLOOR, 'requires-python must read ">=X.Y"'
    assert sys.version_info[:2] >= (int(FLOOR[1]), int(FLOOR[2]))


def test_ruff_and_mypy_check_for_the_declared_floor() -> None:
    major, minor = FLOOR[1], FLOOR[2]
    assert PYPROJECT["tool"]["ruff"]["target-version"] == f"py{major}{minor}"
    assert PYPROJECT["tool"]["mypy"]["python_version"] == f"{major}.{minor}"


def test_readme_and_docs_name_the_declared_floor_and_no_older_python() -> None:
    floor = (int(FLOOR[1]), int(FLOOR[2]))
    pages = {"README.md": ROOT / "README.md", **{p.name: p for p in (ROOT / "docs").glob("*.md")}}
    named: dict[str, set[tuple[int, int]]] = {}
    for name, path in pages.items():
        found = re.findall(r"Python (\d+)\.(\d+)(?:\+| or newer)", path.read_text(encoding="utf-8"))
        named[name] = {(int(a), int(b)) for a, b in found}
    assert named["README.md"] == {floor}
    assert named["compatibility.md"] == {floor}
    assert named["quickstart.md"] == {floor}
    assert all(versions <= {floor} for versions in named.values()), named


def test_the_floor_check_asks_for_the_declared_lower_bound_of_every_dependency() -> None:
    check = load_check()
    dependencies = PYPROJECT["project"]["dependencies"]
    pins = check.lower_bounds(dependencies)
    assert "apache-airflow-providers-common-compat==1.23.0" in pins
    assert len(pins) == len(dependencies)
    assert check.declared_floor(PYPROJECT["project"]) == f"{FLOOR[1]}.{FLOOR[2]}"
