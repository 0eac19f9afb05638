"""Plain containers passed between the loaders, the windowing step, the cache and the partitioner.

Two shapes of data exist: a *raw* data set (continuous recordings with one label per sample, as the official files
hold them) and a *window* set (fixed-length windows, one label each, as the model consumes them). Loaders produce the
first, :mod:`common.data.windows` turns it into the second, the generic `.npz` format is already the second.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class ModalitySpec:
    """One sensor modality: its name and channel count (all channels share the data set's rate)."""

    name: str
    channels: int


@dataclass
class RawRecording:
    """One continuous recording (a subject's session file).

    ``data`` holds every modality's channels side by side, in the data set's modality order, at the native rate;
    NaN marks a missing sample. ``labels`` is the class index per sample, -1 where the sample is unlabelled or its
    activity is dropped (PAMAP2 transient activity 0, MHEALTH null class 0, HAPT rows outside every segment).
    """

    subject: int
    source: str  # file name, for messages
    time: np.ndarray  # (L,) float64 seconds
    data: np.ndarray  # (L, C_total) float64, NaN = missing
    labels: np.ndarray  # (L,) int64, -1 = not used


@dataclass
class RawDataset:
    """Recordings of one data set plus what describes them."""

    name: str
    modalities: list[ModalitySpec]
    class_names: list[str]
    native_rate_hz: float
    default_window_s: float  # the literature's window length for this data set (docs/data.md)
    recordings: list[RawRecording] = field(default_factory=list)


@dataclass
class WindowSet:
    """Fixed-length windows of every modality, one label and one subject each (not yet normalised)."""

    name: str
    modalities: list[ModalitySpec]
    class_names: list[str]
    rate_hz: float
    window: int
    x: dict[str, np.ndarray]  # modality -> (N, C_m, T) float32
    y: np.ndarray  # (N,) int64
    subject: np.ndarray  # (N,) int64

    @property
    def n(self) -> int:
        return int(self.y.shape[0])

    def subset(self, index: np.ndarray) -> WindowSet:
        """The windows at ``index`` (a boolean mask or integer indices)."""
        return WindowSet(
            self.name,
            self.modalities,
            self.class_names,
            self.rate_hz,
            self.window,
            {m: a[index] for m, a in self.x.items()},
            self.y[index],
            self.subject[index],
        )


def channel_slices(modalities: list[ModalitySpec]) -> dict[str, slice]:
    """Column range of each modality inside a recording's ``data`` matrix."""
    out: dict[str, slice] = {}
    start = 0
    for m in modalities:
        out[m.name] = slice(start, start + m.channels)
        start += m.channels
    return out
