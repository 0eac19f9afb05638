"""UCI HAPT: Smartphone-Based Recognition of Human Activities and Postural Transitions (Reyes-Ortiz et al., 2016),
raw-signal layout (see ../shared/data/uci-hapt/README.md):

    <path>/**/RawData/acc_expEE_userUU.txt    accelerometer x y z (g), 50 Hz, one row per sample
    <path>/**/RawData/gyro_expEE_userUU.txt   gyroscope x y z (rad/s), same rows
    <path>/**/RawData/labels.txt              experiment, user, activity, first row, last row (0-based, inclusive)

Modalities: ``acc`` (3) and ``gyro`` (3). Classes: the 6 basic activities, or all 12 with the postural transitions.
Rows outside every labelled segment are unlabelled (-1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from common.data.errors import DataError
from common.data.layout import find_files
from common.data.records import ModalitySpec, RawDataset, RawRecording
from common.data.textio import read_table

URL = (
    "https://archive.ics.uci.edu/dataset/341/smartphone+based+recognition+of+human+activities+and+postural+transitions"
)
LAYOUT = """  <path>/**/RawData/acc_expEE_userUU.txt, gyro_expEE_userUU.txt   (3 space-separated columns, 50 Hz)
  <path>/**/RawData/labels.txt   (experiment user activity first last)"""
NATIVE_RATE_HZ = 50.0
DEFAULT_WINDOW_S = 2.56  # Reyes-Ortiz et al. 2016: 2.56 s windows with 50 % overlap
ACTIVITIES = [
    "walking",
    "walking_upstairs",
    "walking_downstairs",
    "sitting",
    "standing",
    "laying",
    "stand_to_sit",
    "sit_to_stand",
    "sit_to_lie",
    "lie_to_sit",
    "stand_to_lie",
    "lie_to_stand",
]
MODALITIES = [ModalitySpec("acc", 3), ModalitySpec("gyro", 3)]


def read_labels(path: Path) -> np.ndarray:
    """``labels.txt`` as an int64 (segments, 5) array: experiment, user, activity, first, last."""
    table = read_table(path, 5)
    if not np.all(table == np.round(table)):
        raise DataError(f"{path}: expected integers only")
    return table.astype(np.int64)


def load(path: str | Path, classes: str = "basic") -> RawDataset:
    """Read every experiment under ``path``; ``classes`` is "basic" (activities 1-6) or "all" (1-12)."""
    found = find_files(path, r"acc_exp(\d+)_user(\d+)\.txt", "UCI-HAPT", LAYOUT, URL)
    n_classes = 6 if classes == "basic" else 12
    out = RawDataset("uci-hapt", list(MODALITIES), ACTIVITIES[:n_classes], NATIVE_RATE_HZ, DEFAULT_WINDOW_S)
    labels_path = found[0][0].parent / "labels.txt"
    if not labels_path.is_file():
        raise DataError(f"UCI-HAPT: {labels_path} is missing; expected the layout:\n{LAYOUT}\nSee {URL}")
    segments = read_labels(labels_path)
    for acc_path, m in found:
        exp, user = int(m.group(1)), int(m.group(2))
        gyro_path = acc_path.with_name(acc_path.name.replace("acc_", "gyro_", 1))
        if not gyro_path.is_file():
            raise DataError(f"UCI-HAPT: {gyro_path} is missing (every acc_ file needs its gyro_ file)")
        acc, gyro = read_table(acc_path, 3), read_table(gyro_path, 3)
        if len(acc) != len(gyro):
            raise DataError(f"UCI-HAPT: {acc_path} has {len(acc)} rows but {gyro_path} has {len(gyro)}")
        labels = np.full(len(acc), -1, dtype=np.int64)
        for row, (_, _, activity, first, last) in _segments_of(segments, exp, user):
            if not (0 <= first <= last < len(acc)):
                raise DataError(
                    f"{labels_path}:{row + 1}: segment rows {first}..{last} outside {acc_path.name} ({len(acc)} rows)"
                )
            if 1 <= activity <= n_classes:
                labels[first : last + 1] = activity - 1
        time = np.arange(len(acc), dtype=np.float64) / NATIVE_RATE_HZ
        out.recordings.append(RawRecording(user, str(acc_path), time, np.hstack([acc, gyro]), labels))
    return out


def _segments_of(segments: np.ndarray, exp: int, user: int) -> list[tuple[int, np.ndarray]]:
    rows = np.flatnonzero((segments[:, 0] == exp) & (segments[:, 1] == user))
    return [(int(r), segments[r]) for r in rows]
