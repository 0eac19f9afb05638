"""Data and client-partition configuration: which data set, how it is windowed, and how clients, device tiers and
modality sets are formed. Every default is explained in docs/data.md (and its decision-log entry)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from common.config import ConfigError, option

DATA_NAMES = ("pamap2", "mhealth", "uci-hapt", "npz", "synthetic-pamap2", "synthetic-mhealth")

# A tier's modality set is either a list of modality names or one rule that fits any data set.
MODALITY_RULE = re.compile(r"^(all|first:(\d+)|last:(\d+))$")


@dataclass
class DataConfig:
    """The data set and its windowing."""

    name: str = option("synthetic-pamap2", help="data set", choices=list(DATA_NAMES))
    path: str = option(
        "", help="folder (pamap2, mhealth, uci-hapt: searched recursively) or .npz file (npz); unused by synthetic-*"
    )
    rate_hz: float = option(
        25.0, help="every modality is resampled to this rate (Hz); ignored for npz (already windowed)", gt=0, le=1000
    )
    window_s: float | None = option(
        None,
        help="window length in seconds; null = the data set's literature default (PAMAP2/MHEALTH 5.12 s, HAPT 2.56 s)",
        gt=0,
    )
    overlap: float = option(0.5, help="fraction of a window shared with the next one", ge=0, lt=1)
    classes: Literal["basic", "all"] = option(
        "basic", help="uci-hapt only: the 6 basic activities, or all 12 including the postural transitions"
    )
    magnetometer: bool = option(False, help="pamap2/mhealth: add the 3 magnetometer channels to every IMU modality")
    pamap2_optional: bool = option(
        False, help="pamap2: also read Optional/subject1NN.dat (only rows of the 12 protocol activities are kept)"
    )
    synthetic_seconds: float = option(
        60.0, help="synthetic-*: seconds recorded per activity and subject (real sets: ~1-3 min)", gt=0, le=3600
    )
    seed: int | None = option(None, help="synthetic-*: generator seed; null = the experiment seed", ge=0)
    cache: bool = option(True, help="cache the windows as .npz under the cache dir (keyed by a hash of this section)")


@dataclass
class TierConfig:
    """One device tier: a device profile, a share of the clients and the modality set its devices carry."""

    name: str = option(help="tier name (shown by `relief data info`, used in metrics)")
    profile: str = option(help="device-profile name: a YAML under configs/devices/ (e.g. orin-maxn, rpi4)")
    fraction: float | None = option(None, help="share of the clients in this tier (set this or count)", ge=0, le=1)
    count: int | None = option(None, help="exact number of clients in this tier (set this or fraction)", ge=0)
    modalities: list[str] = option(
        ["all"],
        help="modality names, or one rule: [all], [first:K], [last:K] (K clamped to the data set's modality count)",
    )
    dropout: float = option(
        0.0, help="probability that a client of this tier loses each modality after its first", ge=0, le=1
    )

    def validate(self) -> None:
        if (self.fraction is None) == (self.count is None):
            raise ConfigError("fraction", "exactly one of `fraction` and `count`")
        if not self.modalities:
            raise ConfigError("modalities", "at least one modality name or a rule (all, first:K, last:K)")
        rules = [m for m in self.modalities if MODALITY_RULE.match(m)]
        if rules and len(self.modalities) > 1:
            raise ConfigError("modalities", "either modality names or a single rule, not both", self.modalities)
        if rules and rules[0] in ("first:0", "last:0"):
            raise ConfigError("modalities", "K >= 1 in first:K / last:K", self.modalities)


def _default_tiers() -> list[TierConfig]:
    # Speed and sensors are coupled (DESIGN-BRIEF section 1): the fast tier carries every modality, the slow one only
    # the first. With 8 training clients this gives 2 / 3 / 3, so the later modalities sit on 2 clients only.
    return [
        TierConfig(name="fast", profile="orin-maxn", fraction=0.25, modalities=["all"]),
        TierConfig(name="mid", profile="orin-15w", fraction=0.35, modalities=["first:2"]),
        TierConfig(name="slow", profile="rpi4", fraction=0.40, modalities=["first:1"]),
    ]


@dataclass
class ClientsConfig:
    """How windows become clients, and which tier (device profile, modality set) each client gets."""

    tiers: list[TierConfig] = option(
        default_factory=_default_tiers, help="device tiers: name, profile, fraction|count, modalities, dropout"
    )
    per_subject: int = option(1, help="clients per training subject (its windows split at random into k parts)", ge=1)
    dirichlet_alpha: float | None = option(
        None,
        help="null = clients are subjects; else pool training windows and split by Dirichlet(alpha) per class",
        gt=0,
    )
    test_subjects: list[int] = option(
        [], help="held-out test subjects (ids as in the data set); empty = pick `test_count` by seed"
    )
    test_count: int = option(
        1,
        help="when test_subjects is empty: how many subjects to hold out (chosen among those covering most classes)",
        ge=0,
    )

    def validate(self) -> None:
        if not self.tiers:
            raise ConfigError("tiers", "at least one tier")
        names = [t.name for t in self.tiers]
        if len(set(names)) != len(names):
            raise ConfigError("tiers", "distinct tier names", names)
        fractions = [t.fraction for t in self.tiers if t.fraction is not None]
        if fractions and sum(fractions) <= 0:
            raise ConfigError("tiers", "fractions with a positive sum", fractions)
