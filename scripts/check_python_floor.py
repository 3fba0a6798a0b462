"""`make check-floor`: fail when the lowest Python that pyproject.toml declares cannot install it.

``requires-python = ">=X.Y"`` is a promise that every dependency installs on Python X.Y. It broke
once without anyone noticing (``>=3.10`` beside ``apache-airflow-providers-common-compat>=1.23.0``,
whose every release from 1.21.0 on needs Python 3.11), so this asks pip, as a user's pip would:

1. the dependencies as declared, at Python X.Y: some release of each must install there;
2. each dependency pinned to its declared lower bound (``>=1.23.0`` becomes ``==1.23.0``), at
   Python X.Y: the oldest release we claim to work with must install there too.

Both are ``pip install --dry-run --no-deps --only-binary=:all: --python-version X.Y`` (PyPI
metadata only, nothing is installed, about 5 s each); each dependency's own dependencies are its
own promise. Network access to the package index is required.

    python scripts/check_python_floor.py                        # the declared floor
    python scripts/check_python_floor.py --python-version 3.10  # would 3.10 work? (it does not)
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def declared_floor(project: dict[str, object]) -> str:
    """Return X.Y from ``requires-python = ">=X.Y"``."""
    match = re.fullmatch(r"\s*>=\s*(\d+\.\d+)\s*", str(project.get("requires-python", "")))
    if not match:
        raise SystemExit('pyproject.toml: requires-python must read ">=X.Y"')
    return match.group(1)


def lower_bounds(dependencies: list[str]) -> list[str]:
    """Each ``name>=version`` dependency pinned to ``name==version``."""
    pins = []
    for dependency in dependencies:
        match = re.match(r"\s*([A-Za-z0-9._\[\]-]+)\s*>=\s*([0-9][0-9.]*)", dependency)
        if not match:
            raise SystemExit(f"pyproject.toml: dependency {dependency!r} has no >= lower bound")
        pins.append(f"{match.group(1)}=={match.group(2)}")
    return pins


def resolves(requirements: list[str], python_version: str) -> bool:
    with tempfile.TemporaryDirectory() as target:  # --target: the running environment plays no part
        argv = [
            *(sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--no-deps"),
            *("--only-binary=:all:", "--python-version", python_version, "--target", target),
            *requirements,
        ]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    for line in result.stderr.splitlines():
        if line.startswith("ERROR") and "yanked" not in line:
            print(line if len(line) <= 400 else line[:400] + " ...", file=sys.stderr)
    return result.returncode == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--python-version", help="check this X.Y instead of the declared floor")
    args = parser.parse_args(argv)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    python_version = args.python_version or declared_floor(project)
    dependencies = list(project["dependencies"])
    failed = False
    for label, requirements in (
        ("the dependencies as declared", dependencies),
        ("their declared lower bounds", lower_bounds(dependencies)),
    ):
        ok = resolves(requirements, python_version)
        print(f"==> Python {python_version}, {label}: {'installable' if ok else 'NOT installable'}")
        failed |= not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
