"""The one error type of the data layer: bad input files, named precisely."""

from __future__ import annotations


class DataError(ValueError):
    """A data file or folder is missing or malformed. The message names the file (and line or array) and what was
    expected, so the user can fix the input without reading the code. `relief data` turns it into exit code 2."""
