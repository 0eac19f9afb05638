"""Aggregation: the one masked-mean kernel every strategy uses, and the reply validation in front of it.

Each reply carries some parameter groups (under transport keys ``<group>/<param>``) and a weight (samples it
trained on). For every key, the new global value is the weighted mean over the replies that carried that key; a key
nobody carried keeps its value bit for bit. Who carries what is the strategy's business:

- RELIEF: a client returns only the groups it trained, so block ``A_m`` is averaged over the cohort of owners of
  modality m that trained it this round (cohort-wise aggregation), and a non-owner's stale copy never enters.
- FedAvg: every client returns everything, so every key is averaged over everybody (the dilution RELIEF avoids).
- HeteroFL / FedRolex / per-modality FedAvg: sub-models, i.e. other key subsets — the same kernel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class Update:
    """One client's contribution: the arrays it returned and its aggregation weight (samples trained)."""

    client: str
    arrays: Mapping[str, np.ndarray]
    weight: float


def masked_mean(current: Mapping[str, np.ndarray], updates: Sequence[Update]) -> Arrays:
    """Per key, the weight-averaged value over the updates that carry the key; other keys keep their value.

    Sums run in float64 in the order of ``updates`` (callers sort them, so the result does not depend on the order
    replies arrive in), then cast back to each array's dtype.
    """
    out: Arrays = dict(current)
    sums: dict[str, np.ndarray] = {}
    totals: dict[str, float] = {}
    for u in updates:
        if u.weight <= 0:
            continue
        for key, value in u.arrays.items():
            if key not in current:
                raise KeyError(f"update from {u.client} carries unknown key {key!r}")
            acc = sums.get(key)
            contribution = np.asarray(value, dtype=np.float64) * u.weight
            sums[key] = contribution if acc is None else acc + contribution
            totals[key] = totals.get(key, 0.0) + u.weight
    for key, acc in sums.items():
        out[key] = (acc / totals[key]).astype(current[key].dtype)
    return out


def carried_by(updates: Sequence[Update]) -> dict[str, list[str]]:
    """Key -> the clients whose update carried it (the cohort each key was averaged over)."""
    cohort: dict[str, list[str]] = {}
    for u in updates:
        for key in u.arrays:
            cohort.setdefault(key, []).append(u.client)
    return cohort


# ---------------------------------------------------------------------------------------------------- validation


class ReplyRejected(ValueError):
    """A client's reply failed validation; it must not touch the global model."""


@dataclass
class ReplyLimits:
    """What a valid reply may contain."""

    allowed_keys: set[str]
    shapes: Mapping[str, tuple[int, ...]]
    require_all: bool = True  # the reply must carry every allowed key (a client trains whole groups)
    max_update_norm: float | None = None  # L2 norm of (value - current) per key; None = unbounded
    current: Mapping[str, np.ndarray] = field(default_factory=dict)


def validate_reply(arrays: Mapping[str, np.ndarray], limits: ReplyLimits) -> None:
    """Raise :class:`ReplyRejected` unless ``arrays`` has exactly the allowed keys, the expected shapes, float32
    dtype, only finite values, and (when set) update norms within bounds."""
    keys = set(arrays)
    extra = keys - limits.allowed_keys
    if extra:
        raise ReplyRejected(f"keys not assigned to this client: {sorted(extra)[:4]}")
    missing = limits.allowed_keys - keys
    if limits.require_all and missing:
        raise ReplyRejected(f"assigned keys missing: {sorted(missing)[:4]}")
    for key, value in arrays.items():
        if not isinstance(value, np.ndarray):
            raise ReplyRejected(f"{key}: not an array ({type(value).__name__})")
        if value.dtype != np.float32:
            raise ReplyRejected(f"{key}: dtype {value.dtype}, expected float32")
        if tuple(value.shape) != tuple(limits.shapes[key]):
            raise ReplyRejected(f"{key}: shape {tuple(value.shape)}, expected {tuple(limits.shapes[key])}")
        if not np.isfinite(value).all():
            raise ReplyRejected(f"{key}: non-finite values")
        if limits.max_update_norm is not None and key in limits.current:
            norm = float(np.linalg.norm((value - limits.current[key]).ravel()))
            if norm > limits.max_update_norm:
                raise ReplyRejected(f"{key}: update norm {norm:.3g} exceeds {limits.max_update_norm:.3g}")
