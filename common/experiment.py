"""The experiment configuration: every section of a run in one typed tree, loaded from YAML plus overrides.

relief config show configs/default.yaml --set train.lr=0.01     # resolved values
relief config keys                                              # every key with its default and help
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from common.allocation import AllocationConfig
from common.clock import ClockConfig
from common.config import load, option
from common.data.config import ClientsConfig, DataConfig
from common.model import ModelConfig


@dataclass
class TrainConfig:
    """Local training on a client."""

    rounds: int = option(20, help="number of federated rounds", ge=1)
    local_epochs: float = option(
        1.0, help="local epochs per round at full budget (a slow device may run a fraction: elastic work)", gt=0
    )
    batch_size: int = option(32, help="local mini-batch size", ge=1)
    lr: float = option(0.05, help="local SGD learning rate", gt=0)
    momentum: float = option(0.9, help="local SGD momentum (state is not kept across rounds)", ge=0, lt=1)
    weight_decay: float = option(0.0, help="local SGD weight decay", ge=0)
    device: Literal["auto", "cpu", "cuda"] = option("auto", help="auto: CUDA when present (a Jetson's GPU), else CPU")


@dataclass
class StrategyConfig:
    """Server-side strategy. Keys under `relief` apply to the RELIEF strategy only (see docs/strategies.md)."""

    name: Literal["relief", "fedavg", "fedavg-deadline"] = option(
        "relief",
        help="relief; fedavg (everyone trains and sends everything, the round waits for the slowest); "
        "fedavg-deadline (FedAvg under the same deadline as relief: late updates are dropped)",
    )
    relief: AllocationConfig = option(default_factory=AllocationConfig, help="RELIEF's allocator")
    max_update_norm: float | None = option(
        None, help="reject a reply whose update of any tensor has an L2 norm above this (null = no bound)", gt=0
    )
    fraction_train: float = option(1.0, help="fraction of nodes sampled each round", gt=0, le=1)
    min_nodes: int = option(2, help="wait for at least this many connected nodes before a round", ge=1)
    round_timeout_s: float = option(3600.0, help="real seconds the server waits for replies each round", gt=0)
    connect_timeout_s: float = option(
        60.0, help="real seconds the server waits for every client's node to connect before it starts", gt=0
    )


@dataclass
class EvalConfig:
    every: int = option(1, help="evaluate the global model on the held-out test set every k rounds", ge=1)
    target_macro_f1: float = option(0.6, help="target macro-F1 for time/energy/bytes-to-target", gt=0, le=1)


@dataclass
class ExperimentConfig:
    name: str = option("default", help="run name: results go to runs/<name>/")
    seed: int = option(0, help="seed for data generation, partitioning, model init and client sampling", ge=0)
    model: ModelConfig = option(default_factory=ModelConfig, help="the model (common/model.py)")
    data: DataConfig = option(default_factory=DataConfig, help="the data set (docs/data.md)")
    clients: ClientsConfig = option(default_factory=ClientsConfig, help="clients, tiers and modality sets")
    clock: ClockConfig = option(default_factory=ClockConfig, help="the virtual clock (docs/energy.md)")
    train: TrainConfig = option(default_factory=TrainConfig, help="local training")
    strategy: StrategyConfig = option(default_factory=StrategyConfig, help="server strategy")
    eval: EvalConfig = option(default_factory=EvalConfig, help="evaluation")


def load_experiment(path: str | Path | None, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Load an experiment YAML (None: all defaults) with `key.path=value` overrides; errors are ConfigError."""
    return load(ExperimentConfig, path, overrides)
