"""Windowing: runs, gap filling inside a segment, resampling, no window across a label change."""

from __future__ import annotations

import numpy as np

from common.data.records import ModalitySpec, RawDataset, RawRecording
from common.data.windows import boxcar, fill_gaps, labelled_runs, make_windows, resample


def test_labelled_runs_split_on_label_and_time_gap() -> None:
    labels = np.array([-1, 0, 0, 1, 1, 1, -1, 1, 1])
    time = np.array([0, 1, 2, 3, 4, 9, 10, 11, 12]) * 0.1
    time[5:] += 5.0  # a 5 s hole inside the run of label 1
    assert labelled_runs(labels, time) == [(1, 3), (3, 5), (5, 6), (7, 9)]


def test_fill_gaps_interpolates_and_refuses_silent_channel() -> None:
    x = np.array([[1.0, np.nan], [np.nan, np.nan], [3.0, np.nan]])
    assert fill_gaps(x) is None
    x[:, 1] = [np.nan, 5.0, np.nan]
    np.testing.assert_array_equal(fill_gaps(x), [[1.0, 5.0], [2.0, 5.0], [3.0, 5.0]])


def test_resample_length_and_constant() -> None:
    t = np.arange(1000) / 100.0
    x = np.full((1000, 2), 7.0)
    out = resample(x, t, 100.0, 25.0)
    assert out.shape == (250, 2) and np.allclose(out, 7.0)
    ramp = boxcar(np.arange(10.0)[:, None], 3)
    np.testing.assert_allclose(ramp[1:-1, 0], np.arange(1.0, 9.0))  # a moving average keeps a line


def _two_label_recording(window: int) -> RawDataset:
    # Each label lasts 1.5 windows: windows over the whole stream (step window/2) would straddle the change.
    n = int(1.5 * window)
    labels = np.repeat([0, 1], n)
    data = np.concatenate([np.zeros((n, 1)), np.ones((n, 1))])
    rec = RawRecording(1, "mem", np.arange(2 * n) / 10.0, data, labels)
    return RawDataset("t", [ModalitySpec("a", 1)], ["zero", "one"], 10.0, 1.0, [rec])


def test_no_window_straddles_a_label_change() -> None:
    ws = make_windows(_two_label_recording(20), rate_hz=10.0, window_s=2.0, overlap=0.5)
    assert ws.window == 20
    assert list(ws.y) == [0, 0, 1, 1]  # 2 per segment; 5 if cut across the boundary
    for x, y in zip(ws.x["a"], ws.y, strict=True):
        assert np.all(x == y)  # every sample of a window belongs to its label


def test_overlap_sets_step() -> None:
    assert make_windows(_two_label_recording(20), 10.0, 2.0, 0.0).n == 2
    assert make_windows(_two_label_recording(20), 10.0, 2.0, 0.75).n == 6
