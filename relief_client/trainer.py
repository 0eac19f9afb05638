"""Local training of the assigned parameter groups (pure PyTorch; no Flower).

The client runs only the encoders of the modalities in ``present`` (owned and assigned, or owned when the server
asks for forward-only features), updates only the ``train`` groups, and processes exactly ``samples`` samples in
mini-batches, cycling through its shuffled data as often as needed (elastic work: a fraction of an epoch or several
epochs). The same seed gives the same batches and the same result.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from common.groups import GroupRegistry


@dataclass(frozen=True)
class LocalWork:
    train: Sequence[str]
    present: Sequence[str]
    samples: int
    batch_size: int
    lr: float
    momentum: float = 0.0
    weight_decay: float = 0.0
    seed: int = 0


@dataclass(frozen=True)
class LocalResult:
    arrays: dict[str, np.ndarray]  # the trained groups, under transport keys
    samples: int  # samples processed
    steps: int  # optimiser steps
    flops: float  # FLOPs executed (registry's exact step price x samples)
    train_s: float  # wall-clock of the training loop
    loss: float  # mean training loss


def pick_device(name: str) -> torch.device:
    """auto: CUDA when present (a Jetson's GPU), else CPU."""
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def batch_order(n: int, samples: int, seed: int) -> np.ndarray:
    """Indices of the ``samples`` samples to process: successive shuffled passes over ``n`` items."""
    rng = np.random.default_rng(seed)
    passes = -(-samples // n) if n else 0
    order = np.concatenate([rng.permutation(n) for _ in range(passes)]) if passes else np.zeros(0, np.int64)
    return order[:samples]


def train_local(
    registry: GroupRegistry,
    x: Mapping[str, np.ndarray],
    y: np.ndarray,
    work: LocalWork,
    device: torch.device | None = None,
) -> LocalResult:
    """Train ``work.train`` on (x, y) for ``work.samples`` samples; return the trained groups' new values."""
    model = registry.model
    device = device or torch.device("cpu")
    missing = [m for m in work.present if m not in x]
    if missing:
        raise ValueError(f"asked to run modalities this client does not have: {missing}")
    model.to(device).train()
    registry.set_trainable(work.train)
    params = registry.parameters(work.train)
    opt = torch.optim.SGD(params, lr=work.lr, momentum=work.momentum, weight_decay=work.weight_decay)
    torch.manual_seed(work.seed)  # dropout masks
    order = batch_order(len(y), work.samples, work.seed)
    tensors = {m: torch.from_numpy(np.ascontiguousarray(x[m])) for m in work.present}
    labels = torch.from_numpy(np.asarray(y, dtype=np.int64))
    start, losses, steps = time.perf_counter(), [], 0
    for lo in range(0, len(order), work.batch_size):
        idx = torch.from_numpy(order[lo : lo + work.batch_size])
        batch = {m: t[idx].to(device) for m, t in tensors.items()}
        loss = F.cross_entropy(model(batch), labels[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        steps += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    train_s = time.perf_counter() - start
    model.to("cpu")
    flops = registry.step_flops(work.present, work.train).total * len(order)
    mean_loss = float(np.mean(losses)) if losses else float("nan")
    return LocalResult(registry.read(work.train), len(order), steps, flops, train_s, mean_loss)
