"""The run folder: everything needed to read, compare and reproduce a run.

    runs/<name>/config.yaml     the resolved configuration (every default spelled out)
    runs/<name>/environment.json git commit, package versions, machine, seeds
    runs/<name>/rounds.csv      one row per round (cumulative virtual time, energy, bytes; metrics)
    runs/<name>/clients.csv     one row per client per round (groups, work, FLOPs, bytes, seconds, joules, method)
    runs/<name>/summary.json    final metrics and time/energy/bytes to the target macro-F1 (written last)
    runs/<name>/model.npz       the final global parameter groups under their transport keys

Rows are appended and flushed as rounds finish, so a killed run keeps every round it completed.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import subprocess
import sys
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from common.config import to_dict

ROUND_FIELDS = [
    "round",
    "virtual_time_s",
    "energy_j",
    "bytes_up",
    "bytes_down",
    "round_time_s",
    "deadline_s",
    "accuracy",
    "macro_f1",
    "rare_modality_f1",
    "participants",
    "failed",
    "late",
    "sat_out",
]
CLIENT_FIELDS = [
    "round",
    "client",
    "tier",
    "profile",
    "status",
    "groups",
    "present",
    "samples",
    "work_fraction",
    "flops",
    "bytes_up",
    "bytes_down",
    "virtual_s",
    "virtual_j",
    "wall_train_s",
    "wall_total_s",
    "energy_j",
    "energy_method",
    "peak_rss_mb",
]


def environment(seed: int) -> dict[str, Any]:
    """Git commit, package versions and machine facts for a run's provenance."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, timeout=5)
        git = {"commit": commit.stdout.strip() or None, "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        git = {"commit": None, "dirty": None}
    versions: dict[str, str | None] = {}
    for pkg in ("relief", "flwr", "torch", "numpy", "ray", "psutil", "pyyaml"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "git": git,
        "packages": versions,
        "python": sys.version.split()[0],
        "machine": {
            "platform": platform.platform(),
            "processor": platform.machine(),
            "cpus": os.cpu_count(),
            "node": platform.node(),
        },
        "seed": seed,
    }


class RunRecorder:
    """Writes one run folder; see the module docstring."""

    def __init__(
        self, run_dir: str | Path, cfg: Any, extra: Mapping[str, Any] | None = None, metric_columns: Sequence[str] = ()
    ) -> None:
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        env = environment(getattr(cfg, "seed", 0)) | dict(extra or {})
        (self.dir / "environment.json").write_text(json.dumps(env, indent=2))
        self._rounds = self._open("rounds.csv", [*ROUND_FIELDS, *metric_columns])
        self._clients = self._open("clients.csv", CLIENT_FIELDS)

    def _open(self, name: str, fields: Sequence[str]) -> tuple[Any, csv.DictWriter]:
        f = (self.dir / name).open("w", newline="")
        writer = csv.DictWriter(f, fieldnames=list(fields), extrasaction="ignore")
        writer.writeheader()
        f.flush()
        return f, writer

    def round(self, row: Mapping[str, Any]) -> None:
        self._write(self._rounds, row)

    def clients(self, rows: Sequence[Mapping[str, Any]]) -> None:
        for row in rows:
            self._write(self._clients, row)

    def _write(self, handle: tuple[Any, csv.DictWriter], row: Mapping[str, Any]) -> None:
        f, writer = handle
        writer.writerow({k: _fmt(v) for k, v in row.items()})
        f.flush()

    def arrays(self, name: str, arrays: Mapping[str, Any]) -> Path:
        """Save arrays (the final global groups, under their transport keys) as a plain .npz (no pickle)."""
        import numpy as np

        path = self.dir / name
        with (self.dir / (name + ".tmp")).open("wb") as f:
            np.savez(f, **dict(arrays))
        (self.dir / (name + ".tmp")).replace(path)
        return path

    def summary(self, data: Mapping[str, Any]) -> Path:
        path = self.dir / "summary.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(path)
        return path

    def close(self) -> None:
        for f, _ in (self._rounds, self._clients):
            f.close()


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, list | tuple):
        return "+".join(map(str, v))
    return v


def read_rows(path: str | Path) -> list[dict[str, str]]:
    with Path(path).open() as f:
        return list(csv.DictReader(f))
