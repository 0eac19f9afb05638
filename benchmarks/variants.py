"""Shared plumbing of the benchmarks that compare configuration variants side by side: every variant runs on the
same config and seeds through the direct runner (the same pure functions Flower calls), and results are saved
under runs/bench/."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from common.experiment import load_experiment
from relief_server.direct import run_direct
from relief_server.session import Session

OUT = Path("runs/bench")

Measure = Callable[[Session, dict[str, Any]], dict[str, Any]]


def run_variants(
    config: str, variants: Mapping[str, Sequence[str]], seeds: Sequence[int], base: Sequence[str], measure: Measure
) -> dict[str, list[dict[str, Any]]]:
    """Run every variant (its overrides after ``base``) for every seed; ``measure(session, summary)`` picks the
    figures of one run. Prints one line per run."""
    results: dict[str, list[dict[str, Any]]] = {}
    for name, extra in variants.items():
        for seed in seeds:
            cfg = load_experiment(config, [*base, *extra, f"seed={seed}"])
            t0 = time.perf_counter()
            session, summary = run_direct(cfg)
            row = {"seed": seed, **measure(session, summary), "wall_s": time.perf_counter() - t0}
            results.setdefault(name, []).append(row)
            figures = " ".join(f"{k} {v:.3f}" for k, v in row.items() if isinstance(v, float) and k != "wall_s")
            print(f"  {name:32s} seed {seed}: {figures} ({row['wall_s']:.0f} s)", flush=True)
    return results


def save(name: str, text: str, results: Any) -> Path:
    """Write runs/bench/<name>.md (the table) and <name>.json (every run's figures)."""
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.md").write_text(text + "\n")
    (OUT / f"{name}.json").write_text(json.dumps(results, indent=2))
    return OUT / f"{name}.md"
