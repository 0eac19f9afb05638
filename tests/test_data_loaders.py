"""Loaders of the official layouts, fed with files the synthetic writer produced (and the real HAPT archive)."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import numpy as np
import pytest

from common.data import hapt, mhealth, pamap2, synthetic
from common.data.errors import DataError
from common.data.windows import make_windows

# The real archive sits beside the checkout (../shared); a clone elsewhere finds it via RELIEF_HAPT_ARCHIVE or the
# workplace's shared folder.
_HAPT_CANDIDATES = [
    Path(p)
    for p in (
        os.environ.get("RELIEF_HAPT_ARCHIVE", ""),
        Path(__file__).resolve().parents[2] / "shared" / "data" / "uci-hapt" / "hapt-rawdata.tar.gz",
        "/work/shared/data/uci-hapt/hapt-rawdata.tar.gz",
    )
    if str(p)
]
HAPT_ARCHIVE = next((p for p in _HAPT_CANDIDATES if p.is_file()), _HAPT_CANDIDATES[-1])


def test_pamap2_layout_end_to_end(tmp_path: Path) -> None:
    root = synthetic.write_layout("pamap2", tmp_path, seed=3, seconds=12, subjects=[101, 103])
    raw = pamap2.load(root)
    assert [r.subject for r in raw.recordings] == [101, 103]
    assert [m.channels for m in raw.modalities] == [6, 6, 6, 1]
    rec = raw.recordings[1]
    assert rec.data.shape[1] == 19
    assert np.isnan(rec.data[:, -1]).mean() > 0.8  # heart rate: ~9 Hz in a 100 Hz table
    assert (rec.labels == -1).any()  # transient activity 0 dropped
    names = {raw.class_names[k] for k in np.unique(rec.labels[rec.labels >= 0])}
    assert names == set(raw.class_names) - {"running", "cycling", "nordic_walking", "rope_jumping"}
    ws = make_windows(raw, 25.0, 5.12, 0.5)
    assert ws.window == 128 and {m: a.shape[1:] for m, a in ws.x.items()} == {
        "hand": (6, 128),
        "chest": (6, 128),
        "ankle": (6, 128),
        "heart_rate": (1, 128),
    }
    assert all(np.isfinite(a).all() for a in ws.x.values())  # gaps interpolated
    # The files hold what the in-memory mirror holds (up to the 6 significant digits written).
    mem = make_windows(synthetic.generate("pamap2", 3, 12), 25.0, 5.12, 0.5)
    keep = np.isin(mem.subject, [101, 103])
    np.testing.assert_array_equal(mem.y[keep], ws.y)
    np.testing.assert_allclose(mem.x["hand"][keep], ws.x["hand"], rtol=1e-4, atol=1e-3)


def test_pamap2_magnetometer_and_optional(tmp_path: Path) -> None:
    root = synthetic.write_layout("pamap2", tmp_path, seed=0, seconds=6, subjects=[105])
    opt = tmp_path / "PAMAP2_Dataset" / "Optional"
    opt.mkdir()
    (opt / "subject105.dat").write_text((tmp_path / "PAMAP2_Dataset" / "Protocol" / "subject105.dat").read_text())
    assert len(pamap2.load(root).recordings) == 1
    raw = pamap2.load(root, magnetometer=True, optional=True)
    assert len(raw.recordings) == 2 and [m.channels for m in raw.modalities] == [9, 9, 9, 1]


def test_mhealth_layout_end_to_end(tmp_path: Path) -> None:
    root = synthetic.write_layout("mhealth", tmp_path, seed=1, seconds=10, subjects=[2, 7])
    raw = mhealth.load(root)
    assert [r.subject for r in raw.recordings] == [2, 7]
    assert [(m.name, m.channels) for m in raw.modalities] == [("chest_acc", 3), ("ecg", 2), ("ankle", 6), ("arm", 6)]
    assert set(np.unique(raw.recordings[0].labels)) == set(range(-1, 12))  # null class -> -1, 12 activities
    ws = make_windows(raw, 25.0, 5.12, 0.5)
    assert set(np.unique(ws.y)) <= set(range(12)) and ws.n > 0
    mem = make_windows(synthetic.generate("mhealth", 1, 10), 25.0, 5.12, 0.5)
    keep = np.isin(mem.subject, [2, 7])
    np.testing.assert_array_equal(mem.y[keep], ws.y)
    np.testing.assert_allclose(mem.x["ecg"][keep], ws.x["ecg"], rtol=1e-4, atol=1e-3)


def test_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    root = synthetic.write_layout("mhealth", tmp_path, seed=0, seconds=3, subjects=[1])
    path = root / "MHEALTHDATASET" / "mHealth_subject1.log"
    lines = path.read_text().splitlines()
    lines[41] = lines[41].rsplit("\t", 1)[0]  # line 42 loses its label column
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"mHealth_subject1\.log:42: expected 24 numbers, got 23"):
        mhealth.load(root)
    lines[41] = lines[41] + "\tabc"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r":42: column 24: 'abc' is not a number"):
        mhealth.load(root)


@pytest.mark.parametrize(
    ("loader", "url"),
    [(pamap2.load, pamap2.URL), (mhealth.load, mhealth.URL), (hapt.load, hapt.URL)],
)
def test_missing_folder_names_layout_and_url(tmp_path: Path, loader, url: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DataError) as err:
        loader(tmp_path / "nowhere")
    assert url in str(err.value) and "expected the" in str(err.value)
    with pytest.raises(DataError, match="no file named like"):
        loader(tmp_path)  # exists, but empty


def _write_hapt(root: Path) -> None:
    """A tiny HAPT layout: user 1 with one experiment, user 2 with two."""
    raw = root / "HAPT" / "RawData"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    segments = []
    for exp, user in [(1, 1), (2, 2), (3, 2)]:
        n = 1200
        np.savetxt(raw / f"acc_exp{exp:02d}_user{user:02d}.txt", rng.normal(size=(n, 3)), fmt="%.6f")
        np.savetxt(raw / f"gyro_exp{exp:02d}_user{user:02d}.txt", rng.normal(size=(n, 3)), fmt="%.6f")
        segments += [(exp, user, 5, 100, 599), (exp, user, 7, 600, 699), (exp, user, 1, 700, 1199)]
    np.savetxt(raw / "labels.txt", np.array(segments), fmt="%d")


def test_hapt_layout(tmp_path: Path) -> None:
    _write_hapt(tmp_path)
    raw = hapt.load(tmp_path, "basic")
    assert len(raw.recordings) == 3 and sorted({r.subject for r in raw.recordings}) == [1, 2]
    labels = raw.recordings[0].labels
    assert (labels[:100] == -1).all() and (labels[100:600] == 4).all()
    assert (labels[600:700] == -1).all()  # a transition is dropped with the 6 basic classes
    assert (hapt.load(tmp_path, "all").recordings[0].labels[600:700] == 6).all()
    ws = make_windows(raw, 25.0, 2.56, 0.5)
    # 500 samples at 50 Hz = 10 s -> 250 at 25 Hz -> windows of 64 every 32: 6 per segment, 2 segments, 3 files.
    assert ws.n == 36 and ws.x["acc"].shape == (36, 3, 64) and ws.x["gyro"].shape == (36, 3, 64)


def test_hapt_segment_outside_file(tmp_path: Path) -> None:
    _write_hapt(tmp_path)
    labels = tmp_path / "HAPT" / "RawData" / "labels.txt"
    labels.write_text(labels.read_text() + "1 1 2 1100 1300\n")
    with pytest.raises(DataError, match=r"labels\.txt:10: segment rows 1100\.\.1300 outside"):
        hapt.load(tmp_path)


@pytest.mark.skipif(not HAPT_ARCHIVE.is_file(), reason=f"real HAPT archive not found at {HAPT_ARCHIVE}")
def test_real_hapt_archive(tmp_path: Path) -> None:
    with tarfile.open(HAPT_ARCHIVE) as tar:
        tar.extractall(tmp_path, filter="data")
    raw = hapt.load(tmp_path, "all")
    assert len({r.subject for r in raw.recordings}) == 30
    assert len(raw.recordings) == 61
    assert sum(len(r.labels) for r in raw.recordings) == 1_122_772
    assert len(hapt.read_labels(next(tmp_path.rglob("labels.txt")))) == 1_214
    ws = make_windows(raw, 25.0, 2.56, 0.5)
    assert ws.x["acc"].shape[1:] == (3, 64) and ws.x["gyro"].shape[1:] == (3, 64)
    assert ws.n > 10_000 and set(np.unique(ws.y)) == set(range(12))
