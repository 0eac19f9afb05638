"""From continuous recordings to fixed-length windows: gap filling, resampling, sliding windows.

Each recording is cut into *labelled runs* (maximal stretches of one label >= 0, split again where the timestamps jump
by more than ``MAX_GAP_S``). All processing happens inside a run, which gives three properties at once:

* gaps (NaN) are interpolated within a labelled segment only, never across an activity change;
* resampling never mixes samples of two activities;
* no window straddles a label change: windows are cut inside a run, and a run shorter than one window yields none.
"""

from __future__ import annotations

import itertools

import numpy as np

from common.data.records import RawDataset, WindowSet, channel_slices

MAX_GAP_S = 1.0  # a longer hole in the timestamps ends a run (interpolating across it would invent a second of data)


def window_length(rate_hz: float, window_s: float) -> int:
    """Samples per window at ``rate_hz`` (at least 2)."""
    return max(2, round(window_s * rate_hz))


def window_step(window: int, overlap: float) -> int:
    """Samples between consecutive window starts for a given overlap fraction (at least 1)."""
    return max(1, round(window * (1.0 - overlap)))


def labelled_runs(labels: np.ndarray, time: np.ndarray) -> list[tuple[int, int]]:
    """Half-open [start, end) index ranges of constant label >= 0, split at time gaps longer than MAX_GAP_S."""
    if len(labels) == 0:
        return []
    cut = np.flatnonzero((np.diff(labels) != 0) | (np.diff(time) > MAX_GAP_S)) + 1
    bounds = np.concatenate([[0], cut, [len(labels)]])
    return [(int(s), int(e)) for s, e in itertools.pairwise(bounds) if labels[s] >= 0]


def fill_gaps(x: np.ndarray) -> np.ndarray | None:
    """Linear interpolation of NaNs along axis 0 (constant at the ends); None if a channel has no value at all."""
    x = np.array(x, dtype=np.float64, copy=True)
    idx = np.arange(len(x))
    for c in range(x.shape[1]):
        bad = np.isnan(x[:, c])
        if bad.all():
            return None
        if bad.any():
            x[bad, c] = np.interp(idx[bad], idx[~bad], x[~bad, c])
    return x


def boxcar(x: np.ndarray, width: int) -> np.ndarray:
    """Moving average along axis 0 (edges padded with the edge value): the anti-aliasing filter before decimation."""
    if width <= 1:
        return x
    left = width // 2
    padded = np.pad(x, ((left, width - 1 - left), (0, 0)), mode="edge")
    csum = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(padded, axis=0)])
    return (csum[width:] - csum[:-width]) / width


def resample(x: np.ndarray, time: np.ndarray, native_hz: float, rate_hz: float) -> np.ndarray:
    """``x`` (L, C) sampled at ``time`` onto a uniform grid at ``rate_hz`` starting at ``time[0]``."""
    smoothed = boxcar(x, round(native_hz / rate_hz)) if rate_hz < native_hz else x
    n_out = int(np.floor((time[-1] - time[0]) * rate_hz + 1e-6)) + 1
    grid = time[0] + np.arange(n_out) / rate_hz
    return np.stack([np.interp(grid, time, smoothed[:, c]) for c in range(x.shape[1])], axis=1)


def cut(x: np.ndarray, window: int, step: int) -> np.ndarray:
    """Sliding windows of ``x`` (L, C) as (N, C, window); windows must fit entirely."""
    starts = np.arange(0, len(x) - window + 1, step)
    if len(starts) == 0:
        return np.empty((0, x.shape[1], window), dtype=x.dtype)
    return x[starts[:, None] + np.arange(window)].transpose(0, 2, 1)


def make_windows(raw: RawDataset, rate_hz: float, window_s: float, overlap: float) -> WindowSet:
    """Window every labelled run of every recording of ``raw`` (see the module docstring)."""
    window = window_length(rate_hz, window_s)
    step = window_step(window, overlap)
    parts: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    subjects: list[np.ndarray] = []
    for rec in raw.recordings:
        for s, e in labelled_runs(rec.labels, rec.time):
            if (rec.time[e - 1] - rec.time[s]) * rate_hz + 1 < window:
                continue  # too short for one window: skip the work
            filled = fill_gaps(rec.data[s:e])
            if filled is None:
                continue  # a sensor silent for a whole segment: nothing honest to interpolate from
            w = cut(resample(filled, rec.time[s:e], raw.native_rate_hz, rate_hz).astype(np.float32), window, step)
            parts.append(w)
            ys.append(np.full(len(w), rec.labels[s], dtype=np.int64))
            subjects.append(np.full(len(w), rec.subject, dtype=np.int64))
    total = sum(m.channels for m in raw.modalities)
    allw = np.concatenate(parts) if parts else np.empty((0, total, window), dtype=np.float32)
    x = {name: np.ascontiguousarray(allw[:, sl]) for name, sl in channel_slices(raw.modalities).items()}
    y = np.concatenate(ys) if ys else np.empty(0, dtype=np.int64)
    subject = np.concatenate(subjects) if subjects else np.empty(0, dtype=np.int64)
    return WindowSet(raw.name, list(raw.modalities), list(raw.class_names), float(rate_hz), window, x, y, subject)
