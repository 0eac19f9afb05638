"""The multimodal sensing model: one small 1-D CNN encoder per modality, a fusion layer with modality-aligned LoRA
column blocks, and a classifier head.

    h_m   = E_m(x_m)                                   one encoder per modality, run only when x_m is present
    fused = sum_m W0_m h_m + b0 + (alpha / r) * B (sum_m A_m h_m)
    y     = head(relu(fused))

``W0 = [W0_1 | ... | W0_M]`` and ``A = [A_1 | ... | A_M]`` are stored as one parameter per modality, i.e. as the
column blocks of the fusion weight and of the LoRA down-projection that ``z = concat(h_m)`` feeds. Computing
``W0 z`` with an absent ``h_m`` zero-filled is the same as leaving its block out of the sum, so an absent modality
costs nothing: its encoder is not executed and its blocks get exactly zero gradient.

Two regimes (``ModelConfig.regime``):
- ``lora``: encoders and ``W0``/``b0`` frozen (loaded from a warm-start checkpoint); ``A_m``, ``B``, head train.
- ``cnn``:  everything trains.
Which tensors form which parameter group is decided in :mod:`common.groups`, not here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from common.config import ConfigError, option


@dataclass
class ModelConfig:
    regime: Literal["lora", "cnn"] = option(
        "cnn", help="lora: train only the LoRA blocks A_m, B and the head over a frozen backbone; cnn: train all"
    )
    encoder_channels: list[int] = option(
        [16, 32], help="output channels of each conv layer of a modality encoder", ge=1
    )
    kernel_size: int = option(5, help="conv kernel size (odd, 'same' padding)", ge=1, le=31)
    embed_dim: int = option(32, help="d_m: size of each modality embedding h_m", ge=1)
    fusion_dim: int = option(64, help="output size of the fusion layer W0 (and of B)", ge=1)
    lora_rank: int = option(8, help="r: rank of the fusion LoRA adapter B A", ge=1)
    lora_alpha: float = option(16.0, help="alpha: the adapter is scaled by alpha / r", gt=0)
    dropout: float = option(0.0, help="dropout before the head", ge=0, lt=1)
    checkpoint: str = option(
        "", help="backbone checkpoint (encoders, W0, b0) for the lora regime; made by `relief pretrain`"
    )

    def validate(self) -> None:
        if self.kernel_size % 2 == 0:
            raise ConfigError("kernel_size", "an odd kernel size (for 'same' padding)")
        if not self.encoder_channels:
            raise ConfigError("encoder_channels", "at least one conv layer")


@dataclass(frozen=True)
class LayerCost:
    """One weight-bearing layer as the FLOP model sees it (per sample, forward pass; bias adds are not counted).

    ``params`` are the qualified parameter names of its weight(s); ``inputs`` the layers whose output it consumes, so
    that the registry can tell whether a layer's input needs a gradient (which doubles its backward cost).
    """

    name: str
    forward_flops: int
    params: tuple[str, ...]
    inputs: tuple[str, ...]
    modality: str | None


class ModalityEncoder(nn.Module):
    """Conv1d -> ReLU -> MaxPool(2) blocks, global average pool, then a linear projection to ``embed_dim``."""

    def __init__(self, in_channels: int, cfg: ModelConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_channels
        for i, c_out in enumerate(cfg.encoder_channels):
            layers.append(nn.Conv1d(c_in, c_out, cfg.kernel_size, padding=cfg.kernel_size // 2))
            layers.append(nn.ReLU())
            if i < len(cfg.encoder_channels) - 1:
                layers.append(nn.MaxPool1d(2))
            c_in = c_out
        self.convs = nn.Sequential(*layers)
        self.proj = nn.Linear(c_in, cfg.embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.proj(self.convs(x).mean(dim=-1)))


class MultimodalNet(nn.Module):
    """Per-modality encoders + modality-block fusion with a LoRA adapter + head. See the module docstring."""

    def __init__(self, modalities: Mapping[str, int], num_classes: int, window: int, cfg: ModelConfig) -> None:
        super().__init__()
        if not modalities:
            raise ValueError("the model needs at least one modality")
        self.cfg = cfg
        self.modalities = list(modalities)  # data-set order; defines the column-block order of z
        self.channels = dict(modalities)
        self.num_classes = num_classes
        self.window = window
        self.scale = cfg.lora_alpha / cfg.lora_rank
        d, f, r = cfg.embed_dim, cfg.fusion_dim, cfg.lora_rank
        self.encoders = nn.ModuleDict({m: ModalityEncoder(c, cfg) for m, c in modalities.items()})
        # Column blocks of W0 and of A, one per modality (z = concat(h_m) in self.modalities order).
        self.w0 = nn.ParameterDict({m: nn.Parameter(torch.empty(f, d)) for m in self.modalities})
        self.b0 = nn.Parameter(torch.zeros(f))
        self.lora_a = nn.ParameterDict({m: nn.Parameter(torch.empty(r, d)) for m in self.modalities})
        self.lora_b = nn.Parameter(torch.zeros(f, r))  # B = 0 at start, as in LoRA: the adapter starts as a no-op
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(f, num_classes)
        self._init_blocks()
        if cfg.regime == "lora":
            self.freeze_backbone()

    def _init_blocks(self) -> None:
        # Initialise the blocks as if they were one (f x D) / (r x D) matrix, so the split changes nothing.
        fan_in = self.cfg.embed_dim * len(self.modalities)
        bound = 1.0 / math.sqrt(fan_in)
        for m in self.modalities:
            nn.init.uniform_(self.w0[m], -bound, bound)
            nn.init.uniform_(self.lora_a[m], -bound, bound)

    def backbone_names(self) -> list[str]:
        """Qualified names of the backbone (frozen in the lora regime): encoders, W0 blocks, b0."""
        return [n for n, _ in self.named_parameters() if n.startswith(("encoders.", "w0.", "b0"))]

    def freeze_backbone(self) -> None:
        names = set(self.backbone_names())
        for n, p in self.named_parameters():
            if n in names:
                p.requires_grad_(False)

    def trainable_names(self) -> list[str]:
        """Names the regime allows to train (the registry's groups partition exactly these)."""
        frozen = set(self.backbone_names()) if self.cfg.regime == "lora" else set()
        return [n for n, _ in self.named_parameters() if n not in frozen]

    def forward(self, x: Mapping[str, Tensor]) -> Tensor:
        present = [m for m in self.modalities if m in x]  # absent modalities: zero-filled, i.e. left out of the sums
        unknown = set(x) - set(self.modalities)
        if unknown:
            raise KeyError(f"unknown modalities {sorted(unknown)}; the model has {self.modalities}")
        if not present:
            raise ValueError("forward needs at least one modality")
        fused: Tensor | None = None
        low_rank: Tensor | None = None
        for m in present:
            h = self.encoders[m](x[m])
            w = F.linear(h, self.w0[m])
            a = F.linear(h, self.lora_a[m])
            fused = w if fused is None else fused + w
            low_rank = a if low_rank is None else low_rank + a
        assert fused is not None and low_rank is not None
        fused = fused + self.b0 + self.scale * F.linear(low_rank, self.lora_b)
        return self.head(self.dropout(F.relu(fused)))

    # ------------------------------------------------------------------------------------------------ FLOP model
    def layer_costs(self) -> list[LayerCost]:
        """Every weight-bearing layer with its forward FLOPs per sample, from the layer shapes (2 x MACs)."""
        cfg, out = self.cfg, []
        f, r, d = cfg.fusion_dim, cfg.lora_rank, cfg.embed_dim
        for m in self.modalities:
            length, c_in = self.window, self.channels[m]
            prev: tuple[str, ...] = ()
            for i, c_out in enumerate(cfg.encoder_channels):
                name = f"encoders.{m}.convs.{3 * i}"  # Conv, ReLU, MaxPool per block
                flops = 2 * c_in * c_out * cfg.kernel_size * length
                out.append(LayerCost(name, flops, (f"{name}.weight", f"{name}.bias"), prev, m))
                prev, c_in = (name,), c_out
                if i < len(cfg.encoder_channels) - 1:
                    length //= 2
            proj = f"encoders.{m}.proj"
            out.append(LayerCost(proj, 2 * c_in * d, (f"{proj}.weight", f"{proj}.bias"), prev, m))
            out.append(LayerCost(f"w0.{m}", 2 * d * f, (f"w0.{m}",), (proj,), m))
            out.append(LayerCost(f"lora_a.{m}", 2 * d * r, (f"lora_a.{m}",), (proj,), m))
        a_layers = tuple(f"lora_a.{m}" for m in self.modalities)
        out.append(LayerCost("lora_b", 2 * r * f, ("lora_b",), a_layers, None))
        fusion_inputs = (*(f"w0.{m}" for m in self.modalities), "lora_b", "b0")
        out.append(LayerCost("b0", 0, ("b0",), (), None))
        out.append(LayerCost("head", 2 * f * self.num_classes, ("head.weight", "head.bias"), fusion_inputs, None))
        return out


def build_model(cfg: ModelConfig, modalities: Mapping[str, int], num_classes: int, window: int) -> MultimodalNet:
    """Build the model for a data set's modalities (name -> channels, in data order), classes and window length."""
    return MultimodalNet(modalities, num_classes, window, cfg)


def load_backbone(model: MultimodalNet, path: str) -> None:
    """Load the frozen backbone of the lora regime from our own checkpoint (tensors only: weights_only=True)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    names = set(model.backbone_names())
    missing = names - set(state)
    if missing:
        raise ValueError(f"{path}: checkpoint lacks backbone tensors {sorted(missing)[:5]} ...")
    own = dict(model.named_parameters())
    with torch.no_grad():
        for n in names:
            if tuple(state[n].shape) != tuple(own[n].shape):
                raise ValueError(f"{path}: {n} has shape {tuple(state[n].shape)}, the model {tuple(own[n].shape)}")
            own[n].copy_(state[n])


def init_model(
    cfg: ModelConfig, seed: int, modalities: Mapping[str, int], num_classes: int, window: int
) -> MultimodalNet:
    """The run's initial model, identical on the server and every client: seeded init, plus the backbone checkpoint
    in the lora regime (a client writes the groups it receives over it; groups it never receives are never used)."""
    torch.manual_seed(seed)
    model = build_model(cfg, modalities, num_classes, window)
    if cfg.regime == "lora":
        if not cfg.checkpoint:
            raise ConfigError(
                "model.checkpoint", "a backbone checkpoint for the lora regime (make one: relief pretrain)"
            )
        load_backbone(model, cfg.checkpoint)
    return model
