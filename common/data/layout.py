"""Finding a data set's files under a user-given folder, with a message that names the expected layout."""

from __future__ import annotations

import re
from pathlib import Path

from common.data.errors import DataError


def find_files(root: str | Path, pattern: str, dataset: str, layout: str, url: str) -> list[tuple[Path, re.Match[str]]]:
    """Every file below ``root`` (recursively: the UCI zips nest folders) whose name fully matches ``pattern``.

    Returns (path, match) pairs sorted by path. A missing folder or no matching file raises a DataError that shows the
    expected layout and where to download the data set.
    """
    base = Path(root).expanduser()
    hint = f"expected the {dataset} layout:\n{layout}\nDownload it from {url} and set data.path to the folder."
    if not str(root) or not base.is_dir():
        raise DataError(f"{dataset}: data.path {str(root)!r} is not a folder; {hint}")
    rx = re.compile(pattern)
    found = [(p, m) for p in sorted(base.rglob("*")) if p.is_file() and (m := rx.fullmatch(p.name))]
    if not found:
        raise DataError(f"{dataset}: no file named like {pattern!r} under {base}; {hint}")
    return found
