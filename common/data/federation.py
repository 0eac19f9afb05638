"""The data side of a federated run: windows -> held-out test subjects -> clients with tiers and modality sets ->
normalisation. `load_federation` is the one entry point the server, the clients and `relief data info` use."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common.data import cache, hapt, mhealth, npz, pamap2, synthetic
from common.data.config import ClientsConfig, DataConfig
from common.data.partition import assign_tiers, choose_test_subjects, split_clients
from common.data.records import ModalitySpec, RawDataset, WindowSet
from common.data.windows import make_windows

__all__ = ["ClientData", "Federation", "ModalitySpec", "load_federation", "load_windows"]


@dataclass
class ClientData:
    """One training client: its device tier and profile, the modalities it owns and its (normalised) windows."""

    cid: int  # 0..n-1, = Flower partition-id
    subject: int  # -1 when Dirichlet partitioning mixes subjects
    tier: str
    profile: str  # device-profile name (configs/devices/<profile>.yaml)
    modalities: list[str]  # owned modalities, in the data set's order
    x: dict[str, np.ndarray]  # owned modalities only, each (N, C_m, T) float32, normalised
    y: np.ndarray  # (N,) int64

    @property
    def n(self) -> int:
        return int(self.y.shape[0])


@dataclass
class Federation:
    """Everything a run needs from the data: modalities, classes, clients and the held-out test set."""

    dataset: str
    modalities: list[ModalitySpec]  # data-set order
    class_names: list[str]
    window: int  # T, the same for every modality
    rate_hz: float
    clients: list[ClientData]
    test_x: dict[str, np.ndarray]  # held-out subjects, every modality, normalised
    test_y: np.ndarray
    test_subjects: list[int]
    stats: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # modality -> (mean, std) per channel

    def owners(self, modality: str) -> list[int]:
        """Client ids owning ``modality``."""
        return [c.cid for c in self.clients if modality in c.modalities]

    def rarest_modalities(self) -> list[str]:
        """Every modality owned by the fewest training clients (data-set order)."""
        counts = {m.name: len(self.owners(m.name)) for m in self.modalities}
        fewest = min(counts.values())
        return [m for m, n in counts.items() if n == fewest]

    def rarest_modality(self) -> str:
        """The modality owned by the fewest training clients (ties: the later one in data-set order)."""
        counts = [(len(self.owners(m.name)), -i, m.name) for i, m in enumerate(self.modalities)]
        return min(counts)[2]


def _raw(data: DataConfig, seed: int) -> RawDataset:
    if data.name == "pamap2":
        return pamap2.load(data.path, data.magnetometer, data.pamap2_optional)
    if data.name == "mhealth":
        return mhealth.load(data.path, data.magnetometer)
    if data.name == "uci-hapt":
        return hapt.load(data.path, data.classes)
    gen_seed = seed if data.seed is None else data.seed
    return synthetic.generate(data.name.removeprefix("synthetic-"), gen_seed, data.synthetic_seconds, data.magnetometer)


def load_windows(data: DataConfig, seed: int = 0, cache_dir: str | Path | None = None) -> WindowSet:
    """The un-normalised windows of ``data``, from the cache when an entry for this config exists."""
    if data.name == "npz":
        return npz.load(data.path, data.rate_hz)  # already windowed: nothing to cache
    synthetic_set = data.name.startswith("synthetic-")
    extra: dict[str, object] = {"seed": (seed if data.seed is None else data.seed) if synthetic_set else None}
    if not synthetic_set:
        extra["path"] = str(Path(data.path).expanduser().resolve())
        extra["files"] = cache.fingerprint(data.path)
    entry = Path(cache_dir) if cache_dir is not None else cache.default_dir()
    entry = entry / f"{data.name}-{cache.key(data, extra)}.npz"
    if data.cache and (hit := cache.load(entry)) is not None:
        return hit
    raw = _raw(data, seed)
    ws = make_windows(raw, data.rate_hz, data.window_s or raw.default_window_s, data.overlap)
    if data.cache:
        cache.save(entry, ws)
    return ws


def _stats(parts: list[np.ndarray], fallback: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std over windows and time (float64 sums, so large sets do not lose precision)."""
    a = np.concatenate(parts) if parts else fallback
    mean = a.mean(axis=(0, 2), dtype=np.float64)
    std = a.std(axis=(0, 2), dtype=np.float64)
    std[std < 1e-8] = 1.0  # a constant channel: centre it, do not blow it up
    return mean.astype(np.float32), std.astype(np.float32)


def _norm(a: np.ndarray, stat: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return ((a - stat[0][None, :, None]) / stat[1][None, :, None]).astype(np.float32)


def load_federation(
    data: DataConfig, clients: ClientsConfig, seed: int, cache_dir: str | Path | None = None
) -> Federation:
    """Build the federation of ``data`` partitioned by ``clients`` (deterministic in ``seed``)."""
    ws = load_windows(data, seed, cache_dir)
    names = [m.name for m in ws.modalities]
    test_subjects = choose_test_subjects(ws.subject, ws.y, clients, seed)
    is_test = np.isin(ws.subject, test_subjects)
    train, test = ws.subset(~is_test), ws.subset(is_test)
    parts = split_clients(train.y, train.subject, clients, seed)
    tiers = assign_tiers(len(parts), clients, names, seed)
    # Normalisation statistics come from training clients only, and per modality from the clients owning it (a
    # client cannot contribute statistics of a sensor it does not have); a modality nobody owns uses all training
    # windows. The held-out test set is normalised with the same statistics.
    stats = {}
    for m in names:
        owned = [train.x[m][idx] for (_, idx), (_, mods) in zip(parts, tiers, strict=True) if m in mods]
        stats[m] = _stats(owned, train.x[m])
    out = []
    for cid, ((subject, idx), (tier, mods)) in enumerate(zip(parts, tiers, strict=True)):
        x = {m: _norm(train.x[m][idx], stats[m]) for m in mods}
        out.append(ClientData(cid, subject, tier.name, tier.profile, mods, x, train.y[idx]))
    return Federation(
        dataset=ws.name,
        modalities=list(ws.modalities),
        class_names=list(ws.class_names),
        window=ws.window,
        rate_hz=ws.rate_hz,
        clients=out,
        test_x={m: _norm(test.x[m], stats[m]) for m in names},
        test_y=test.y,
        test_subjects=test_subjects,
        stats=stats,
    )
