"""How an experiment travels to the nodes: the resolved configuration as YAML text inside each message's
ConfigRecord, so every node runs exactly the server's configuration without a copy of the file.

The text is parsed with ``yaml.safe_load`` and validated field by field like any local file (never unpickled)."""

from __future__ import annotations

from collections.abc import Sequence

import yaml

from common.config import apply_overrides, build, to_dict
from common.experiment import ExperimentConfig


def experiment_to_text(cfg: ExperimentConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def experiment_from_text(text: str, overrides: Sequence[str] = ()) -> ExperimentConfig:
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ValueError("experiment text is not a mapping")
    return build(ExperimentConfig, apply_overrides(data, overrides), source="<server message>")
