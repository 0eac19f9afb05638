"""`relief pretrain` and the lora regime's warm start (docs/lora.md): the checkpoint holds exactly the backbone and
loads with weights_only=True; pretraining beats an untrained model on the held-out subjects; a federated lora run
changes only A_m, B and the head; `ensure_checkpoint` reuses a matching checkpoint and remakes a stale one."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from common.commands.pretrain_cmd import (
    default_path,
    ensure_checkpoint,
    matches,
    pretrain,
    provenance_path,
)
from common.data import Federation, load_federation
from common.experiment import ExperimentConfig, load_experiment
from common.metrics import evaluate
from common.model import MultimodalNet, init_model
from relief_server.direct import run_direct

ROOT = Path(__file__).resolve().parents[1]
ONE_THREAD_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
# Small: 7 clients, 58 full-sensor windows, 29 test windows. 40 epochs of 2 batches take a few seconds on one core.
SMALL = ["data.synthetic_seconds=10", "train.rounds=3", "strategy.name=relief", "model.regime=lora"]
EPOCHS = 40
MARGIN = 0.3  # an untrained model scores ~0.01 macro-F1 on 12 classes; pretrained ~0.8


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    # Tiny models: one intra-op thread is as fast on an idle machine and far faster on a shared, busy one.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def cfg() -> ExperimentConfig:
    return load_experiment(ROOT / "configs" / "default.yaml", SMALL)


@pytest.fixture(scope="module")
def fed(cfg: ExperimentConfig) -> Federation:
    return load_federation(cfg.data, cfg.clients, cfg.seed)


@pytest.fixture(scope="module")
def made(cfg: ExperimentConfig, fed: Federation, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A checkpoint at the default path under a temporary folder, and its provenance."""
    path = default_path(cfg, tmp_path_factory.mktemp("checkpoints"))
    info = pretrain(cfg, path, epochs=EPOCHS, fed=fed, log=None)
    return path, info


def _with_checkpoint(cfg: ExperimentConfig, path: Path | str) -> ExperimentConfig:
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, checkpoint=str(path)))


def _untrained(cfg: ExperimentConfig, fed: Federation) -> MultimodalNet:
    mods = {m.name: m.channels for m in fed.modalities}
    mcfg = dataclasses.replace(cfg.model, regime="cnn", checkpoint="")
    return init_model(mcfg, cfg.seed, mods, len(fed.class_names), fed.window)


def _lora_model(cfg: ExperimentConfig, fed: Federation, path: Path | str) -> MultimodalNet:
    mods = {m.name: m.channels for m in fed.modalities}
    return init_model(_with_checkpoint(cfg, path).model, cfg.seed, mods, len(fed.class_names), fed.window)


def test_checkpoint_is_exactly_the_backbone_and_loads_weights_only(
    cfg: ExperimentConfig, fed: Federation, made: tuple[Path, dict]
) -> None:
    path, info = made
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = _lora_model(cfg, fed, path)  # init_model -> load_backbone (weights_only=True)
    assert set(state) == set(model.backbone_names())
    assert all(type(t) is torch.Tensor for t in state.values())
    own = dict(model.named_parameters())
    for name, tensor in state.items():
        assert torch.equal(own[name], tensor), name
        assert not own[name].requires_grad, name  # frozen in the lora regime
    assert {n for n, p in own.items() if p.requires_grad} == set(model.trainable_names())
    # provenance next to the checkpoint, describing exactly this file
    assert json.loads(provenance_path(path).read_text()) == json.loads(json.dumps(info))
    assert info["pool"] == "full-sensor" and info["pool_clients"]
    every = [m.name for m in fed.modalities]
    assert all(fed.clients[c].modalities == every for c in info["pool_clients"])
    assert matches(cfg, path)


def test_pretraining_beats_an_untrained_model(cfg: ExperimentConfig, fed: Federation, made: tuple[Path, dict]) -> None:
    _, info = made
    untrained = evaluate(_untrained(cfg, fed), fed.test_x, fed.test_y, {})["macro_f1"]
    m = info["metrics"]
    assert len(m["history"]) == EPOCHS
    assert m["history"][-1]["loss"] < m["history"][0]["loss"]
    assert m["macro_f1"] >= untrained + MARGIN, (untrained, m["macro_f1"])


def test_lora_run_trains_only_the_lora_groups(cfg: ExperimentConfig, fed: Federation, made: tuple[Path, dict]) -> None:
    path, _ = made
    run_cfg = _with_checkpoint(cfg, path)
    start = {n: p.detach().clone() for n, p in _lora_model(cfg, fed, path).named_parameters()}
    session, summary = run_direct(run_cfg, fed=fed)
    end = dict(session.model.named_parameters())
    state = torch.load(path, map_location="cpu", weights_only=True)
    for name, tensor in state.items():  # the backbone never moves: bit-identical to the checkpoint
        assert torch.equal(end[name], tensor), name
    changed = {n for n in start if not torch.equal(start[n], end[n])}
    lora = {n for n in start if n.startswith(("lora_a.", "lora_b", "head."))}
    assert changed <= lora
    assert {"lora_b", "head.weight"} <= changed
    assert summary["rounds"] == cfg.train.rounds
    untrained = evaluate(_untrained(cfg, fed), fed.test_x, fed.test_y, {})["macro_f1"]
    final = session.evaluate()["macro_f1"]
    assert final >= untrained + MARGIN, (untrained, final)


def test_ensure_checkpoint_reuses_a_matching_checkpoint(
    cfg: ExperimentConfig, fed: Federation, made: tuple[Path, dict]
) -> None:
    path, info = made
    said: list[str] = []
    out = ensure_checkpoint(cfg, path.parent, log=said.append)
    assert out is not cfg and cfg.model.checkpoint == ""
    assert out.model.checkpoint == str(path.resolve()) and Path(out.model.checkpoint).is_absolute()
    assert any("reusing" in s for s in said)
    assert json.loads(provenance_path(path).read_text())["sha256"] == info["sha256"]  # not remade
    # nothing to do outside the lora regime, or with a checkpoint already set
    cnn = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, regime="cnn"))
    assert ensure_checkpoint(cnn, path.parent, log=None) is cnn
    given = _with_checkpoint(cfg, "/elsewhere.pt")
    assert ensure_checkpoint(given, path.parent, log=None) is given


def test_ensure_checkpoint_remakes_a_stale_one(
    cfg: ExperimentConfig, made: tuple[Path, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = made
    other = load_experiment(ROOT / "configs" / "default.yaml", [*SMALL, "model.embed_dim=8"])
    stale = default_path(other, tmp_path)
    assert stale.name == path.name  # same data set and seed: same default name, different backbone shape
    stale.write_bytes(path.read_bytes())
    provenance_path(stale).write_text(provenance_path(path).read_text())
    assert not matches(other, stale)
    calls: list[dict[str, Any]] = []
    real = pretrain

    def counting(*args: Any, **kwargs: Any) -> dict:
        calls.append(kwargs)
        return real(*args, **{**kwargs, "epochs": 1})  # the default recipe's result is not what is tested here

    monkeypatch.setattr("common.commands.pretrain_cmd.pretrain", counting)
    out = ensure_checkpoint(other, tmp_path, log=None)
    assert len(calls) == 1 and matches(other, stale)
    state = torch.load(out.model.checkpoint, map_location="cpu", weights_only=True)
    assert state["w0.hand"].shape[1] == 8


def test_cli_writes_and_prints_the_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "ck.pt"
    sets = [a for s in SMALL for a in ("--set", s)]
    argv = ["pretrain", "configs/default.yaml", *sets, "--epochs", "1", "--out", str(out)]
    proc = subprocess.run(
        [sys.executable, "-m", "common.cli", *argv],
        cwd=ROOT,
        env=ONE_THREAD_ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == str(out.resolve())
    assert "epoch  1" in proc.stdout and "test macro-F1" in proc.stdout
    assert provenance_path(out).is_file() and not list(tmp_path.glob("*.tmp"))


def test_cli_bad_key_exits_2_naming_it() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "common.cli", "pretrain", "configs/default.yaml", "--set", "model.no_such_key=1"],
        cwd=ROOT,
        env=ONE_THREAD_ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "model.no_such_key" in proc.stderr
