"""Clients, tiers, modality sets, normalisation, cache and the synthetic signal model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from common.config import ConfigError, build
from common.data import ClientsConfig, DataConfig, TierConfig, load_federation, synthetic
from common.data import cache as cache_mod
from common.data.partition import resolve_modalities, tier_counts
from common.data.windows import make_windows

SMALL = DataConfig(name="synthetic-pamap2", synthetic_seconds=20)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


def test_default_federation(cache_dir: Path) -> None:
    fed = load_federation(SMALL, ClientsConfig(), seed=0, cache_dir=cache_dir)
    assert fed.dataset == "synthetic-pamap2" and fed.window == 128 and fed.rate_hz == 25.0
    assert [(m.name, m.channels) for m in fed.modalities] == [
        ("hand", 6),
        ("chest", 6),
        ("ankle", 6),
        ("heart_rate", 1),
    ]
    assert len(fed.test_subjects) == 1 and len(fed.clients) == 8
    assert fed.test_subjects[0] not in {c.subject for c in fed.clients}
    assert len(np.unique(fed.test_y)) == 12  # held-out subject chosen among those with every class
    tiers = {t: [c for c in fed.clients if c.tier == t] for t in ("fast", "mid", "slow")}
    assert [len(v) for v in tiers.values()] == [2, 3, 3]
    assert all(
        c.modalities == ["hand", "chest", "ankle", "heart_rate"] and c.profile == "orin-maxn" for c in tiers["fast"]
    )
    assert all(c.modalities == ["hand", "chest"] and c.profile == "orin-15w" for c in tiers["mid"])
    assert all(c.modalities == ["hand"] and c.profile == "rpi4" for c in tiers["slow"])
    assert fed.rarest_modality() == "heart_rate"  # ankle and heart rate tie: the later one
    for c in fed.clients:
        assert list(c.x) == c.modalities and c.y.dtype == np.int64
        assert all(
            a.dtype == np.float32 and a.shape == (c.n, fed.modalities[i].channels, 128)
            for i, a in enumerate(c.x.values())
        )
    # Statistics from the owners of each modality: their pooled windows are standardised.
    for m in ("hand", "ankle"):
        pooled = np.concatenate([c.x[m] for c in fed.clients if m in c.x])
        np.testing.assert_allclose(pooled.mean(axis=(0, 2)), 0, atol=1e-4)
        np.testing.assert_allclose(pooled.std(axis=(0, 2)), 1, atol=1e-3)
    assert set(fed.test_x) == {"hand", "chest", "ankle", "heart_rate"}


def test_determinism_and_seed(cache_dir: Path) -> None:
    a = load_federation(SMALL, ClientsConfig(), seed=0, cache_dir=cache_dir)
    b = load_federation(SMALL, ClientsConfig(), seed=0, cache_dir=cache_dir)
    c = load_federation(SMALL, ClientsConfig(), seed=1, cache_dir=cache_dir)
    assert [(x.subject, x.tier) for x in a.clients] == [(x.subject, x.tier) for x in b.clients]
    np.testing.assert_array_equal(a.clients[0].x["hand"], b.clients[0].x["hand"])
    assert [(x.subject, x.tier) for x in a.clients] != [(x.subject, x.tier) for x in c.clients]


def test_per_subject_and_dirichlet(cache_dir: Path) -> None:
    two = load_federation(SMALL, ClientsConfig(per_subject=2), seed=0, cache_dir=cache_dir)
    subjects = [c.subject for c in two.clients]
    assert len(two.clients) == 16 and all(subjects.count(s) == 2 for s in set(subjects))
    one = load_federation(SMALL, ClientsConfig(), seed=0, cache_dir=cache_dir)
    assert sum(c.n for c in two.clients) == sum(c.n for c in one.clients)
    dirich = load_federation(SMALL, ClientsConfig(dirichlet_alpha=0.3), seed=0, cache_dir=cache_dir)
    assert len(dirich.clients) == 8 and all(c.subject == -1 and c.n > 0 for c in dirich.clients)
    assert sum(c.n for c in dirich.clients) == sum(c.n for c in one.clients)
    # Label skew: a client's class histogram is far from the pooled one.
    shares = [np.bincount(c.y, minlength=12).max() / c.n for c in dirich.clients]
    assert max(shares) > 0.3


def test_explicit_test_subjects_counts_and_dropout(cache_dir: Path) -> None:
    clients = build(
        ClientsConfig,
        {
            "test_subjects": [101, 109],
            "tiers": [
                {"name": "big", "profile": "orin-maxn", "count": 2, "modalities": ["last:2"]},
                {"name": "small", "profile": "rpi4", "fraction": 1.0, "modalities": ["all"], "dropout": 1.0},
            ],
        },
    )
    fed = load_federation(SMALL, clients, seed=0, cache_dir=cache_dir)
    assert fed.test_subjects == [101, 109] and len(fed.clients) == 7
    assert [c.modalities for c in fed.clients if c.tier == "big"] == [["ankle", "heart_rate"]] * 2
    assert [c.modalities for c in fed.clients if c.tier == "small"] == [["hand"]] * 5  # dropout keeps the first


def test_modality_rules_and_tier_counts() -> None:
    avail = ["a", "b", "c"]
    assert resolve_modalities(["all"], avail) == avail
    assert resolve_modalities(["first:2"], avail) == ["a", "b"]
    assert resolve_modalities(["last:1"], avail) == ["c"]
    assert resolve_modalities(["first:9"], avail) == avail  # clamped: the same rule fits a 2-modality data set
    assert resolve_modalities(["c", "a"], avail) == ["a", "c"]  # data-set order
    with pytest.raises(ConfigError, match="modality names of this data set"):
        resolve_modalities(["gyro"], avail)
    tiers = ClientsConfig().tiers
    assert (
        tier_counts(tiers, 8) == [2, 3, 3] and tier_counts(tiers, 24) == [6, 8, 10] and sum(tier_counts(tiers, 5)) == 5
    )
    with pytest.raises(ConfigError, match="exactly one of"):
        build(TierConfig, {"name": "x", "profile": "p", "fraction": 0.5, "count": 2})
    with pytest.raises(ConfigError, match="single rule"):
        build(TierConfig, {"name": "x", "profile": "p", "count": 2, "modalities": ["all", "a"]})


def test_cache_hit_and_atomic_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = DataConfig(name="synthetic-mhealth", synthetic_seconds=10)
    first = load_federation(cfg, ClientsConfig(), seed=0, cache_dir=tmp_path)
    entries = list(tmp_path.iterdir())
    assert len(entries) == 1 and entries[0].suffix == ".npz"

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(synthetic, "generate", boom)
    again = load_federation(cfg, ClientsConfig(), seed=0, cache_dir=tmp_path)
    np.testing.assert_array_equal(first.test_y, again.test_y)
    np.testing.assert_array_equal(first.clients[1].x["chest_acc"], again.clients[1].x["chest_acc"])
    monkeypatch.undo()

    # A failed write leaves neither the entry nor a temporary file.
    def fail(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(cache_mod.np, "savez", fail)
    other = tmp_path / "other"
    with pytest.raises(OSError, match="disk full"):
        load_federation(DataConfig(name="synthetic-mhealth", synthetic_seconds=9), ClientsConfig(), 0, other)
    assert list(other.iterdir()) == []


def _features(x: np.ndarray) -> np.ndarray:
    """Per channel: mean, standard deviation and dominant frequency bin of each window."""
    spectrum = np.abs(np.fft.rfft(x - x.mean(axis=2, keepdims=True), axis=2))
    return np.concatenate([x.mean(axis=2), x.std(axis=2), spectrum.argmax(axis=2).astype(float)], axis=1)


def _pair_accuracy(x: np.ndarray, y: np.ndarray, subject: np.ndarray, ka: int, kb: int) -> float:
    """Leave-one-subject-out nearest-centroid accuracy on the two classes (0.5 = cannot tell them apart)."""
    accs = []
    for s in np.unique(subject):
        train, test = subject != s, (subject == s) & np.isin(y, [ka, kb])
        if len(np.unique(y[test])) < 2:
            continue
        f = _features(x)
        f = (f - f[train].mean(0)) / (f[train].std(0) + 1e-9)
        centroids = np.stack([f[train & (y == k)].mean(0) for k in (ka, kb)])
        dist = np.linalg.norm(f[test][:, None, :] - centroids[None], axis=2)
        accs.append(np.mean(np.array([ka, kb])[dist.argmin(1)] == y[test]))
    return float(np.mean(accs))


@pytest.mark.parametrize("name", ["pamap2", "mhealth"])
def test_synthetic_pairs_separable_by_one_modality_only(name: str) -> None:
    mirror = synthetic.MIRRORS[name]
    ws = make_windows(synthetic.generate(name, 0, 30), 25.0, 5.12, 0.5)
    for a, b, only in mirror.only_by:
        ka, kb = mirror.class_names.index(a), mirror.class_names.index(b)
        for m in mirror.blocks:
            acc = _pair_accuracy(ws.x[m], ws.y, ws.subject, ka, kb)
            # The separating modality tells the pair apart on an unseen subject; the others are near chance.
            # (The ECG pair is the hardest: resting heart rate varies across subjects, ~0.75.)
            assert (acc > 0.7) if m == only else (acc < 0.65), (a, b, m, acc)


def test_synthetic_structure_matches_the_real_sets() -> None:
    raw = synthetic.generate("pamap2", 0, 5)
    assert [r.subject for r in raw.recordings] == list(range(101, 110)) and len(raw.class_names) == 12
    assert synthetic.generate("pamap2", 0, 5, magnetometer=True).modalities[0].channels == 9
    m = synthetic.generate("mhealth", 0, 5)
    assert [r.subject for r in m.recordings] == list(range(1, 11)) and m.native_rate_hz == 50.0
    again = synthetic.generate("mhealth", 0, 5)
    np.testing.assert_array_equal(m.recordings[3].data, again.recordings[3].data)
