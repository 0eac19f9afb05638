"""Evaluation metrics (definitions in docs/metrics.md)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from common.model import MultimodalNet


def confusion(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return cm


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """Unweighted mean of per-class F1 over the classes present in ``y_true`` (absent classes are not scored:
    a test subject set rarely holds every class, and scoring an absent class as 0 would punish nothing real)."""
    cm = confusion(y_true, y_pred, num_classes)
    tp = np.diag(cm).astype(np.float64)
    support, predicted = cm.sum(axis=1), cm.sum(axis=0)
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    scored = support > 0
    return float(f1[scored].mean()) if scored.any() else 0.0


@torch.no_grad()
def predict(
    model: MultimodalNet, x: Mapping[str, np.ndarray], modalities: Sequence[str], batch: int = 512
) -> np.ndarray:
    """Class predictions with only ``modalities`` present (the others absent: zero-filled, encoders not run)."""
    model.eval()
    n = len(next(iter(x.values())))
    out = []
    for lo in range(0, n, batch):
        feed = {m: torch.from_numpy(np.ascontiguousarray(x[m][lo : lo + batch])) for m in modalities}
        out.append(model(feed).argmax(dim=1).numpy())
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def evaluate(
    model: MultimodalNet,
    x: Mapping[str, np.ndarray],
    y: np.ndarray,
    subsets: Mapping[str, Sequence[str]],
) -> dict[str, float]:
    """Accuracy and macro-F1 with all modalities, plus macro-F1 under each named modality subset."""
    every = list(model.modalities)
    pred = predict(model, x, every)
    out = {"accuracy": float((pred == y).mean()) if len(y) else 0.0, "macro_f1": macro_f1(y, pred, model.num_classes)}
    for name, mods in subsets.items():
        out[f"macro_f1[{name}]"] = macro_f1(y, predict(model, x, list(mods)), model.num_classes)
    return out
