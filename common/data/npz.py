"""The generic format for a user's own data: one `.npz` of already-windowed arrays (docs/data.md).

    x_<modality>  (N, C_m, T) float32   one array per modality; the key order in the file is the modality order
    y             (N,) int64            class index 0..K-1
    subject       (N,) int64            subject id (clients and the held-out test set are formed by subject)
    class_names   (K,) str              optional; default "class_0".."class_{K-1}"
    rate_hz       () float              optional; default data.rate_hz (informational: windows are not resampled)

Read with ``allow_pickle=False``: an object array (e.g. a list of Python strings saved without a dtype) is refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from common.data.errors import DataError
from common.data.records import ModalitySpec, WindowSet


def load(path: str | Path, default_rate_hz: float) -> WindowSet:
    """Read and check a generic `.npz`; every problem names the array and what was expected."""
    p = Path(path).expanduser()
    if not str(path) or not p.is_file():
        raise DataError(
            f"npz: data.path {str(path)!r} is not a file; expected one .npz with x_<modality> (N, C, T) float32, "
            "y (N,) int64, subject (N,) int64 and optional class_names (see docs/data.md)"
        )
    try:
        with np.load(p, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except ValueError as err:  # object arrays need pickle, which is never allowed
        raise DataError(f"{p}: cannot read without pickle ({err}); save strings as a numpy str array") from None
    except (OSError, EOFError) as err:
        raise DataError(f"{p}: not a readable .npz file ({err})") from None
    x = {k[2:]: v for k, v in arrays.items() if k.startswith("x_")}
    if not x:
        raise DataError(f"{p}: no x_<modality> array; expected at least one, e.g. x_acc of shape (N, C, T) float32")
    y = _need(p, arrays, "y", np.int64, 1)
    n = len(y)
    subject = _need(p, arrays, "subject", np.int64, 1)
    if len(subject) != n:
        raise DataError(f"{p}: array `subject` has shape {subject.shape}; expected ({n},) like `y`")
    window = None
    for name, a in x.items():
        key = f"x_{name}"
        _check(p, key, a, np.float32, 3)
        if a.shape[0] != n:
            raise DataError(f"{p}: array `{key}` has shape {a.shape}; expected ({n}, C, T): one window per label")
        if window is not None and a.shape[2] != window:
            raise DataError(f"{p}: array `{key}` has T={a.shape[2]}; expected T={window} like the other modalities")
        window = a.shape[2]
    if n and y.min() < 0:
        raise DataError(f"{p}: array `y` holds {int(y.min())}; expected class indices >= 0")
    n_classes = int(y.max()) + 1 if n else 0
    if "class_names" in arrays:
        names = arrays["class_names"]
        if names.ndim != 1 or names.dtype.kind not in "US":
            raise DataError(f"{p}: array `class_names` has dtype {names.dtype}, shape {names.shape}; expected (K,) str")
        class_names = [str(s) for s in names]
        if n_classes > len(class_names):
            raise DataError(f"{p}: array `y` holds class {n_classes - 1} but `class_names` has {len(class_names)}")
    else:
        class_names = [f"class_{i}" for i in range(n_classes)]
    rate = float(arrays["rate_hz"]) if "rate_hz" in arrays else default_rate_hz
    modalities = [ModalitySpec(name, int(a.shape[1])) for name, a in x.items()]
    return WindowSet("npz", modalities, class_names, rate, int(window or 0), x, y, subject)


def _need(p: Path, arrays: dict[str, np.ndarray], key: str, dtype: type, ndim: int) -> np.ndarray:
    if key not in arrays:
        raise DataError(f"{p}: array `{key}` is missing; expected shape (N,) {np.dtype(dtype).name}")
    _check(p, key, arrays[key], dtype, ndim)
    return arrays[key]


def _check(p: Path, key: str, a: np.ndarray, dtype: type, ndim: int) -> None:
    expected = {1: "(N,)", 3: "(N, C, T)"}[ndim]
    if a.ndim != ndim or a.dtype != np.dtype(dtype):
        raise DataError(
            f"{p}: array `{key}` has shape {a.shape} and dtype {a.dtype}; expected {expected} {np.dtype(dtype).name}"
        )
