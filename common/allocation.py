"""Divergence-guided elastic allocation: which parameter groups each device trains, and for how many samples.

Per round the server:

1. scores every modality group: the cohort-internal divergence of its last updates (how much the devices that
   trained it disagree), normalised (``divergence_norm``), smoothed over rounds, plus a UCB exploration bonus
   ``c * sqrt(ln(t + 1) / (n_g + 1))`` for groups observed rarely;
2. gives each device a FLOP budget — what its profile can execute before the round deadline, after communication;
3. fills the budget greedily: shared groups always; then the owned modality groups by score per unit marginal cost,
   each added only while the device can still process ``min_work_fraction`` of its full local work; and
4. scales the local work (elastic): the device runs as many samples as fit its budget with the chosen groups, at
   most its full ``local_epochs``. A device fast enough trains all it owns, for the full work.

Everything here is pure (numpy): prices come in as a function, budgets as numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from common.config import option
from common.groups import group_modality

# price(present modalities, trained groups) -> FLOPs per sample of one training step
Price = Callable[[Sequence[str], Sequence[str]], float]


@dataclass
class AllocationConfig:
    """Knobs of RELIEF's allocator (docs/strategies.md; the defaults' evidence is in docs/decisions.md)."""

    divergence_norm: Literal["raw", "relative", "stderr"] = option(
        "stderr",
        help="raw: weighted spread of updates around their mean; relative: spread / mean squared update norm "
        "(scale-free); stderr: relative / cohort size (uncertainty of the cohort mean: favours small cohorts)",
    )
    smoothing: float = option(0.5, help="EMA weight of a new divergence observation", gt=0, le=1)
    exploration: float = option(0.3, help="c of the UCB bonus c*sqrt(ln(t+1)/(n_g+1)); 0 = greedy", ge=0)
    min_work_fraction: float = option(
        0.25, help="add a group only while the device can still run this fraction of its full local work", ge=0, le=1
    )
    unassigned: Literal["skip", "forward"] = option(
        "skip",
        help="owned but unassigned modalities: skip (zero-filled, encoder not run) or forward (frozen, run forward)",
    )
    # Ablations (benchmarks/bench_ablation.py): each switches one part of RELIEF off; the defaults are RELIEF.
    scores: Literal["divergence", "random"] = option(
        "divergence", help="ablation: random = groups scored at random each round instead of by divergence"
    )
    elastic: bool = option(
        True, help="ablation: false = full local work for the chosen groups (late updates are then dropped)"
    )
    cohort_aggregation: bool = option(
        True, help="ablation: false = every device also returns its copy of every group (stale copies averaged in)"
    )
    sparse: bool = option(True, help="ablation: false = transfers priced as the whole model each way (dense)")


# ---------------------------------------------------------------------------------------------------- divergence


def cohort_divergence(deltas: Sequence[np.ndarray], weights: Sequence[float], norm: str) -> float:
    """Spread of one group's updates (flattened ``theta_k - theta_global``) around their weighted mean.

    A cohort of one has no spread to measure: its relative divergence is taken as 1 (maximal uncertainty).
    """
    w = np.asarray(weights, dtype=np.float64)
    d = np.stack([np.asarray(x, dtype=np.float64).ravel() for x in deltas])
    w = w / w.sum()
    mean = (w[:, None] * d).sum(axis=0)
    spread = float((w * ((d - mean) ** 2).sum(axis=1)).sum())
    if norm == "raw":
        return spread
    energy = float((w * (d**2).sum(axis=1)).sum())
    relative = 1.0 if len(deltas) < 2 else (spread / energy if energy > 0 else 0.0)
    return relative if norm == "relative" else relative / len(deltas)


@dataclass
class DivergenceTracker:
    """Smoothed per-group divergence and observation counts, turned into allocation scores."""

    groups: list[str]
    cfg: AllocationConfig
    divergence: dict[str, float] = field(default_factory=dict)
    observations: dict[str, int] = field(default_factory=dict)

    def observe(self, group_deltas: Mapping[str, tuple[Sequence[np.ndarray], Sequence[float]]]) -> None:
        """Record one round: group -> (the cohort's update vectors, their weights)."""
        for g, (deltas, weights) in group_deltas.items():
            if not deltas:
                continue
            value = cohort_divergence(deltas, weights, self.cfg.divergence_norm)
            old = self.divergence.get(g)
            beta = self.cfg.smoothing
            self.divergence[g] = value if old is None else (1 - beta) * old + beta * value
            self.observations[g] = self.observations.get(g, 0) + 1

    def scores(self, round_number: int) -> dict[str, float]:
        """Normalised divergence (max = 1) + the UCB exploration bonus, per group."""
        top = max(self.divergence.values(), default=0.0)
        out = {}
        for g in self.groups:
            # A group never observed scores as the most divergent one: an unknown spread is not a known zero (scored
            # 0, the bonus alone would need ln(t+1) > 1/c^2 rounds to beat an observed group).
            d = self.divergence.get(g, top) / top if top > 0 else 0.0
            bonus = self.cfg.exploration * math.sqrt(math.log(round_number + 1) / (self.observations.get(g, 0) + 1))
            out[g] = d + bonus
        return out

    def state(self) -> dict[str, dict[str, float]]:
        return {
            "divergence": dict(self.divergence),
            "observations": {k: float(v) for k, v in self.observations.items()},
        }


# ---------------------------------------------------------------------------------------------------- allocation


@dataclass(frozen=True)
class Assignment:
    """What one device does this round."""

    train: tuple[str, ...]  # groups it trains
    present: tuple[str, ...]  # modalities whose encoders it runs
    send: tuple[str, ...]  # groups the server sends down (train + frozen ones it needs for the forward pass)
    samples: int  # local samples to process (elastic work)
    full_samples: int  # what full work would have been
    flops: float  # predicted FLOPs of the assigned work
    reply: tuple[str, ...] = ()  # groups it returns; empty = exactly the trained ones (RELIEF's sparse reply)

    @property
    def returns(self) -> tuple[str, ...]:
        return self.reply or self.train

    @property
    def work_fraction(self) -> float:
        return self.samples / self.full_samples if self.full_samples else 0.0


def _present(train: Iterable[str], owned: Sequence[str], unassigned: str) -> tuple[str, ...]:
    if unassigned == "forward":
        return tuple(owned)
    trained = {group_modality(g) for g in train}
    return tuple(m for m in owned if m in trained)


def allocate(
    owned: Sequence[str],
    owned_groups: Sequence[str],
    shared_groups: Sequence[str],
    full_samples: int,
    budget_flops: float | None,
    scores: Mapping[str, float],
    price: Price,
    cfg: AllocationConfig,
    batch_size: int = 1,
) -> Assignment:
    """Choose the groups and local samples for one device (see the module docstring).

    ``owned`` are the device's modalities, ``owned_groups`` their groups, ``full_samples`` its full local work
    (local_epochs x its samples), ``budget_flops`` what it can execute before the deadline (None = unlimited).
    """
    modality_groups = [g for g in owned_groups if g not in shared_groups]

    def per_sample(train: Sequence[str]) -> float:
        return price(_present(train, owned, cfg.unassigned), list(train))

    def build(train: Sequence[str], samples: int) -> Assignment:
        present = _present(train, owned, cfg.unassigned)
        send = tuple(g for g in owned_groups if g in train or group_modality(g) in present)
        return Assignment(tuple(train), present, send, samples, full_samples, per_sample(train) * samples)

    everything = [*modality_groups, *shared_groups]
    if budget_flops is None or per_sample(everything) * full_samples <= budget_flops:
        return build(everything, full_samples)

    def fits(train: Sequence[str]) -> int:  # samples the budget affords, rounded down to whole batches
        n = int(budget_flops // per_sample(train)) if per_sample(train) > 0 else full_samples
        return min(full_samples, (n // batch_size) * batch_size)

    chosen = list(shared_groups)
    candidates = list(modality_groups)
    floor = cfg.min_work_fraction * full_samples
    while candidates:
        base = per_sample(chosen)  # score per unit of marginal cost; ties go to the earlier group
        ratio = {g: scores.get(g, 0.0) / max(per_sample([*chosen, g]) - base, 1e-12) for g in candidates}
        best = max(candidates, key=lambda g: (ratio[g], -candidates.index(g)))
        candidates.remove(best)
        # Always take the best modality group (a device that owns a modality contributes to it, which also lets
        # exploration reach every group); further ones only while enough local work still fits.
        if len(chosen) == len(shared_groups) or fits([*chosen, best]) >= max(floor, 1):
            chosen.append(best)
    ordered = [g for g in everything if g in chosen]  # registry order: stable keys and messages
    return build(ordered, min(full_samples, max(batch_size, fits(ordered))))
