"""PAMAP2 Physical Activity Monitoring (Reiss & Stricker, 2012), UCI layout.

Each ``subject1NN.dat`` holds one row per 100 Hz sample, 54 space-separated columns, ``NaN`` where missing:

    1 timestamp (s) | 2 activityID | 3 heart rate (bpm, ~9 Hz: NaN on most rows by design)
    4-20 IMU hand | 21-37 IMU chest | 38-54 IMU ankle, each IMU being
        temperature, acc ±16 g (3), acc ±6 g (3), gyroscope (3), magnetometer (3), orientation (4, invalid)

Modalities, in this order: ``hand``, ``chest``, ``ankle`` (acc ±16 g + gyro, + magnetometer when asked: the ±6 g
accelerometer saturates during running and jumping, which is why the data set's readme recommends ±16 g) and
``heart_rate``. Activity 0 (transient) is dropped; the 12 protocol activities become classes 0..11.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from common.data.layout import find_files
from common.data.records import ModalitySpec, RawDataset, RawRecording
from common.data.textio import read_table

URL = "https://archive.ics.uci.edu/dataset/231/pamap2+physical+activity+monitoring"
LAYOUT = """  <path>/**/Protocol/subject101.dat ... subject109.dat   (54 space-separated columns, NaN = missing)
  <path>/**/Optional/subject1NN.dat                       (optional, read when data.pamap2_optional is true)"""
NCOLS = 54
NATIVE_RATE_HZ = 100.0
DEFAULT_WINDOW_S = 5.12  # Reiss & Stricker 2012: 512-sample (5.12 s) windows at 100 Hz
SUBJECTS = list(range(101, 110))

# activityID -> name, for the 12 protocol activities (in class-index order).
ACTIVITIES: dict[int, str] = {
    1: "lying",
    2: "sitting",
    3: "standing",
    4: "walking",
    5: "running",
    6: "cycling",
    7: "nordic_walking",
    12: "ascending_stairs",
    13: "descending_stairs",
    16: "vacuum_cleaning",
    17: "ironing",
    24: "rope_jumping",
}
IMUS = {"hand": 3, "chest": 20, "ankle": 37}  # 0-based column of each IMU's temperature
HR_COL = 2
# Offsets inside one 17-column IMU block.
ACC16, ACC6, GYRO, MAG, ORIENT = slice(1, 4), slice(4, 7), slice(7, 10), slice(10, 13), slice(13, 17)


def modalities(magnetometer: bool = False) -> list[ModalitySpec]:
    """The PAMAP2 modalities in data-set order."""
    imu = 9 if magnetometer else 6
    return [ModalitySpec(n, imu) for n in IMUS] + [ModalitySpec("heart_rate", 1)]


def columns(magnetometer: bool = False) -> list[int]:
    """0-based file columns of every used channel, in modality order."""
    cols: list[int] = []
    for base in IMUS.values():
        parts = [ACC16, GYRO, MAG] if magnetometer else [ACC16, GYRO]
        for part in parts:
            cols.extend(range(base + part.start, base + part.stop))
    return [*cols, HR_COL]


def table_to_recording(table: np.ndarray, subject: int, source: str, magnetometer: bool = False) -> RawRecording:
    """One parsed 54-column table as a recording; activity 0 and non-protocol activities get label -1."""
    ids = table[:, 1]
    labels = np.full(len(table), -1, dtype=np.int64)
    for index, activity in enumerate(ACTIVITIES):
        labels[ids == activity] = index
    return RawRecording(subject, source, table[:, 0].astype(np.float64), table[:, columns(magnetometer)], labels)


def load(path: str | Path, magnetometer: bool = False, optional: bool = False) -> RawDataset:
    """Read every ``subject1NN.dat`` under ``path`` (Protocol/, plus Optional/ when ``optional``)."""
    found = find_files(path, r"subject(1\d\d)\.dat", "PAMAP2", LAYOUT, URL)
    keep = [(p, m) for p, m in found if optional or p.parent.name != "Optional"]
    out = RawDataset("pamap2", modalities(magnetometer), list(ACTIVITIES.values()), NATIVE_RATE_HZ, DEFAULT_WINDOW_S)
    for p, m in keep:
        out.recordings.append(table_to_recording(read_table(p, NCOLS), int(m.group(1)), str(p), magnetometer))
    return out
