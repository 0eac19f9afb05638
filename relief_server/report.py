"""Side-by-side comparison of finished runs: a table (time, energy, bytes to target; final and rare-modality F1)
and a plot of macro-F1 against virtual time. Reads only the run folders (summary.json, rounds.csv)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from common.runlog import read_rows


def _fmt(value: float | None, unit: str, scale: float = 1.0) -> str:
    return "not reached" if value is None else f"{value / scale:.2f} {unit}"


def comparison_rows(run_dirs: Mapping[str, Path]) -> list[dict[str, Any]]:
    rows = []
    for name, d in run_dirs.items():
        s = json.loads((Path(d) / "summary.json").read_text())
        hit = s.get("to_target") or {}
        rows.append(
            {
                "strategy": name,
                "time_to_target_s": hit.get("time_s"),
                "energy_to_target_j": hit.get("energy_j"),
                "bytes_to_target": hit.get("bytes"),
                "round_to_target": hit.get("round"),
                "final_macro_f1": s["final"].get("macro_f1"),
                "final_rare_f1": s["final"].get("rare_modality_f1"),
                "total_time_s": s["totals"]["virtual_time_s"],
                "total_energy_j": s["totals"]["energy_j"],
                "target": s["target_macro_f1"],
                "rare_modalities": s.get("rare_modalities"),
            }
        )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown table; speed-ups are relative to the last strategy that reached the target with a FedAvg name."""
    ref = next((r for r in rows if r["strategy"] == "fedavg" and r["time_to_target_s"]), None)
    head = (
        "| strategy | time to target | energy to target | bytes to target | final macro-F1 | "
        "rare-modality F1 | speed-up vs fedavg | energy saved vs fedavg |"
    )
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        speed = energy = "-"
        if ref and r["time_to_target_s"]:
            speed = f"{ref['time_to_target_s'] / r['time_to_target_s']:.2f}x"
            energy = f"{100 * (1 - r['energy_to_target_j'] / ref['energy_to_target_j']):+.0f} %"
        lines.append(
            f"| {r['strategy']} | {_fmt(r['time_to_target_s'], 's')} | {_fmt(r['energy_to_target_j'], 'kJ', 1e3)} | "
            f"{_fmt(r['bytes_to_target'], 'MB', 1e6)} | {r['final_macro_f1']:.3f} | {r['final_rare_f1']:.3f} | "
            f"{speed} | {energy} |"
        )
    first = rows[0]
    lines.append(
        f"\nTarget macro-F1 {first['target']:.2f}; rare modalities: {', '.join(first['rare_modalities'] or [])}; "
        "times and energies on the virtual clock (docs/energy.md)."
    )
    return "\n".join(lines)


def plot(run_dirs: Mapping[str, Path], path: Path) -> Path | None:
    """macro-F1 against cumulative virtual time, one line per run; None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2))
    target = None
    for name, d in run_dirs.items():
        rows = [r for r in read_rows(Path(d) / "rounds.csv") if r.get("macro_f1")]
        ax.plot(
            [float(r["virtual_time_s"]) for r in rows],
            [float(r["macro_f1"]) for r in rows],
            marker="o",
            markersize=3,
            label=name,
        )
        target = json.loads((Path(d) / "summary.json").read_text())["target_macro_f1"]
    if target is not None:
        ax.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"target {target:.2f}")
    ax.set_xlabel("virtual wall-clock time (s)")
    ax.set_ylabel("macro-F1 (held-out subjects)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def compare(run_dirs: Mapping[str, Path], out_dir: Path) -> str:
    """Write comparison.md / comparison.json / macro_f1_vs_time.png into ``out_dir``; return the text to print."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = comparison_rows(run_dirs)
    text = table(rows)
    (out_dir / "comparison.md").write_text(text + "\n")
    (out_dir / "comparison.json").write_text(json.dumps(rows, indent=2))
    png = plot(run_dirs, out_dir / "macro_f1_vs_time.png")
    where = f"\nTable: {out_dir / 'comparison.md'}" + (f"\nPlot:  {png}" if png else "")
    return text + where
