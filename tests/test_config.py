"""Typed configuration: YAML + overrides, and errors that name the key and file (exit code 2 from the CLI)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from common.config import ConfigError, apply_overrides, parse_override, to_dict
from common.experiment import ExperimentConfig, load_experiment


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "exp.yaml"
    p.write_text(text)
    return p


def test_defaults_and_yaml_values(tmp_path: Path) -> None:
    cfg = load_experiment(write(tmp_path, "seed: 7\nmodel: {regime: lora, lora_rank: 4}\ntrain: {lr: 1}\n"))
    assert cfg.seed == 7 and cfg.model.regime == "lora" and cfg.model.lora_rank == 4
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)  # an int is accepted for a float field
    assert cfg.train.batch_size == ExperimentConfig().train.batch_size


def test_overrides_are_yaml_typed(tmp_path: Path) -> None:
    cfg = load_experiment(write(tmp_path, "seed: 1\n"), ["train.lr=0.5", "model.encoder_channels=[8,8,8]", "name=x"])
    assert cfg.train.lr == 0.5 and cfg.model.encoder_channels == [8, 8, 8] and cfg.name == "x"
    assert parse_override("a.b=true") == (["a", "b"], True)
    assert apply_overrides({"a": {"b": 1}}, ["a.c=2"]) == {"a": {"b": 1, "c": 2}}


@pytest.mark.parametrize(
    ("yaml_text", "overrides", "key", "expected"),
    [
        ("model: {regime: foo}\n", [], "model.regime", "one of 'lora', 'cnn'"),
        ("train: {lrr: 0.1}\n", [], "train.lrr", "known keys"),
        ("train: {batch_size: 0}\n", [], "train.batch_size", ">= 1"),
        ("train: {batch_size: 3.5}\n", [], "train.batch_size", "an integer"),
        ("train: {lr: fast}\n", [], "train.lr", "a number"),
        ("model: {kernel_size: 4}\n", [], "model.kernel_size", "odd"),
        ("model: {encoder_channels: [8, 0]}\n", [], "model.encoder_channels", ">= 1"),
        ("seed: 1\n", ["train.rounds=-3"], "train.rounds", ">= 1"),
        ("model: 3\n", [], "model", "a mapping"),
    ],
)
def test_bad_values_name_key_and_file(tmp_path: Path, yaml_text: str, overrides: list[str], key: str, expected: str):
    path = write(tmp_path, yaml_text)
    with pytest.raises(ConfigError) as info:
        load_experiment(path, overrides)
    assert info.value.key == key
    assert str(path) in str(info.value) and f"`{key}`" in str(info.value) and expected in str(info.value)


def test_syntax_error_names_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"line [23]"):
        load_experiment(write(tmp_path, "seed: 1\nmodel: {regime: lora\n  bad: [\n"))


def test_resolved_config_round_trips(tmp_path: Path) -> None:
    import yaml

    cfg = load_experiment(write(tmp_path, "model: {regime: lora}\n"), ["train.rounds=3"])
    again = load_experiment(write(tmp_path, yaml.safe_dump(to_dict(cfg))))
    assert again == cfg


def test_cli_exit_code_2_names_key(tmp_path: Path) -> None:
    path = write(tmp_path, "train: {momentum: 2}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "common.cli", "config", "show", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "train.momentum" in proc.stderr and str(path) in proc.stderr
    assert "Traceback" not in proc.stderr
    ok = subprocess.run(
        [sys.executable, "-m", "common.cli", "config", "show", str(path), "--set", "train.momentum=0.5"],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and "momentum: 0.5" in ok.stdout
