"""The docs cannot drift: samples are sections of the example DAGs the tests run, facts match the code.

``make docs`` includes the sections into the site through ``scripts/mkdocs_samples.py`` (and fails
on a missing one); these tests hold the README, which GitHub shows as is, to the same sections,
and run without the docs extra installed.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

from airflow_provider_stableaudio.download import DOWNLOAD_CHUNK_BYTES
from airflow_provider_stableaudio.waiting import DEFER_TIMEOUT_MARGIN
from tests.conftest import ROOT

PAGES = sorted((ROOT / "docs").glob("*.md"))
PYTHON_BLOCK = re.compile(r"^```python\n(?P<body>.*?)^```", re.MULTILINE | re.DOTALL)
README_SAMPLE = re.compile(
    r"^<!-- sample from (?P<path>\S+): (?P<names>[\w, -]+) -->\n```python\n(?P<body>.*?)^```",
    re.MULTILINE | re.DOTALL,
)


def load_samples() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mkdocs_samples", ROOT / "scripts" / "mkdocs_samples.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


samples = load_samples()


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_python_sample_in_the_docs_is_included_from_an_example_dag(page: Path) -> None:
    for block in PYTHON_BLOCK.finditer(page.read_text(encoding="utf-8")):
        lines = block["body"].splitlines()
        assert lines, f"{page.name}: an empty python block"
        for line in lines:
            match = samples.INCLUDE.fullmatch(line)
            assert match, f"{page.name}: a python sample written inline, not included: {line!r}"
            assert match["path"].startswith("example_dags/"), line
            samples.section(ROOT / match["path"], match["name"])  # raises if it is gone


def test_readme_python_samples_are_the_sections_they_name() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    tagged = list(README_SAMPLE.finditer(readme))
    assert len(tagged) == len(PYTHON_BLOCK.findall(readme)) >= 2, (
        "a python block in README.md names no sample"
    )
    for match in tagged:
        names = [name.strip() for name in match["names"].split(",")]
        expected = samples.expand("".join(f'# --8<-- "{match["path"]}:{n}"\n' for n in names), ROOT)
        assert match["body"] == expected, (
            f"README.md's sample of {match['path']}: {names} drifted; now:\n{expected}"
        )


def test_a_missing_section_or_file_is_an_error(tmp_path: Path) -> None:
    dag = tmp_path / "dag.py"
    dag.write_text(
        "x = 1\n# [START kept]\n    y = 2\n    # [START inner]\n    z = 3\n    # [END inner]\n# [END kept]\n"
    )
    assert (
        samples.expand('```python\n# --8<-- "dag.py:kept"\n```\n', tmp_path)
        == "```python\ny = 2\nz = 3\n```\n"
    )
    with pytest.raises(LookupError, match="no section"):
        samples.expand('# --8<-- "dag.py:gone"\n', tmp_path)
    with pytest.raises(LookupError, match="cannot read"):
        samples.expand('# --8<-- "nope.py:kept"\n', tmp_path)


def test_the_docs_state_the_download_chunk_size_and_the_defer_timeout_of_the_code() -> None:
    operator_page = (ROOT / "docs" / "operator.md").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    chunk = f"{DOWNLOAD_CHUNK_BYTES // 1024} KiB chunks"
    assert chunk in operator_page
    assert chunk in readme
    margin = int(DEFER_TIMEOUT_MARGIN.total_seconds())
    defer_timeout = f"`execution_timeout`, plus the connection's request timeout plus {margin} seconds"
    assert defer_timeout in " ".join(operator_page.split())
