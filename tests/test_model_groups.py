"""The model and the parameter-group registry: partition, absent modalities, round trips, FLOP counts."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from common.groups import SHARED, GroupRegistry, modality_group
from common.model import ModalityEncoder, ModelConfig, build_model

MODS = {"hand": 6, "chest": 6, "ankle": 6, "hr": 1}
REGIMES = ["cnn", "lora"]


def make(regime: str, seed: int = 0):
    torch.manual_seed(seed)
    model = build_model(ModelConfig(regime=regime), MODS, num_classes=12, window=64)
    with torch.no_grad():  # B starts at zero (LoRA); give it values so every A_m has a non-zero gradient path
        model.lora_b.normal_()
    return model, GroupRegistry(model)


def batch(mods, n: int = 8, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randn(n, MODS[m], 64, generator=g) for m in mods}


@pytest.mark.parametrize("regime", REGIMES)
def test_groups_partition_trainable_parameters_exactly(regime: str) -> None:
    model, reg = make(regime)
    assert reg.names == [modality_group(m) for m in MODS] + [SHARED]
    seen: dict[str, str] = {}
    for g in reg.names:
        for name in reg.param_names(g):
            assert name not in seen, f"{name} in both {seen.get(name)} and {g}"
            seen[name] = g
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(seen) == trainable
    assert sum(reg.numel(g) for g in reg.names) == sum(p.numel() for p in model.parameters() if p.requires_grad)
    if regime == "lora":
        assert reg.param_names("mod.hand") == ["lora_a.hand"]
        assert not any(n.startswith(("encoders.", "w0.", "b0")) for n in seen)
    else:
        assert "w0.hand" in reg.param_names("mod.hand") and "b0" in reg.param_names(SHARED)
        assert any(n.startswith("encoders.hand.") for n in reg.param_names("mod.hand"))


@pytest.mark.parametrize("regime", REGIMES)
def test_absent_modality_zero_gradient_and_encoder_never_called(regime: str) -> None:
    model, reg = make(regime)
    reg.set_trainable(reg.names)
    calls: list[int] = []
    original = ModalityEncoder.forward

    def spy(self, x):
        calls.append(id(self))
        return original(self, x)

    with mock.patch.object(ModalityEncoder, "forward", spy):
        loss = torch.nn.functional.cross_entropy(model(batch(["hand", "chest", "ankle"])), torch.arange(8) % 12)
        loss.backward()
    assert id(model.encoders["hr"]) not in calls and len(calls) == 3
    for p in reg.parameters(["mod.hr"]):
        assert p.grad is None or torch.count_nonzero(p.grad) == 0
    for g in ["mod.hand", "mod.chest", "mod.ankle"]:  # the present ones do learn
        assert any(p.grad is not None and torch.count_nonzero(p.grad) > 0 for p in reg.parameters([g]))


def test_zero_filled_modality_equals_absent() -> None:
    model, _ = make("cnn")
    model.eval()
    x = batch(["hand", "chest"])
    absent = model(x)
    # zero-filling h_m (not x_m) is what "absent" means: patch the encoder output of ankle to zeros
    with mock.patch.object(model.encoders["ankle"], "forward", lambda _x: torch.zeros(8, model.cfg.embed_dim)):
        filled = model({**x, "ankle": torch.randn(8, 6, 64)})
    torch.testing.assert_close(absent, filled, rtol=0, atol=1e-6)


@pytest.mark.parametrize("regime", REGIMES)
def test_get_set_round_trip_bit_exact(regime: str) -> None:
    _, reg_a = make(regime, seed=0)
    _, reg_b = make(regime, seed=1)
    for g in reg_a.names:
        values = reg_a.read([g])
        assert all(k.startswith(g + "/") and v.dtype == np.float32 for k, v in values.items())
        reg_b.write(values)
        back = reg_b.read([g])
        assert values.keys() == back.keys()
        for k in values:
            assert values[k].tobytes() == back[k].tobytes()
    assert all(
        torch.equal(p, q) for p, q in zip(reg_a.parameters(reg_a.names), reg_b.parameters(reg_b.names), strict=True)
    )


def test_set_rejects_bad_arrays_without_partial_write() -> None:
    _, reg = make("lora")
    before = reg.read()
    good = {k: v + 1 for k, v in reg.read(["mod.hand"]).items()}
    for bad in (
        {"mod.hand/nope": np.zeros(3, np.float32)},
        {"shared/lora_b": np.zeros((2, 2), np.float32)},
        {"shared/lora_b": before["shared/lora_b"].astype(np.float64)},
    ):
        with pytest.raises((KeyError, ValueError)):
            reg.write({**good, **bad})
        after = reg.read()
        assert all(np.array_equal(before[k], after[k]) for k in before)


def measured_flops(model, reg, present, trained) -> int:
    reg.set_trainable(trained)
    with FlopCounterMode(display=False) as counter:
        out = model(batch(present))
        if trained:
            torch.nn.functional.cross_entropy(out, torch.arange(8) % 12).backward()
    return counter.get_total_flops()


@pytest.mark.parametrize("regime", REGIMES)
@pytest.mark.parametrize(
    ("present", "trained"),
    [
        (list(MODS), None),
        (["hand"], ["mod.hand", SHARED]),
        (list(MODS), [SHARED]),
        (["hand", "chest"], ["mod.chest"]),
        (["ankle", "hr"], []),
    ],
)
def test_flop_model_matches_flop_counter(regime: str, present, trained) -> None:
    model, reg = make(regime)
    trained = reg.names if trained is None else trained
    predicted = reg.step_flops(present, trained).total * 8
    assert measured_flops(model, reg, present, trained) == pytest.approx(predicted, rel=0.10)


@pytest.mark.parametrize("regime", REGIMES)
def test_group_flops_from_shapes(regime: str) -> None:
    _, reg = make(regime)
    total_forward = reg.forward_flops(MODS)
    per_group = sum(reg.group_flops(g).forward for g in reg.names)
    if regime == "cnn":  # every layer's weights belong to some group
        assert per_group == pytest.approx(total_forward)
    else:  # frozen encoders and W0 cost forward FLOPs but belong to no group
        assert per_group < total_forward
    assert all(reg.group_flops(g).backward == 2 * reg.group_flops(g).forward for g in reg.names)


def test_bytes_and_shapes() -> None:
    _, reg = make("lora")
    assert reg.nbytes(["mod.hand"]) == 4 * 8 * 32
    assert reg.shapes(["mod.hand"]) == {"mod.hand/lora_a.hand": (8, 32)}
    assert reg.groups_for(["chest", "hand"]) == ["mod.hand", "mod.chest", SHARED]


def test_common_does_not_import_flower() -> None:
    import subprocess
    import sys

    code = (
        "import sys, common.model, common.groups, common.config, common.experiment, common.clock;"
        "sys.exit(1 if any(m == 'flwr' or m.startswith('flwr.') for m in sys.modules) else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
