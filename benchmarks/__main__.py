"""Run every ``bench_*.py`` module in this folder (each exposes ``main(argv) -> int``); `python -m benchmarks [NAME...]`
runs only the named ones (e.g. ``clock``); arguments after the names (``--repeats 7``) go to each benchmark.
Results go under ``runs/bench/``."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    names = sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py"))
    split = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))
    rest = argv[split:]
    wanted = [n if n.startswith("bench_") else f"bench_{n}" for n in argv[:split]]
    unknown = [n for n in wanted if n not in names]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; available: {names}", file=sys.stderr)
        return 2
    status = 0
    for name in wanted or names:
        print(f"== {name}", flush=True)
        module = importlib.import_module(f"benchmarks.{name}")
        status = max(status, int(module.main(rest) or 0))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
