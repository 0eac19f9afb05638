"""The gains split by part: RELIEF with one part switched off at a time, beside FedAvg, same data, seeds and clock.

    python -m benchmarks ablation [--seeds 0,1,2] [--config configs/default.yaml]

Parts (`strategy.relief.*`): cohort-wise aggregation (`cohort_aggregation=false`: every device also returns its
copy of every group, so non-owners' stale copies are averaged in), divergence-guided allocation (`scores=random`),
elastic work (`elastic=false`: full local work for the chosen groups; late updates dropped), sparse transport
(`sparse=false`: transfers priced as the whole model). Runs use the direct runner (the same pure functions Flower
calls). Results: runs/bench/ablation.{md,json}.
"""

from __future__ import annotations

import argparse
import statistics

from benchmarks.variants import run_variants, save
from relief_server.session import Session

VARIANTS = {
    "relief": [],
    "relief - cohort aggregation": ["strategy.relief.cohort_aggregation=false"],
    "relief - divergence allocation": ["strategy.relief.scores=random"],
    "relief - elastic work": ["strategy.relief.elastic=false"],
    "relief - sparse transport": ["strategy.relief.sparse=false"],
    "fedavg-deadline": ["strategy.name=fedavg-deadline"],
    "fedavg": ["strategy.name=fedavg"],
}


def _mean(values: list[float | None]) -> str:
    got = [v for v in values if v is not None]
    if not got:
        return "not reached"
    text = f"{statistics.mean(got):.3g}"
    return text if len(got) == len(values) else f"{text} ({len(got)}/{len(values)} reached)"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks ablation")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--config", default="configs/default.yaml")
    p.add_argument("--rounds", type=int, default=None, help="override train.rounds (default: the config's)")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]

    def measure(session: Session, summary: dict) -> dict:
        hit = summary["to_target"] or {}
        return {
            "macro_f1": summary["final"]["macro_f1"],
            "rare_f1": summary["final"]["rare_modality_f1"],
            "time_s": hit.get("time_s"),
            "energy_j": hit.get("energy_j"),
            "bytes": hit.get("bytes"),
        }

    base = ["strategy.name=relief", *([f"train.rounds={args.rounds}"] if args.rounds else [])]
    results = run_variants(args.config, VARIANTS, seeds, base, measure)
    lines = [
        "| variant | time to target (s) | energy to target (J) | MB to target | final macro-F1 | rare-modality F1 |",
        "|---|---|---|---|---|---|",
    ]
    for name, rows in results.items():
        mb = [r["bytes"] / 1e6 if r["bytes"] is not None else None for r in rows]
        lines.append(
            f"| {name} | {_mean([r['time_s'] for r in rows])} | {_mean([r['energy_j'] for r in rows])} | "
            f"{_mean(mb)} | {statistics.mean(r['macro_f1'] for r in rows):.3f} | "
            f"{statistics.mean(r['rare_f1'] for r in rows):.3f} |"
        )
    text = (
        "\n".join(lines) + f"\n\n{args.config}, seeds {seeds}; means over seeds (to-target means over the seeds "
        "that reached it)."
    )
    print(text)
    save("ablation", text, results)
    return 0
