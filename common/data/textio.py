"""Fast reading of whitespace-separated numeric text files, with errors that name the file and line.

The real PAMAP2 files hold ~3 million rows of 54 numbers, so the happy path parses the whole file in one
``np.fromstring`` call; only when the number count does not fit a rectangular table is the file scanned line by
line to find (and name) the first bad line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from common.data.errors import DataError


def read_table(path: Path, ncols: int) -> np.ndarray:
    """Rows of ``ncols`` numbers (space or tab separated; ``NaN`` allowed) as a float64 (rows, ncols) array."""
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror})") from None
    n_lines = sum(1 for line in text.splitlines() if line.strip())
    try:
        flat = np.fromstring(text, dtype=np.float64, sep=" ")
    except ValueError:  # numpy >= 2 raises on an unparsable token
        flat = None
    if flat is not None and flat.size == n_lines * ncols:
        return flat.reshape(n_lines, ncols)
    _raise_first_bad_line(path, text, ncols)
    raise DataError(f"{path}: expected {n_lines} rows of {ncols} numbers")  # not reached in practice


def _raise_first_bad_line(path: Path, text: str, ncols: int) -> None:
    for lineno, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) != ncols:
            raise DataError(f"{path}:{lineno}: expected {ncols} numbers, got {len(tokens)}")
        for col, tok in enumerate(tokens, start=1):
            try:
                float(tok)
            except ValueError:
                raise DataError(f"{path}:{lineno}: column {col}: {tok!r} is not a number") from None
