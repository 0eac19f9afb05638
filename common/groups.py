"""The parameter-group registry: the one place that knows which tensors form which group.

A parameter group is the unit of allocation, aggregation and transport. Per regime:

- ``lora``: ``mod.<m>`` = the LoRA column block ``A_m``; ``shared`` = ``B`` + head.
- ``cnn``:  ``mod.<m>`` = encoder ``E_m`` + the fusion-weight columns ``W0_m`` fed by ``h_m`` + ``A_m``;
            ``shared`` = fusion bias ``b0`` + ``B`` + head.

The groups partition the regime's trainable parameters exactly. Values travel as float32 numpy arrays under
stable transport keys ``<group>/<parameter name>`` (e.g. ``mod.hand/lora_a.hand``). FLOP costs come from the model's
layer shapes (:meth:`common.model.MultimodalNet.layer_costs`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from common.model import LayerCost, MultimodalNet

SHARED = "shared"
MODALITY_PREFIX = "mod."


def modality_group(modality: str) -> str:
    """Name of the parameter group aligned with ``modality``."""
    return MODALITY_PREFIX + modality


def group_modality(group: str) -> str | None:
    """The modality a group is aligned with, or None for a shared group."""
    return group[len(MODALITY_PREFIX) :] if group.startswith(MODALITY_PREFIX) else None


def split_key(key: str) -> tuple[str, str]:
    """Transport key -> (group, parameter name)."""
    group, sep, name = key.partition("/")
    if not sep or not name:
        raise KeyError(f"malformed transport key {key!r} (expected '<group>/<parameter>')")
    return group, name


@dataclass(frozen=True)
class Flops:
    """FLOPs per sample of one forward and one backward pass."""

    forward: float
    backward: float

    @property
    def total(self) -> float:
        return self.forward + self.backward


class GroupRegistry:
    """Names the parameter groups of a model's regime, reads/writes their values and prices their FLOPs."""

    def __init__(self, model: MultimodalNet) -> None:
        self.model = model
        self.regime = model.cfg.regime
        self._params: dict[str, nn.Parameter] = dict(model.named_parameters())
        self._members: dict[str, list[str]] = {modality_group(m): [] for m in model.modalities}
        self._members[SHARED] = []
        for name in model.trainable_names():
            self._members[self._group_of_param(name)].append(name)
        self._group_by_param = {p: g for g, names in self._members.items() for p in names}
        self._layers = model.layer_costs()

    def _group_of_param(self, name: str) -> str:
        root, _, rest = name.partition(".")
        if root in ("encoders", "w0", "lora_a"):
            return modality_group(rest.split(".")[0])
        return SHARED  # b0, lora_b, head

    # ------------------------------------------------------------------------------------------------ names
    @property
    def names(self) -> list[str]:
        """All groups: one per modality (data order), then the shared group."""
        return list(self._members)

    @property
    def shared_groups(self) -> list[str]:
        return [SHARED]

    def modality_groups(self) -> dict[str, str]:
        """Modality -> its group name."""
        return {m: modality_group(m) for m in self.model.modalities}

    def groups_for(self, modalities: Iterable[str]) -> list[str]:
        """The groups a device owning ``modalities`` can train: its modality groups, then the shared groups."""
        owned = set(modalities)
        return [modality_group(m) for m in self.model.modalities if m in owned] + self.shared_groups

    def param_names(self, group: str) -> list[str]:
        self._check(group)
        return list(self._members[group])

    def keys(self, group: str) -> list[str]:
        """Transport keys of a group's tensors."""
        return [f"{group}/{n}" for n in self.param_names(group)]

    def all_keys(self, groups: Iterable[str] | None = None) -> list[str]:
        return [k for g in (self.names if groups is None else groups) for k in self.keys(g)]

    def shapes(self, groups: Iterable[str] | None = None) -> dict[str, tuple[int, ...]]:
        """Transport key -> shape, for validating replies."""
        return {k: tuple(self._params[split_key(k)[1]].shape) for k in self.all_keys(groups)}

    def numel(self, group: str) -> int:
        return sum(self._params[n].numel() for n in self.param_names(group))

    def nbytes(self, groups: Iterable[str]) -> int:
        """Bytes of the groups' values as float32 (what travels)."""
        return 4 * sum(self.numel(g) for g in groups)

    def _check(self, group: str) -> None:
        if group not in self._members:
            raise KeyError(f"unknown parameter group {group!r}; the {self.regime} regime has {self.names}")

    # ------------------------------------------------------------------------------------------------ values
    def parameters(self, groups: Iterable[str]) -> list[nn.Parameter]:
        return [self._params[n] for g in groups for n in self.param_names(g)]

    def set_trainable(self, groups: Iterable[str]) -> None:
        """requires_grad only on the given groups' tensors (everything else, frozen backbone included, off)."""
        wanted = {n for g in groups for n in self.param_names(g)}
        for name, p in self._params.items():
            p.requires_grad_(name in wanted)

    def read(self, groups: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """Copies of the groups' values as float32 arrays under their transport keys."""
        return {
            k: self._params[split_key(k)[1]].detach().cpu().numpy().astype(np.float32, copy=True)
            for k in self.all_keys(groups)
        }

    def write(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Write values given under transport keys; every key, shape and dtype is checked before anything is written."""
        expected = self.shapes()
        for key, arr in arrays.items():
            if key not in expected:
                raise KeyError(f"unknown transport key {key!r}")
            if tuple(arr.shape) != expected[key]:
                raise ValueError(f"{key}: shape {tuple(arr.shape)}, expected {expected[key]}")
            if arr.dtype != np.float32:
                raise ValueError(f"{key}: dtype {arr.dtype}, expected float32")
        with torch.no_grad():
            for key, arr in arrays.items():
                p = self._params[split_key(key)[1]]
                p.copy_(torch.from_numpy(np.ascontiguousarray(arr)).to(p.device))

    # ------------------------------------------------------------------------------------------------ FLOPs
    def group_flops(self, group: str) -> Flops:
        """Forward FLOPs per sample of the layers whose weights belong to ``group``, and their backward cost when the
        group trains (weight gradient + input gradient = 2 x forward for a layer whose input needs a gradient)."""
        members = set(self.param_names(group))
        fwd = sum(layer.forward_flops for layer in self._layers if members & set(layer.params))
        return Flops(float(fwd), float(2 * fwd))

    def step_flops(self, present: Iterable[str], trained: Iterable[str]) -> Flops:
        """FLOPs per sample of one training step that runs the encoders of ``present`` modalities and updates the
        ``trained`` groups: every executed layer's forward, plus, per layer, a weight gradient if its weight trains
        and an input gradient if anything upstream of it trains (what autograd actually executes)."""
        present_set = set(present)
        trainable = {n for g in trained for n in self.param_names(g)}
        needs_grad: dict[str, bool] = {}  # layer -> its output requires grad
        fwd = bwd = 0
        for layer in self._executed(present_set):
            weight_trains = any(p in trainable for p in layer.params)
            input_needs = any(needs_grad.get(i, False) for i in layer.inputs)
            needs_grad[layer.name] = weight_trains or input_needs
            fwd += layer.forward_flops
            bwd += layer.forward_flops * (int(weight_trains) + int(input_needs))
        return Flops(float(fwd), float(bwd))

    def forward_flops(self, present: Iterable[str]) -> float:
        """FLOPs per sample of inference with the given modalities."""
        return self.step_flops(present, ()).forward

    def _executed(self, present: set[str]) -> list[LayerCost]:
        unknown = present - set(self.model.modalities)
        if unknown:
            raise KeyError(f"unknown modalities {sorted(unknown)}")
        return [layer for layer in self._layers if layer.modality is None or layer.modality in present]
