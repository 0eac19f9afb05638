"""The generic .npz format: the docs example round trip, and errors that name the array."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from common.data import ClientsConfig, DataConfig, DataError, load_federation
from common.data.npz import load


def write_example(path: Path) -> None:
    # The example of docs/data.md.
    rng = np.random.default_rng(0)
    n, t = 600, 64
    np.savez(
        path,
        x_acc=rng.normal(size=(n, 3, t)).astype(np.float32),
        x_gyro=rng.normal(size=(n, 3, t)).astype(np.float32),
        y=rng.integers(0, 4, n).astype(np.int64),
        subject=np.repeat(np.arange(6), n // 6).astype(np.int64),
        class_names=np.array(["sit", "stand", "walk", "run"]),
    )


def test_npz_round_trip_to_federation(tmp_path: Path) -> None:
    path = tmp_path / "mine.npz"
    write_example(path)
    ws = load(path, 25.0)
    assert [m.name for m in ws.modalities] == ["acc", "gyro"] and ws.window == 64 and ws.class_names[3] == "run"
    fed = load_federation(DataConfig(name="npz", path=str(path)), ClientsConfig(), seed=0, cache_dir=tmp_path)
    assert len(fed.clients) == 5 and len(fed.test_subjects) == 1
    assert sum(c.n for c in fed.clients) + len(fed.test_y) == 600
    assert fed.rarest_modality() == "gyro"  # first:1 = acc for the slow tier


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"x_acc": np.zeros((600, 3, 64))},
            r"`x_acc` has shape \(600, 3, 64\) and dtype float64; expected \(N, C, T\) float32",
        ),
        ({"x_acc": np.zeros((600, 64), np.float32)}, r"`x_acc` has shape \(600, 64\)"),
        ({"x_gyro": np.zeros((600, 3, 32), np.float32)}, r"`x_gyro` has T=32; expected T=64"),
        ({"x_gyro": np.zeros((599, 3, 64), np.float32)}, r"`x_gyro` has shape \(599, 3, 64\); expected \(600, C, T\)"),
        ({"y": np.zeros(600, np.int32)}, r"`y` has shape \(600,\) and dtype int32; expected \(N,\) int64"),
        ({"subject": np.zeros(5, np.int64)}, r"`subject` has shape \(5,\); expected \(600,\)"),
        ({"class_names": np.array(["a", "b"])}, r"`y` holds class 3 but `class_names` has 2"),
    ],
)
def test_npz_errors_name_the_array(tmp_path: Path, change: dict, message: str) -> None:
    path = tmp_path / "bad.npz"
    write_example(path)
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    arrays.update(change)
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=message):
        load(path, 25.0)


def test_npz_missing_y_and_pickle_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, x_a=np.zeros((2, 1, 4), np.float32), subject=np.zeros(2, np.int64))
    with pytest.raises(DataError, match="array `y` is missing"):
        load(path, 25.0)
    np.savez(
        path,
        x_a=np.zeros((2, 1, 4), np.float32),
        y=np.zeros(2, np.int64),
        subject=np.zeros(2, np.int64),
        class_names=np.array(["a", None], dtype=object),
    )
    with pytest.raises(DataError, match="without pickle"):
        load(path, 25.0)
    with pytest.raises(DataError, match="is not a file"):
        load(tmp_path / "none.npz", 25.0)
