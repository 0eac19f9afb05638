"""`relief data info` end to end through the `relief` entry point."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.cli import main


def test_data_info(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("seed: 0\ndata: {name: synthetic-mhealth, synthetic_seconds: 10}\n")
    assert main(["data", "info", str(cfg), "--cache-dir", str(tmp_path / "c"), "--set", "clients.test_count=2"]) == 0
    out = capsys.readouterr().out
    assert "data set: synthetic-mhealth" in out and "clients: 8   tiers: fast 2, mid 3, slow 3" in out
    assert "rarest modalities (fewest owners): ankle, arm" in out
    assert "owners per modality: chest_acc 8, ecg 5, ankle 2, arm 2" in out


def test_data_info_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("data: {name: npz, path: " + str(tmp_path / "missing.npz") + "}\n")
    assert main(["data", "info", str(cfg)]) == 2
    assert "missing.npz" in capsys.readouterr().err
    assert main(["data", "info", str(cfg), "--set", "data.nme=x"]) == 2
    assert "data.nme" in capsys.readouterr().err
