"""`relief calibrate --name NAME`: measure this machine and write a device profile the virtual clock can use.

What it does:
1. builds the default model (CNN regime, synthetic-PAMAP2 shape: hand/chest/ankle IMUs 6 channels each, heart rate 1
   channel, 12 classes, 128-sample windows = 5.12 s at 25 Hz) on ``--device``;
2. for several group subsets (every non-empty set of modality groups, each with the shared group; the encoders of
   untrained modalities are not run, as in elastic training) times ``--steps`` training steps at ``--batch-size``
   after a warm-up, and computes the FLOPs each step executed from the group registry;
3. fits ``step_time = step_flops / flops_per_s + step_overhead_s`` by least squares (the intercept is the per-step
   cost that FLOPs do not explain: Python dispatch, kernel launches, optimiser; it is dropped and the line refitted
   through the origin if it comes out negative);
4. when a measured power source exists (Jetson rails, RAPL) measures idle power (``--idle-s`` of sleep) and active
   power (over the timed steps); otherwise keeps the power figures of ``--base``;
5. writes ``configs/devices/<name>.yaml`` (or ``--out``) with ``provenance: calibrated`` and the fit diagnostics.
Link figures (bandwidth, latency, radio energy) are not measured here; they come from ``--base``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import itertools
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.profiles import DeviceProfile, devices_dir, load_profile, profile_to_yaml

if TYPE_CHECKING:
    import torch

    from common.groups import GroupRegistry
    from common.model import MultimodalNet

# The default model's input shape (synthetic PAMAP2 at the data defaults: 25 Hz, 5.12 s windows).
DEFAULT_MODALITIES: dict[str, int] = {"hand": 6, "chest": 6, "ankle": 6, "heart_rate": 1}
DEFAULT_CLASSES = 12
DEFAULT_WINDOW = 128
POOL_BATCHES = 16  # distinct synthetic batches each subset's timed steps cycle through


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", required=True, help="profile name (also the default output file name)")
    parser.add_argument("--out", default=None, help="output YAML (default: configs/devices/<name>.yaml)")
    parser.add_argument("--steps", type=int, default=30, help="timed training steps per group subset (default 30)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before each subset (default 5)")
    parser.add_argument("--repeats", type=int, default=3, help="timed blocks per subset (round-robin over subsets)")
    parser.add_argument("--batch-size", type=int, default=32, help="training batch size (default 32)")
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW, help="samples per window (default 128)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="where to train")
    parser.add_argument(
        "--base",
        default=None,
        help="profile supplying link and (without a power meter) power figures; default: the existing profile "
        "of the same name if any, else x86-host (cpu) / orin-maxn (cuda)",
    )
    parser.add_argument(
        "--idle-s", type=float, default=3.0, help="seconds of idle, then of training, power measurement (with a meter)"
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (0 = torch's default; training must use the same)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed for the synthetic batches")


# ---------------------------------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class StepSample:
    """Timing of one group subset: FLOPs executed per step and the measured seconds per step."""

    subset: tuple[str, ...]
    flops_per_step: float
    seconds_per_step: float


@dataclass(frozen=True)
class Fit:
    flops_per_s: float
    step_overhead_s: float
    r2: float
    max_rel_error: float

    def predict(self, flops: float, steps: int) -> float:
        return flops / self.flops_per_s + steps * self.step_overhead_s


def pick_device(name: str) -> torch.device:
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for, but torch.cuda.is_available() is False")
    return torch.device(name)


def default_model(window: int = DEFAULT_WINDOW, device: str = "cpu") -> tuple[MultimodalNet, GroupRegistry]:
    """The default model (CNN regime, default ModelConfig) and its group registry."""
    from common.groups import GroupRegistry
    from common.model import ModelConfig, build_model

    model = build_model(ModelConfig(), DEFAULT_MODALITIES, DEFAULT_CLASSES, window).to(device)
    return model, GroupRegistry(model)


def all_subsets(modalities: Sequence[str]) -> list[tuple[str, ...]]:
    """Every non-empty subset of the modalities, smallest first."""
    return [c for k in range(1, len(modalities) + 1) for c in itertools.combinations(modalities, k)]


def _sync(device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


class SubsetTrainer:
    """SGD steps on synthetic batches of ``subset``'s modalities, training their groups and the shared group
    (the other encoders are not run). ``flops_per_step`` is what one step executes, from the group registry."""

    def __init__(
        self, model: MultimodalNet, registry: GroupRegistry, subset: Sequence[str], batch_size: int, seed: int = 0
    ) -> None:
        import torch

        from common.groups import modality_group

        self.model, self.registry, self.subset = model, registry, tuple(subset)
        self.device = next(model.parameters()).device
        self.batch_size, self._next = batch_size, 0
        # A pool of distinct batches, walked in turn like an epoch: re-using one batch keeps it cache-hot and
        # under-states the time of real training.
        n = batch_size * POOL_BATCHES
        gen = torch.Generator().manual_seed(seed)
        self.x = {m: torch.randn(n, model.channels[m], model.window, generator=gen).to(self.device) for m in subset}
        self.y = torch.randint(0, model.num_classes, (n,), generator=gen).to(self.device)
        self.groups = [modality_group(m) for m in subset] + registry.shared_groups
        self.opt = torch.optim.SGD(registry.parameters(self.groups), lr=1e-3, momentum=0.9)
        self.flops_per_step = registry.step_flops(subset, self.groups).total * batch_size

    def activate(self) -> None:
        """requires_grad on exactly this subset's groups (the registry's flag is global to the model)."""
        self.registry.set_trainable(self.groups)
        self.model.train()

    def step(self) -> None:
        from torch.nn import functional as F

        lo = self._next * self.batch_size
        self._next = (self._next + 1) % POOL_BATCHES
        x = {m: t[lo : lo + self.batch_size] for m, t in self.x.items()}
        self.opt.zero_grad(set_to_none=True)
        F.cross_entropy(self.model(x), self.y[lo : lo + self.batch_size]).backward()
        self.opt.step()

    def time_steps(self, n: int) -> list[float]:
        """Wall-clock seconds of each of ``n`` steps (the device synchronised around each)."""
        self.activate()
        times = []
        for _ in range(n):
            _sync(self.device)
            t0 = time.perf_counter()
            self.step()
            _sync(self.device)
            times.append(time.perf_counter() - t0)
        return times


def measure_subsets(
    model: MultimodalNet,
    registry: GroupRegistry,
    subsets: Sequence[Sequence[str]],
    *,
    batch_size: int,
    steps: int,
    warmup: int,
    repeats: int = 3,
    seed: int = 0,
) -> list[StepSample]:
    """Typical seconds per training step for each subset.

    Subsets are measured round-robin, ``repeats`` blocks of ``steps`` steps each, so a burst of interference from
    other processes spreads over all subsets instead of spoiling one; each subset keeps the median over its blocks
    of the block's mean step time (a block's mean is what an epoch's wall-clock sees; the median over blocks
    discards a block hit by a burst).
    """
    trainers = [SubsetTrainer(model, registry, s, batch_size, seed) for s in subsets]
    for t in trainers:
        t.time_steps(warmup)
    blocks: list[list[float]] = [[] for _ in trainers]
    for _ in range(repeats):
        for i, t in enumerate(trainers):
            blocks[i].append(statistics.fmean(t.time_steps(steps)))
    return [StepSample(t.subset, t.flops_per_step, statistics.median(b)) for t, b in zip(trainers, blocks, strict=True)]


def fit_throughput(samples: Sequence[StepSample]) -> Fit:
    """Least-squares ``t = F / flops_per_s + overhead`` over the samples (overhead >= 0)."""
    if not samples:
        raise ValueError("no samples to fit")
    xs = [s.flops_per_step for s in samples]
    ys = [s.seconds_per_step for s in samples]
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx > 0 else 0.0
    intercept = my - slope * mx
    if slope <= 0 or intercept < 0:  # through the origin: pure FLOP-proportional time
        slope = sum(x * y for x, y in zip(xs, ys, strict=True)) / sum(x * x for x in xs)
        intercept = 0.0
    pred = [slope * x + intercept for x in xs]
    ss_res = sum((y - p) ** 2 for y, p in zip(ys, pred, strict=True))
    ss_tot = sum((y - my) ** 2 for y in ys)
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    max_rel = max(abs(p - y) / y for y, p in zip(ys, pred, strict=True))
    return Fit(1.0 / slope, intercept, r2, max_rel)


# ---------------------------------------------------------------------------------------------------- power


def measure_power(base: DeviceProfile, run_load: Any, idle_s: float) -> tuple[float, float, str, str] | None:
    """(active W, idle W, method, power mode) from a measured meter, or None when only the CPU-time model is
    available (the power mode is the nvpmodel name on a Jetson, else empty)."""
    from relief_client.telemetry.meter import ESTIMATED_CPU
    from relief_client.telemetry.select import best_meter

    meter = best_meter(base)
    if meter.method == ESTIMATED_CPU:
        return None
    with meter:
        time.sleep(idle_s)
    idle = meter.reading
    with meter:
        run_load()
    active = meter.reading
    assert idle is not None and active is not None
    return active.watts, idle.watts, meter.method, str(active.extra.get("nvpmodel") or "")


# ---------------------------------------------------------------------------------------------------- command


def _base_profile(args: argparse.Namespace, accelerator: str) -> DeviceProfile:
    if args.base:
        return load_profile(args.base)
    if (devices_dir() / f"{args.name}.yaml").is_file():
        return load_profile(args.name)
    return load_profile("orin-maxn" if accelerator == "cuda" else "x86-host")


def calibrated_profile(
    name: str, base: DeviceProfile, fit: Fit, samples: Sequence[StepSample], batch_size: int, accelerator: str
) -> DeviceProfile:
    """The base profile with the measured throughput and calibration diagnostics."""
    host = platform.node() or "unknown host"
    when = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return dataclasses.replace(
        base,
        name=name,
        flops_per_s=fit.flops_per_s,
        step_overhead_s=fit.step_overhead_s,
        accelerator=accelerator,  # type: ignore[arg-type]
        provenance="calibrated",
        source=f"relief calibrate on {host} ({platform.machine()}), {when}",
        calibration={
            "batch_size": float(batch_size),
            "subsets": float(len(samples)),
            "r2": round(fit.r2, 5),
            "max_rel_error": round(fit.max_rel_error, 5),
            "min_step_s": min(s.seconds_per_step for s in samples),
            "max_step_s": max(s.seconds_per_step for s in samples),
        },
    )


def main(args: argparse.Namespace) -> int:
    import torch

    if args.steps < 1 or args.batch_size < 1 or args.repeats < 1 or args.warmup < 0:
        print("relief calibrate: --steps, --batch-size and --repeats must be >= 1", file=sys.stderr)
        return 2
    try:
        device = pick_device(args.device)
    except RuntimeError as err:
        print(f"relief calibrate: {err}", file=sys.stderr)
        return 2
    torch.manual_seed(args.seed)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    base = _base_profile(args, device.type)
    model, registry = default_model(args.window, str(device))
    subsets = all_subsets(model.modalities)
    print(f"calibrating '{args.name}' on {device} ({torch.get_num_threads()} threads), batch {args.batch_size}")
    samples = measure_subsets(
        model,
        registry,
        subsets,
        batch_size=args.batch_size,
        steps=args.steps,
        warmup=args.warmup,
        repeats=args.repeats,
        seed=args.seed,
    )
    fit = fit_throughput(samples)
    print(f"{'subset':<40} {'MFLOP/step':>11} {'ms/step':>9} {'fit ms':>8}")
    for s in samples:
        pred_ms = fit.predict(s.flops_per_step, 1) * 1e3
        mflop, ms = s.flops_per_step / 1e6, s.seconds_per_step * 1e3
        print(f"{'+'.join(s.subset):<40} {mflop:>11.2f} {ms:>9.3f} {pred_ms:>8.3f}")
    print(
        f"fit: {fit.flops_per_s / 1e9:.2f} GFLOP/s + {fit.step_overhead_s * 1e3:.3f} ms/step "
        f"(r2 {fit.r2:.4f}, max error {fit.max_rel_error:.1%})"
    )
    profile = calibrated_profile(args.name, base, fit, samples, args.batch_size, device.type)

    def load() -> None:  # the full model, all modalities: the training power
        trainer = SubsetTrainer(model, registry, subsets[-1], args.batch_size, args.seed)
        deadline = time.perf_counter() + max(0.5, args.idle_s)
        while time.perf_counter() < deadline:
            trainer.time_steps(5)

    power = measure_power(base, load, args.idle_s)
    if power is None:
        note = f"power figures from profile '{base.name}' ({base.provenance}); no power meter on this machine"
    else:
        active_w, idle_w, method, mode = power
        profile = dataclasses.replace(profile, active_w=max(active_w, idle_w), idle_w=idle_w)
        profile = dataclasses.replace(profile, power_mode=mode or profile.power_mode)
        note = f"power measured ({method}): active {active_w:.2f} W, idle {idle_w:.2f} W"
    profile = dataclasses.replace(profile, notes=f"{note}; link figures from profile '{base.name}'")
    print(note)
    out = Path(args.out) if args.out else devices_dir() / f"{args.name}.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    header = "# Written by `relief calibrate`; throughput measured on this machine (see docs/devices.md).\n"
    out.write_text(header + profile_to_yaml(profile))
    load_profile(out)  # what we wrote must load
    print(f"wrote {out}")
    return 0
