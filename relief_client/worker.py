"""What a client does with a TRAIN instruction, free of Flower (the ClientApp and the direct runner both call it)."""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import torch

from common.data import ClientData, Federation
from common.experiment import ExperimentConfig
from common.groups import GroupRegistry
from common.model import MultimodalNet, init_model
from relief_client.trainer import LocalResult, LocalWork, pick_device, train_local


@dataclass(frozen=True)
class Instruction:
    """The ConfigRecord of a TRAIN message, typed."""

    round: int
    train: tuple[str, ...]
    present: tuple[str, ...]
    samples: int
    seed: int
    reply: tuple[str, ...] = ()  # groups to return; empty = the trained ones

    def to_config(self) -> dict[str, int | str | list[str]]:
        out: dict[str, int | str | list[str]] = {
            "round": self.round,
            "train": list(self.train),
            "present": list(self.present),
            "samples": self.samples,
            "seed": self.seed,
        }
        if self.reply:  # only when it differs from `train` (an ablation); absent = the trained groups
            out["reply"] = list(self.reply)
        return out

    @classmethod
    def from_config(cls, cfg: Mapping[str, object]) -> Instruction:
        def strs(key: str) -> tuple[str, ...]:
            value = cfg.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"instruction field {key!r} must be a list of strings")
            return tuple(value)

        ints = {}
        for key in ("round", "samples", "seed"):
            value = cfg.get(key)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"instruction field {key!r} must be an integer, got {value!r}")
            ints[key] = value
        return cls(ints["round"], strs("train"), strs("present"), ints["samples"], ints["seed"], strs("reply"))


def work_seed(seed: int, round_number: int, cid: str) -> int:
    """A client's seed for one round: stable across processes (no Python hash randomisation)."""
    return (seed * 1_000_003 + round_number * 7919 + zlib.crc32(cid.encode())) % (2**31)


def model_for(cfg: ExperimentConfig, fed: Federation) -> MultimodalNet:
    mods = {m.name: m.channels for m in fed.modalities}
    return init_model(cfg.model, cfg.seed, mods, len(fed.class_names), fed.window)


def run_instruction(
    cfg: ExperimentConfig, fed: Federation, client: ClientData, arrays: Mapping[str, np.ndarray], ins: Instruction
) -> LocalResult:
    """Build the model, write the received groups, train the assigned ones; returns the trained groups."""
    unknown = [m for m in ins.present if m not in client.modalities]
    if unknown:
        raise ValueError(f"client {client.cid} was asked to run modalities it does not own: {unknown}")
    registry = GroupRegistry(model_for(cfg, fed))
    registry.write(arrays)
    work = LocalWork(
        ins.train,
        ins.present,
        ins.samples,
        cfg.train.batch_size,
        cfg.train.lr,
        cfg.train.momentum,
        cfg.train.weight_decay,
        ins.seed,
    )
    device = pick_device(cfg.train.device)
    if device.type == "cpu":
        torch.set_num_threads(1)  # one client per core in simulation; also keeps results bit-stable
    result = train_local(registry, client.x, client.y, work, device)
    untrained = [g for g in ins.reply if g not in ins.train]
    if untrained:  # the cohort-aggregation ablation: also return the (unchanged) copies of the other groups
        result = replace(result, arrays={**result.arrays, **registry.read(untrained)})
    return result
