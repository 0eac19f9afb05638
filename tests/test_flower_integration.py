"""End to end through Flower's real simulation runtime (SuperLink + virtual SuperNodes on Ray).

Runs `relief simulate` as a user would (4 supernodes, 3 rounds, private FLWR_HOME and ports), checks the run folder,
that nothing it started is left running, and that Flower changes nothing: the final global arrays equal those of the
same rounds run by direct calls of the pure functions (relief_server/direct.py) within 1e-5.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import psutil
import pytest
import yaml
from flower_support import ROOT, SMALL, flower_env

from common.experiment import load_experiment
from relief_server.direct import run_direct

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("flower")
    config = tmp / "small.yaml"
    config.write_text(yaml.safe_dump(SMALL))
    env = flower_env(tmp, "unused")  # relief simulate makes its own private FLWR_HOME for each run
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "common.cli",
            "simulate",
            str(config),
            "--compare",
            "relief,fedavg",
            "--out",
            str(tmp / "runs"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    return {"proc": proc, "config": config, "runs": tmp / "runs", "env": env}


def test_simulation_writes_complete_run_folders(simulated: dict) -> None:
    proc = simulated["proc"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for strategy in ("relief", "fedavg"):
        run = simulated["runs"] / f"it-{strategy}"
        for name in ("config.yaml", "environment.json", "rounds.csv", "clients.csv", "summary.json", "model.npz"):
            assert (run / name).is_file(), f"{run / name} missing"
        assert yaml.safe_load((run / "config.yaml").read_text())["strategy"]["name"] == strategy
        env = json.loads((run / "environment.json").read_text())
        assert env["packages"]["flwr"] == "1.42.0" and env["seed"] == 3
        rounds = list(csv.DictReader((run / "rounds.csv").open()))
        assert [r["round"] for r in rounds] == ["0", "1", "2", "3"]
        for col in (
            "virtual_time_s",
            "energy_j",
            "bytes_up",
            "bytes_down",
            "accuracy",
            "macro_f1",
            "rare_modality_f1",
            "participants",
            "failed",
        ):
            assert rounds[-1][col] != "", col
        assert float(rounds[3]["virtual_time_s"]) > float(rounds[1]["virtual_time_s"]) > 0
        assert all(r["participants"] == "4" and r["failed"] == "0" and r["late"] == "0" for r in rounds[1:]), rounds
        clients = list(csv.DictReader((run / "clients.csv").open()))
        assert len(clients) == 3 * 4
        assert {c["energy_method"] for c in clients} <= {"measured:rapl", "estimated:cpu-model"}
        assert all(float(c["flops"]) > 0 and int(c["bytes_up"]) > 0 for c in clients)
        summary = json.loads((run / "summary.json").read_text())
        assert summary["strategy"] == strategy and summary["rounds"] == 3
    relief = list(csv.DictReader((simulated["runs"] / "it-relief" / "clients.csv").open()))
    fedavg = list(csv.DictReader((simulated["runs"] / "it-fedavg" / "clients.csv").open()))
    # sparse transport: RELIEF never moves more than FedAvg, and moves less for a device lacking a modality
    assert sum(int(c["bytes_up"]) for c in relief) < sum(int(c["bytes_up"]) for c in fedavg)
    assert (simulated["runs"] / "it-comparison" / "comparison.md").is_file()
    assert (simulated["runs"] / "it-comparison" / "macro_f1_vs_time.png").is_file()


def test_nothing_left_running(simulated: dict) -> None:
    homes = re.findall(r"private FLWR_HOME (\S+)", simulated["proc"].stdout)
    assert len(homes) == 2
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info.get("cmdline") or [])
        assert not any(h in cmd for h in homes), f"left running: {cmd}"
    assert not any(Path(h).exists() for h in homes)


@pytest.mark.parametrize("strategy", ["relief", "fedavg"])
def test_flower_equals_direct_calls(simulated: dict, strategy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELIEF_CACHE_DIR", simulated["env"]["RELIEF_CACHE_DIR"])
    cfg = load_experiment(simulated["config"], [f"strategy.name={strategy}"])
    session, _ = run_direct(cfg)
    direct = session.core.registry.read()
    with np.load(simulated["runs"] / f"it-{strategy}" / "model.npz", allow_pickle=False) as flower:
        assert set(flower.files) == set(direct)
        for key in direct:
            np.testing.assert_allclose(flower[key], direct[key], rtol=0, atol=1e-5, err_msg=key)
    # and the training actually moved the model (the comparison is not between two untouched inits)
    untouched = run_direct(load_experiment(simulated["config"], [f"strategy.name={strategy}", "train.rounds=1"]))[0]
    assert any(not np.allclose(untouched.core.registry.read()[k], direct[k]) for k in direct)
