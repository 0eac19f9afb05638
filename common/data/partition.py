"""Clients, held-out test subjects, device tiers and modality sets (pure functions of the config and a seed).

* Test set: whole subjects, held out before anything else (no subject is both trained and tested on).
* Clients: one per training subject, or ``per_subject`` random parts of each subject's windows, or (with
  ``dirichlet_alpha``) the pooled training windows split per class by Dirichlet proportions (label skew).
* Tiers: client counts from each tier's ``count`` or ``fraction`` (largest remainder), clients shuffled by seed and
  dealt to the tiers in order; a tier's modality set comes from its names or its rule, then optional dropout.
"""

from __future__ import annotations

import numpy as np

from common.config import ConfigError
from common.data.config import MODALITY_RULE, ClientsConfig, TierConfig
from common.data.errors import DataError

# Independent random streams per step, so changing one option does not reshuffle the others.
SALT_TEST, SALT_SPLIT, SALT_TIER, SALT_DROPOUT = 101, 102, 103, 104


def resolve_modalities(spec: list[str], available: list[str], where: str = "modalities") -> list[str]:
    """Modality names of a tier, in the data set's order: names as given, or ``all`` / ``first:K`` / ``last:K``."""
    if len(spec) == 1 and (m := MODALITY_RULE.match(spec[0])):
        if m.group(1) == "all":
            return list(available)
        k = min(int(m.group(2) or m.group(3)), len(available))
        return available[:k] if m.group(2) else available[-k:]
    unknown = [s for s in spec if s not in available]
    if unknown:
        raise ConfigError(where, "modality names of this data set (" + ", ".join(available) + ") or a rule", unknown)
    return [a for a in available if a in spec]


def tier_counts(tiers: list[TierConfig], n: int) -> list[int]:
    """Clients per tier: exact ``count``s first, the rest shared by ``fraction`` (largest-remainder rounding)."""
    counts = [t.count or 0 for t in tiers]
    rest = n - sum(counts)
    if rest < 0:
        raise ConfigError("clients.tiers", f"tier counts summing to at most the {n} clients", sum(counts))
    frac = np.array([t.fraction or 0.0 for t in tiers])
    if frac.sum() > 0:
        share = frac / frac.sum() * rest
        extra = np.floor(share).astype(int)
        for i in np.argsort(-(share - extra), kind="stable")[: rest - extra.sum()]:
            extra[i] += 1
        counts = [c + int(e) for c, e in zip(counts, extra, strict=True)]
    elif rest > 0:
        raise ConfigError("clients.tiers", f"counts summing to {n} (the number of clients) or some fraction", counts)
    return counts


def choose_test_subjects(subjects: np.ndarray, y: np.ndarray, cfg: ClientsConfig, seed: int) -> list[int]:
    """The held-out subjects: ``cfg.test_subjects``, else ``test_count`` drawn among those covering most classes
    (so the test set holds every class the data set has, where possible)."""
    present = [int(s) for s in np.unique(subjects)]
    if cfg.test_subjects:
        missing = [s for s in cfg.test_subjects if s not in present]
        if missing:
            raise ConfigError(
                "clients.test_subjects", "subject ids present in the data (" + _ids(present) + ")", missing
            )
        chosen = sorted(set(cfg.test_subjects))
    else:
        rng = np.random.default_rng([seed, SALT_TEST])
        cover = {s: len(np.unique(y[subjects == s])) for s in present}
        tiebreak = dict(zip(present, rng.permutation(len(present)), strict=True))
        order = sorted(present, key=lambda s: (-cover[s], tiebreak[s]))
        chosen = sorted(order[: cfg.test_count])
    if len(chosen) >= len(present):
        raise ConfigError("clients.test_subjects", f"fewer held-out subjects than the {len(present)} in the data")
    return chosen


def _ids(ids: list[int]) -> str:
    return ", ".join(map(str, ids))


def split_clients(y: np.ndarray, subjects: np.ndarray, cfg: ClientsConfig, seed: int) -> list[tuple[int, np.ndarray]]:
    """(subject, window indices) per client; subject is -1 for Dirichlet clients, which mix subjects."""
    rng = np.random.default_rng([seed, SALT_SPLIT])
    ids = [int(s) for s in np.unique(subjects)]
    if cfg.dirichlet_alpha is None:
        out: list[tuple[int, np.ndarray]] = []
        for s in ids:
            idx = rng.permutation(np.flatnonzero(subjects == s))
            parts = [p for p in np.array_split(idx, cfg.per_subject) if len(p)]
            out.extend((s, np.sort(p)) for p in parts)
        return out
    return [(-1, idx) for idx in _dirichlet(y, len(ids) * cfg.per_subject, cfg.dirichlet_alpha, rng)]


def _dirichlet(y: np.ndarray, n_clients: int, alpha: float, rng: np.random.Generator) -> list[np.ndarray]:
    """Per class, shares drawn from Dirichlet(alpha); redrawn (up to 100 times) until no client is empty."""
    for _ in range(100):
        parts: list[list[np.ndarray]] = [[] for _ in range(n_clients)]
        for c in np.unique(y):
            idx = rng.permutation(np.flatnonzero(y == c))
            cuts = (np.cumsum(rng.dirichlet(np.full(n_clients, alpha)))[:-1] * len(idx)).astype(int)
            for k, piece in enumerate(np.split(idx, cuts)):
                parts[k].append(piece)
        out = [np.sort(np.concatenate(p)) for p in parts]
        if min(len(o) for o in out) > 0:
            return out
    raise DataError(f"dirichlet_alpha={alpha}: could not give each of {n_clients} clients a window; raise alpha")


def assign_tiers(
    n_clients: int, cfg: ClientsConfig, available: list[str], seed: int
) -> list[tuple[TierConfig, list[str]]]:
    """(tier, owned modalities) per client. Dropout removes each modality after the first with its probability."""
    counts = tier_counts(cfg.tiers, n_clients)
    order = np.random.default_rng([seed, SALT_TIER]).permutation(n_clients)
    drop = np.random.default_rng([seed, SALT_DROPOUT])
    sets = [
        resolve_modalities(t.modalities, available, f"clients.tiers[{i}].modalities") for i, t in enumerate(cfg.tiers)
    ]
    out: list[tuple[TierConfig, list[str]]] = [(cfg.tiers[0], [])] * n_clients
    pos = 0
    for tier, owned, count in zip(cfg.tiers, sets, counts, strict=True):
        for c in order[pos : pos + count]:
            kept = [m for i, m in enumerate(owned) if i == 0 or drop.random() >= tier.dropout]
            out[int(c)] = (tier, kept)
        pos += count
    return out
