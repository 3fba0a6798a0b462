"""MkDocs hook: pages other people write (reliability, performance) join the nav once they exist.

A nav entry for a missing file fails ``mkdocs build --strict``; a file left out of the nav only
logs a note. So these pages are listed here, and added after "The emulator" only when present.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

OPTIONAL_PAGES = {"Reliability": "reliability.md", "Performance": "performance.md"}
AFTER = "emulator.md"


def on_config(config: Any, **kwargs: Any) -> Any:
    docs = Path(config["docs_dir"])
    nav = config["nav"]
    present = [{title: page} for title, page in OPTIONAL_PAGES.items() if (docs / page).is_file()]
    listed = {page for entry in nav for page in entry.values() if isinstance(page, str)}
    present = [entry for entry in present if next(iter(entry.values())) not in listed]
    position = next((i + 1 for i, entry in enumerate(nav) if AFTER in entry.values()), len(nav))
    nav[position:position] = present
    return config
