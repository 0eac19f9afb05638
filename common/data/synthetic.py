"""Synthetic mirrors of PAMAP2 and MHEALTH: the embedded default data, and the source of test files.

A mirror has the real data set's structure: the same modalities and channel counts, native rate, classes, subjects
and per-subject class gaps. It produces each subject's recording *as the official file's table* (54 columns for
PAMAP2, 24 for MHEALTH, with transient/null rows, NaN heart-rate rows and short wireless dropouts), so the in-memory
path runs the same parsing, gap filling, resampling and windowing as a real download, and :func:`write_layout`
writes those tables as the official files for end-to-end loader tests.

Signal model (fixed by the data set's structure, not tuned to favour a method; docs/data.md):

* Every class has one *code* per modality; a modality's prototype signal depends on the code only. Codes are distinct
  per class except for the pairs in ``Mirror.only_by``: such a pair shares its code in every modality but one, so it
  can be told apart by that single modality only. Each data set has one such pair per modality, the rarest included.
* A prototype is physical in kind: accelerometer = gravity along a posture direction plus a periodic movement at a
  cadence; gyroscope = the periodic movement only; magnetometer = a field direction; heart rate and ECG follow the
  class's intensity (approximate MET values after the Compendium of Physical Activities). Amplitudes grow with it.
* Subject-level variation: per subject and modality a gain, a cadence factor and a sensor-placement offset, and a
  resting heart rate; per segment a random phase and a duration of 0.8-1.2x the nominal one; white sensor noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common.data import mhealth, pamap2
from common.data.records import RawDataset

G = 9.81
TRANSIENT_S = 4.0  # transient (PAMAP2 activity 0) / null-class (MHEALTH 0) stretch between two activities
HR_EVERY = 11  # PAMAP2's heart-rate monitor: ~9 Hz in a 100 Hz table, NaN on the other rows


@dataclass(frozen=True)
class Mirror:
    """The structure a synthetic data set copies from a real one."""

    name: str
    subjects: list[int]
    class_names: list[str]
    met: list[float]  # intensity per class (MET, approximate)
    missing: dict[int, list[str]]  # subject -> protocol classes it did not perform
    only_by: list[tuple[str, str, str]]  # (class a, class b, the only modality separating them)
    native_rate_hz: float
    # modality -> sensor blocks as (kind, channels); kinds: acc, gyro, mag, hr, ecg
    blocks: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    duration: dict[str, float] = field(default_factory=dict)  # class -> share of the nominal duration


IMU_BLOCKS = [("acc", 3), ("gyro", 3), ("mag", 3)]

PAMAP2 = Mirror(
    name="pamap2",
    subjects=pamap2.SUBJECTS,
    class_names=list(pamap2.ACTIVITIES.values()),
    met=[1.0, 1.8, 1.8, 3.3, 9.0, 6.0, 5.0, 8.0, 3.0, 3.5, 2.3, 10.0],
    # Approximately as in the data set's PerformedActivitiesSummary: 109 did little of the protocol besides rope
    # jumping, 103 skipped the demanding outdoor activities, 104 and 107 skipped rope jumping / running.
    missing={
        103: ["running", "cycling", "nordic_walking", "rope_jumping"],
        104: ["rope_jumping"],
        107: ["running", "rope_jumping"],
        109: [n for n in pamap2.ACTIVITIES.values() if n != "rope_jumping"],
    },
    only_by=[
        ("walking", "nordic_walking", "hand"),  # the poles move the wrist only
        ("vacuum_cleaning", "ironing", "chest"),  # the trunk bends over the vacuum cleaner
        ("sitting", "standing", "ankle"),  # leg posture
        ("descending_stairs", "ascending_stairs", "heart_rate"),  # same gait, very different effort
    ],
    native_rate_hz=pamap2.NATIVE_RATE_HZ,
    blocks={"hand": IMU_BLOCKS, "chest": IMU_BLOCKS, "ankle": IMU_BLOCKS, "heart_rate": [("hr", 1)]},
    duration={"rope_jumping": 0.5},  # rope jumping is the shortest protocol activity
)

MHEALTH = Mirror(
    name="mhealth",
    subjects=mhealth.SUBJECTS,
    class_names=list(mhealth.ACTIVITIES),
    met=[1.3, 1.0, 1.0, 3.5, 8.0, 2.5, 2.0, 3.5, 6.0, 7.0, 10.0, 8.0],
    missing={},  # every MHEALTH subject performed every activity
    only_by=[
        ("standing_still", "frontal_arm_elevation", "arm"),
        ("jogging", "running", "ecg"),
        ("waist_bends_forward", "knees_bending", "ankle"),
        ("sitting_relaxing", "lying_down", "chest_acc"),
    ],
    native_rate_hz=mhealth.NATIVE_RATE_HZ,
    blocks={"chest_acc": [("acc", 3)], "ecg": [("ecg", 2)], "ankle": IMU_BLOCKS, "arm": IMU_BLOCKS},
    duration={"jump_front_back": 0.35},  # MHEALTH: 20 repetitions of jumping vs ~1 min for the others
)

MIRRORS = {"pamap2": PAMAP2, "mhealth": MHEALTH}


def class_codes(mirror: Mirror) -> dict[str, np.ndarray]:
    """Modality -> the prototype code of every class (equal codes = indistinguishable in that modality)."""
    index = {n: i for i, n in enumerate(mirror.class_names)}
    codes = {m: np.arange(len(mirror.class_names)) for m in mirror.blocks}
    for a, b, only in mirror.only_by:
        for m in mirror.blocks:
            if m != only:
                codes[m][index[b]] = codes[m][index[a]]
    return codes


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=n)
    return v / np.linalg.norm(v)


def _prototype(seed: int, mi: int, code: int, kind: str, bi: int, n: int, met: float) -> dict[str, np.ndarray]:
    """Parameters of one sensor block for one class code (deterministic in its arguments)."""
    rng = np.random.default_rng([seed, mi, code, bi])
    moving = min(1.0, max(0.0, (met - 1.5) / 6.0))  # 0 for rest, 1 for the most intense activities
    base = {"acc": G * _unit(rng, n), "gyro": np.zeros(n), "mag": 40.0 * _unit(rng, n)}.get(kind, np.zeros(n))
    scale = {"acc": 0.2 + 5.0 * moving, "gyro": 0.05 + 2.5 * moving, "mag": 0.5 + 4.0 * moving}.get(kind, 0.0)
    return {
        "mean": base,
        "amp": scale * rng.uniform(0.4, 1.4, n),
        "harm": rng.uniform(0.0, 0.6, n),
        "shift": rng.uniform(0, 2 * np.pi, n),
        "freq": np.array([0.25 + 0.5 * rng.random() if moving == 0 else 0.8 + 2.2 * rng.random()]),
    }


NOISE = {"acc": 0.35, "gyro": 0.08, "mag": 1.0, "hr": 1.5, "ecg": 0.04}


def subject_signals(
    mirror: Mirror, subject: int, seed: int, seconds: float
) -> tuple[np.ndarray, np.ndarray, dict[str, list[np.ndarray]]]:
    """One subject's session at the native rate: time (L,), class index per sample (-1 = transient), and per modality
    the list of its sensor blocks, each (L, channels)."""
    rng = np.random.default_rng([seed, 7, subject])
    codes = class_codes(mirror)
    rate = mirror.native_rate_hz
    done = [i for i, n in enumerate(mirror.class_names) if n not in mirror.missing.get(subject, [])]
    # Subject-level variation, one draw per modality (and resting heart rate).
    gain = {m: 1.0 + 0.15 * rng.standard_normal() for m in mirror.blocks}
    cadence = {m: 1.0 + 0.08 * rng.standard_normal() for m in mirror.blocks}
    offset = {m: [0.6 * rng.standard_normal(n) for _, n in mirror.blocks[m]] for m in mirror.blocks}
    rest_hr = rng.uniform(55, 80)
    # Session plan: transient, activity, transient, activity, ..., transient.
    plan: list[tuple[int, int]] = []  # (class index or -1, samples)
    for k in done:
        plan.append((-1, int(TRANSIENT_S * rate)))
        share = mirror.duration.get(mirror.class_names[k], 1.0)
        plan.append((k, int(seconds * share * rng.uniform(0.8, 1.2) * rate)))
    plan.append((-1, int(TRANSIENT_S * rate)))
    total = sum(n for _, n in plan)
    labels = np.concatenate([np.full(n, k, dtype=np.int64) for k, n in plan])
    time = np.arange(total) / rate
    out = {m: [np.empty((total, n)) for _, n in bl] for m, bl in mirror.blocks.items()}
    start = 0
    for k, n in plan:
        # Transient stretches look like a random one of the subject's activities, at low intensity.
        cls = k if k >= 0 else int(rng.choice(done))
        t = time[start : start + n]
        for mi, (m, bl) in enumerate(mirror.blocks.items()):
            code = int(codes[m][cls])
            met = mirror.met[code]
            for bi, (kind, nch) in enumerate(bl):
                seg = _block(seed, mi, code, kind, bi, nch, met, t, rng, gain[m], cadence[m], offset[m][bi], rest_hr)
                out[m][bi][start : start + n] = seg
        start += n
    return time, labels, out


def _block(
    seed: int,
    mi: int,
    code: int,
    kind: str,
    bi: int,
    nch: int,
    met: float,
    t: np.ndarray,
    rng: np.random.Generator,
    gain: float,
    cadence: float,
    offset: np.ndarray,
    rest_hr: float,
) -> np.ndarray:
    n = len(t)
    hr = rest_hr + 14.0 * (met - 1.0) * gain
    if kind == "hr":
        drift = 3.0 * np.sin(2 * np.pi * t / 60.0 + rng.uniform(0, 2 * np.pi))
        return (hr + drift + NOISE["hr"] * rng.standard_normal(n))[:, None]
    if kind == "ecg":
        beat = (hr / 60.0) * t + rng.uniform()
        phase = beat - np.floor(beat)  # position inside the current heart beat, 0..1
        width = 0.025 * hr / 60.0  # a QRS of ~25 ms, in beats
        qrs = np.exp(-0.5 * ((phase - 0.3) / width) ** 2)
        twave = 0.25 * np.exp(-0.5 * ((phase - 0.6) / (3 * width)) ** 2)
        leads = np.array([1.0, 0.6]) * gain
        sig = (qrs + twave)[:, None] * leads[None, :nch] + offset[None, :] * 0.1
        return sig + NOISE["ecg"] * rng.standard_normal((n, nch))
    p = _prototype(seed, mi, code, kind, bi, nch, met)
    w = 2 * np.pi * p["freq"][0] * cadence
    phi = rng.uniform(0, 2 * np.pi)
    arg = w * t[:, None] + p["shift"][None, :] + phi
    motion = np.sin(arg) + p["harm"][None, :] * np.sin(2 * arg)
    sig = p["mean"][None, :] + offset[None, :] + gain * p["amp"][None, :] * motion
    return sig + NOISE[kind] * rng.standard_normal((n, nch))


def _dropouts(rng: np.random.Generator, total: int, bursts: int, longest: int) -> np.ndarray:
    """Row mask of short wireless dropouts (the real IMUs lose a few packets now and then)."""
    mask = np.zeros(total, dtype=bool)
    for start in rng.integers(0, max(1, total - longest), bursts):
        mask[start : start + rng.integers(2, longest)] = True
    return mask


def pamap2_table(subject: int, seed: int, seconds: float) -> np.ndarray:
    """One subject's synthetic session as the 54-column PAMAP2 table."""
    time, labels, sig = subject_signals(PAMAP2, subject, seed, seconds)
    rng = np.random.default_rng([seed, 11, subject])
    ids = np.array(list(pamap2.ACTIVITIES))
    table = np.full((len(time), pamap2.NCOLS), np.nan)
    table[:, 0] = np.round(5.0 + time, 2)
    table[:, 1] = np.where(labels >= 0, ids[np.maximum(labels, 0)], 0)
    hr_rows = np.arange(0, len(time), HR_EVERY)
    table[hr_rows, pamap2.HR_COL] = np.round(sig["heart_rate"][0][hr_rows, 0])
    for name, base in pamap2.IMUS.items():
        acc, gyro, mag = sig[name]
        table[:, base] = 32.0 + 0.1 * rng.standard_normal(len(time))
        table[:, base + pamap2.ACC16.start : base + pamap2.ACC16.stop] = np.clip(acc, -16 * G, 16 * G)
        table[:, base + pamap2.ACC6.start : base + pamap2.ACC6.stop] = np.clip(acc, -6 * G, 6 * G)
        table[:, base + pamap2.GYRO.start : base + pamap2.GYRO.stop] = gyro
        table[:, base + pamap2.MAG.start : base + pamap2.MAG.stop] = mag
        table[:, base + pamap2.ORIENT.start : base + pamap2.ORIENT.stop] = [1.0, 0.0, 0.0, 0.0]
        lost = _dropouts(rng, len(time), bursts=3, longest=20)
        table[lost, base : base + 17] = np.nan
    return table


def mhealth_table(subject: int, seed: int, seconds: float) -> np.ndarray:
    """One subject's synthetic session as the 24-column MHEALTH table."""
    _, labels, sig = subject_signals(MHEALTH, subject, seed, seconds)
    table = np.empty((len(labels), mhealth.NCOLS))
    table[:, mhealth.CHEST_ACC] = sig["chest_acc"][0]
    table[:, mhealth.ECG] = sig["ecg"][0]
    for name, cols in (("ankle", mhealth.ANKLE), ("arm", mhealth.ARM)):
        for block, part in zip(sig[name], ("acc", "gyro", "mag"), strict=True):
            table[:, cols[part]] = block
    table[:, mhealth.LABEL_COL] = labels + 1  # -1 (null) -> 0
    return table


def generate(name: str, seed: int, seconds: float, magnetometer: bool = False) -> RawDataset:
    """The synthetic mirror ``name`` ("pamap2" or "mhealth") as a raw data set, through the loaders' table parsing."""
    if name == "pamap2":
        out = RawDataset(
            "synthetic-pamap2",
            pamap2.modalities(magnetometer),
            list(PAMAP2.class_names),
            pamap2.NATIVE_RATE_HZ,
            pamap2.DEFAULT_WINDOW_S,
        )
        for s in PAMAP2.subjects:
            table = pamap2_table(s, seed, seconds)
            out.recordings.append(pamap2.table_to_recording(table, s, f"synthetic subject{s}", magnetometer))
        return out
    out = RawDataset(
        "synthetic-mhealth",
        mhealth.modalities(magnetometer),
        list(MHEALTH.class_names),
        mhealth.NATIVE_RATE_HZ,
        mhealth.DEFAULT_WINDOW_S,
    )
    for s in MHEALTH.subjects:
        out.recordings.append(mhealth.table_to_recording(mhealth_table(s, seed, seconds), s, f"synthetic {s}"))
    return out


def write_layout(name: str, folder: str | Path, seed: int, seconds: float, subjects: list[int] | None = None) -> Path:
    """Write the mirror ``name`` as the official files under ``folder`` (nested as the UCI zip nests them).

    Returns the folder to give as ``data.path``. PAMAP2: ``PAMAP2_Dataset/Protocol/subject1NN.dat`` (space separated,
    ``NaN``); MHEALTH: ``MHEALTHDATASET/mHealth_subjectN.log`` (tab separated).
    """
    root = Path(folder)
    mirror = MIRRORS[name]
    for s in subjects or mirror.subjects:
        if name == "pamap2":
            path = root / "PAMAP2_Dataset" / "Protocol" / f"subject{s}.dat"
            table = pamap2_table(s, seed, seconds)
            fmt = ["%.2f", "%d"] + ["%.6g"] * (pamap2.NCOLS - 2)
            delimiter = " "
        else:
            path = root / "MHEALTHDATASET" / f"mHealth_subject{s}.log"
            table = mhealth_table(s, seed, seconds)
            fmt = ["%.6g"] * (mhealth.NCOLS - 1) + ["%d"]
            delimiter = "\t"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savetxt(path, table, fmt=fmt, delimiter=delimiter)
        if name == "pamap2":  # the real files spell missing values `NaN`
            path.write_text(path.read_text().replace("nan", "NaN"))
    return root
