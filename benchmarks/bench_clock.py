"""Clock fidelity on this CPU: measured training wall-clock vs the virtual clock's prediction from executed FLOPs.

1. Calibrate on *some* group subsets (each single modality, and all modalities) exactly as `relief calibrate` does.
2. On held-out subsets (every pair and triple of modalities) and on the full set, run real local training -- whole
   and partial epochs over synthetic PAMAP2-shaped data, mini-batches sliced from the client's tensors -- and time it.
3. Predict each run with the clock: ``client_cost(profile, executed_flops, steps=...)`` on the calibrated profile;
   report the relative error per run, its mean and maximum (target: within 20 %), and the same for a pure
   FLOP-proportional profile (no per-step term) to show what that term buys.

    python -m benchmarks clock [--threads 1] [--batch-size 32] [--samples 1024] [--repeats 3]

Writes ``runs/bench/clock.json`` and ``runs/bench/clock.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from common.clock import client_cost
from common.groups import modality_group
from common.profiles import load_profile
from relief_client.calibrate import (
    StepSample,
    all_subsets,
    calibrated_profile,
    default_model,
    fit_throughput,
    measure_subsets,
)

TARGET = 0.20


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks clock", description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: stable on a shared machine)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--samples", type=int, default=1024, help="local samples of the client (one epoch)")
    p.add_argument("--calib-steps", type=int, default=20, help="timed steps per calibration subset and repeat")
    p.add_argument("--repeats", type=int, default=7, help="timed repetitions of everything (the median is kept)")
    p.add_argument(
        "--profile",
        default=None,
        help="predict with this profile (e.g. from `relief calibrate`) instead of the in-run fit",
    )
    p.add_argument("--out", default="runs/bench", help="output folder")
    return p


def train_epoch(
    model: Any,
    registry: Any,
    subset: tuple[str, ...],
    data: dict[str, torch.Tensor],
    y: torch.Tensor,
    steps: int,
    bs: int,
) -> tuple[float, float]:
    """One client's local training as the client app runs it: ``steps`` mini-batches of its own data, training the
    subset's groups + shared. Returns (wall seconds, executed FLOPs)."""
    groups = [modality_group(m) for m in subset] + registry.shared_groups
    registry.set_trainable(groups)
    model.train()
    opt = torch.optim.SGD(registry.parameters(groups), lr=1e-3, momentum=0.9)
    n = y.shape[0]
    flops_per_sample = registry.step_flops(subset, groups).total
    executed = 0.0
    t0 = time.perf_counter()
    for i in range(steps):
        lo = (i * bs) % n
        xb = {m: data[m][lo : lo + bs] for m in subset}
        yb = y[lo : lo + bs]
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(xb), yb).backward()
        opt.step()
        executed += flops_per_sample * yb.shape[0]
    return time.perf_counter() - t0, executed


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    model, registry = default_model()
    mods = model.modalities
    subsets = all_subsets(mods)
    calib = [s for s in subsets if len(s) == 1] + [tuple(mods)]
    held_out = [s for s in subsets if 1 < len(s) < len(mods)]

    gen = torch.Generator().manual_seed(1)
    data = {m: torch.randn(args.samples, model.channels[m], model.window, generator=gen) for m in mods}
    y = torch.randint(0, model.num_classes, (args.samples,), generator=gen)
    epoch_steps = -(-args.samples // args.batch_size)
    runs: list[tuple[str, tuple[str, ...], int]] = [("held-out", s, epoch_steps) for s in held_out]
    runs += [("full", tuple(mods), epoch_steps), ("partial", tuple(mods), epoch_steps // 4)]
    runs += [("partial", held_out[0], epoch_steps // 2)]
    # Calibration blocks and measured runs alternate, repeat by repeat, so both see the same interference from
    # other processes on a shared machine; every figure is the median over the repeats.
    for _, subset, _ in runs:
        train_epoch(model, registry, subset, data, y, 3, args.batch_size)  # warm-up (allocator, optimiser state)
    calib_times: list[list[float]] = [[] for _ in calib]
    times: list[list[float]] = [[] for _ in runs]
    executed = [0.0 for _ in runs]
    calib_flops = [0.0 for _ in calib]
    for rep in range(args.repeats):
        blocks = measure_subsets(
            model,
            registry,
            calib,
            batch_size=args.batch_size,
            steps=args.calib_steps,
            warmup=5 if rep == 0 else 2,
            repeats=1,
        )
        for i, sample in enumerate(blocks):
            calib_times[i].append(sample.seconds_per_step)
            calib_flops[i] = sample.flops_per_step
        for i, (_, subset, steps) in enumerate(runs):
            wall, executed[i] = train_epoch(model, registry, subset, data, y, steps, args.batch_size)
            times[i].append(wall)
    samples = [
        StepSample(s, f, statistics.median(ts)) for s, f, ts in zip(calib, calib_flops, calib_times, strict=True)
    ]
    fit = fit_throughput(samples)
    base = load_profile("x86-host")
    profile = calibrated_profile("bench-cpu", base, fit, samples, args.batch_size, "cpu")
    if args.profile:  # a profile written by `relief calibrate` on this machine replaces the in-run fit
        profile = load_profile(args.profile)
    flops_only = dataclasses.replace(
        profile,
        flops_per_s=sum(s.flops_per_step**2 for s in samples)
        / sum(s.flops_per_step * s.seconds_per_step for s in samples),
        step_overhead_s=0.0,
    )

    rows: list[dict[str, Any]] = []
    for (kind, subset, steps), ts, flops in zip(runs, times, executed, strict=True):
        measured = statistics.median(ts)
        pred = client_cost(profile, flops, 0, 0, steps=steps).compute_s
        pred_f = client_cost(flops_only, flops, 0, 0, steps=steps).compute_s
        rows.append(
            {
                "kind": kind,
                "subset": "+".join(subset),
                "steps": steps,
                "gflop": flops / 1e9,
                "measured_s": measured,
                "predicted_s": pred,
                "error": (pred - measured) / measured,
                "flops_only_error": (pred_f - measured) / measured,
            }
        )

    errs = [abs(float(row["error"])) for row in rows]
    errs_f = [abs(float(row["flops_only_error"])) for row in rows]
    summary: dict[str, Any] = {
        "profile": args.profile or "in-run calibration",
        "host": platform.node(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "torch": torch.__version__,
        "threads": args.threads,
        "batch_size": args.batch_size,
        "fit": dataclasses.asdict(fit),
        "calibration_subsets": ["+".join(s) for s in calib],
        "mean_abs_error": statistics.mean(errs),
        "max_abs_error": max(errs),
        "flops_only_mean_abs_error": statistics.mean(errs_f),
        "flops_only_max_abs_error": max(errs_f),
        "target": TARGET,
        "within_target": max(errs) <= TARGET,
        "runs": rows,
    }
    lines = [
        f"prediction profile: {summary['profile']} ({profile.flops_per_s / 1e9:.2f} GFLOP/s + "
        f"{profile.step_overhead_s * 1e3:.3f} ms/step)",
        f"in-run fit on {', '.join(summary['calibration_subsets'])}: {fit.flops_per_s / 1e9:.2f} GFLOP/s + "
        f"{fit.step_overhead_s * 1e3:.3f} ms/step (r2 {fit.r2:.3f}); torch {torch.__version__}, "
        f"{args.threads} thread(s), batch {args.batch_size}",
        "",
        "| calibration subset | MFLOP/step | ms/step (median) | fit ms/step |",
        "|---|---:|---:|---:|",
        *(
            f"| {'+'.join(c.subset)} | {c.flops_per_step / 1e6:.1f} | {c.seconds_per_step * 1e3:.3f} | "
            f"{fit.predict(c.flops_per_step, 1) * 1e3:.3f} |"
            for c in samples
        ),
        "",
        "| run | subset | steps | GFLOP | measured s | predicted s | error | FLOPs-only error (in-run fit through 0) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['kind']} | {row['subset']} | {row['steps']} | {row['gflop']:.2f} | {row['measured_s']:.3f} | "
            f"{row['predicted_s']:.3f} | {row['error']:+.1%} | {row['flops_only_error']:+.1%} |"
        )
    lines += [
        "",
        f"mean |error| {summary['mean_abs_error']:.1%}, max {summary['max_abs_error']:.1%} "
        f"(target {TARGET:.0%}: {'met' if summary['within_target'] else 'NOT met'}); FLOPs-only profile: mean "
        f"{summary['flops_only_mean_abs_error']:.1%}, max {summary['flops_only_max_abs_error']:.1%}",
    ]
    text = "\n".join(lines)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "clock.json").write_text(json.dumps(summary, indent=2))
    (out / "clock.md").write_text(text + "\n")
    print(f"wrote {out / 'clock.json'} and {out / 'clock.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
