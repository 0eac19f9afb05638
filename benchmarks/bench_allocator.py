"""Evidence for the allocator's defaults (docs/decisions.md): divergence normalisation and what to do with owned but
unassigned modalities, measured side by side on the same data, seeds and clock.

Scenario: configs/bench/allocator.yaml — compute-bound devices and a binding deadline, so the devices that own
both common and rare modalities must choose among their groups (the case where a raw divergence score can starve
the rare modality). Runs use the direct runner (the same pure functions Flower calls; see relief_server/direct.py).

    python -m benchmarks allocator [--seeds 0,1,2] [--rounds 20]
"""

from __future__ import annotations

import argparse
import statistics

from benchmarks.variants import run_variants, save
from relief_server.session import Session

VARIANTS = {
    "fedavg-deadline": ["strategy.name=fedavg-deadline"],
    "norm=raw": ["strategy.relief.divergence_norm=raw"],
    "norm=relative": ["strategy.relief.divergence_norm=relative"],
    "norm=stderr": ["strategy.relief.divergence_norm=stderr"],
    "unassigned=forward": ["strategy.relief.unassigned=forward"],
}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks allocator")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--config", default="configs/bench/allocator.yaml")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    base = ["strategy.name=relief", f"train.rounds={args.rounds}"]

    def measure(session: Session, summary: dict) -> dict:
        rounds = session.assigned[("full", "shared")] or 1
        share = {g: session.assigned[("full", g)] / rounds for g in session.core.registry.names if g != "shared"}
        hit = summary["to_target"]
        return {
            "macro_f1": summary["final"]["macro_f1"],
            "rare_f1": summary["final"]["rare_modality_f1"],
            "time_to_target_s": hit["time_s"] if hit else None,
            "energy_j": summary["totals"]["energy_j"],
            "full_tier_share": share,
            "rare_share": statistics.mean(share[f"mod.{m}"] for m in summary["rare_modalities"]),
        }

    results = run_variants(args.config, VARIANTS, seeds, base, measure)
    lines = [
        "| variant | macro-F1 (mean ± sd) | rare-modality F1 (mean ± sd) | full-sensor devices: rounds training "
        "a rare group | reached target |",
        "|---|---|---|---|---|",
    ]
    for name, rows in results.items():
        f1 = [r["macro_f1"] for r in rows]
        rare = [r["rare_f1"] for r in rows]
        reached = sum(r["time_to_target_s"] is not None for r in rows)
        rare_share = statistics.mean(r["rare_share"] for r in rows)
        lines.append(
            f"| {name} | {statistics.mean(f1):.3f} ± {statistics.pstdev(f1):.3f} | "
            f"{statistics.mean(rare):.3f} ± {statistics.pstdev(rare):.3f} | {100 * rare_share:.0f} % | "
            f"{reached}/{len(rows)} |"
        )
    text = "\n".join(lines)
    text += f"\n\n{args.config}, seeds {seeds}, {args.rounds} rounds; unassigned=forward uses norm=stderr."
    print(text)
    save("allocator", text, results)
    return 0
