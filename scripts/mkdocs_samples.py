"""MkDocs hook: code samples in the docs come from files the tests run, so they cannot drift.

As in Airflow's own docs, a sample is a section of an example DAG between ``# [START name]`` and
``# [END name]``. A page includes it with a line of its own, inside a fenced code block::

    # --8<-- "example_dags/example_stable_audio.py:howto_operator_stable_audio"

(a Python comment, so that ``ruff format``, which formats the python blocks of Markdown files,
leaves it alone; the path is relative to the repository root). The line becomes the section, dedented, without
the markers of sections nested in it; several such lines in one block are joined by a blank
line. A missing file or section fails the build.
``tests/test_docs_samples.py`` uses the same functions for the README, which GitHub shows as is.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

INCLUDE = re.compile(r'^[ \t]*# --8<-- "(?P<path>[^":]+):(?P<name>[\w-]+)"[ \t]*\n?', re.MULTILINE)
MARKER = re.compile(r"^[ \t]*# \[(START|END) [\w-]+\][ \t]*$")


def section(path: Path, name: str) -> str:
    """The lines of ``path`` between ``# [START name]`` and ``# [END name]``, dedented.

    :raises LookupError: the file, or that section of it, does not exist (or is empty).
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    except OSError as exc:
        raise LookupError(f"cannot read {path}: {exc}") from None
    markers = [line.strip() for line in lines]
    try:
        start = markers.index(f"# [START {name}]")
        end = markers.index(f"# [END {name}]", start)
    except ValueError:
        raise LookupError(f"{path} has no section '# [START {name}]' ... '# [END {name}]'") from None
    inner: list[str] = []
    dropped = False
    for line in lines[start + 1 : end]:
        if MARKER.match(line):  # of a nested section
            dropped = True
        elif not (dropped and not line.strip() and inner and not inner[-1].strip()):
            inner.append(line)  # (a blank line the dropped marker would double is skipped)
            dropped = False
    text = textwrap.dedent("".join(inner)).strip("\n")
    if not text:
        raise LookupError(f"section {name} of {path} is empty")
    return text + "\n"


def expand(markdown: str, root: Path) -> str:
    """``markdown`` with every include line replaced by its section (see the module docstring)."""

    def include(match: re.Match[str]) -> str:
        text = section(root / match["path"], match["name"])
        # Two includes in a row are one sample in two parts: keep them apart by a blank line.
        follows = INCLUDE.match(markdown, match.end())
        return text + ("\n" if follows else "")

    return INCLUDE.sub(include, markdown)


def on_page_markdown(markdown: str, *, page: Any, config: Any, **kwargs: Any) -> str:
    from mkdocs.exceptions import PluginError

    root = Path(config["config_file_path"]).resolve().parent
    try:
        return expand(markdown, root)
    except LookupError as exc:
        raise PluginError(f"{page.file.src_uri}: {exc}") from None
