"""Cache of windowed data sets as plain `.npz` files (never pickle), keyed by a hash of what produced them.

The key covers the data section of the configuration, the effective generator seed, a format version, and for
files on disk their names, sizes and modification times, so editing the data or the config invalidates the entry.
Entries are written to a temporary file in the cache folder and renamed into place: an interrupted run leaves no
partial entry behind.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from common.data.records import ModalitySpec, WindowSet

FORMAT_VERSION = 1  # bump when the windowing or the synthetic generator changes what a given config produces
REPO_ROOT = Path(__file__).resolve().parents[2]


def default_dir() -> Path:
    """``$RELIEF_CACHE_DIR``, else ``.cache/relief-data`` under the repository root (git-ignored)."""
    env = os.environ.get("RELIEF_CACHE_DIR")
    return Path(env) if env else REPO_ROOT / ".cache" / "relief-data"


def fingerprint(path: str) -> list[tuple[str, int, int]]:
    """(relative name, size, mtime_ns) of every file under ``path`` (or of the file itself)."""
    p = Path(path).expanduser()
    if p.is_file():
        st = p.stat()
        return [(p.name, st.st_size, st.st_mtime_ns)]
    if not p.is_dir():
        return []
    out = []
    for f in sorted(p.rglob("*")):
        if f.is_file():
            st = f.stat()
            out.append((str(f.relative_to(p)), st.st_size, st.st_mtime_ns))
    return out


def key(config: Any, extra: dict[str, Any]) -> str:
    """Hex digest naming the cache entry of ``config`` (a DataConfig) plus ``extra`` facts (seed, files)."""
    fields = {k: v for k, v in dataclasses.asdict(config).items() if k != "cache"}
    blob = json.dumps({"v": FORMAT_VERSION, "config": fields, **extra}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def save(path: Path, ws: WindowSet) -> None:
    """Write ``ws`` atomically (temporary file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {f"x_{m}": a for m, a in ws.x.items()}
    arrays.update(
        y=ws.y,
        subject=ws.subject,
        class_names=np.array(ws.class_names, dtype=str),
        modality_names=np.array([m.name for m in ws.modalities], dtype=str),
        name=np.array(ws.name),
        rate_hz=np.array(ws.rate_hz),
        window=np.array(ws.window),
    )
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path) -> WindowSet | None:
    """The cached window set at ``path``, or None when absent or unreadable (then it is rebuilt)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            names = [str(s) for s in f["modality_names"]]
            x = {m: f[f"x_{m}"] for m in names}
            return WindowSet(
                str(f["name"]),
                [ModalitySpec(m, int(x[m].shape[1])) for m in names],
                [str(s) for s in f["class_names"]],
                float(f["rate_hz"]),
                int(f["window"]),
                x,
                f["y"],
                f["subject"],
            )
    except (OSError, ValueError, KeyError, EOFError):
        return None
