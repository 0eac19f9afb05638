"""MHEALTH (Banos et al., 2014), UCI layout.

Each ``mHealth_subjectN.log`` (N = 1..10) holds one row per 50 Hz sample, 24 tab-separated columns:

    1-3 chest acc | 4-5 ECG lead 1, lead 2 | 6-8 left-ankle acc | 9-11 left-ankle gyro | 12-14 left-ankle mag
    15-17 right-lower-arm acc | 18-20 right-arm gyro | 21-23 right-arm mag | 24 label (0 = null class)

Modalities, in this order: ``chest_acc`` (3), ``ecg`` (2), ``ankle`` (acc + gyro, + mag when asked), ``arm`` (same).
The null class 0 is dropped; activities 1..12 become classes 0..11.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from common.data.layout import find_files
from common.data.records import ModalitySpec, RawDataset, RawRecording
from common.data.textio import read_table

URL = "https://archive.ics.uci.edu/dataset/319/mhealth+dataset"
LAYOUT = "  <path>/**/mHealth_subject1.log ... mHealth_subject10.log   (24 tab-separated columns, last = label)"
NCOLS = 24
NATIVE_RATE_HZ = 50.0
DEFAULT_WINDOW_S = 5.12  # same as PAMAP2, so the two data sets are compared at one window length
SUBJECTS = list(range(1, 11))
ACTIVITIES = [
    "standing_still",
    "sitting_relaxing",
    "lying_down",
    "walking",
    "climbing_stairs",
    "waist_bends_forward",
    "frontal_arm_elevation",
    "knees_bending",
    "cycling",
    "jogging",
    "running",
    "jump_front_back",
]
CHEST_ACC, ECG = [0, 1, 2], [3, 4]
ANKLE = {"acc": [5, 6, 7], "gyro": [8, 9, 10], "mag": [11, 12, 13]}
ARM = {"acc": [14, 15, 16], "gyro": [17, 18, 19], "mag": [20, 21, 22]}
LABEL_COL = 23


def modalities(magnetometer: bool = False) -> list[ModalitySpec]:
    """The MHEALTH modalities in data-set order."""
    imu = 9 if magnetometer else 6
    return [ModalitySpec("chest_acc", 3), ModalitySpec("ecg", 2), ModalitySpec("ankle", imu), ModalitySpec("arm", imu)]


def columns(magnetometer: bool = False) -> list[int]:
    """0-based file columns of every used channel, in modality order."""
    parts = ["acc", "gyro", "mag"] if magnetometer else ["acc", "gyro"]
    return CHEST_ACC + ECG + [c for p in parts for c in ANKLE[p]] + [c for p in parts for c in ARM[p]]


def table_to_recording(table: np.ndarray, subject: int, source: str, magnetometer: bool = False) -> RawRecording:
    """One parsed 24-column table as a recording (null class 0 -> label -1)."""
    labels = table[:, LABEL_COL].astype(np.int64) - 1
    labels[(labels < 0) | (labels >= len(ACTIVITIES))] = -1
    time = np.arange(len(table), dtype=np.float64) / NATIVE_RATE_HZ
    return RawRecording(subject, source, time, table[:, columns(magnetometer)], labels)


def load(path: str | Path, magnetometer: bool = False) -> RawDataset:
    """Read every ``mHealth_subjectN.log`` under ``path``."""
    found = find_files(path, r"mHealth_subject(\d+)\.log", "MHEALTH", LAYOUT, URL)
    out = RawDataset("mhealth", modalities(magnetometer), list(ACTIVITIES), NATIVE_RATE_HZ, DEFAULT_WINDOW_S)
    for p, m in found:
        out.recordings.append(table_to_recording(read_table(p, NCOLS), int(m.group(1)), str(p), magnetometer))
    return out
